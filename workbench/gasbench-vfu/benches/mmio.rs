//! What one MMIO round trip costs through the server, against baselines
//! measured in the same run: a bare unix-socket ping-pong of the same
//! sizes (the floor), and a protocol-shaped echo server driven by the same
//! client (what any vfio-user server pays). Rounds are interleaved and the
//! median is reported, because the machine is shared.
//!
//! `cargo bench -p gasbench-vfu --bench mmio [-- ITERATIONS]`

#[path = "../tests/support/raw_client.rs"]
mod raw_client;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use gasbench_device::{DeviceConfig, FaultPlan, NoTrace};
use gasbench_events::device::Register;
use gasbench_vfu::DeviceServer;
use raw_client::*;

const ROUNDS: usize = 9;

trait Case {
    fn name(&self) -> &'static str;
    fn once(&mut self, i: u64);
    fn stats(&self) -> Option<gasbench_vfu::TransportStats> {
        None
    }
}

/// 32 bytes out, 36 back, one write and one read each side.
struct Floor {
    sock: UnixStream,
}
impl Case for Floor {
    fn name(&self) -> &'static str {
        "bare socket ping-pong (32 B → 36 B)"
    }
    fn once(&mut self, _: u64) {
        let mut reply = [0u8; 36];
        self.sock.write_all(&[0u8; 32]).unwrap();
        self.sock.read_exact(&mut reply).unwrap();
    }
}

fn floor() -> Floor {
    let (a, mut b) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut req = [0u8; 32];
        while b.read_exact(&mut req).is_ok() {
            if b.write_all(&[0u8; 36]).is_err() {
                break;
            }
        }
    });
    Floor { sock: a }
}

/// Reads header + payload and replies, nothing else.
fn protocol_echo(dir: &std::path::Path) -> RawClient {
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut h = [0u8; 16];
        let mut payload = vec![0u8; 4096];
        while s.read_exact(&mut h).is_ok() {
            let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
            if s.read_exact(&mut payload[..size - 16]).is_err() {
                break;
            }
            let mut reply = [0u8; 36];
            reply[..4].copy_from_slice(&h[..4]);
            reply[4..8].copy_from_slice(&36u32.to_le_bytes());
            reply[8] = 1;
            reply[28..32].copy_from_slice(&4u32.to_le_bytes());
            if s.write_all(&reply).is_err() {
                break;
            }
        }
    });
    RawClient::connect(&path).unwrap()
}

struct Read32 {
    name: &'static str,
    client: RawClient,
    _server: Option<DeviceServer>,
}

/// The server's child-process protocol (`run --device-process`), both ends
/// on threads here: each access's events cross a pipe and wait for the
/// parent's Ack before the reply.
struct PipedRead32 {
    client: RawClient,
    _remote: gasbench_vfu::pipe::RemoteDevice,
}
impl Case for PipedRead32 {
    fn name(&self) -> &'static str {
        "REGION_READ STATUS, events over the pipe"
    }
    fn once(&mut self, _: u64) {
        self.client.read32(Register::Status.offset());
    }
}

fn piped(dir: &std::path::Path) -> PipedRead32 {
    use gasbench_vfu::pipe::{PipedServer, RemoteDevice};
    let path = dir.join("piped.sock");
    let (child_in, to_child) = std::io::pipe().unwrap();
    let (from_child, child_out) = std::io::pipe().unwrap();
    let (sink, mut rx) = gasbench_events::bus();
    std::thread::spawn(move || {
        loop {
            while rx.try_recv().is_ok() {}
            if rx.is_closed() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    let remote = RemoteDevice::new(Box::new(to_child), Box::new(from_child), sink).unwrap();
    let server = PipedServer::start(
        &path,
        DeviceConfig::default(),
        FaultPlan::default(),
        Box::new(child_in),
        Box::new(child_out),
    )
    .unwrap();
    std::thread::spawn(move || server.run(|| None));
    let mut client = RawClient::connect(&path).unwrap();
    client.version().unwrap();
    PipedRead32 {
        client,
        _remote: remote,
    }
}

fn cases_stats(cases: &[Box<dyn Case>]) -> String {
    cases
        .iter()
        .filter_map(|c| {
            c.stats()
                .map(|s| format!("{} {:.2} µs", c.name(), s.mean_us()))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
impl Case for Read32 {
    fn name(&self) -> &'static str {
        self.name
    }
    fn once(&mut self, _: u64) {
        self.client.read32(Register::Status.offset());
    }
    fn stats(&self) -> Option<gasbench_vfu::TransportStats> {
        self._server.as_ref().map(|s| s.stats())
    }
}

struct Write32 {
    client: RawClient,
    _server: DeviceServer,
}
impl Case for Write32 {
    fn name(&self) -> &'static str {
        "REGION_WRITE HANDLE, events, polling consumer"
    }
    fn once(&mut self, i: u64) {
        self.client.write32(Register::Handle.offset(), i as u32);
    }
    fn stats(&self) -> Option<gasbench_vfu::TransportStats> {
        Some(self._server.stats())
    }
}

/// How the bus's consumer waits for events.
#[derive(Clone, Copy, PartialEq)]
enum Consumer {
    None,
    /// Parked in recv: woken by every event.
    Parked,
    /// Drains on a 2 ms tick, never parked on the channel.
    Polling,
}

fn server(dir: &std::path::Path, name: &str, consumer: Consumer) -> (DeviceServer, RawClient) {
    let path = dir.join(name);
    let server = if consumer != Consumer::None {
        let (sink, mut rx) = gasbench_events::bus();
        std::thread::spawn(move || {
            if consumer == Consumer::Parked {
                while rx.blocking_recv().is_some() {}
            } else {
                loop {
                    while rx.try_recv().is_ok() {}
                    if rx.is_closed() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        });
        DeviceServer::start(&path, DeviceConfig::default(), sink).unwrap()
    } else {
        DeviceServer::start_with(
            &path,
            DeviceConfig::default(),
            Box::new(NoTrace),
            FaultPlan::default(),
        )
        .unwrap()
    };
    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    (server, c)
}

/// The device model alone, with and without events, no socket.
fn model_only(n: u64, traced: bool) -> f64 {
    use gasbench_device::{Deferred, Device, DeviceTrace, Region};
    let trace: Box<dyn DeviceTrace> = if traced {
        let (sink, mut rx) = gasbench_events::bus();
        std::thread::spawn(move || while rx.blocking_recv().is_some() {});
        Box::new(Deferred::new(Box::new(sink)))
    } else {
        Box::new(NoTrace)
    };
    let mut d = Device::new(DeviceConfig::default(), trace).unwrap();
    let mut b = [0u8; 4];
    let t = Instant::now();
    for _ in 0..n {
        let _ = d
            .read(Region::Bar0, Register::Status.offset(), &mut b)
            .unwrap();
        d.flush_trace();
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(90_000);
    let per_round = (n / ROUNDS as u64).max(1);
    let dir = tempfile::tempdir().unwrap();
    let (quiet_server, quiet_client) = server(dir.path(), "quiet.sock", Consumer::None);
    let (traced_server, traced_client) = server(dir.path(), "traced.sock", Consumer::Parked);
    let (polled_server, polled_client) = server(dir.path(), "polled.sock", Consumer::Polling);
    let (write_server, write_client) = server(dir.path(), "write.sock", Consumer::Polling);
    let mut cases: Vec<Box<dyn Case>> = vec![
        Box::new(floor()),
        Box::new(Read32 {
            name: "protocol-shaped echo, same client",
            client: protocol_echo(dir.path()),
            _server: None,
        }),
        Box::new(Read32 {
            name: "REGION_READ STATUS, no event trace",
            client: quiet_client,
            _server: Some(quiet_server),
        }),
        Box::new(Read32 {
            name: "REGION_READ STATUS, events, parked consumer",
            client: traced_client,
            _server: Some(traced_server),
        }),
        Box::new(Read32 {
            name: "REGION_READ STATUS, events, polling consumer",
            client: polled_client,
            _server: Some(polled_server),
        }),
        Box::new(Write32 {
            client: write_client,
            _server: write_server,
        }),
        Box::new(piped(dir.path())),
    ];
    for c in cases.iter_mut() {
        for i in 0..1000 {
            c.once(i);
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (k, c) in cases.iter_mut().enumerate() {
            let t = Instant::now();
            for i in 0..per_round {
                c.once(i);
            }
            samples[k].push(t.elapsed().as_secs_f64() / per_round as f64 * 1e6);
        }
    }
    let med: Vec<f64> = samples.iter().map(|s| median(s.clone())).collect();
    let base = med[1];
    println!(
        "MMIO round trip, {} rounds × {per_round} accesses, median µs (min) per access",
        ROUNDS
    );
    for (k, c) in cases.iter().enumerate() {
        let min = samples[k].iter().cloned().fold(f64::MAX, f64::min);
        println!(
            "  {:46} {:6.2} ({:5.2})  ×{:.2} of the protocol echo",
            c.name(),
            med[k],
            min,
            med[k] / base
        );
    }
    println!(
        "  gasbench server cost over a do-nothing vfio-user server: {:+.2} µs/access without events, {:+.2} with a polling consumer, {:+.2} with a parked one",
        med[2] - base,
        med[4] - base,
        med[3] - base
    );
    println!(
        "  the server as a child process (run --device-process): {:+.2} µs/access over the in-process server with a polling consumer",
        med[6] - med[4]
    );
    let stats = cases_stats(&cases);
    println!("  time in the server per message (read → reply sent): {stats}");
    println!(
        "  the device model alone per access: {:.3} µs without events, {:.3} µs with events on the bus",
        model_only(n, false),
        model_only(n, true)
    );
}
