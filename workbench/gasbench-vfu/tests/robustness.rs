//! Nothing a client sends can panic the server or leak its fds: random
//! messages by the thousand, garbage bytes, clients that vanish
//! mid-message, oversized and fd-stuffed messages. Afterwards a well-behaved
//! client still gets correct answers.
//!
//! One test per binary: it counts this process's open fds.

#[path = "support/raw_client.rs"]
mod raw_client;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

use gasbench_device::DeviceConfig;
use gasbench_vfu::{DeviceServer, ServerStatus};
use raw_client::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

fn wait_listening(server: &DeviceServer, sessions: u64) -> String {
    match server.wait_for(
        Duration::from_secs(10),
        |s| matches!(s, ServerStatus::Listening { sessions: n, .. } if *n >= sessions),
    ) {
        Some(ServerStatus::Listening {
            last_disconnect: Some(r),
            ..
        }) => r,
        other => panic!(
            "server not listening again: {other:?} / {:?}",
            server.status()
        ),
    }
}

/// Random but well-framed messages; replies must match.
fn storm(client: &mut RawClient, rng: &mut Rng, n: usize, ram: &std::fs::File) {
    let commands = [
        1u16, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 10, 10, 10, 10, 11, 13, 14, 15, 16, 17, 18, 19, 200, 0,
    ];
    for _ in 0..n {
        let command = commands[rng.below(commands.len() as u64) as usize];
        let len = match rng.below(4) {
            0 => 0,
            1 => 16 + rng.below(8) as usize,
            2 => rng.below(64) as usize,
            _ => 20 + rng.below(4) as usize,
        };
        let mut payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Make REGION_* often well-formed, aimed at real regions.
        if (command == 9 || command == 10) && payload.len() >= 16 && rng.below(3) > 0 {
            let region = [0u32, 1, 7, 2, 9][rng.below(5) as usize];
            let offset = rng.below(0x120);
            let count = [1u32, 2, 4, 4, 4, 8, 64][rng.below(7) as usize];
            payload.truncate(16);
            payload[0..8].copy_from_slice(&offset.to_le_bytes());
            payload[8..12].copy_from_slice(&region.to_le_bytes());
            payload[12..16].copy_from_slice(&count.to_le_bytes());
            if command == 10 {
                payload.extend((0..count).map(|_| rng.next() as u8));
            }
        }
        let flags = match rng.below(10) {
            0 => NO_REPLY,
            1 => 1, // a "reply": must be ignored
            2 => rng.next() as u32 & !0xf,
            _ => 0,
        };
        let fd = ram.as_raw_fd();
        let fds: &[i32] = if rng.below(20) == 0 {
            std::slice::from_ref(&fd)
        } else {
            &[]
        };
        let id = client.send(command, flags, &payload, fds).unwrap();
        let expect_reply = flags & 0xf == 0 && flags & NO_REPLY == 0;
        if expect_reply {
            let (h, _) = client.recv().unwrap();
            assert_eq!((h.id, h.command), (id, command));
            assert_eq!(h.flags & 0xf, REPLY);
        }
    }
}

#[test]
fn hostile_clients_cannot_hurt_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gas.sock");
    let (sink, mut rx) = gasbench_events::bus();
    let server = DeviceServer::start(&path, DeviceConfig::default(), sink).unwrap();
    // Drain events as we go so memory stays flat.
    let drain = std::thread::spawn(move || {
        let mut n = 0u64;
        while rx.blocking_recv().is_some() {
            n += 1;
        }
        n
    });
    let ram = memfd(0x10000);
    let fds_before = open_fds();
    let mut sessions = 0;
    let mut rng = Rng(0x7672_6f62_7573_7421);

    // 1. Thousands of random, well-framed messages after a proper VERSION.
    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    c.dma_map(0x10_0000, 0x10000, ram.as_raw_fd(), 0)
        .unwrap()
        .unwrap();
    storm(&mut c, &mut rng, 20_000, &ram);
    server.check_invariants().unwrap();
    drop(c);
    sessions += 1;
    wait_listening(&server, sessions);

    // 2. Random messages without VERSION first.
    let mut c = RawClient::connect(&path).unwrap();
    storm(&mut c, &mut rng, 2_000, &ram);
    drop(c);
    sessions += 1;
    wait_listening(&server, sessions);

    // 3. Garbage bytes: the first bad size ends the session cleanly.
    for _ in 0..20 {
        let mut c = RawClient::connect(&path).unwrap();
        let junk: Vec<u8> = (0..rng.below(4096) + 1).map(|_| rng.next() as u8).collect();
        let _ = c.send_raw(&junk);
        drop(c);
        sessions += 1;
        wait_listening(&server, sessions);
    }

    // 4. Clients that vanish mid-header and mid-payload.
    let mut c = RawClient::connect(&path).unwrap();
    c.sock.write_all(&[1, 0, 9, 0, 32, 0, 0]).unwrap();
    drop(c);
    sessions += 1;
    assert!(wait_listening(&server, sessions).contains("mid-message"));
    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    let mut msg = Vec::new();
    for v in [7u16, 10] {
        msg.extend_from_slice(&v.to_le_bytes());
    }
    msg.extend_from_slice(&1000u32.to_le_bytes());
    msg.extend_from_slice(&[0; 8]);
    msg.extend_from_slice(&[0xaa; 100]);
    c.send_raw(&msg).unwrap();
    drop(c);
    sessions += 1;
    assert!(wait_listening(&server, sessions).contains("mid-message"));

    // 5. A message claiming 4 GiB: E2BIG, then the session ends.
    let mut c = RawClient::connect(&path).unwrap();
    let mut msg = vec![9, 0, 10, 0];
    msg.extend_from_slice(&u32::MAX.to_le_bytes());
    msg.extend_from_slice(&[0; 8]);
    c.send_raw(&msg).unwrap();
    let (h, _) = c.recv().unwrap();
    assert_eq!((h.flags & ERROR != 0, h.error), (true, 7));
    drop(c);
    sessions += 1;
    assert!(wait_listening(&server, sessions).contains("protocol error"));

    // 6. Too many fds in one message.
    let mut c = RawClient::connect(&path).unwrap();
    c.version().unwrap();
    let many: Vec<i32> = (0..20).map(|_| ram.as_raw_fd()).collect();
    let _ = c.send(DMA_MAP, 0, &[0u8; 32], &many);
    let _ = c.recv();
    drop(c);
    sessions += 1;
    wait_listening(&server, sessions);

    // After all that: correct answers, sound state, no leaked fds.
    let mut c = RawClient::connect(&path).unwrap();
    assert_eq!(c.version().unwrap().0, 0);
    assert_eq!(c.device_info().unwrap(), (16, 3, 9, 5));
    let cfg = c.region_read(CONFIG, 0, 4).unwrap().unwrap();
    assert_eq!(cfg, [0x7d, 0x60, 0x53, 0xf1]);
    server.check_invariants().unwrap();
    drop(c);
    sessions += 1;
    wait_listening(&server, sessions);
    assert_eq!(
        open_fds(),
        fds_before,
        "the server holds no client fds after the sessions"
    );
    assert!(!server.status().is_stopped());
    let counters = server.state().counters;
    drop(server);
    let events = drain.join().unwrap();
    let accesses = counters.reads + counters.writes;
    assert!(
        accesses > 1000,
        "the storm reached the device ({counters:?})"
    );
    assert!(
        events > accesses,
        "every access was reported ({events} events, {accesses} accesses)"
    );
}
