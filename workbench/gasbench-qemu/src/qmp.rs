//! QMP: QEMU's control protocol, one JSON object per line.
//!
//! Commands and their results are the `qapi` crate's typed structs
//! (generated from QEMU's schema). The transport is ours: the crate's
//! stream treats any message its (QEMU 9.1) schema does not know as a
//! fatal decode error, and QEMU 11 emits events and fields newer than
//! that. So every line is read as raw JSON first; events go onto the bus
//! verbatim, responses are matched by id and then decoded into the
//! command's typed result — or returned raw by [`Qmp::execute_raw`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gasbench_events::EventSink;
use gasbench_events::vm::VmEvent;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP connection closed{}", .0.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())]
    Closed(Option<String>),
    #[error("QMP greeting missing or malformed: {0}")]
    Greeting(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP command {command}: cannot decode the result ({error}); raw: {raw}")]
    Decode {
        command: String,
        error: String,
        raw: String,
    },
    #[error("QMP command {command} got no answer within {} ms", .timeout.as_millis())]
    Timeout { command: String, timeout: Duration },
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, (String, String)>>>>>;

/// A QMP event as QEMU sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

/// A negotiated QMP connection. Cloning shares it.
#[derive(Clone)]
pub struct Qmp {
    writer: Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>,
    pending: Pending,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    events: broadcast::Sender<QmpEvent>,
    /// QEMU's version from the greeting, e.g. "11.1.3".
    pub qemu_version: String,
    closed: Arc<Mutex<Option<String>>>,
}

/// How long one command may take before we give up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

impl Qmp {
    /// Read the greeting, negotiate capabilities, and start the reader
    /// task that routes responses and emits events on `sink`.
    pub async fn negotiate<S>(stream: S, sink: EventSink) -> Result<Qmp, QmpError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read).lines();
        let greeting = lines
            .next_line()
            .await?
            .ok_or_else(|| QmpError::Greeting("connection closed before the greeting".into()))?;
        let greeting: Value = serde_json::from_str(&greeting)
            .map_err(|e| QmpError::Greeting(format!("{e}: {greeting}")))?;
        let v = &greeting["QMP"]["version"]["qemu"];
        if v.is_null() {
            return Err(QmpError::Greeting(greeting.to_string()));
        }
        let qemu_version = format!("{}.{}.{}", v["major"], v["minor"], v["micro"]);
        let (events, _) = broadcast::channel(256);
        let qmp = Qmp {
            writer: Arc::new(tokio::sync::Mutex::new(Box::new(write))),
            pending: Arc::default(),
            next_id: Arc::default(),
            events: events.clone(),
            qemu_version,
            closed: Arc::default(),
        };
        let pending = qmp.pending.clone();
        let closed = qmp.closed.clone();
        tokio::spawn(async move {
            let reason = loop {
                match lines.next_line().await {
                    Ok(Some(line)) => route(&line, &pending, &events, &sink),
                    Ok(None) => break "QEMU closed the QMP socket".to_string(),
                    Err(e) => break format!("reading QMP: {e}"),
                }
            };
            *closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            // Waking every waiter with an error: dropping the senders does it.
            pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        qmp.execute_raw("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Receive every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Execute a typed command from the `qapi` crate's schema.
    pub async fn execute<C: qapi::Command>(&self, command: C) -> Result<C::Ok, QmpError> {
        let args = serde_json::to_value(&command).map_err(|e| QmpError::Decode {
            command: C::NAME.into(),
            error: e.to_string(),
            raw: String::new(),
        })?;
        let raw = self.execute_raw(C::NAME, args).await?;
        serde_json::from_value(raw.clone()).map_err(|e| QmpError::Decode {
            command: C::NAME.into(),
            error: e.to_string(),
            raw: raw.to_string(),
        })
    }

    /// Execute any command with raw JSON arguments: for what the crate's
    /// schema cannot express (QEMU 11 fields; `device_add` with a JSON
    /// socket address).
    pub async fn execute_raw(&self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        self.execute_raw_timeout(command, arguments, COMMAND_TIMEOUT)
            .await
    }

    pub async fn execute_raw_timeout(
        &self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        if let Some(reason) = self
            .closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(QmpError::Closed(Some(reason)));
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let mut msg = json!({ "execute": command, "id": id });
        if arguments.as_object().is_some_and(|o| !o.is_empty()) {
            msg["arguments"] = arguments;
        }
        let mut line = msg.to_string();
        line.push('\n');
        {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes()).await?;
            w.flush().await?;
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(QmpError::Timeout {
                    command: command.into(),
                    timeout,
                })
            }
            Ok(Err(_)) => Err(QmpError::Closed(
                self.closed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            )),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err((class, desc)))) => Err(QmpError::Command {
                command: command.into(),
                class,
                desc,
            }),
        }
    }

    /// The VM's run state (`running`, `paused`, `shutdown`, …).
    pub async fn status(&self) -> Result<String, QmpError> {
        let v = self.execute_raw("query-status", json!({})).await?;
        Ok(v["status"].as_str().unwrap_or("unknown").to_owned())
    }
}

/// Route one line from QEMU: a response to its waiter, an event to the bus.
fn route(line: &str, pending: &Pending, events: &broadcast::Sender<QmpEvent>, sink: &EventSink) {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        sink.emit(VmEvent::Qmp {
            name: "gasbench.unparsable".into(),
            data: Value::String(line.into()),
        });
        return;
    };
    if let Some(name) = v["event"].as_str() {
        let data = v.get("data").cloned().unwrap_or(Value::Null);
        sink.emit(VmEvent::Qmp {
            name: name.into(),
            data: data.clone(),
        });
        let _ = events.send(QmpEvent {
            name: name.into(),
            data,
        });
        return;
    }
    let Some(id) = v["id"].as_u64() else { return };
    let Some(tx) = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id)
    else {
        return;
    };
    let result = if let Some(ret) = v.get("return") {
        Ok(ret.clone())
    } else {
        let class = v["error"]["class"].as_str().unwrap_or("?").to_owned();
        let desc = v["error"]["desc"].as_str().unwrap_or("?").to_owned();
        Err((class, desc))
    };
    let _ = tx.send(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    /// A scripted QMP server on the other end of a socket pair.
    async fn fake_qemu(
        server: tokio::net::UnixStream,
        handle: impl Fn(Value) -> Vec<String> + Send + 'static,
    ) {
        let (r, mut w) = server.into_split();
        w.write_all(
            b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 1, \"major\": 11}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\n",
        )
        .await
        .unwrap();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let cmd: Value = serde_json::from_str(&line).unwrap();
            for out in handle(cmd) {
                w.write_all(out.as_bytes()).await.unwrap();
                w.write_all(b"\n").await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn negotiates_executes_and_survives_events_the_schema_never_heard_of() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(fake_qemu(b, |cmd| {
            let id = cmd["id"].clone();
            match cmd["execute"].as_str().unwrap() {
                "qmp_capabilities" => vec![json!({"return": {}, "id": id}).to_string()],
                "query-status" => vec![
                    // An event from a future QEMU, then the answer.
                    json!({"event": "X_FUTURE_THING", "data": {"new": true}, "timestamp": {"seconds": 1, "microseconds": 2}}).to_string(),
                    json!({"return": {"status": "running", "running": true}, "id": id}).to_string(),
                ],
                "device_del" => vec![json!({"error": {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}, "id": id}).to_string()],
                _ => vec![],
            }
        }));
        let (sink, mut rx) = gasbench_events::bus();
        let qmp = Qmp::negotiate(a, sink).await.unwrap();
        assert_eq!(qmp.qemu_version, "11.1.3");
        let mut events = qmp.subscribe();

        let status = qmp.execute(qapi::qmp::query_status {}).await.unwrap();
        assert_eq!(status.status, qapi::qmp::RunState::running);
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.name, "X_FUTURE_THING");
        let bus_event = rx.recv().await.unwrap();
        assert!(
            matches!(bus_event.body, gasbench_events::EventBody::Vm(VmEvent::Qmp { ref name, .. }) if name == "X_FUTURE_THING")
        );

        let err = qmp
            .execute_raw("device_del", json!({"id": "nope"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, QmpError::Command { class, .. } if class == "DeviceNotFound"),
            "{err}"
        );

        // A command QEMU never answers times out instead of hanging.
        let err = qmp
            .execute_raw_timeout("x-never", json!({}), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Timeout { .. }));
    }

    #[tokio::test]
    async fn a_closed_connection_fails_waiters_and_later_commands() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let (r, mut w) = b.into_split();
            w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 1, \"major\": 10}}}}\n").await.unwrap();
            let mut lines = BufReader::new(r).lines();
            let cmd: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            w.write_all(format!("{}\n", json!({"return": {}, "id": cmd["id"]})).as_bytes())
                .await
                .unwrap();
            // Read one more command and hang up without answering.
            let _ = lines.next_line().await;
        });
        let (sink, _rx) = gasbench_events::bus();
        let qmp = Qmp::negotiate(a, sink).await.unwrap();
        let err = qmp.execute_raw("quit", json!({})).await.unwrap_err();
        assert!(matches!(err, QmpError::Closed(_)), "{err}");
        let err = qmp
            .execute_raw("query-status", json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, QmpError::Closed(Some(_))), "{err}");
    }

    #[tokio::test]
    async fn garbage_instead_of_a_greeting_is_an_error() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let (_r, mut w) = b.into_split();
            w.write_all(b"hello\n").await.unwrap();
        });
        let (sink, _rx) = gasbench_events::bus();
        let err = Qmp::negotiate(a, sink).await.err().unwrap();
        assert!(matches!(err, QmpError::Greeting(_)), "{err}");
    }
}
