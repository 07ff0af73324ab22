//! New ioctls: direction against what the driver copies, the argument's
//! layout on 32- and 64-bit, and the kernel's registry of ioctl numbers.
//!
//! The ioctls are the `_IO*` commands of the uapi headers the series
//! adds or changes, macros expanded; the driver is the series' new file
//! that handles them (a Rust `match` arm `NAME =>` or a C `case NAME:`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::diff::Added;
use crate::{CheckResult, Evidence, Verdict};

/// An ioctl command as the header defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    /// `_IOWR`, `_IOW`, `_IOR`, `_IO`.
    pub dir: String,
    /// The type character (`G`) or number.
    pub magic: u32,
    pub nr: u32,
    /// The argument type (`struct x`, `__u64`), if any.
    pub arg: Option<String>,
    pub file: String,
    pub line: usize,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
struct Header {
    /// Object-like macros: name → body.
    objects: BTreeMap<String, String>,
    /// Function-like: name → (params, body).
    functions: BTreeMap<String, (Vec<String>, String)>,
    /// Every #define in order: (name, line, first line's text).
    defines: Vec<(String, usize, String)>,
    /// Structs: name → fields (type, name, array length).
    structs: BTreeMap<String, (usize, Vec<Field>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub ty: String,
    pub name: String,
    pub count: u64,
}

fn parse_header(text: &str) -> Header {
    let mut h = Header::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let mut l = lines[i].to_string();
        while l.ends_with('\\') && i + 1 < lines.len() {
            l.pop();
            i += 1;
            l.push(' ');
            l.push_str(lines[i].trim());
        }
        i += 1;
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("#define") {
            let rest = rest.trim_start();
            let name_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = rest[..name_end].to_string();
            let after = &rest[name_end..];
            if let Some(params) = after.strip_prefix('(') {
                if let Some(close) = params.find(')') {
                    let ps = params[..close]
                        .split(',')
                        .map(|p| p.trim().to_string())
                        .collect();
                    h.functions
                        .insert(name.clone(), (ps, params[close + 1..].trim().to_string()));
                }
            } else {
                h.objects.insert(name.clone(), after.trim().to_string());
            }
            h.defines.push((name, start + 1, lines[start].to_string()));
            continue;
        }
        if let Some(rest) = t.strip_prefix("struct ")
            && let Some(name) = rest.strip_suffix('{').map(str::trim)
            && !name.contains(' ')
        {
            let mut fields = Vec::new();
            while i < lines.len() && !lines[i].trim().starts_with('}') {
                let f = lines[i].trim().trim_end_matches(';').trim();
                i += 1;
                if f.is_empty() || f.starts_with("/*") || f.starts_with('*') || f.starts_with("//")
                {
                    continue;
                }
                let Some(sp) = f.rfind(|c: char| c.is_whitespace()) else {
                    continue;
                };
                let (ty, var) = (f[..sp].trim(), f[sp + 1..].trim());
                let (var, count) = match var.split_once('[') {
                    Some((v, n)) => (v, n.trim_end_matches(']').trim().parse().unwrap_or(0)),
                    None => (var, 1),
                };
                fields.push(Field {
                    ty: ty.to_string(),
                    name: var.to_string(),
                    count,
                });
            }
            h.structs
                .insert(format!("struct {name}"), (start + 1, fields));
        }
    }
    h
}

/// Expand macros until an `_IO*(...)` remains (a few rounds at most).
fn expand(h: &Header, body: &str) -> String {
    let mut s = body.to_string();
    for _ in 0..8 {
        let mut changed = false;
        let mut out = String::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i] as char;
            if c.is_ascii_alphabetic() || c == '_' {
                let st = i;
                while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &s[st..i];
                if let Some((ps, fb)) = h.functions.get(word)
                    && s[i..].trim_start().starts_with('(')
                {
                    let open = i + s[i..].find('(').unwrap_or(0);
                    let mut depth = 0;
                    let mut end = open;
                    for (k, ch) in s[open..].char_indices() {
                        match ch {
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = open + k;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    let args: Vec<&str> = split_args(&s[open + 1..end]);
                    let mut body = fb.clone();
                    for (p, a) in ps.iter().zip(&args) {
                        body = replace_word(&body, p, a.trim());
                    }
                    out.push_str(&body);
                    i = end + 1;
                    changed = true;
                } else if let Some(v) = h.objects.get(word) {
                    out.push_str(v);
                    changed = true;
                } else {
                    out.push_str(word);
                }
            } else {
                out.push(c);
                i += 1;
            }
        }
        s = out;
        if !changed {
            break;
        }
    }
    s
}

fn split_args(s: &str) -> Vec<&str> {
    let mut v = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                v.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    v.push(&s[start..]);
    v
}

fn replace_word(s: &str, word: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find(word) {
        let before = rest[..p].chars().last();
        let after = rest[p + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..p]);
        if ident(before) || ident(after) {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        rest = &rest[p + word.len()..];
    }
    out.push_str(rest);
    out
}

fn number(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(c) = s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return c.chars().next().map(|c| c as u32);
    }
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u32::from_str_radix(h, 16).ok();
    }
    s.parse().ok()
}

/// The ioctl commands a header defines.
pub fn commands(file: &str, text: &str) -> Vec<Command> {
    let h = parse_header(text);
    let mut v = Vec::new();
    for (name, line, first) in &h.defines {
        if h.functions.contains_key(name) {
            continue;
        }
        let Some(body) = h.objects.get(name) else {
            continue;
        };
        let e = expand(&h, body);
        let e = e.trim();
        for dir in ["_IOWR", "_IOW", "_IOR", "_IO"] {
            if let Some(args) = e.strip_prefix(dir).map(str::trim_start)
                && let Some(args) = args.strip_prefix('(').and_then(|a| a.strip_suffix(')'))
            {
                let a = split_args(args);
                let (Some(magic), Some(nr)) = (
                    a.first().and_then(|x| number(x)),
                    a.get(1).and_then(|x| number(x)),
                ) else {
                    break;
                };
                v.push(Command {
                    name: name.clone(),
                    dir: dir.to_string(),
                    magic,
                    nr,
                    arg: a.get(2).map(|x| x.trim().to_string()),
                    file: file.to_string(),
                    line: *line,
                    text: first.clone(),
                });
                break;
            }
        }
    }
    v
}

/// Size and alignment of a type on a 64-bit (LP64) or i386 ABI.
fn type_layout(h: &Header, ty: &str, lp64: bool) -> Option<(u64, u64)> {
    let t = ty.trim();
    let u64_align = if lp64 { 8 } else { 4 };
    Some(match t {
        "__u8" | "__s8" | "char" | "unsigned char" => (1, 1),
        "__u16" | "__s16" | "__le16" | "__be16" => (2, 2),
        "__u32" | "__s32" | "__le32" | "__be32" | "int" | "unsigned int" => (4, 4),
        "__u64" | "__s64" | "__le64" | "__be64" => (8, u64_align),
        "__aligned_u64" | "__aligned_s64" => (8, 8),
        "long" | "unsigned long" => {
            if lp64 {
                (8, 8)
            } else {
                (4, 4)
            }
        }
        _ if t.ends_with('*') => {
            if lp64 {
                (8, 8)
            } else {
                (4, 4)
            }
        }
        _ => {
            let (_, fields) = h.structs.get(t)?;
            let l = struct_layout(h, fields, lp64)?;
            (l.size, l.align)
        }
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub align: u64,
    /// Holes: (after field, bytes); the last may be tail padding ("end").
    pub holes: Vec<(String, u64)>,
}

fn struct_layout(h: &Header, fields: &[Field], lp64: bool) -> Option<Layout> {
    let mut off = 0;
    let mut align = 1;
    let mut holes = Vec::new();
    let mut prev = "start".to_string();
    for f in fields {
        let (sz, al) = type_layout(h, &f.ty, lp64)?;
        let pad = (al - off % al) % al;
        if pad > 0 {
            holes.push((prev.clone(), pad));
        }
        off += pad + sz * f.count;
        align = align.max(al);
        prev = f.name.clone();
    }
    let tail = (align - off % align) % align;
    if tail > 0 {
        holes.push(("end".into(), tail));
    }
    Some(Layout {
        size: off + tail,
        align,
        holes,
    })
}

/// A registry line of ioctl-number.rst: code, range, what, line.
fn registry(text: &str) -> Vec<(u32, u32, u32, usize, String)> {
    let mut v = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let mut w = l.split_whitespace();
        let (Some(code), Some(range)) = (w.next(), w.next()) else {
            continue;
        };
        let Some(code) = number(code).filter(|_| code.starts_with('\'') || code.starts_with("0x"))
        else {
            continue;
        };
        let (lo, hi) = if range == "all" {
            (0, 0xff)
        } else if let Some((a, b)) = range.split_once('-') {
            match (u32::from_str_radix(a, 16), u32::from_str_radix(b, 16)) {
                (Ok(a), Ok(b)) => (a, b),
                _ => continue,
            }
        } else {
            match u32::from_str_radix(range, 16) {
                Ok(a) => (a, a),
                Err(_) => (0, 0xff),
            }
        };
        v.push((code, lo, hi, i + 1, l.to_string()));
    }
    v
}

/// Whether a driver's handler of `name` reads and writes the argument.
fn driver_copies(arm: &str) -> (bool, bool) {
    let reads = [
        "read_slice",
        "read::<",
        ".read(",
        "copy_from_user",
        "get_user",
    ]
    .iter()
    .any(|p| arm.contains(p));
    let writes = [
        "write_slice",
        "write::<",
        ".write(",
        "copy_to_user",
        "put_user",
    ]
    .iter()
    .any(|p| arm.contains(p));
    (reads, writes)
}

/// The handler of `name` in a driver: the lines from `NAME =>` (Rust) or
/// `case NAME:` (C) to the next arm.
fn handler(text: &str, name: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let is_arm = |l: &str, n: &str| {
        let t = l.trim();
        (t.starts_with(n) && t[n.len()..].trim_start().starts_with("=>"))
            || t.strip_prefix("case ")
                .is_some_and(|r| r.trim_start().starts_with(n) && r.contains(':'))
    };
    let start = lines.iter().position(|l| is_arm(l, name))?;
    let indent = lines[start].len() - lines[start].trim_start().len();
    let mut arm = String::new();
    for l in &lines[start..] {
        let ind = l.len() - l.trim_start().len();
        let t = l.trim();
        if !arm.is_empty()
            && ind <= indent
            && (t.contains("=>") || t.starts_with("case ") || t.starts_with("default:") || t == "}")
        {
            break;
        }
        arm.push_str(l);
        arm.push('\n');
    }
    Some((start + 1, arm))
}

pub fn check(tree: &Path, added: &Added) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let headers: Vec<&String> = added
        .lines
        .keys()
        .filter(|f| f.starts_with("include/uapi/") && f.ends_with(".h"))
        .collect();
    let registry_file = "Documentation/userspace-api/ioctl/ioctl-number.rst";
    let reg_text = std::fs::read_to_string(tree.join(registry_file)).unwrap_or_default();
    let reg = registry(&reg_text);
    let registered_by_series = added.lines.contains_key(registry_file);
    for hf in headers {
        let Ok(text) = std::fs::read_to_string(tree.join(hf)) else {
            continue;
        };
        let cmds = commands(hf, &text);
        if cmds.is_empty() {
            continue;
        }
        let h = parse_header(&text);
        // Layout of each argument struct.
        let mut seen = Vec::new();
        for c in &cmds {
            let Some(arg) = &c.arg else { continue };
            if seen.contains(arg) {
                continue;
            }
            seen.push(arg.clone());
            let line = h.structs.get(arg.as_str()).map_or(c.line, |(l, _)| *l);
            let lay = |lp64| {
                h.structs
                    .get(arg.as_str())
                    .and_then(|(_, f)| struct_layout(&h, f, lp64))
                    .or_else(|| {
                        type_layout(&h, arg, lp64).map(|(size, align)| Layout {
                            size,
                            align,
                            holes: Vec::new(),
                        })
                    })
            };
            let first = text.lines().nth(line - 1).unwrap_or_default();
            match (lay(true), lay(false)) {
                (Some(a), Some(b)) => {
                    let padded = !a.holes.is_empty() || !b.holes.is_empty();
                    let differs = a.size != b.size || a.holes != b.holes;
                    out.push(CheckResult {
                        check: "ioctl.layout",
                        subject: arg.clone(),
                        verdict: if padded || differs {
                            Verdict::Defect
                        } else {
                            Verdict::Pass
                        },
                        title: if differs {
                            format!(
                                "{arg} is {} bytes on 64-bit and {} on i386: a 32-bit process's ioctl needs a compat handler",
                                a.size, b.size
                            )
                        } else if padded {
                            format!(
                                "{arg} has implicit padding ({}): kernel stack bytes can reach user space and the layout is not explicit",
                                a.holes
                                    .iter()
                                    .map(|(f, n)| format!("{n} byte(s) after {f}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        } else {
                            format!(
                                "{arg}: {} bytes, no padding, the same layout on 64-bit and i386",
                                a.size
                            )
                        },
                        evidence: vec![Evidence::new(hf, line, first)],
                    });
                }
                _ => out.push(CheckResult {
                    check: "ioctl.layout",
                    subject: arg.clone(),
                    verdict: Verdict::Note,
                    title: format!("{arg}: a type this check does not know; layout not checked"),
                    evidence: vec![Evidence::new(hf, line, first)],
                }),
            }
        }
        // The registry.
        let magic = cmds[0].magic;
        let lo = cmds.iter().map(|c| c.nr).min().unwrap_or(0);
        let hi = cmds.iter().map(|c| c.nr).max().unwrap_or(0);
        let shown = char::from_u32(magic)
            .filter(|c| c.is_ascii_graphic())
            .map_or(format!("{magic:#x}"), |c| format!("'{c}'"));
        let clashes: Vec<Evidence> = reg
            .iter()
            .filter(|(code, a, b, _, _)| *code == magic && *a <= hi && lo <= *b)
            .map(|(_, _, _, l, t)| Evidence::new(registry_file, *l, t))
            .collect();
        let cmd_ev: Vec<Evidence> = cmds
            .iter()
            .map(|c| Evidence::new(hf, c.line, &c.text))
            .collect();
        out.push(CheckResult {
            check: "ioctl.number",
            subject: format!("{shown} {lo:#04x}-{hi:#04x}"),
            verdict: if clashes.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Defect
            },
            title: if clashes.is_empty() {
                format!("ioctl type {shown} numbers {lo:#04x}-{hi:#04x} collide with nothing in {registry_file}")
            } else {
                format!(
                    "ioctl type {shown} numbers {lo:#04x}-{hi:#04x} collide with {} range(s) already in {registry_file}",
                    clashes.len()
                )
            },
            evidence: if clashes.is_empty() { cmd_ev.clone() } else { clashes },
        });
        if !registered_by_series {
            out.push(CheckResult {
                check: "ioctl.registry",
                subject: format!("{shown} {lo:#04x}-{hi:#04x}"),
                verdict: Verdict::Defect,
                title: format!(
                    "the series does not add its ioctl range ({shown} {lo:#04x}-{hi:#04x}) to {registry_file}"
                ),
                evidence: cmd_ev.iter().take(1).cloned().collect(),
            });
        }
        // Direction against the driver.
        for f in &added.new_files {
            if !(f.ends_with(".rs") || f.ends_with(".c")) || f.starts_with("include/") {
                continue;
            }
            let Ok(dtext) = std::fs::read_to_string(tree.join(f)) else {
                continue;
            };
            for c in &cmds {
                let Some((line, arm)) = handler(&dtext, &c.name) else {
                    continue;
                };
                let (reads, writes) = driver_copies(&arm);
                let wants = match (reads, writes) {
                    (true, true) => "_IOWR",
                    (true, false) => "_IOW",
                    (false, true) => "_IOR",
                    (false, false) => "_IO",
                };
                let first = dtext.lines().nth(line - 1).unwrap_or_default();
                let ok = wants == c.dir;
                out.push(CheckResult {
                    check: "ioctl.direction",
                    subject: c.name.clone(),
                    verdict: if ok { Verdict::Pass } else { Verdict::Defect },
                    title: if ok {
                        format!(
                            "{} is {}, and the driver {}",
                            c.name,
                            c.dir,
                            copies(reads, writes)
                        )
                    } else {
                        format!(
                            "{} is declared {} but the driver {}: it should be {wants}",
                            c.name,
                            c.dir,
                            copies(reads, writes)
                        )
                    },
                    evidence: vec![
                        Evidence::new(hf, c.line, &c.text),
                        Evidence::new(f, line, first),
                    ],
                });
            }
        }
    }
    out
}

fn copies(reads: bool, writes: bool) -> &'static str {
    match (reads, writes) {
        (true, true) => "copies the argument in and back out",
        (true, false) => "only copies the argument in (nothing is written back)",
        (false, true) => "only writes the argument out",
        (false, false) => "neither reads nor writes the argument",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Patch;

    const HEADER: &str = "\
#include <linux/ioctl.h>

struct demo_alloc {
\t__u64 size;
\t__u32 flags;
};

struct demo_ok {
\t__u64 a;
\t__u32 b;
\t__u32 c;
};

#define DEMO_MAGIC 'G'
#define DEMO_OP(OP, T) \\
\t_IOWR(DEMO_MAGIC, OP, T)
#define DEMO_ALLOC DEMO_OP(10, struct demo_alloc)
#define DEMO_FREE DEMO_OP(11, __u64)
#define DEMO_OK _IOWR(DEMO_MAGIC, 12, struct demo_ok)
";

    const DRIVER: &str = "\
fn ioctl(cmd: u32) -> Result {
    match cmd {
        DEMO_ALLOC => {
            reader.read_slice(&mut b)?;
            writer.write_slice(&out)?;
        }
        DEMO_FREE => {
            let mut reader = UserSlice::new(p, 8).reader();
            free(reader.read::<u64>()?)?;
        }
        DEMO_OK => {
            reader.read_slice(&mut b)?;
            writer.write_slice(&out)?;
        }
        _ => Err(ENOTTY),
    }
}
";

    #[test]
    fn commands_are_expanded_through_helper_macros() {
        let c = commands("h.h", HEADER);
        assert_eq!(c.len(), 3, "{c:#?}");
        assert_eq!(c[0].name, "DEMO_ALLOC");
        assert_eq!(
            (c[0].dir.as_str(), c[0].magic, c[0].nr),
            ("_IOWR", 'G' as u32, 10)
        );
        assert_eq!(c[0].arg.as_deref(), Some("struct demo_alloc"));
        assert_eq!(c[1].arg.as_deref(), Some("__u64"));
    }

    #[test]
    fn padding_32_64_differences_collisions_and_directions_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        for (p, text) in [
            ("include/uapi/linux/demo.h", HEADER),
            ("drivers/demo/demo.rs", DRIVER),
            (
                "Documentation/userspace-api/ioctl/ioctl-number.rst",
                "====  =====  ====\nCode  Seq#   Include File\n'F'   00-0F  video/x.h\n'G'   00-3F  drivers/misc/sgi-gru/grulib.h  conflict!\n",
            ),
        ] {
            std::fs::create_dir_all(t.join(p).parent().unwrap()).unwrap();
            std::fs::write(t.join(p), text).unwrap();
        }
        let patch = format!(
            "diff --git a/include/uapi/linux/demo.h b/include/uapi/linux/demo.h\n--- /dev/null\n+++ b/include/uapi/linux/demo.h\n@@ -0,0 +1 @@\n{}\ndiff --git a/drivers/demo/demo.rs b/drivers/demo/demo.rs\n--- /dev/null\n+++ b/drivers/demo/demo.rs\n@@ -0,0 +1 @@\n{}\n",
            HEADER
                .lines()
                .map(|l| format!("+{l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            DRIVER
                .lines()
                .map(|l| format!("+{l}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let r = crate::check_series(
            t,
            &[Patch {
                file: "p",
                text: &patch,
            }],
        );
        let get = |check: &str, subject: &str| {
            r.iter()
                .find(|c| c.check == check && c.subject == subject)
                .unwrap_or_else(|| panic!("no {check} {subject}: {r:#?}"))
        };
        let alloc = get("ioctl.layout", "struct demo_alloc");
        assert_eq!(alloc.verdict, Verdict::Defect);
        assert!(
            alloc.title.contains("16 bytes on 64-bit and 12 on i386"),
            "{}",
            alloc.title
        );
        assert_eq!(alloc.evidence[0].at, "include/uapi/linux/demo.h:3");
        assert_eq!(get("ioctl.layout", "struct demo_ok").verdict, Verdict::Pass);
        let free = get("ioctl.direction", "DEMO_FREE");
        assert_eq!(free.verdict, Verdict::Defect);
        assert!(free.title.contains("should be _IOW"), "{}", free.title);
        assert_eq!(free.evidence[1].at, "drivers/demo/demo.rs:7");
        assert_eq!(get("ioctl.direction", "DEMO_ALLOC").verdict, Verdict::Pass);
        let num = get("ioctl.number", "'G' 0x0a-0x0c");
        assert_eq!(num.verdict, Verdict::Defect);
        assert_eq!(
            num.evidence[0].at,
            "Documentation/userspace-api/ioctl/ioctl-number.rst:4"
        );
        assert_eq!(
            get("ioctl.registry", "'G' 0x0a-0x0c").verdict,
            Verdict::Defect
        );
    }
}
