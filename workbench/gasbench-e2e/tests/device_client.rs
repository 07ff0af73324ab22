//! `gasbench device serve` answers a plain vfio-user client (our own raw
//! socket client, not the vfio-user crate's): VERSION, DEVICE_GET_INFO,
//! DEVICE_GET_REGION_INFO and a config-space REGION_READ. Then SIGTERM
//! stops it cleanly and the socket is gone.

#[path = "support/processes.rs"]
mod processes;
#[path = "../../gasbench-vfu/tests/support/raw_client.rs"]
mod raw_client;

use std::process::{Command, Stdio};
use std::time::Duration;

use processes::*;
use raw_client::*;

#[test]
fn a_plain_vfio_user_client_gets_correct_answers_from_device_serve() {
    let bin = gasbench_binary();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gas.sock");
    let trace = dir.path().join("trace.jsonl");
    let log = dir.path().join("serve.log");
    let mut serve = Guarded::spawn(
        "gasbench device serve",
        Command::new(&bin)
            .args(["device", "serve", "--bar1-size", "1M", "--socket"])
            .arg(&sock)
            .arg("--trace")
            .arg(&trace)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    wait_for_path(&sock, &mut serve, Duration::from_secs(20), &log);

    let mut c = RawClient::connect(&sock).unwrap();
    let (major, minor, json) = c.version().unwrap();
    assert_eq!((major, minor), (0, 1));
    let caps: serde_json::Value = serde_json::from_str(&json).expect("the capabilities are JSON");
    assert!(caps["capabilities"]["max_msg_fds"].as_u64().unwrap() >= 1);
    assert_eq!(caps["capabilities"]["max_data_xfer_size"], 1 << 20);

    let (argsz, flags, regions, irqs) = c.device_info().unwrap();
    assert_eq!(argsz, 16);
    assert_eq!(flags, 0x2 | 0x1, "VFIO_DEVICE_FLAGS_PCI | RESET");
    assert_eq!(
        (regions, irqs),
        (9, 5),
        "PCI regions BAR0-5, ROM, config, VGA; INTx, MSI, MSI-X, ERR, REQ"
    );

    assert_eq!(
        c.region_info(CONFIG).unwrap(),
        Ok((0x3, 256)),
        "config space: read/write, 256 bytes"
    );
    assert_eq!(c.region_info(BAR0).unwrap(), Ok((0x3, 0x1000)));
    assert_eq!(
        c.region_info(BAR1).unwrap(),
        Ok((0x3, 1 << 20)),
        "--bar1-size 1M"
    );
    assert_eq!(
        c.region_info(2).unwrap(),
        Ok((0, 0)),
        "BAR2 is BAR1's upper half"
    );

    let cfg = c.region_read(CONFIG, 0, 64).unwrap().expect("config read");
    assert_eq!(cfg.len(), 64);
    assert_eq!(u16::from_le_bytes([cfg[0], cfg[1]]), 0x607d, "vendor");
    assert_eq!(u16::from_le_bytes([cfg[2], cfg[3]]), 0xf153, "device");
    assert_eq!(cfg[0x08], 0x01, "revision");
    assert_eq!(
        &cfg[0x09..0x0c],
        &[0x00, 0x80, 0x05],
        "class: memory controller, other"
    );
    assert_eq!(cfg[0x0e], 0x00, "header type 0");
    assert_eq!(
        u32::from_le_bytes(cfg[0x10..0x14].try_into().unwrap()),
        0,
        "BAR0: 32-bit memory"
    );
    assert_eq!(
        u32::from_le_bytes(cfg[0x14..0x18].try_into().unwrap()),
        0x4,
        "BAR1: 64-bit memory"
    );
    assert_eq!(cfg[0x3d], 0x01, "interrupt pin A");
    // A read past the end is an error reply, and the session goes on.
    assert!(c.region_read(CONFIG, 0xfe, 4).unwrap().is_err());
    assert_eq!(c.region_read(CONFIG, 0, 2).unwrap().unwrap(), [0x7d, 0x60]);
    drop(c);

    let status = serve
        .terminate(Duration::from_secs(10))
        .expect("device serve stops within 10 s of SIGTERM");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}:\n{log_text}");
    assert!(!sock.exists(), "the socket is removed on exit");
    let events = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .filter_map(|e| e["ev"]["type"].as_str())
        .collect();
    for want in ["listening", "connected", "reg", "disconnected", "stopped"] {
        assert!(kinds.contains(&want), "no {want} event in {kinds:?}");
    }
    assert!(log_text.contains("stopped by SIGTERM"), "{log_text}");
}
