//! A public-inbox stand-in on loopback, for tests: real HTTP over a real
//! socket, so the real client (redirects, status codes, gzip) is what is
//! tested. It serves what it was given by path and 404 for the rest, and
//! stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the stand-in answers for one path.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with these bytes.
    Body(Vec<u8>),
    /// Any other status, empty body.
    Status(u16),
}

/// A running stand-in. `url()` is its base.
pub struct PublicInbox {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Every request line and its User-Agent, in order.
    requests: Arc<Mutex<Vec<(String, String)>>>,
    thread: Option<JoinHandle<()>>,
}

impl PublicInbox {
    /// Serve `routes` (path → answer) on 127.0.0.1, on a free port.
    pub fn start(routes: HashMap<String, Answer>) -> std::io::Result<PublicInbox> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = stop.clone();
            let requests = requests.clone();
            std::thread::spawn(move || {
                // Bounded: a test that forgets to drop it still ends.
                let deadline = std::time::Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, &routes, &requests);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(PublicInbox {
            port,
            stop,
            requests,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (request line, User-Agent) of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for PublicInbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    routes: &HashMap<String, Answer>,
    requests: &Mutex<Vec<(String, String)>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut agent = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("user-agent")
        {
            agent = v.trim().to_string();
        }
    }
    let request = request.trim().to_string();
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((request, agent));
    let mut out = stream;
    match routes.get(&path) {
        Some(Answer::Body(body)) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)?;
        }
        Some(Answer::Status(code)) => write!(
            out,
            "HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
        None => write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    out.flush()
}

/// `bytes` gzipped, as public-inbox serves `t.mbox.gz`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}
