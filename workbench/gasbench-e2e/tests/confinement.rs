//! The VM cannot get out: one real `gasbench run` whose guest tries to
//! write into the share the host writes bundles into (a file, a symlink
//! named like a bundle, a directory, removing or moving the bundles),
//! while this test looks at QEMU and virtiofsd from the host: QEMU runs as
//! the unprivileged VM user under its seccomp filter with no capabilities,
//! in a network namespace of its own and with rlimits; virtiofsd's served
//! process sits in its namespace sandbox under seccomp. The next scenario
//! still runs, and the run's events say which protections were in force.

#[path = "support/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use processes::{Guarded, gasbench_binary, wait_deadline};
use serde_json::Value;

const HOSTILE: &str = r#"[scenario]
name = "write-into-the-share"
description = "The guest tries to change what the host reads or writes."
timeout = "5m"

[[step]]
name = "plant a file where the bundles are"
openat = { path = "/mnt/gasbench/bundles/planted", flags = ["O_CREAT", "O_WRONLY"], mode = 0o644 }
expect.errno = "EROFS"

[[step]]
name = "plant a symlink named like the next bundle"
symlinkat = { target = "/etc/passwd", path = "/mnt/gasbench/bundles/2.json" }
expect.errno = "EROFS"

[[step]]
name = "make a directory in the share"
mkdirat = { path = "/mnt/gasbench/escape" }
expect.errno = "EROFS"

[[step]]
name = "remove the directory of bundles"
unlinkat = { path = "/mnt/gasbench/bundles", flags = ["AT_REMOVEDIR"] }
expect.errno = "EROFS"

[[step]]
name = "move the bundles away"
rename = { from = "/mnt/gasbench/bundles", to = "/mnt/gasbench/moved" }
expect.errno = "EROFS"

[[step]]
name = "idle while the host looks"
sleep = "6s"
"#;

const NEXT: &str = r#"[scenario]
name = "the-next-scenario"
timeout = "5m"

[[step]]
name = "the share holds only what the host put there"
list_dir = { path = "/mnt/gasbench/bundles" }
expect.out = { names = { not_contains = "planted" } }
"#;

/// `Key:\tvalue` lines of /proc/PID/status.
fn status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"))
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The soft limit of `name` ("Max file size") in /proc/PID/limits.
fn limit(pid: u32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line[name.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn ns(pid: &str, which: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{which}")).unwrap()
}

/// Pids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid …: comm may hold spaces, so after ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

fn started_pid(events: &str, name: &str) -> Option<u32> {
    events.lines().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["ev"]["type"] == "process_started" && v["ev"]["name"] == name)
            .then(|| v["ev"]["pid"].as_u64())
            .flatten()
            .map(|p| p as u32)
    })
}

fn uid_of(user: &str) -> Option<String> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn the_guest_cannot_write_the_share_and_qemu_and_virtiofsd_are_confined() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.toml");
    let next = dir.path().join("next.toml");
    std::fs::write(&hostile, HOSTILE).unwrap();
    std::fs::write(&next, NEXT).unwrap();
    let runs = dir.path().join("runs");
    let mut cmd = Command::new(gasbench_binary());
    cmd.args(["run", "--json", "--device-process", "--runs"])
        .arg(&runs)
        .arg(&hostile)
        .arg(&next)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = Guarded::spawn("gasbench run", &mut cmd);

    // Wait until the guest idles, then look at the processes.
    let events_path = runs.join("latest/events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(900);
    let events = loop {
        assert!(Instant::now() < deadline, "the idle step never began");
        assert!(run.exited().is_none(), "gasbench run ended early");
        let events = std::fs::read_to_string(&events_path).unwrap_or_default();
        let idle_began = events.lines().any(|l| {
            l.contains(r#""msg":"step_begin""#) && l.contains("idle while the host looks")
        });
        if idle_began {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let qemu = started_pid(&events, "qemu").expect("qemu's pid is on the bus");
    let virtiofsd = started_pid(&events, "virtiofsd").expect("virtiofsd's pid is on the bus");
    let device = started_pid(&events, "device server").expect("the device server's pid");

    // QEMU: the unprivileged user, seccomp filter, no capabilities, its
    // own network, bounded.
    let q = status(qemu);
    eprintln!(
        "qemu pid {qemu}: Uid {} Seccomp {} NoNewPrivs {} CapEff {}; address space {} file size {} cpu {}",
        q["Uid"],
        q["Seccomp"],
        q["NoNewPrivs"],
        q["CapEff"],
        limit(qemu, "Max address space"),
        limit(qemu, "Max file size"),
        limit(qemu, "Max cpu time")
    );
    let vm_uid = uid_of("gasbench-vm").expect("gasbench setup made the gasbench-vm user");
    assert_eq!(
        q["Uid"],
        format!("{vm_uid}\t{vm_uid}\t{vm_uid}\t{vm_uid}"),
        "{q:?}"
    );
    assert_eq!(q["Seccomp"], "2", "QEMU runs under its seccomp filter");
    assert_eq!(q["NoNewPrivs"], "1");
    assert_eq!(q["CapEff"], "0000000000000000");
    assert_eq!(q["CapPrm"], "0000000000000000");
    assert_ne!(ns(&qemu.to_string(), "net"), ns("self", "net"));
    let ram = 512u64 << 20; // gasbench run's default guest RAM
    // RAM + 3 GiB + 16 MiB for each of the 2 vCPUs.
    assert_eq!(
        limit(qemu, "Max address space"),
        (ram + (3 << 30) + (32 << 20)).to_string()
    );
    assert_eq!(limit(qemu, "Max file size"), ram.to_string());
    assert_eq!(limit(qemu, "Max cpu time"), (4 * 3600).to_string());
    // QEMU was given no path into the run directory.
    let args = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap();
    let args = String::from_utf8_lossy(&args).replace('\0', " ");
    let latest = std::fs::read_link(runs.join("latest")).unwrap();
    assert!(!args.contains(&*latest.to_string_lossy()), "{args}");
    assert!(args.contains(
        "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    ));

    // The device server process dropped to the VM user once listening.
    let d = status(device);
    assert_eq!(
        d["Uid"],
        format!("{vm_uid}\t{vm_uid}\t{vm_uid}\t{vm_uid}"),
        "{d:?}"
    );
    assert_eq!(d["NoNewPrivs"], "1");
    assert_eq!(d["CapEff"], "0000000000000000");
    assert_ne!(ns(&device.to_string(), "net"), ns("self", "net"));
    assert_eq!(limit(device, "Max file size"), (1u64 << 20).to_string());

    // virtiofsd: the process that serves runs in new mount, pid and
    // network namespaces under seccomp; all of it under rlimits.
    assert_eq!(limit(virtiofsd, "Max file size"), (1u64 << 20).to_string());
    let served = children(virtiofsd);
    assert_eq!(served.len(), 1, "virtiofsd's sandboxed child: {served:?}");
    let v = status(served[0]);
    eprintln!(
        "virtiofsd pid {virtiofsd}, sandboxed child {}: Uid {} Seccomp {} CapEff {}",
        served[0], v["Uid"], v["Seccomp"], v["CapEff"]
    );
    assert_eq!(v["Seccomp"], "2", "{v:?}");
    let child = served[0].to_string();
    for which in ["mnt", "pid", "net"] {
        assert_ne!(ns(&child, which), ns("self", which), "{which} namespace");
    }
    assert_eq!(limit(served[0], "Max file size"), (1u64 << 20).to_string());

    let mut child = run.child.take().unwrap();
    let status = wait_deadline(&mut child, Duration::from_secs(300)).expect("the run ends");
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let summary: Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(status.code(), Some(0), "{summary:#}");
    let names: Vec<&str> = summary["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["write-into-the-share", "the-next-scenario"]);

    // Nothing the guest tried reached the host; the host's own bundle is
    // still there.
    let rd = runs.join(&latest);
    let share = rd.join("share");
    let bundles: Vec<String> = std::fs::read_dir(share.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Bundles are named `<scenario>-<random>.json`, so the guest cannot
    // know the next one's name in advance.
    assert!(
        bundles
            .iter()
            .any(|b| b.starts_with("1-") && b.ends_with(".json")),
        "{bundles:?}"
    );
    assert!(!bundles.contains(&"planted".to_string()));
    assert!(!share.join("escape").exists());
    assert!(!share.join("moved").exists());
    assert!(!share.join("bundles/2.json").exists());
    let second: Vec<&String> = bundles.iter().filter(|b| b.starts_with("2-")).collect();
    assert_eq!(second.len(), 1, "{bundles:?}");
    assert!(
        std::fs::symlink_metadata(share.join("bundles").join(second[0]))
            .unwrap()
            .file_type()
            .is_file(),
        "the host's second bundle is a file it wrote"
    );

    // The run says which protections held: every one here except cgroup
    // v2 limits, which this host cannot give.
    let (events, _) = gasbench_trace::log::read_all(&rd.join("events.jsonl")).unwrap();
    let confinement: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            gasbench_events::EventBody::Vm(gasbench_events::vm::VmEvent::Confinement {
                protections,
            }) => Some(protections.clone()),
            _ => None,
        })
        .collect();
    // One for the device server process, one for the VM.
    assert_eq!(confinement.len(), 2, "{confinement:#?}");
    let all: Vec<_> = confinement.concat();
    assert!(all.iter().any(|p| p.name == "device server" && p.active));
    assert!(all.iter().any(|p| p.name == "share read-only" && p.active));
    for p in &all {
        if p.name == "cgroup v2 limits" {
            // This host's cgroup2 has no memory or cpu controller.
            assert!(p.detail.contains("rlimits"), "{p:?}");
        } else {
            assert!(p.active, "{p:?}");
        }
    }
    // results.json carries the same list.
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("results.json")).unwrap()).unwrap();
    let listed = results["confinement"]
        .as_array()
        .expect("results.json lists the protections");
    assert_eq!(listed.len(), all.len(), "{listed:#?}");
    let qemu_log = std::fs::read_to_string(rd.join("qemu.log")).unwrap();
    assert!(!qemu_log.contains("Bad system call"), "{qemu_log}");
    assert_no_share_escape(&rd);
}

/// Nothing outside the run directory was touched through the share: the
/// guest's symlink target is the host's /etc/passwd, still a plain file.
fn assert_no_share_escape(rd: &Path) {
    let passwd = std::fs::symlink_metadata("/etc/passwd").unwrap();
    assert!(passwd.file_type().is_file());
    let text = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !text.contains("\"steps\""),
        "a bundle was written over /etc/passwd"
    );
    assert!(rd.join("events.jsonl").exists());
}
