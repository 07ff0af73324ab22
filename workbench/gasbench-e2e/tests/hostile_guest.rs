//! A hostile guest, end to end: one `gasbench run`, one boot, three
//! scenarios that do what a guest running a stranger's kernel as root
//! could do to the host that runs it.
//!
//! 1. `hostile-plant` plants symlinks (to a canary file next to the run
//!    directory, absolute and relative, and a dangling one to where a new
//!    host file would appear) and a FIFO where the host's next bundles
//!    would go, tries to fill the share, prints escape sequences on the
//!    kernel log and the console, floods the console, and floods the
//!    agent port with garbage lines, a 4 MiB line and a line over the
//!    protocol's 16 MiB.
//! 2. `hostile-swap` renames the share's `bundles` away and puts a symlink
//!    to the runs directory in its place.
//! 3. `hostile-after` must still run and pass on the same guest.
//!
//! The run must end with a clear verdict for each, nothing outside the run
//! directory may change (the canary, the runs directory's entries), the
//! logs stay within `--guest-log-cap` with the verdicts recorded past it,
//! nothing printed carries an escape sequence, and no process is left.
//!
//! Where the share is read-only to the guest, planting fails (the steps
//! allow that): the test then says the host's defences were not reached,
//! and checks the rest all the same.

#[path = "support/processes.rs"]
mod processes;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use processes::{Guarded, assert_no_process_left, gasbench_binary, wait_deadline};
use serde_json::Value;

/// What `--guest-log-cap` is set to: small, so the floods pass it.
const CAP: u64 = 512 * 1024;

fn scenarios(dir: &Path, runs: &Path) -> Vec<std::path::PathBuf> {
    let canary = runs.join("canary").display().to_string();
    let made = runs.join("made-by-host").display().to_string();
    let plant = format!(
        r#"[scenario]
name = "hostile-plant"
description = "A guest that plants links and FIFOs where the host writes, fills the share, prints escape sequences and floods its console and the agent port."
timeout = "8m"
step_timeout = "4m"

# Where the next bundles would go, were the host to use plain names.
[[step]]
name = "a link to the canary where bundle 2 would go"
symlinkat = {{ target = "{canary}", path = "/mnt/gasbench/bundles/2.json" }}
expect.ok = "any"

[[step]]
name = "a relative link out of the run directory"
symlinkat = {{ target = "../../../canary", path = "/mnt/gasbench/bundles/3.json" }}
expect.ok = "any"

[[step]]
name = "a dangling link to where a new host file would appear"
symlinkat = {{ target = "{made}", path = "/mnt/gasbench/bundles/4.json" }}
expect.ok = "any"

[[step]]
name = "a FIFO where a bundle would go"
mkfifo = {{ path = "/mnt/gasbench/bundles/5.json" }}
expect.ok = "any"

[[step]]
name = "links in the share's root"
symlinkat = {{ target = "{canary}", path = "/mnt/gasbench/events.jsonl" }}
expect.ok = "any"

[[step]]
name = "try to fill the share"
write_file = {{ path = "/mnt/gasbench/fill", text = "0123456789abcdef", size = 67_108_864 }}
expect.ok = "any"

[[step]]
name = "escape sequences in the kernel log"
write_file = {{ path = "/dev/kmsg", text = "gasbench-hostile: \u001b[2J\u001b[H\u001b]52;c;cm0gLXJmIH4=\u0007 \u009b31m \u202egnp.exe \b\b" }}

[[step]]
name = "escape sequences on the console"
write_file = {{ path = "/dev/console", text = "gasbench-hostile-console: \u001b]0;owned\u0007\u001b[2J\u001bc\n" }}

[[step]]
name = "a flood of console lines"
write_file = {{ path = "/dev/console", text = "gasbench-flood .................................................\n", size = 786_432 }}

[[step]]
name = "100,000 lines of garbage on the agent port"
write_agent_port = {{ text = "\u001b[2J{{not a message}}\n", size = 2_000_000 }}

[[step]]
name = "a garbage line of 4 MiB"
write_agent_port = {{ text = "\u001b]52;c;", size = 4_194_304 }}

[[step]]
name = "a line over the protocol's length"
write_agent_port = {{ text = "x", size = 20_000_000 }}

[[step]]
name = "the agent still answers"
open = {{ path = "/dev/null" }}
capture = "n"

[[step]]
close = {{ fd = "${{n}}" }}
"#
    );
    let swap = format!(
        r#"[scenario]
name = "hostile-swap"
description = "The guest swaps the share's bundles directory for a link to the runs directory."

[[step]]
name = "bundles moved away"
rename = {{ from = "/mnt/gasbench/bundles", to = "/mnt/gasbench/old-bundles" }}
expect.ok = "any"

[[step]]
name = "a link to the runs directory in its place"
symlinkat = {{ target = "{runs}", path = "/mnt/gasbench/bundles" }}
expect.ok = "any"
"#,
        runs = runs.display()
    );
    let after = r#"[scenario]
name = "hostile-after"
description = "What the guest did before leaves the host able to run this."

[[step]]
open = { path = "/dev/null", flags = ["O_RDWR"] }
capture = "n"

[[step]]
close = { fd = "${n}" }

[[step]]
name = "bundles is a directory again"
fstatat = { path = "/mnt/gasbench/bundles", flags = ["AT_SYMLINK_NOFOLLOW"] }
expect.out = { type = "dir" }
"#;
    let mut files = Vec::new();
    for (name, text) in [
        ("hostile_plant.toml", plant),
        ("hostile_swap.toml", swap),
        ("hostile_after.toml", after.to_string()),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    files
}

/// Nothing a terminal would act on.
fn inert(s: &str) -> bool {
    !s.chars().any(|c| {
        matches!(
            c,
            '\x1b' | '\x07' | '\x08' | '\u{9b}' | '\u{9d}' | '\u{202e}'
        )
    })
}

/// Every entry of `dir`, with size and modification time.
fn listing(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let m = e.path().symlink_metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_hostile_guest_leaves_the_host_unchanged_and_every_verdict_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    let canary = runs.join("canary");
    std::fs::write(&canary, "the host's own file\n").unwrap();
    let files = scenarios(tmp.path(), &runs);
    let before = listing(&runs);

    let mut cmd = Command::new(gasbench_binary());
    cmd.args(["run", "--json", "--guest-log-cap"])
        .arg(CAP.to_string())
        .arg("--runs")
        .arg(&runs)
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = Guarded::spawn("gasbench run", &mut cmd);
    let mut child = run.child.take().unwrap();
    let status = wait_deadline(&mut child, Duration::from_secs(1200))
        .expect("the hostile run ends within 20 minutes");
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}); stderr:\n{stderr}"));

    // A clear verdict for each scenario: all three ran to their end and
    // passed (what the guest did cannot stop the host from running them),
    // and the run says so.
    assert_eq!(status.code(), Some(0), "{stderr}\n{summary:#}");
    assert_eq!(summary["passed"], true);
    assert!(
        summary["errors"].as_array().unwrap().is_empty(),
        "{summary:#}"
    );
    for name in ["hostile-plant", "hostile-swap", "hostile-after"] {
        let sc = summary["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {summary:#}"));
        assert_eq!(sc["passed"], true, "{name}: {sc:#}");
        assert!(!sc["expectations"].as_array().unwrap().is_empty(), "{name}");
    }

    // Nothing outside the run directory changed: the canary is what it
    // was, the dangling link's target was never made, and the runs
    // directory holds only what it held plus this run and `latest`.
    assert_eq!(
        std::fs::read_to_string(&canary).unwrap(),
        "the host's own file\n"
    );
    assert!(!runs.join("made-by-host").exists());
    let rd = runs.join(std::fs::read_link(runs.join("latest")).unwrap());
    let after: Vec<_> = listing(&runs)
        .into_iter()
        .filter(|(n, _, _)| {
            n != "latest" && Some(n.as_str()) != rd.file_name().and_then(|f| f.to_str())
        })
        .collect();
    assert_eq!(after, before, "the runs directory changed");

    // What the guest managed to plant, as the host sees it afterwards.
    let share = rd.join("share");
    let planted =
        share.join("old-bundles/2.json").is_symlink() || share.join("bundles/2.json").is_symlink();
    if planted {
        eprintln!("the share was writable: the planted links and FIFO were there to be followed");
        assert!(share.join("bundles").is_dir() && !share.join("bundles").is_symlink());
        // The host's bundles went to fresh names beside what was planted.
        let fresh: Vec<String> = ["old-bundles", "bundles"]
            .iter()
            .flat_map(|d| std::fs::read_dir(share.join(d)).into_iter().flatten())
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains('-') && n.ends_with(".json"))
            .collect();
        assert_eq!(fresh.len(), 3, "{fresh:?}");
        let fill = share.join("fill").metadata().map_or(0, |m| m.len());
        assert!(fill <= 64 << 20, "{fill}");
    } else {
        eprintln!("the share was read-only to the guest: nothing could be planted");
    }

    // The logs stayed within the cap, and what the run itself found was
    // recorded past it.
    let events_path = rd.join("events.jsonl");
    let (events, cut) = gasbench_trace::log::read_all(&events_path).unwrap();
    assert!(cut.is_none());
    let text = std::fs::read_to_string(&events_path).unwrap();
    let guest_bytes: usize = text
        .lines()
        .zip(&events)
        .filter(|(_, e)| e.body.from_guest())
        .map(|(l, _)| l.len() + 1)
        .sum();
    assert!(guest_bytes as u64 <= CAP, "{guest_bytes}");
    assert!(
        text.contains("the guest's events reached the cap"),
        "no cap note"
    );
    let verdicts_after_cap = text
        .lines()
        .skip_while(|l| !l.contains("reached the cap"))
        .filter(|l| l.contains(r#""type":"expectation""#) && l.contains("hostile-after"))
        .count();
    assert!(verdicts_after_cap >= 3, "{verdicts_after_cap}");
    let console_len = rd.join("console.log").metadata().unwrap().len();
    assert!(
        console_len <= CAP + 200,
        "console.log is {console_len} bytes"
    );
    let agent_texts = events
        .iter()
        .filter(|e| {
            matches!(
                e.body,
                gasbench_events::EventBody::Vm(gasbench_events::vm::VmEvent::AgentText { .. })
            )
        })
        .count();
    assert!(agent_texts <= 8, "{agent_texts} garbage lines on record");
    assert!(
        text.contains("line(s) that were not agent messages"),
        "the port's closing count"
    );
    assert!(
        stderr.contains("is longer than the protocol allows"),
        "{stderr}"
    );

    let notes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#""type":"note""#))
        .filter(|l| l.contains("cap") || l.contains("agent port") || l.contains("replaced"))
        .collect();
    eprintln!(
        "figures: guest events in events.jsonl {guest_bytes} bytes (cap {CAP}), console.log \
         {console_len} bytes, garbage lines on record {agent_texts}, verdicts past the cap \
         {verdicts_after_cap}; notes:\n{}",
        notes.join("\n")
    );

    // Nothing printed drives the terminal, though the guest tried.
    assert!(inert(&stderr), "stderr: {stderr:?}");
    assert!(inert(&stdout), "stdout: {stdout:?}");

    // No process is left, no socket.
    assert_no_process_left(&rd);
    let sockets: Vec<_> = std::fs::read_dir(&rd)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
        .map(|e| e.path())
        .collect();
    assert!(sockets.is_empty(), "{sockets:?}");
}
