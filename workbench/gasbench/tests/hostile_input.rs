//! Input from strangers, as the binary meets it: a mail with a header
//! line of 70,000 characters and an invalid byte (it made miette panic,
//! exit 101), a mail whose subject carries escape sequences, a scenario
//! file with an endless line, a fault plan that is a FIFO or /dev/zero.
//! Each is a clear error with a bounded, inert quote — never a panic, a
//! hang, or bytes that drive the terminal.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const GASBENCH: &str = env!("CARGO_BIN_EXE_gasbench");

/// Run gasbench with a private cache, killed if it takes over a minute.
fn gasbench(cache: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(GASBENCH)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gasbench {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Nothing a terminal acts on: no ESC, BEL, backspace, C1 or bidi
/// control.
fn inert(s: &str) -> bool {
    !s.chars()
        .any(|c| matches!(c, '\x1b' | '\x07' | '\x08' | '\u{9b}' | '\u{202e}'))
}

fn longest_line(s: &str) -> usize {
    s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn a_mail_with_a_70000_character_header_line_is_bad_input_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut mail =
        b"From abc@z Mon Sep 17 00:00:00 2001\nFrom: a <a@b>\nSubject: [PATCH 1/1] x\nX-Long: "
            .to_vec();
    mail.extend(std::iter::repeat_n(b'X', 70_000));
    mail.extend_from_slice(b"\xff\xfe\n\n---\n a | 1 +\n\ndiff --git a/a b/a\n");
    let mbox = dir.path().join("long.mbox");
    std::fs::write(&mbox, &mail).unwrap();
    let cache = dir.path().join("cache");

    let out = gasbench(&cache, &[os("repro"), mbox.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("long.mbox:4:70009"), "{stderr}");
    assert!(stderr.contains("is not valid UTF-8"), "{stderr}");
    assert!(longest_line(&stderr) < 400, "{}", longest_line(&stderr));

    // `kernel extract` reads mail the same way and fails the same way.
    let out = gasbench(
        &cache,
        &[
            os("kernel"),
            os("extract"),
            mbox.as_os_str(),
            os("--out"),
            dir.path().join("x").as_os_str(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(longest_line(&stderr) < 400, "{stderr}");
}

#[test]
fn a_subject_with_escape_sequences_is_shown_not_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    // The subject clears the screen and writes the clipboard; the body
    // has an invalid byte, so the error quotes the subject.
    let mail = b"From abc@z Mon Sep 17 00:00:00 2001\nFrom: a <a@b>\nSubject: [PATCH 1/1] \x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07 \xc2\x9b31m\xe2\x80\xae\n\nbody \xff\n";
    let mbox = dir.path().join("evil.mbox");
    std::fs::write(&mbox, mail).unwrap();
    let out = gasbench(&dir.path().join("cache"), &[os("repro"), mbox.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(inert(&stderr), "{stderr:?}");
    assert!(
        stderr.contains("[2J") && stderr.contains("]52;c;"),
        "{stderr}"
    );
}

#[test]
fn a_scenario_line_of_100000_characters_is_quoted_as_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("long.toml");
    std::fs::write(
        &f,
        format!(
            "[scenario]\nname = \"long\"\ndescription = \"{}\"\n\n[[step]]\nopen = {{ path = \"/dev/null\" }}\nexpect.errno = \"EWHATEVER\"\n[[step]]\nname = \"{}\"\nsleep = \"1s\"\nbogus = 1\n",
            "d".repeat(100_000),
            "n".repeat(100_000)
        ),
    )
    .unwrap();
    // And an escape sequence where TOML allows none: the syntax error
    // quotes the line with it.
    let esc = dir.path().join("esc.toml");
    std::fs::write(
        &esc,
        format!(
            "[scenario]\nname = \"{}\x1b[2J\x1b]0;t\x07\"\n",
            "e".repeat(80_000)
        ),
    )
    .unwrap();
    let out = gasbench(
        &dir.path().join("cache"),
        &[os("scenario"), os("check"), f.as_os_str(), esc.as_os_str()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("EWHATEVER"), "{stderr}");
    assert!(
        stderr.contains("unknown key `bogus`") || stderr.contains("bogus"),
        "{stderr}"
    );
    assert!(stderr.contains("long.toml:11:1"), "{stderr}");
    assert!(stderr.contains("esc.toml:2:80009"), "{stderr}");
    assert!(longest_line(&stderr) < 400, "{}", longest_line(&stderr));
    assert!(inert(&stderr), "{stderr:?}");
}

#[test]
fn a_fault_plan_must_be_a_bounded_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let sock = dir.path().join("gas.sock");
    let fifo = dir.path().join("plan.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let big = dir.path().join("big.toml");
    std::fs::write(&big, " ".repeat(2 << 20)).unwrap();
    for (plan, says) in [
        (fifo.as_path(), "a FIFO, not a regular file"),
        (
            Path::new("/dev/zero"),
            "a character device, not a regular file",
        ),
        (big.as_path(), "larger than 1048576 bytes"),
    ] {
        let out = gasbench(
            &cache,
            &[
                os("device"),
                os("serve"),
                os("--socket"),
                sock.as_os_str(),
                os("--faults"),
                plan.as_os_str(),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "bad input: {stderr}");
        assert!(stderr.contains(says), "{plan:?}: {stderr}");
        assert!(!sock.exists());
    }
}
