//! Config fragments, `.config` files, and verifying that what a fragment
//! asks for is what `olddefconfig` kept.
//!
//! merge_config.sh and olddefconfig silently drop a symbol whose
//! dependencies are not met. gasbench checks every requested symbol
//! afterwards and, for each one that did not stick, reads the tree's
//! Kconfig files to name the dependency that dropped it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One line of a fragment: a symbol and the value asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Without the `CONFIG_` prefix.
    pub symbol: String,
    /// `y`, `m`, `n` (for `# CONFIG_X is not set`) or a literal value.
    pub value: String,
    pub fragment: String,
    pub line: usize,
}

/// Parse a fragment. Lines that are neither assignments nor `is not set`
/// comments are ignored, as merge_config.sh ignores them.
pub fn parse_fragment(text: &str, name: &str) -> Vec<Request> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("# CONFIG_")
            && let Some(sym) = rest.strip_suffix(" is not set")
        {
            out.push(Request {
                symbol: sym.trim().to_string(),
                value: "n".into(),
                fragment: name.to_string(),
                line: i + 1,
            });
        } else if let Some(rest) = l.strip_prefix("CONFIG_")
            && let Some((sym, val)) = rest.split_once('=')
        {
            out.push(Request {
                symbol: sym.trim().to_string(),
                value: val.trim().to_string(),
                fragment: name.to_string(),
                line: i + 1,
            });
        }
    }
    out
}

/// A `.config` as symbol → value (`n` for `is not set`).
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    parse_fragment(text, ".config")
        .into_iter()
        .map(|r| (r.symbol, r.value))
        .collect()
}

/// A requested symbol that did not end up as asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub symbol: String,
    pub wanted: String,
    /// What `.config` has (`n` when absent).
    pub got: String,
    pub fragment: String,
    pub line: usize,
    /// Why, from the Kconfig files: the unmet dependency.
    pub reason: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CONFIG_{}={} ({}:{}) ended up {}",
            self.symbol,
            self.wanted,
            self.fragment,
            self.line,
            if self.got == "n" {
                "not set".to_string()
            } else {
                format!("={}", self.got)
            }
        )?;
        if let Some(r) = &self.reason {
            write!(f, ": {r}")?;
        }
        Ok(())
    }
}

/// Every request whose symbol is not set as asked. Later requests for the
/// same symbol override earlier ones, as in merge_config.sh.
pub fn verify(requests: &[Request], config: &BTreeMap<String, String>) -> Vec<Mismatch> {
    let mut last: BTreeMap<&str, &Request> = BTreeMap::new();
    for r in requests {
        last.insert(&r.symbol, r);
    }
    let mut out = Vec::new();
    for r in last.values() {
        let got = config.get(&r.symbol).map_or("n", String::as_str);
        let same = got == r.value || (got.trim_matches('"') == r.value.trim_matches('"'));
        if !same {
            out.push(Mismatch {
                symbol: r.symbol.clone(),
                wanted: r.value.clone(),
                got: got.to_string(),
                fragment: r.fragment.clone(),
                line: r.line,
                reason: None,
            });
        }
    }
    out.sort_by(|a, b| (&a.fragment, a.line).cmp(&(&b.fragment, b.line)));
    out
}

// ---- Why a symbol is off: a small Kconfig reader. ----

/// What the Kconfig files say about one symbol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolInfo {
    /// Every definition (a symbol can be defined in several places).
    pub definitions: Vec<Definition>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Definition {
    pub file: PathBuf,
    pub line: usize,
    /// `depends on` of the entry and of every enclosing `if`/`menu`.
    pub depends: Vec<String>,
    /// Has a prompt the user can answer (else only `select` can set it).
    pub has_prompt: bool,
}

/// Read the Kconfig tree from `srctree/Kconfig` (following `source`) and
/// collect what it says about `symbol`.
pub fn find_symbol(srctree: &Path, arch: &str, symbol: &str) -> SymbolInfo {
    let mut info = SymbolInfo::default();
    let mut stack: Vec<Vec<String>> = Vec::new();
    let mut seen = 0usize;
    walk(
        srctree,
        Path::new("Kconfig"),
        arch,
        symbol,
        &mut stack,
        &mut info,
        &mut seen,
    );
    info
}

fn walk(
    srctree: &Path,
    rel: &Path,
    arch: &str,
    symbol: &str,
    stack: &mut Vec<Vec<String>>,
    info: &mut SymbolInfo,
    files_seen: &mut usize,
) {
    *files_seen += 1;
    if *files_seen > 10_000 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(srctree.join(rel)) else {
        return;
    };
    // Join backslash-continued lines, keeping the first line's number.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (n, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(body) = raw.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((n, acc));
        } else {
            acc.push_str(raw);
            logical.push((n, acc));
        }
    }
    if let Some(p) = pending {
        logical.push(p);
    }

    // The entry being read: a config of our symbol, or a menu/choice
    // whose `depends on` lines apply to everything inside.
    enum Cur {
        None,
        Ours(Definition),
        Other,
        MenuHead,
    }
    let mut cur = Cur::None;
    let mut in_help = false;
    let finish = |cur: &mut Cur, info: &mut SymbolInfo| {
        if let Cur::Ours(d) = std::mem::replace(cur, Cur::None) {
            info.definitions.push(d);
        }
    };
    for (n, line) in &logical {
        let t = line.trim();
        let indented = line.starts_with([' ', '\t']);
        if in_help {
            if t.is_empty() || indented {
                continue;
            }
            in_help = false;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (kw, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let rest = rest.trim();
        match kw {
            "config" | "menuconfig" => {
                finish(&mut cur, info);
                cur = if rest == symbol {
                    Cur::Ours(Definition {
                        file: rel.to_path_buf(),
                        line: *n,
                        depends: stack.iter().flatten().cloned().collect(),
                        has_prompt: false,
                    })
                } else {
                    Cur::Other
                };
            }
            "menu" | "choice" => {
                finish(&mut cur, info);
                stack.push(Vec::new());
                cur = Cur::MenuHead;
            }
            "endmenu" | "endchoice" => {
                finish(&mut cur, info);
                stack.pop();
                cur = Cur::None;
            }
            "if" => {
                finish(&mut cur, info);
                stack.push(vec![rest.to_string()]);
                cur = Cur::None;
            }
            "endif" => {
                finish(&mut cur, info);
                stack.pop();
                cur = Cur::None;
            }
            "source" | "osource" | "rsource" | "orsource" => {
                finish(&mut cur, info);
                let path = rest.trim_matches('"').replace("$(SRCARCH)", arch);
                let path = if kw.starts_with('r') || kw == "orsource" {
                    rel.parent().unwrap_or(Path::new("")).join(path)
                } else {
                    PathBuf::from(path)
                };
                cur = Cur::None;
                walk(srctree, &path, arch, symbol, stack, info, files_seen);
            }
            "comment" | "mainmenu" => {
                finish(&mut cur, info);
                cur = Cur::Other;
            }
            "depends" => {
                let expr = rest.strip_prefix("on").unwrap_or(rest).trim().to_string();
                match &mut cur {
                    Cur::Ours(d) => d.depends.push(expr),
                    Cur::MenuHead => {
                        if let Some(top) = stack.last_mut() {
                            top.push(expr);
                        }
                    }
                    _ => {}
                }
            }
            "bool" | "tristate" | "string" | "int" | "hex" | "prompt" | "def_bool"
            | "def_tristate" => {
                if let Cur::Ours(d) = &mut cur {
                    let prompted = rest.starts_with('"') && !kw.starts_with("def_");
                    if prompted {
                        d.has_prompt = true;
                        // `bool "x" if COND` limits the prompt.
                        if let Some(idx) = rest.rfind("\" if ") {
                            d.depends.push(rest[idx + 5..].trim().to_string());
                        }
                    }
                }
            }
            "help" | "---help---" => in_help = true,
            _ => {}
        }
    }
    finish(&mut cur, info);
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Sym(String),
    And,
    Or,
    Not,
    Cmp(String),
    Open,
    Close,
}

fn tokenize(expr: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let c: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '&' if c.get(i + 1) == Some(&'&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if c.get(i + 1) == Some(&'|') => {
                out.push(Tok::Or);
                i += 2
            }
            '!' if c.get(i + 1) == Some(&'=') => {
                out.push(Tok::Cmp("!=".into()));
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '=' => {
                out.push(Tok::Cmp("=".into()));
                i += 1
            }
            '<' | '>' => {
                let mut op = c[i].to_string();
                i += 1;
                if c.get(i) == Some(&'=') {
                    op.push('=');
                    i += 1;
                }
                out.push(Tok::Cmp(op));
            }
            '"' => {
                let start = i + 1;
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += 1;
                }
                out.push(Tok::Sym(
                    c[start..i.min(c.len())].iter().collect::<String>(),
                ));
                i += 1;
            }
            '$' => {
                // A macro such as $(success,...): opaque, treat as a symbol.
                let start = i;
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '(' {
                        depth += 1;
                    } else if c[i] == ')' {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    i += 1;
                }
                out.push(Tok::Sym(c[start..i].iter().collect()));
            }
            _ => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '-') {
                    i += 1;
                }
                if i == start {
                    i += 1;
                    continue;
                }
                out.push(Tok::Sym(c[start..i].iter().collect()));
            }
        }
    }
    out
}

/// Tristate: 0 n, 1 m, 2 y.
struct Eval<'a> {
    toks: Vec<Tok>,
    pos: usize,
    config: &'a BTreeMap<String, String>,
}

impl Eval<'_> {
    fn value(&self, sym: &str) -> String {
        match sym {
            "y" | "m" | "n" => sym.to_string(),
            s if s.chars().all(|c| c.is_ascii_digit()) => s.to_string(),
            s => self
                .config
                .get(s)
                .cloned()
                .unwrap_or_else(|| "n".to_string()),
        }
    }
    fn tri(v: &str) -> u8 {
        match v {
            "y" => 2,
            "m" => 1,
            _ => 0,
        }
    }
    fn or(&mut self) -> u8 {
        let mut v = self.and();
        while self.toks.get(self.pos) == Some(&Tok::Or) {
            self.pos += 1;
            v = v.max(self.and());
        }
        v
    }
    fn and(&mut self) -> u8 {
        let mut v = self.unary();
        while self.toks.get(self.pos) == Some(&Tok::And) {
            self.pos += 1;
            v = v.min(self.unary());
        }
        v
    }
    fn unary(&mut self) -> u8 {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Not) => {
                self.pos += 1;
                2 - self.unary()
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let v = self.or();
                if self.toks.get(self.pos) == Some(&Tok::Close) {
                    self.pos += 1;
                }
                v
            }
            Some(Tok::Sym(s)) => {
                self.pos += 1;
                if let Some(Tok::Cmp(op)) = self.toks.get(self.pos).cloned() {
                    self.pos += 1;
                    let rhs = match self.toks.get(self.pos).cloned() {
                        Some(Tok::Sym(r)) => {
                            self.pos += 1;
                            self.value(&r)
                        }
                        _ => String::new(),
                    };
                    let lhs = self.value(&s);
                    let num = |x: &str| x.trim_matches('"').parse::<i64>().ok();
                    let ok = match (op.as_str(), num(&lhs), num(&rhs)) {
                        ("=", _, _) => lhs.trim_matches('"') == rhs.trim_matches('"'),
                        ("!=", _, _) => lhs.trim_matches('"') != rhs.trim_matches('"'),
                        ("<", Some(a), Some(b)) => a < b,
                        ("<=", Some(a), Some(b)) => a <= b,
                        (">", Some(a), Some(b)) => a > b,
                        (">=", Some(a), Some(b)) => a >= b,
                        _ => false,
                    };
                    if ok { 2 } else { 0 }
                } else {
                    Self::tri(&self.value(&s))
                }
            }
            _ => {
                self.pos += 1;
                0
            }
        }
    }
}

/// Evaluate a Kconfig expression against a `.config` (0 n, 1 m, 2 y).
pub fn eval(expr: &str, config: &BTreeMap<String, String>) -> u8 {
    let mut e = Eval {
        toks: tokenize(expr),
        pos: 0,
        config,
    };
    e.or()
}

/// Symbols named in `expr` that are off in `config`.
fn off_symbols(expr: &str, config: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokenize(expr) {
        if let Tok::Sym(s) = t
            && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && config.get(&s).is_none_or(|v| v == "n")
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    out
}

/// Symbols an expression wants off (`!FOO`) that are set: what a
/// fragment must turn off (KASAN's `!SLUB_TINY` on a tinyconfig base).
fn negated_but_set(expr: &str, config: &BTreeMap<String, String>) -> Vec<String> {
    let toks = tokenize(expr);
    let mut out = Vec::new();
    for w in toks.windows(2) {
        if let [Tok::Not, Tok::Sym(s)] = w
            && config.get(s).is_some_and(|v| v == "y" || v == "m")
            && !out.contains(s)
        {
            out.push(s.clone());
        }
    }
    out
}

/// Why `symbol` is not set, from the Kconfig files under `srctree`.
pub fn explain(
    srctree: &Path,
    arch: &str,
    symbol: &str,
    config: &BTreeMap<String, String>,
) -> String {
    let info = find_symbol(srctree, arch, symbol);
    if info.definitions.is_empty() {
        return format!(
            "no Kconfig file defines {symbol} on this tree (is the patch that adds it applied?)"
        );
    }
    let mut reasons = Vec::new();
    for d in &info.definitions {
        let unmet: Vec<&String> = d.depends.iter().filter(|e| eval(e, config) == 0).collect();
        if let Some(first) = unmet.first() {
            let off = off_symbols(first, config);
            let mut r = format!("it depends on `{first}`");
            if !off.is_empty() {
                r.push_str(&format!(
                    ", and {} {} not set",
                    off.join(", "),
                    if off.len() == 1 { "is" } else { "are" }
                ));
            }
            let on = negated_but_set(first, config);
            if !on.is_empty() {
                r.push_str(&format!(
                    ", and {} {} set (turn {} off in the fragment)",
                    on.join(", "),
                    if on.len() == 1 { "is" } else { "are" },
                    if on.len() == 1 { "it" } else { "them" },
                ));
            }
            if first.contains("RUST_IS_AVAILABLE") || off.iter().any(|s| s == "RUST_IS_AVAILABLE") {
                r.push_str(" (`make rustavailable` says why)");
            }
            r.push_str(&format!(" ({}:{})", d.file.display(), d.line));
            reasons.push(r);
        } else if !d.has_prompt {
            reasons.push(format!(
                "it has no prompt, so only a `select` from another option can set it ({}:{})",
                d.file.display(),
                d.line
            ));
        }
    }
    if reasons.is_empty() {
        "its dependencies are met; a `choice` or a conflicting fragment line may have overridden it"
            .into()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn fragments_and_dotconfig() {
        let r = parse_fragment(
            "# comment\nCONFIG_RUST=y\n# CONFIG_MODULES is not set\nCONFIG_NR_CPUS=8\nCONFIG_CMDLINE=\"a b\"\n",
            "f.config",
        );
        assert_eq!(r.len(), 4);
        assert_eq!(
            (r[0].symbol.as_str(), r[0].value.as_str(), r[0].line),
            ("RUST", "y", 2)
        );
        assert_eq!(r[1].value, "n");
        assert_eq!(r[3].value, "\"a b\"");
    }

    #[test]
    fn verification_names_every_symbol_that_did_not_stick() {
        let reqs = parse_fragment(
            "CONFIG_RUST=y\nCONFIG_PCI=y\n# CONFIG_MODULES is not set\nCONFIG_NR_CPUS=8\nCONFIG_PCI=n\n",
            "f",
        );
        let got = cfg(&[("RUST", "y"), ("NR_CPUS", "64"), ("MODULES", "n")]);
        let m = verify(&reqs, &got);
        // PCI's last request (n) holds; NR_CPUS differs.
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].symbol, "NR_CPUS");
        assert_eq!(m[0].to_string(), "CONFIG_NR_CPUS=8 (f:4) ended up =64");
        let m = verify(&parse_fragment("CONFIG_GOLDFISH=y\n", "g"), &cfg(&[]));
        assert_eq!(m[0].to_string(), "CONFIG_GOLDFISH=y (g:1) ended up not set");
    }

    #[test]
    fn expressions_in_tristate_logic() {
        let c = cfg(&[
            ("PCI", "y"),
            ("RUST", "y"),
            ("MMU", "y"),
            ("USB", "m"),
            ("NR", "8"),
        ]);
        assert_eq!(eval("PCI && RUST && MMU", &c), 2);
        assert_eq!(eval("PCI && KASAN", &c), 0);
        assert_eq!(eval("!KASAN || CC_IS_CLANG", &c), 2);
        assert_eq!(eval("USB && PCI", &c), 1);
        assert_eq!(eval("!(PCI || USB)", &c), 0);
        assert_eq!(eval("NR >= 4", &c), 2);
        assert_eq!(eval("RUSTC_VERSION >= 109600", &c), 0);
        assert_eq!(eval("PCI != n", &c), 2);
        assert_eq!(
            off_symbols("PCI && RUST_IS_AVAILABLE && !X", &c),
            vec!["RUST_IS_AVAILABLE", "X"]
        );
    }

    #[test]
    fn explanations_follow_sources_ifs_and_menus() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        };
        w(
            "Kconfig",
            "mainmenu \"x\"\nsource \"arch/$(SRCARCH)/Kconfig\"\nmenu \"Drivers\"\n\tdepends on HAS_IOMEM\nsource \"drivers/Kconfig\"\nendmenu\n",
        );
        w("arch/x86/Kconfig", "config X86\n\tdef_bool y\n");
        w(
            "drivers/Kconfig",
            "menuconfig GOLDFISH\n\tbool \"Goldfish\"\nif GOLDFISH\nconfig GOLDFISH_ADDRESS_SPACE\n\ttristate \"as\"\n\tdepends on PCI && \\\n\t  RUST\n\thelp\n\t  depends on NOTHING (prose)\nendif\nconfig VIRTIO\n\ttristate\n",
        );
        let c = cfg(&[("HAS_IOMEM", "y"), ("GOLDFISH", "y"), ("PCI", "y")]);
        let info = find_symbol(dir.path(), "x86", "GOLDFISH_ADDRESS_SPACE");
        assert_eq!(info.definitions.len(), 1);
        assert_eq!(
            info.definitions[0].depends,
            vec!["HAS_IOMEM", "GOLDFISH", "PCI &&  \t  RUST"]
        );
        let why = explain(dir.path(), "x86", "GOLDFISH_ADDRESS_SPACE", &c);
        assert!(why.contains("RUST is not set"), "{why}");
        assert!(why.contains("drivers/Kconfig:4"), "{why}");

        let c2 = cfg(&[("GOLDFISH", "y"), ("PCI", "y"), ("RUST", "y")]);
        let why = explain(dir.path(), "x86", "GOLDFISH_ADDRESS_SPACE", &c2);
        assert!(why.contains("`HAS_IOMEM`"), "menu depends apply: {why}");

        let why = explain(dir.path(), "x86", "VIRTIO", &c);
        assert!(why.contains("no prompt"), "{why}");
        let why = explain(dir.path(), "x86", "NOPE", &c);
        assert!(why.contains("no Kconfig file defines NOPE"), "{why}");
    }

    #[test]
    fn a_symbol_a_dependency_wants_off_is_named() {
        // lib/Kconfig.kasan on a tinyconfig base, which picks SLUB_TINY.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Kconfig"),
            "menuconfig KASAN\n\tbool \"KASAN\"\n\tdepends on HAVE_ARCH_KASAN\n\tdepends on SYSFS && !SLUB_TINY\n",
        )
        .unwrap();
        let c = cfg(&[("HAVE_ARCH_KASAN", "y"), ("SYSFS", "y"), ("SLUB_TINY", "y")]);
        let why = explain(dir.path(), "x86", "KASAN", &c);
        assert!(why.contains("`SYSFS && !SLUB_TINY`"), "{why}");
        assert!(
            why.contains("SLUB_TINY is set (turn it off in the fragment)"),
            "{why}"
        );
        // With SLUB_TINY off there is nothing to explain by it.
        let c = cfg(&[("HAVE_ARCH_KASAN", "y"), ("SYSFS", "y")]);
        let why = explain(dir.path(), "x86", "KASAN", &c);
        assert!(!why.contains("SLUB_TINY"), "{why}");
    }
}
