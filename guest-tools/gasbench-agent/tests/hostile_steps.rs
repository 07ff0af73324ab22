//! The steps a scenario uses to play a hostile guest — `rename`, `mkfifo`,
//! `write_file`, `write_agent_port` — compiled by gasbench-scenario, run
//! by the real agent on the host (`--local`) and judged by the evaluator.

use std::process::Command;

use gasbench_abi::protocol::AgentMsg;
use gasbench_scenario::{Evaluator, Report};

const AGENT: &str = env!("CARGO_BIN_EXE_gasbench-agent");

const SCENARIO: &str = r#"
[scenario]
name = "hostile-steps"

[[step]]
mkfifo = { path = "${workdir}/fifo", mode = 0o600 }

[[step]]
fstatat = { path = "${workdir}/fifo", flags = ["AT_SYMLINK_NOFOLLOW"] }
expect.out = { type = "fifo", perm = 0o600 }

[[step]]
name = "a 1 MiB file from a 3-byte pattern"
write_file = { path = "${workdir}/big", text = "ab\n", size = 1_048_576 }
expect.ret = 1_048_576
expect.out = { written = 1_048_576 }

[[step]]
rename = { from = "${workdir}/big", to = "${workdir}/moved" }

[[step]]
fstatat = { path = "${workdir}/moved" }
expect.out = { size = 1_048_576 }

[[step]]
read_file = { path = "${workdir}/moved", max_bytes = 9 }
expect.out = { text = "ab\nab\nab\n", truncated = true }

[[step]]
name = "escape sequences, as a hostile guest prints them"
write_file = { path = "${workdir}/esc", text = "\u001b[2J\u001b]52;c;cm0gLXJmIH4=\u0007", flags = ["O_WRONLY", "O_CREAT", "O_EXCL"] }
expect.out = { written = 24 }

[[step]]
name = "a write that fails says where it stopped"
write_file = { path = "${workdir}", hex = "00" }
expect.errno = "EISDIR"

[[step]]
name = "garbage on the agent's own port"
write_agent_port = { text = "\u001b[2J{not json ", size = 200_000 }
expect.out = { written = 200_000 }

[[step]]
name = "the agent goes on after it"
open = { path = "/dev/null" }
"#;

#[test]
fn hostile_steps_do_what_they_say_and_the_agent_goes_on() {
    let c = gasbench_scenario::compile("hostile.toml", SCENARIO)
        .unwrap_or_else(|p| panic!("{:?}", miette::Report::new(*p)));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, serde_json::to_vec(&c.bundle).unwrap()).unwrap();
    let out = Command::new(AGENT)
        .arg("--local")
        .arg(&bundle)
        .arg("--workdir-base")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ev = Evaluator::new(&c);
    let mut garbage = Vec::new();
    for line in out.stdout.split(|&b| b == b'\n') {
        match serde_json::from_slice::<AgentMsg>(line) {
            Ok(msg) => ev.agent(&msg),
            Err(_) if !line.is_empty() => garbage.push(line.to_vec()),
            Err(_) => {}
        }
    }
    // One line of garbage, exactly as asked, between whole messages.
    assert_eq!(garbage.len(), 1, "{} lines", garbage.len());
    assert_eq!(garbage[0].len(), 200_000);
    assert!(garbage[0].starts_with(b"\x1b[2J{not json \x1b[2J"));
    let report: Report = ev.finish();
    let failed: Vec<String> = report
        .failures()
        .map(|v| {
            format!(
                "line {} {}: expected {}, got {}",
                v.line, v.what, v.expected, v.actual
            )
        })
        .collect();
    assert!(report.passed(), "{failed:#?}");
    let esc = std::fs::read(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("gasbench."))
            .unwrap()
            .path()
            .join("esc"),
    )
    .unwrap();
    assert_eq!(esc, b"\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07");
}

#[test]
fn write_steps_refuse_what_they_cannot_do() {
    for (body, says) in [
        (
            r#"write_file = { path = "/tmp/x", text = "a", hex = "00" }"#,
            "not both",
        ),
        (
            r#"write_file = { path = "/tmp/x" }"#,
            "needs `text` or `hex`",
        ),
        (
            r#"write_file = { path = "/tmp/x", text = "" }"#,
            "0 bytes to write",
        ),
        (
            r#"write_agent_port = { hex = "zz" }"#,
            "write_agent_port.hex",
        ),
        (
            r#"write_agent_port = { text = "x", size = 2_000_000_000 }"#,
            "must be between 1 and 1073741824",
        ),
        (
            r#"write_agent_port = { text = "x", path = "/tmp/x" }"#,
            "path",
        ),
        (r#"mkfifo = { mode = 0o600 }"#, "needs `path`"),
    ] {
        let text = format!("[scenario]\nname = \"bad\"\n\n[[step]]\n{body}\n");
        let problems = gasbench_scenario::compile("bad.toml", &text)
            .err()
            .unwrap_or_else(|| panic!("{body} compiled"));
        let all: Vec<String> = problems
            .positions()
            .into_iter()
            .map(|(_, _, m)| m)
            .collect();
        assert!(all.iter().any(|m| m.contains(says)), "{body}: {all:?}");
    }
}
