//! Every problem is reported, each at its line and column.

use gasbench_scenario::{Problems, compile, compile_bytes};

/// `(line, column, message)` of every problem in `text`.
fn problems(text: &str) -> Vec<(usize, usize, String)> {
    match compile("t.toml", text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(p) => p.positions(),
    }
}

/// `line: message` of every problem.
fn line_messages(text: &str) -> Vec<String> {
    problems(text)
        .into_iter()
        .map(|(l, _, m)| format!("{l}: {m}"))
        .collect()
}

fn render(p: Problems) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, &p)
        .unwrap();
    out
}

#[test]
fn many_problems_in_one_file_are_all_reported_at_their_place() {
    let text = r#"[scenario]
nmae = "typo"

[[step]]
open = { path = "/dev/null", flags = ["O_RDWR", "O_CLOEXCE"] }
capture = "f"

[[step]]
close = { fd = "${g}" }
expect.erno = "EBADF"

[[step]]
ioctl = { fd = "${f}", cmd = "ALLOCATE_BLOK", size = 1 }

[[step]]
ioctl = { fd = "${f}", cmd = "PING", version = 0x1_0000_0000 }
expect.errno = "ENOTYY"
"#;
    let got = problems(text);
    let expect = [
        (2, 1, "unknown key `nmae` in [scenario]"),
        (5, 49, "unknown flag `O_CLOEXCE` in open.flags"),
        (9, 16, "undefined variable `g`"),
        (10, 8, "unknown key `erno` in expect of a `close` step"),
        (13, 30, "unknown goldfish ioctl `ALLOCATE_BLOK`"),
        (16, 48, "PING.version = 4294967296 is out of range"),
        (17, 16, "`ENOTYY` is not an errno name"),
    ];
    let got_short: Vec<(usize, usize, &str)> =
        got.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
    assert_eq!(got_short, expect);
}

#[test]
fn help_suggests_the_likely_fix() {
    let text = "[[step]]\nopen = { path = \"/dev/null\" }\ncapture = \"dev\"\n\n[[step]]\nclose = { fd = \"${dve}\" }\nexpect.ernno = \"EBADF\"\n";
    let p = compile("t.toml", text).unwrap_err();
    let helps: Vec<String> = p.problems.iter().filter_map(|p| p.help.clone()).collect();
    assert!(
        helps.iter().any(|h| h.contains("did you mean `dev`?")),
        "{helps:?}"
    );
    assert!(
        helps.iter().any(|h| h.contains("did you mean `errno`?")),
        "{helps:?}"
    );
    let shown = render(*p);
    assert!(shown.contains("t.toml:6:16"), "{shown}");
    assert!(shown.contains("not captured before this step"), "{shown}");
}

#[test]
fn variables_must_be_captured_before_use_and_fields_must_exist() {
    let text = r#"
[[step]]
close = { fd = "${later}" }

[[step]]
open = { path = "/dev/null" }
capture = "later"

[[step]]
ioctl = { fd = "${later}", cmd = "DEALLOCATE_BLOCK", offset = "${later.offset}" }

[[step]]
ioctl = { fd = "${later}", cmd = "ALLOCATE_BLOCK", size = 1 }
capture = "blk"

[[step]]
ioctl = { fd = "${later}", cmd = "DEALLOCATE_BLOCK", offset = "${blk.ofset}" }

[[step]]
open = { path = "${workdir}/x${blk.offset}" }

[[step]]
close = { fd = "${workdir}" }
"#;
    let p = compile("t.toml", text).unwrap_err();
    let msgs: Vec<(usize, String, Option<String>)> = p
        .problems
        .iter()
        .map(|x| {
            (
                gasbench_scenario::diag::line_col(text, x.offset()).0,
                x.message.clone(),
                x.help.clone(),
            )
        })
        .collect();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert_eq!(msgs[0].0, 3);
    assert!(
        msgs[0].2.as_deref().unwrap().contains("captured at line 5"),
        "{msgs:#?}"
    );
    assert_eq!(
        (msgs[1].0, msgs[1].1.as_str()),
        (10, "`later` has no field `offset`")
    );
    assert_eq!(
        (msgs[2].0, msgs[2].1.as_str()),
        (17, "`blk` has no field `ofset`")
    );
    assert!(
        msgs[2]
            .2
            .as_deref()
            .unwrap()
            .contains("did you mean `offset`?")
    );
    assert_eq!(
        (msgs[3].0, msgs[3].1.as_str()),
        (23, "${workdir} is a path, not a number")
    );
}

#[test]
fn captures_of_groups_and_forks_stay_inside() {
    let text = r#"
[[step]]
threads = 2

  [[step.steps]]
  open = { path = "/dev/null" }
  capture = "mine"

[[step]]
close = { fd = "${mine}" }
"#;
    let got = problems(text);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 10);
    assert_eq!(got[0].2, "undefined variable `mine`");
}

#[test]
fn impossible_values_are_refused() {
    let text = r#"
[[step]]
open = { path = "/dev/null", mode = 0o17777 }
repeat = 0

[[step]]
close = { fd = 99999999999 }
timeout = "5 fortnights"

[[step]]
threads = 1000

  [[step.steps]]
  sleep = "10ms"

[[step]]
ioctl = { fd = 3, cmd = "ALLOCATE_BLOCK", size = -1 }

[[step]]
ioctl = { fd = 3, cmd = "ALLOCATE_BLOCK", size = 0x1_0000_0000_0000_0000 }

[[step]]
setrlimit = { resource = "RLIMIT_NOFLIE", soft = 1 }

[[step]]
read_file = { path = "/proc/self/status", max_bytes = 0 }

[[step]]
open = { path = "/dev/null" }
expect = { ok = true, errno = "EBADF" }

[[step]]
kselftest = { path = "/x" }
expect.ktap.all_pass = false
"#;
    let msgs = line_messages(text);
    let want = [
        "3: open.mode = 8191 is out of range",
        "4: repeat = 0: must be between 1 and 1000000",
        "7: close.fd = 99999999999 is out of range",
        "8: timeout: unknown unit in `5 fortnights`",
        "11: threads = 1000: must be between 1 and 64",
        "17: ALLOCATE_BLOCK.size = -1 is out of range",
        "20: ALLOCATE_BLOCK.size = 18446744073709551616 is out of range",
        "23: unknown resource `RLIMIT_NOFLIE`",
        "26: read_file.max_bytes = 0: must be between 1 and 1048576",
        "30: `ok = true` and an errno contradict each other",
        "34: all_pass = false checks nothing",
    ];
    assert_eq!(msgs, want);
}

#[test]
fn structure_errors() {
    let text = r#"
step = 3

[device]
faults = "ENOMEM"
"#;
    let msgs: Vec<String> = problems(text)
        .into_iter()
        .map(|(l, c, m)| format!("{l}:{c}: {m}"))
        .collect();
    assert_eq!(
        msgs,
        [
            "2:8: steps must be an array of tables, not an integer",
            "5:10: [device] faults must be an array of rule tables, not a string",
        ]
    );

    let text = r#"
[[step]]
open = { path = "/dev/null" }
close = { fd = 3 }

[[step]]
name = "nothing"

[[step]]
fork = true

[[step]]
threads = 2
host = "device_del"
  [[step.steps]]
  host = "device_add"
  [[step.steps]]
  sleep = "1s"
  expect.device = { handles = 0 }
"#;
    let msgs = line_messages(text);
    assert_eq!(
        msgs,
        [
            "4: a second action `close` in one step",
            "6: this step does nothing",
            "10: `fork` needs nested steps",
            "14: a step with nested steps cannot also `host`",
            "15: a host step inside a parallel group or a fork cannot stop everything else",
            "19: device expectations inside a parallel group or a forked child",
        ],
        "the second action is the one flagged, in document order"
    );
}

#[test]
fn syntax_errors_are_reported_with_their_position() {
    let got = problems("[[step]]\nopen = { path = \"/dev/null\" \n");
    assert!(!got.is_empty());
    assert_eq!(got[0].0, 2, "{got:?}");
    assert!(got[0].2.starts_with("TOML syntax:"), "{got:?}");

    // Two independent syntax errors: both reported.
    let got = problems("a = = 1\n\nb = \"unterminated\n");
    assert!(got.len() >= 2, "{got:?}");
    assert_eq!(got[0].0, 1);
    assert!(got.iter().any(|(l, _, _)| *l == 3), "{got:?}");

    let got =
        problems("[[step]]\nopen = { path = \"/dev/null\" }\nopen = { path = \"/dev/zero\" }\n");
    assert_eq!(got[0].0, 3, "duplicate key: {got:?}");
}

#[test]
fn bad_regexes_and_templates_point_inside_the_string() {
    let text = "[[step]]\nread_file = { path = \"/proc/${x\" }\n\n[kernel_log]\nmust_match = [\"ok\", \"(unclosed\"]\n";
    let got = problems(text);
    assert_eq!(got[0].0, 2);
    assert_eq!(got[0].1, 29, "points at `${{` inside the string: {got:?}");
    assert!(got[0].2.contains("not closed"), "{got:?}");
    assert_eq!((got[1].0, got[1].1), (5, 21));
    assert!(
        got[1].2.starts_with("invalid regular expression"),
        "{got:?}"
    );
}

#[test]
fn binary_non_utf8_and_huge_files_are_refused() {
    let p = compile_bytes("bin.toml", b"[scenario]\nname = \"\xff\xfe\"\n").unwrap_err();
    assert_eq!(
        p.positions(),
        [(
            2,
            9,
            "not UTF-8 text: byte 0xff at line 2, column 9".to_string()
        )]
    );

    let p = compile_bytes("nul.toml", b"[[step]]\x00\x01\x02").unwrap_err();
    assert_eq!(p.positions()[0].2, "the file holds a NUL byte");

    let big = vec![b'#'; (gasbench_scenario::MAX_FILE_BYTES + 1) as usize];
    let p = compile_bytes("big.toml", &big).unwrap_err();
    assert!(
        p.positions()[0].2.contains("at most 1048576 bytes"),
        "{:?}",
        p.positions()
    );

    let dir = std::env::temp_dir().join(format!("gasbench-scenario-big-{}", std::process::id()));
    std::fs::write(&dir, &big).unwrap();
    let p = gasbench_scenario::load(&dir).unwrap_err();
    std::fs::remove_file(&dir).unwrap();
    assert!(
        p.positions()[0].2.contains("at most"),
        "the size is checked before reading"
    );
}

#[test]
fn a_timeout_of_zero_is_refused() {
    let text = r#"[scenario]
name = "zero"
timeout = "0s"
step_timeout = "0ms"

[[step]]
sleep = "0ms"
timeout = "0s"
"#;
    let msgs = line_messages(text);
    // A sleep of zero is fine; a limit of zero can never be met.
    assert_eq!(
        msgs,
        [
            "3: timeout of 0 can never be met",
            "4: step_timeout of 0 can never be met",
            "8: timeout of 0 can never be met",
        ]
    );
}

#[test]
fn only_regular_files_are_read() {
    // An endless device and a FIFO nobody writes to: refused at once, not
    // read until memory runs out or blocked on forever.
    let p = gasbench_scenario::load(std::path::Path::new("/dev/zero")).unwrap_err();
    assert!(
        p.positions()[0].2.contains("a character device"),
        "{:?}",
        p.positions()
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let p = gasbench_scenario::load(&fifo).unwrap_err();
    assert!(p.positions()[0].2.contains("a FIFO"), "{:?}", p.positions());
    let p = gasbench_scenario::load(dir.path()).unwrap_err();
    assert!(
        p.positions()[0].2.contains("a directory"),
        "{:?}",
        p.positions()
    );
}

#[test]
fn pathological_nesting_and_counts_are_bounded() {
    // Deep inline nesting: the TOML parser's recursion limit reports it.
    let deep = format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    let p = compile("deep.toml", &deep).unwrap_err();
    assert!(!p.is_empty());

    // Deep step nesting: our limit.
    let mut text = String::from("[[step]]\n");
    let mut prefix = String::from("step");
    for _ in 0..6 {
        prefix.push_str(".steps");
        text.push_str(&format!("[[{prefix}]]\n"));
    }
    text.push_str("sleep = \"1ms\"\n");
    let got = problems(&text);
    assert!(
        got.iter()
            .any(|(_, _, m)| m.contains("nested deeper than 4")),
        "{got:?}"
    );

    // Too many steps: one problem, not thousands.
    let many = "[[step]]\nsleep = \"1ms\"\n".repeat(gasbench_scenario::MAX_STEPS + 10);
    let got = problems(&many);
    assert_eq!(got.len(), 1, "{:?}", &got[..got.len().min(3)]);
    assert!(got[0].2.contains("more than 2000 steps"));

    // Many problems: capped, counted.
    let bad = "[[step]]\nbogus = 1\n".repeat(300);
    let p = compile("bad.toml", &bad).unwrap_err();
    assert_eq!(p.problems.len(), gasbench_scenario::diag::MAX_PROBLEMS);
    assert!(p.len() >= 600, "{}", p.len());
    assert!(p.to_string().contains("the first 100 are shown"));
}
