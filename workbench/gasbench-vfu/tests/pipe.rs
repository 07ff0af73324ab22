//! The device server as a child process, both ends of its pipe protocol
//! wired together in one process over real OS pipes, with a raw vfio-user
//! client on the socket.

#[path = "support/raw_client.rs"]
mod raw_client;

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use gasbench_device::{DeviceConfig, FaultPlan};
use gasbench_events::device::{DeviceEvent, Register};
use gasbench_events::{EventBody, EventSink, EventStream};
use gasbench_vfu::ServerStatus;
use gasbench_vfu::pipe::{PipedServer, RemoteDevice, RemoteError};
use raw_client::*;

const T: Duration = Duration::from_secs(5);

type Ended = (String, bool, gasbench_events::device::DeviceState);

/// A child end on a thread and the parent end talking to it.
fn wired(
    socket: &Path,
    plan: FaultPlan,
) -> (RemoteDevice, EventSink, EventStream, JoinHandle<Ended>) {
    let (child_in, to_child) = std::io::pipe().unwrap();
    let (from_child, child_out) = std::io::pipe().unwrap();
    // The parent reads before the child starts, as with a real process:
    // the child's first events wait for the parent's Ack.
    let (sink, rx) = gasbench_events::bus();
    let remote = RemoteDevice::new(Box::new(to_child), Box::new(from_child), sink.clone()).unwrap();
    let server = PipedServer::start(
        socket,
        DeviceConfig::default(),
        plan,
        Box::new(child_in),
        Box::new(child_out),
    )
    .unwrap();
    let child = std::thread::spawn(move || server.run(|| None));
    (remote, sink, rx, child)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn the_remote_device_answers_what_the_server_would() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gas.sock");
    let (mut remote, _sink, _rx, child) = wired(&path, FaultPlan::default());
    block_on(remote.wait_listening(T)).unwrap();
    assert!(matches!(remote.status(), ServerStatus::Listening { .. }));
    let s = remote.state(T).unwrap();
    assert_eq!(s.shared_size, gasbench_device::DEFAULT_BAR1_SIZE);
    assert!(s.handles.is_empty());

    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    c.write32(Register::Command.offset(), 3); // GEN_HANDLE
    assert_eq!(c.read32(Register::Handle.offset()), 1);
    assert_eq!(remote.state(T).unwrap().handles.len(), 1);
    assert!(matches!(
        remote.subscribe().borrow().clone(),
        ServerStatus::Connected { session: 1 }
    ));

    // A fault plan set from the parent acts on the next command.
    let plan = FaultPlan::from_toml(
        "[[fault]]\non = \"gen_handle\"\nnth = 1\naction = \"invalid_handle\"\n",
    )
    .unwrap();
    remote.set_fault_plan(plan, T).unwrap();
    c.write32(Register::Command.offset(), 3);
    assert_ne!(c.read32(Register::Handle.offset()), 2);

    remote.reset_device("test", T).unwrap();
    assert!(remote.state(T).unwrap().handles.is_empty());

    remote.stop(T);
    let (reason, error, _) = child.join().unwrap();
    assert_eq!((reason.as_str(), error), ("stopped by the pipeline", false));
    assert_eq!(
        remote.status(),
        ServerStatus::Stopped {
            reason: "stopped by the pipeline".into(),
            error: false
        }
    );
    assert!(!path.exists(), "the socket is removed");
    assert!(matches!(remote.state(T), Err(RemoteError::Gone(_))));
}

#[test]
fn events_cross_the_pipe_in_causal_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gas.sock");
    let (mut remote, marker, mut rx, child) = wired(&path, FaultPlan::default());
    block_on(remote.wait_listening(T)).unwrap();
    remote.set_before_events(move || {
        marker.emit(gasbench_events::run::RunEvent::Note {
            text: "drained".into(),
        });
    });
    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    // Let the connect/version batches through, then start clean.
    std::thread::sleep(Duration::from_millis(100));
    while rx.try_recv().is_ok() {}
    for r in [Register::Status, Register::Handle, Register::GuestPageSize] {
        c.read32(r.offset());
        // No waiting: the reply came only after the parent acknowledged
        // the batch, so its events are already on the bus, after the hook.
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| match e.body {
                EventBody::Run(gasbench_events::run::RunEvent::Note { text }) => text,
                EventBody::Device(DeviceEvent::Reg(a)) => a.reg.unwrap().name().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec!["drained".to_string(), r.name().to_string()]);
    }
    remote.stop(T);
    child.join().unwrap();
}

#[test]
fn a_child_that_dies_is_an_error_and_waiting_requests_fail_at_once() {
    let (_child_in, to_child) = std::io::pipe().unwrap();
    let (from_child, mut child_out) = std::io::pipe().unwrap();
    let (sink, mut rx) = gasbench_events::bus();
    let remote = RemoteDevice::new(Box::new(to_child), Box::new(from_child), sink).unwrap();
    use std::io::Write;
    writeln!(
        child_out,
        r#"{{"t":"status","status":{{"status":"connected","session":1}}}}"#
    )
    .unwrap();
    writeln!(child_out, "not json at all").unwrap();
    block_on(remote.wait_listening(T)).unwrap();
    let asking = std::thread::spawn(move || {
        let r = remote.state(Duration::from_secs(60));
        (r, remote)
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(child_out); // the child is killed
    let (r, remote) = asking.join().unwrap();
    assert!(matches!(r, Err(RemoteError::Gone(_))), "{r:?}");
    match remote.status() {
        ServerStatus::Stopped { reason, error } => {
            assert!(error);
            assert!(reason.contains("went away"), "{reason}");
        }
        s => panic!("{s:?}"),
    }
    let anomalies: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .filter_map(|e| match e.body {
            EventBody::Device(DeviceEvent::Anomaly { text }) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert!(anomalies[0].contains("not json at all"));
}

#[test]
fn a_child_whose_parent_goes_away_stops_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gas.sock");
    let (remote, _sink, _rx, child) = wired(&path, FaultPlan::default());
    block_on(remote.wait_listening(T)).unwrap();
    assert!(path.exists());
    // Dropping the parent's end closes the child's stdin.
    drop(remote);
    let (reason, error, _) = child.join().unwrap();
    assert!(error);
    assert!(reason.contains("went away"), "{reason}");
    assert!(!path.exists());
}
