//! Damaged mail never panics the parsers: the real postings (the digest
//! and the per-patch mbox files), mutated at random — bytes flipped, runs
//! cut out or duplicated, 8-bit bytes and CRs inserted, lines swapped,
//! headers and hunk counts garbled — go through `mail_text`,
//! `parse_mail`, `find_series` and the per-patch diff parser. Every
//! outcome is an `Ok` or an `Err`; a panic fails the test with the seed
//! and the input that caused it.

use std::path::Path;

use gasbench_series::patch::{PatchBody, parse_diff};
use gasbench_series::{find_series, mail_text, parse_mail};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn inputs() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel");
    let mut v = vec![std::fs::read(root.join("sources/000_cc8941013480fefb.txt")).unwrap()];
    let dir = root.join("series/mkdirat2-v2");
    let mut mbox = Vec::new();
    for f in [
        "cover-letter.eml",
        "0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch",
        "0002-selftest-add-tests-for-mkdirat2.patch",
    ] {
        mbox.extend(std::fs::read(dir.join(f)).unwrap());
        mbox.push(b'\n');
    }
    v.push(mbox);
    v
}

const SNIPPETS: &[&[u8]] = &[
    b"\n@@ -1,999999999 +1,3 @@\n",
    b"\nSubject: [PATCH 4294967295/4294967295] x\n",
    b"\nContent-Transfer-Encoding: base64\n",
    b"\nContent-Transfer-Encoding: quoted-printable\n",
    b"\nContent-Type: text/plain; charset=iso-8859-1\n",
    b"\nContent-Type: text/plain; charset=klingon\n",
    b"=\n=E9=ZZ=",
    b"\nFrom 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n",
    b"\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n",
    b"\r",
    b"\r\n",
    b"\xff\xfe\x80",
    b"=?UTF-8?B?AAAA?=",
    b"\n-- \n",
    b"\n\n\n",
    b"\nContent-Type: multipart/mixed; boundary=XyZ\n",
    b"\n--XyZ\nContent-Type: text/x-patch\nContent-Transfer-Encoding: base64\n\n",
    b"\n--XyZ\nContent-Type: multipart/alternative; boundary=XyZ\n\n",
    b"\n--XyZ--\n",
];

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(6) {
        if b.is_empty() {
            b.extend_from_slice(SNIPPETS[rng.below(SNIPPETS.len())]);
            continue;
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] = rng.next() as u8,
            1 => {
                let end = (at + rng.below(4096)).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(512)).min(b.len());
                let dup = b[at..end].to_vec();
                b.splice(at..at, dup);
            }
            3 => {
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                b.splice(at..at, s.iter().copied());
            }
            4 => b.truncate(at),
            _ => {
                // Swap two lines' starts: headers before bodies, hunks
                // out of order.
                let other = rng.below(b.len());
                let (lo, hi) = (at.min(other), at.max(other));
                let len = (hi - lo).min(64);
                if lo + len <= hi && hi + len <= b.len() {
                    for i in 0..len {
                        b.swap(lo + i, hi + i);
                    }
                }
            }
        }
    }
    b
}

/// Everything a command does with a file, short of touching a git tree.
/// Returns how far it got (0: not text, 1: not mail, 2: parsed, 3: a
/// series found).
fn read_everything(bytes: &[u8]) -> u8 {
    let Ok(text) = mail_text(bytes) else { return 0 };
    let Ok((_, messages)) = parse_mail(&text) else {
        return 1;
    };
    for m in &messages {
        if let Some(parts) = PatchBody::split(&m.body) {
            let _ = parse_diff(&m.body[parts.diff.clone()]);
        }
    }
    match find_series(&messages) {
        Ok(s) if !s.is_empty() => 3,
        _ => 2,
    }
}

#[test]
fn damaged_postings_never_panic_the_mail_path() {
    let inputs = inputs();
    let rounds = 20_000;
    let mut reached = [0u32; 4];
    for seed in 1..=rounds as u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let base = &inputs[rng.below(inputs.len())];
        let input = mutate(base, &mut rng);
        let outcome = std::panic::catch_unwind(|| read_everything(&input));
        if let Ok(depth) = outcome {
            reached[depth as usize] += 1;
        } else {
            let path = std::env::temp_dir().join(format!("gasbench-hostile-mail-{seed}.mbox"));
            let _ = std::fs::write(&path, &input);
            panic!(
                "seed {seed}: the mail path panicked; the input is saved at {}",
                path.display()
            );
        }
    }
    // The mutations reach every stage, so this is not a test of the
    // first error path only.
    assert!(reached.iter().all(|&n| n > 100), "{reached:?}");
}
