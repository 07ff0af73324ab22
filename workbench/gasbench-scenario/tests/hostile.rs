//! Whatever bytes arrive, the compiler answers with a scenario or with
//! problems, never a panic; and every reported span lies inside the text.

use proptest::prelude::*;

const VALID: &str = r#"
[scenario]
name = "x"
timeout = "30s"

[device]
faults = [ { on = "allocate_block", nth = 1, action = "fail", errno = "ENOMEM" } ]

[[step]]
open = { path = "/dev/goldfish_address_space", flags = ["O_RDWR"] }
capture = "dev"
expect.device = { handles = 1 }

[[step]]
ioctl = { fd = "${dev}", cmd = "ALLOCATE_BLOCK", size = 4096 }
capture = "blk"
expect.out = { size = { ge = 4096 }, offset = { bits_clear = 0xfff } }

[[step]]
threads = 2
repeat = 3
  [[step.steps]]
  ioctl = { fd = "${dev}", cmd = "PING", offset = "${blk.offset} + 8" }
  expect.calls = 6

[[step]]
host = "device_del"

[[step]]
kselftest = { path = "/bin/t", args = ["-v"] }
expect.ktap = { all_pass = true, pass = ["a"] }
expect.kernel_log = { must_not_match = ["BUG"] }
"#;

fn check(bytes: &[u8]) {
    match gasbench_scenario::compile_bytes("fuzz.toml", bytes) {
        Ok(c) => {
            // A compiled scenario always yields a bundle the agent accepts.
            let json = serde_json::to_string(&c.bundle).unwrap();
            gasbench_abi::bundle::Bundle::from_json(&json).unwrap();
        }
        Err(p) => {
            assert!(!p.is_empty(), "an error without problems");
            let len = String::from_utf8_lossy(bytes).len();
            for pr in &p.problems {
                assert!(pr.offset() <= len, "span past the end: {pr:?}");
            }
        }
    }
}

#[test]
fn the_seed_is_valid() {
    let c = gasbench_scenario::compile("seed.toml", VALID).unwrap();
    assert_eq!(c.plan.steps.len(), 6);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_text(text in "\\PC{0,400}") {
        check(text.as_bytes());
    }

    #[test]
    fn mutated_valid_scenarios(edits in proptest::collection::vec((0usize..VALID.len(), 0usize..8, "[\\[\\]{}=\",.$0-9a-z_\n #-]{0,6}"), 1..6)) {
        let mut s = VALID.to_string();
        for (at, del, ins) in edits {
            let mut at = at.min(s.len());
            while !s.is_char_boundary(at) { at -= 1; }
            let mut end = (at + del).min(s.len());
            while !s.is_char_boundary(end) { end -= 1; }
            s.replace_range(at..end, &ins);
        }
        check(s.as_bytes());
    }

    #[test]
    fn huge_and_odd_numbers(n in any::<i128>(), radix in 0usize..3) {
        let lit = match radix {
            0 => n.to_string(),
            1 => format!("0x{:x}", n.unsigned_abs()),
            _ => format!("0o{:o}", n.unsigned_abs()),
        };
        for field in ["size", "offset", "version"] {
            let text = format!("[[step]]\nioctl = {{ fd = 3, cmd = \"PING\", {field} = {lit} }}\nrepeat = {lit}\n");
            check(text.as_bytes());
            let text = format!("[[step]]\nioctl = {{ fd = 3, cmd = \"PING\", {field} = \"${{x}} + {lit}\" }}\n");
            check(text.as_bytes());
        }
    }
}

#[test]
fn deeply_nested_inline_tables_and_arrays() {
    for depth in [10, 100, 1_000, 20_000] {
        let t = format!("x = {}{}\n", "{ a = ".repeat(depth), "}".repeat(depth));
        check(t.as_bytes());
        let a = format!(
            "[[step]]\nread_file = {{ path = {}\"p\"{} }}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        check(a.as_bytes());
    }
    // Deep dotted keys.
    let keys = vec!["k"; 5_000].join(".");
    check(format!("{keys} = 1\n").as_bytes());
}

#[test]
fn long_lines_and_many_keys() {
    let long = format!(
        "[[step]]\nread_file = {{ path = \"{}\" }}\n",
        "a".repeat(900_000)
    );
    check(long.as_bytes());
    let keys: String = (0..20_000).map(|i| format!("k{i} = {i}\n")).collect();
    check(keys.as_bytes());
}
