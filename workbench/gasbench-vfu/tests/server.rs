//! The server over a real unix socket, driven by a raw client.

#[path = "support/raw_client.rs"]
mod raw_client;

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gasbench_device::{DeviceConfig, FaultPlan};
use gasbench_events::device::{DeviceEvent, Register};
use gasbench_events::{EventBody, EventStream};
use gasbench_vfu::{DeviceServer, ServerError, ServerStatus};
use raw_client::*;

const GUEST_RAM: u64 = 0x4000_0000;
const PHYS: u64 = 0xfe00_0000;

fn sock(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("gas.sock")
}

fn start(path: &Path, plan: FaultPlan) -> (DeviceServer, EventStream) {
    let (sink, rx) = gasbench_events::bus();
    let server = DeviceServer::start(path, DeviceConfig::default(), sink).unwrap();
    server.set_fault_plan(plan);
    (server, rx)
}

fn device_events(rx: &mut EventStream) -> Vec<DeviceEvent> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let EventBody::Device(d) = ev.body {
            out.push(d);
        }
    }
    out
}

fn reg(r: Register) -> u64 {
    r.offset()
}

#[test]
fn version_info_and_config_space() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = start(&sock(&dir), FaultPlan::default());
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    // Nothing before VERSION.
    assert_eq!(c.call(DEVICE_GET_INFO, &[0u8; 16]).unwrap(), Err(22));
    let (major, minor, json) = c.version().unwrap();
    assert_eq!((major, minor), (0, 1));
    let caps: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(caps["capabilities"]["max_data_xfer_size"], 1048576);
    assert_eq!(
        c.device_info().unwrap(),
        (16, 0x3, 9, 5),
        "PCI|RESET, 9 regions, 5 irq types"
    );
    let expect = [
        (0, (3, 0x1000)),
        (1, (3, 16 << 20)),
        (2, (0, 0)),
        (5, (0, 0)),
        (6, (0, 0)),
        (7, (3, 256)),
        (8, (0, 0)),
    ];
    for (index, want) in expect {
        assert_eq!(c.region_info(index).unwrap(), Ok(want), "region {index}");
    }
    assert_eq!(c.region_info(9).unwrap(), Err(22));
    assert_eq!(
        c.irq_info(0).unwrap(),
        Ok((0x7, 1)),
        "INTx: eventfd, maskable, automasked"
    );
    assert_eq!(c.irq_info(1).unwrap().unwrap().1, 0, "no MSI");
    assert_eq!(c.irq_info(5).unwrap(), Err(22));
    let cfg = c.region_read(CONFIG, 0, 64).unwrap().unwrap();
    assert_eq!(u16::from_le_bytes([cfg[0], cfg[1]]), 0x607d);
    assert_eq!(u16::from_le_bytes([cfg[2], cfg[3]]), 0xf153);
    assert_eq!(cfg[8], 1, "revision");
    assert_eq!(cfg[0x3d], 1, "INTA");
    assert_eq!(
        u32::from_le_bytes(cfg[0x14..0x18].try_into().unwrap()) & 0xf,
        0x4,
        "BAR1 64-bit"
    );
    assert_eq!(
        c.region_read(CONFIG, 250, 8).unwrap(),
        Err(22),
        "past the end"
    );
    assert_eq!(
        c.region_read(2, 0, 4).unwrap(),
        Err(22),
        "BAR2 has no region"
    );
    assert_eq!(c.region_read(BAR0, 0, 2 << 20).unwrap(), Err(7), "E2BIG");
    let ev = device_events(&mut rx);
    assert!(matches!(&ev[0], DeviceEvent::Listening { .. }));
    assert!(ev.iter().any(
        |e| matches!(e, DeviceEvent::Connected { client_version, .. } if client_version == "0.1")
    ));
    drop(c);
    let s = server
        .wait_for(Duration::from_secs(5), |s| {
            matches!(s, ServerStatus::Listening { sessions: 1, .. })
        })
        .expect("back to listening");
    assert!(
        matches!(s, ServerStatus::Listening { last_disconnect: Some(r), .. } if r.contains("closed"))
    );
}

/// The posted driver's open + ping over the socket, with guest RAM in a
/// memfd the server maps.
#[test]
fn a_ping_reaches_guest_ram_through_the_dma_window() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = start(&sock(&dir), FaultPlan::default());
    let ram = memfd(0x10000);
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    assert_eq!(
        c.dma_map(GUEST_RAM, 0x10000, ram.as_raw_fd(), 0).unwrap(),
        Ok(())
    );
    c.write32(reg(Register::GuestPageSize), 4096);
    c.write32(reg(Register::PhysStartLow), PHYS as u32);
    c.write32(reg(Register::PhysStartHigh), 0);
    c.write32(reg(Register::Command), 3);
    let handle = c.read32(reg(Register::Handle));
    assert_eq!(handle, 1);
    let page = GUEST_RAM + 0x2000;
    c.write32(reg(Register::Handle), handle);
    c.write32(reg(Register::PingInfoAddrLow), page as u32);
    c.write32(reg(Register::PingInfoAddrHigh), (page >> 32) as u32);
    c.write32(reg(Register::Command), 5);
    assert_eq!(c.read32(reg(Register::PingInfoAddrLow)), page as u32);
    // First ping: metadata 100 binds the echo service.
    let mut header = [0u8; 48];
    header[16..24].copy_from_slice(&100u64.to_le_bytes());
    ram.write_all_at(&header, 0x2000).unwrap();
    c.write32(reg(Register::Ping), handle);
    let mut back = [0u8; 48];
    ram.read_exact_at(&mut back, 0x2000).unwrap();
    assert_eq!(
        u64::from_le_bytes(back[16..24].try_into().unwrap()),
        0,
        "bound"
    );
    header[16..24].copy_from_slice(&0x55u64.to_le_bytes());
    ram.write_all_at(&header, 0x2000).unwrap();
    c.write32(reg(Register::Ping), handle);
    ram.read_exact_at(&mut back, 0x2000).unwrap();
    assert_eq!(
        u64::from_le_bytes(back[16..24].try_into().unwrap()),
        !0x55u64,
        "echoed"
    );
    // The snapshot, from this thread, while the server runs.
    let s = server.state();
    assert_eq!(s.handles.len(), 1);
    assert_eq!(s.handles[0].ping_page, Some(page));
    assert_eq!(s.counters.ping.ok, 2);
    // BAR1 stores what is written.
    assert_eq!(c.region_write(BAR1, 0x100, b"hello").unwrap(), Ok(()));
    assert_eq!(c.region_read(BAR1, 0x100, 5).unwrap().unwrap(), b"hello");
    let ev = device_events(&mut rx);
    assert!(ev.iter().any(|e| matches!(
        e,
        DeviceEvent::DmaMap {
            gpa: GUEST_RAM,
            mapped: true,
            ..
        }
    )));
    let pings: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Ping(_)))
        .collect();
    assert_eq!(pings.len(), 2);
    // Device reset over the protocol.
    assert_eq!(c.call(DEVICE_RESET, &[]).unwrap(), Ok(vec![]));
    assert!(server.state().is_idle());
}

#[test]
fn the_hook_runs_before_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = start(&sock(&dir), FaultPlan::default());
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let (sink, _keep) = gasbench_events::bus();
    let marker = sink.clone();
    server.set_before_message(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        let _ = &marker;
    });
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    for _ in 0..10 {
        c.read32(reg(Register::Status));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 11);
    server.clear_before_message();
    c.read32(reg(Register::Status));
    assert_eq!(calls.load(Ordering::SeqCst), 11);
    drop(rx.try_recv());
}

#[test]
fn a_drop_fault_closes_the_connection_and_the_device_survives() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::from_toml(
        "[[fault]]\non = \"gen_handle\"\nnth = 2\naction = \"drop_connection\"\n",
    )
    .unwrap();
    let (server, mut rx) = start(&sock(&dir), plan);
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    c.write32(reg(Register::Command), 3);
    assert_eq!(c.read32(reg(Register::Handle)), 1);
    let err = c
        .region_write(BAR0, reg(Register::Command), &3u32.to_le_bytes())
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let s = server
        .wait_for(Duration::from_secs(5), |s| {
            matches!(s, ServerStatus::Listening { sessions: 1, .. })
        })
        .unwrap();
    assert!(
        matches!(&s, ServerStatus::Listening { last_disconnect: Some(r), .. } if r.contains("fault")),
        "{s:?}"
    );
    // A new client finds the device as the old one left it.
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    assert_eq!(server.state().handles.len(), 1);
    c.write32(reg(Register::Command), 3);
    assert_eq!(c.read32(reg(Register::Handle)), 2);
    let ev = device_events(&mut rx);
    assert!(
        ev.iter()
            .any(|e| matches!(e, DeviceEvent::Disconnected { reason } if reason.contains("fault")))
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, DeviceEvent::Fault(f) if f.action == "drop the connection"))
    );
}

#[test]
fn a_delay_fault_holds_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let plan =
        FaultPlan::from_toml("[[fault]]\non = \"ping\"\naction = \"delay\"\nms = 300\n").unwrap();
    let (server, _rx) = start(&sock(&dir), plan);
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    let t = Instant::now();
    c.write32(reg(Register::Ping), 1);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    c.write32(reg(Register::Ping), 1);
    assert!(t.elapsed() < Duration::from_millis(300), "only the first");
}

#[test]
fn intx_is_signalled_through_the_eventfd() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _rx) = gasbench_events::bus();
    let server = DeviceServer::start(
        &sock(&dir),
        DeviceConfig {
            irq_on_command: true,
            ..Default::default()
        },
        sink,
    )
    .unwrap();
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    // SAFETY: eventfd returns a new fd or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(efd >= 0);
    let mut p = Vec::new();
    for v in [20u32, 0x4 | 0x20, 0, 0, 1] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(
        c.call_with_fds(DEVICE_SET_IRQS, &p, &[efd]).unwrap(),
        Ok(vec![])
    );
    c.write32(reg(Register::Command), 3);
    let mut n = [0u8; 8];
    // SAFETY: read 8 bytes from our eventfd into a live buffer.
    let r = unsafe { libc::read(efd, n.as_mut_ptr().cast(), 8) };
    assert_eq!(r, 8);
    assert_eq!(u64::from_ne_bytes(n), 1);
    // SAFETY: closing the fd we created.
    unsafe { libc::close(efd) };
}

#[test]
fn socket_paths_are_handled_with_care() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir);
    // A stale socket (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (mut server, _rx) = start(&path, FaultPlan::default());
    // A live one is not.
    let (sink, _rx2) = gasbench_events::bus();
    assert!(matches!(
        DeviceServer::start(&path, DeviceConfig::default(), sink.clone()),
        Err(ServerError::InUse { .. })
    ));
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        DeviceServer::start(&file, DeviceConfig::default(), sink.clone()),
        Err(ServerError::NotASocket { .. })
    ));
    assert!(matches!(
        DeviceServer::start(
            &dir.path().join("x.sock"),
            DeviceConfig {
                bar1_size: 3 << 20,
                ..Default::default()
            },
            sink
        ),
        Err(ServerError::Config(_))
    ));
    // Stopping with a client attached: the client sees EOF, the socket goes.
    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    server
        .wait_for(Duration::from_secs(5), |s| {
            matches!(s, ServerStatus::Connected { .. })
        })
        .unwrap();
    let s = server.stop();
    assert_eq!(
        s,
        ServerStatus::Stopped {
            reason: "stopped".into(),
            error: false
        }
    );
    assert!(!path.exists(), "the socket is removed");
    assert!(c.recv().is_err());
    drop(server);
    // Drop alone cleans up too.
    let (server, _rx) = start(&path, FaultPlan::default());
    drop(server);
    assert!(!path.exists());
}

/// The engine's contract: a marker the hook puts on the bus precedes the
/// register events of the message it ran before, and those are on the bus
/// before the client has its reply.
#[test]
fn hook_markers_and_register_events_are_in_causal_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = sock(&dir);
    let (sink, mut rx) = gasbench_events::bus();
    let server = DeviceServer::start(&path, DeviceConfig::default(), sink.clone()).unwrap();
    let marker = sink.clone();
    server.set_before_message(move || {
        marker.emit(gasbench_events::run::RunEvent::Note {
            text: "call".into(),
        });
    });
    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    while rx.try_recv().is_ok() {}
    for r in [Register::Status, Register::Handle, Register::GuestPageSize] {
        c.read32(reg(r));
        // No waiting: the events are already there when the reply is.
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| match e.body {
                EventBody::Run(gasbench_events::run::RunEvent::Note { text }) => text,
                EventBody::Device(DeviceEvent::Reg(a)) => a.reg.unwrap().name().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec!["call".to_string(), r.name().to_string()]);
    }
}

#[test]
fn a_client_that_stalls_mid_message_loses_the_session_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _rx) = start(&sock(&dir), FaultPlan::default());
    server.set_body_timeout(Duration::from_millis(200));
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    // A DEVICE_GET_INFO header announcing 100 payload bytes, then 10 of them,
    // and the client stays connected.
    let mut msg = Vec::new();
    msg.extend_from_slice(&7u16.to_le_bytes()); // message id
    msg.extend_from_slice(&DEVICE_GET_INFO.to_le_bytes());
    msg.extend_from_slice(&116u32.to_le_bytes()); // size: header + 100
    msg.extend_from_slice(&0u32.to_le_bytes()); // flags: a command
    msg.extend_from_slice(&0u32.to_le_bytes()); // error
    msg.extend_from_slice(&[0u8; 10]);
    c.send_raw(&msg).unwrap();
    let s = server
        .wait_for(Duration::from_secs(10), |s| {
            matches!(s, ServerStatus::Listening { sessions: 1, .. })
        })
        .expect("the stalled session ends");
    assert!(
        matches!(&s, ServerStatus::Listening { last_disconnect: Some(r), .. } if r.contains("stalled mid-message")),
        "{s:?}"
    );
    // The next client is served.
    let mut c2 = RawClient::connect(server.socket_path()).unwrap();
    c2.version().unwrap();
    drop(c);
}

/// Wait for session `n` to have ended; why it did.
fn ended(server: &DeviceServer, n: u64) -> String {
    match server.wait_for(
        Duration::from_secs(10),
        |s| matches!(s, ServerStatus::Listening { sessions, .. } if *sessions >= n),
    ) {
        Some(ServerStatus::Listening {
            last_disconnect: Some(r),
            ..
        }) => r,
        other => panic!("session {n} did not end: {other:?}"),
    }
}

#[test]
fn a_client_that_connects_and_never_negotiates_is_dropped_and_the_next_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = start(&sock(&dir), FaultPlan::default());
    server.set_handshake_timeout(Duration::from_millis(300));

    // Silent from the start.
    let silent = RawClient::connect(server.socket_path()).unwrap();
    let why = ended(&server, 1);
    assert!(
        why.contains("did not complete the VERSION handshake within 0.3 s"),
        "{why}"
    );
    assert!(device_events(&mut rx).iter().any(|e| matches!(
        e,
        DeviceEvent::Anomaly { text } if text.contains("VERSION handshake")
    )));

    // Busy, but never negotiating: the clock runs all the same.
    let mut chatty = RawClient::connect(server.socket_path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let why = loop {
        assert!(
            Instant::now() < deadline,
            "the chatty client was never dropped"
        );
        match chatty.call(DEVICE_GET_INFO, &[0u8; 16]) {
            Ok(reply) => assert_eq!(reply, Err(22), "refused before VERSION"),
            Err(_) => break ended(&server, 2),
        }
    };
    assert!(why.contains("VERSION handshake"), "{why}");

    // Negotiated, a client may idle past the handshake's limit (a guest
    // that leaves the device alone), and is then served.
    let mut good = RawClient::connect(server.socket_path()).unwrap();
    good.version().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        matches!(server.status(), ServerStatus::Connected { session: 3 }),
        "{:?}",
        server.status()
    );
    good.read32(reg(Register::Status));
    drop((silent, chatty));
}

#[test]
fn a_client_that_stalls_mid_header_is_dropped_before_or_after_negotiating() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _rx) = start(&sock(&dir), FaultPlan::default());
    server.set_body_timeout(Duration::from_millis(200));
    // Long enough that only the stall can end the first session.
    server.set_handshake_timeout(Duration::from_secs(600));
    let header_start = [1u8, 0, 1, 0, 40];
    let mut before = RawClient::connect(server.socket_path()).unwrap();
    before.send_raw(&header_start).unwrap();
    let why = ended(&server, 1);
    assert!(
        why.contains("stalled mid-header (5 of 16 bytes came)"),
        "{why}"
    );
    let mut after = RawClient::connect(server.socket_path()).unwrap();
    after.version().unwrap();
    after.send_raw(&header_start).unwrap();
    let why = ended(&server, 2);
    assert!(why.contains("stalled mid-header"), "{why}");
    let mut next = RawClient::connect(server.socket_path()).unwrap();
    next.version().unwrap();
    drop((before, after));
}

#[test]
fn dma_windows_are_capped_in_number_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut rx) = start(&sock(&dir), FaultPlan::default());
    server.set_dma_limits(gasbench_vfu::DmaLimits {
        max_windows: 3,
        max_bytes: 0x30000,
    });
    let ram = memfd(0x100000);
    let mut c = RawClient::connect(server.socket_path()).unwrap();
    c.version().unwrap();
    let enospc = libc::ENOSPC as u32;
    // Bytes: two of 0x10000 fit, 0x20000 more would not.
    c.dma_map(0x1000_0000, 0x10000, ram.as_raw_fd(), 0)
        .unwrap()
        .unwrap();
    c.dma_map(0x2000_0000, 0x10000, ram.as_raw_fd(), 0x10000)
        .unwrap()
        .unwrap();
    assert_eq!(
        c.dma_map(0x3000_0000, 0x20000, ram.as_raw_fd(), 0x20000)
            .unwrap(),
        Err(enospc)
    );
    // Count: a third fits, a fourth does not.
    c.dma_map(0x3000_0000, 0x1000, ram.as_raw_fd(), 0x20000)
        .unwrap()
        .unwrap();
    assert_eq!(
        c.dma_map(0x4000_0000, 0x1000, ram.as_raw_fd(), 0x30000)
            .unwrap(),
        Err(enospc)
    );
    let refused: Vec<String> = device_events(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            DeviceEvent::Anomaly { text } if text.starts_with("DMA_MAP refused") => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].contains("bytes mapped (at most 0x30000)"),
        "{refused:?}"
    );
    assert!(
        refused[1].contains("would make 4 windows (at most 3)"),
        "{refused:?}"
    );
    // The windows it has still work, and the session goes on.
    assert!(matches!(server.status(), ServerStatus::Connected { .. }));
    c.read32(reg(Register::Status));
}
