//! Stack frames to `file:line`, as the kernel's
//! scripts/decode_stacktrace.sh does it: the symbol's address from
//! System.map plus the frame's offset, then the line tables of the built
//! vmlinux (`llvm-symbolizer`, through the runtime, one run per report).
//! A kernel without debug info (the default profile) gives function names
//! only; the report says why its stacks have no lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gasbench_env::Runtime;
use gasbench_events::report::{Frame, KernelReport};

use crate::line::sanitize;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run llvm-symbolizer: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("llvm-symbolizer failed: {0}")]
    Failed(String),
}

/// Symbols by name: (address, size up to the next symbol), for every
/// text symbol of that name (static functions can share one).
#[derive(Clone, Debug, Default)]
pub struct SymbolMap {
    by_name: HashMap<String, Vec<(u64, u64)>>,
}

impl SymbolMap {
    /// Parse System.map (`ffffffff81000000 T _stext`).
    pub fn parse(text: &str) -> SymbolMap {
        let mut all: Vec<(u64, bool, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                let text = matches!(kind, "T" | "t" | "W" | "w");
                Some((addr, text, name))
            })
            .collect();
        all.sort_by_key(|(a, _, _)| *a);
        let mut by_name: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for (i, (addr, text, name)) in all.iter().enumerate() {
            if !text {
                continue;
            }
            let next = all[i + 1..]
                .iter()
                .find(|(a, _, _)| a > addr)
                .map_or(0, |(a, _, _)| *a);
            by_name
                .entry(name.to_string())
                .or_default()
                .push((*addr, next.saturating_sub(*addr)));
        }
        SymbolMap { by_name }
    }

    /// The frame's address: the symbol whose size matches the one
    /// kallsyms printed (`f+0x1a/0x90`), or the only one of that name.
    pub fn address(&self, f: &Frame) -> Option<u64> {
        let name = f.symbol.as_deref().unwrap_or(&f.function);
        let c = self.by_name.get(name)?;
        let base = if c.len() == 1 {
            c[0].0
        } else {
            c.iter().find(|(_, size)| *size == f.size)?.0
        };
        base.checked_add(f.offset)
    }
}

/// Decodes the frames of reports from one kernel build.
pub struct Decoder {
    rt: Runtime,
    vmlinux: Option<PathBuf>,
    symbols: SymbolMap,
    /// Why frames get no file:line ("" when they do).
    limitation: String,
}

impl Decoder {
    /// `debug_info`: the kernel was built with line tables
    /// (CONFIG_DEBUG_INFO); without them only function names are known.
    pub fn new(
        rt: Runtime,
        vmlinux: Option<&Path>,
        system_map: &Path,
        debug_info: bool,
    ) -> Result<Decoder, DecodeError> {
        let text = std::fs::read_to_string(system_map).map_err(|source| DecodeError::Read {
            path: system_map.to_path_buf(),
            source,
        })?;
        let limitation = match (vmlinux, debug_info) {
            (None, _) => "the build kept no vmlinux".to_string(),
            (Some(_), false) => {
                "the kernel was built without debug info (CONFIG_DEBUG_INFO): function names only"
                    .to_string()
            }
            (Some(_), true) => String::new(),
        };
        Ok(Decoder {
            rt,
            vmlinux: vmlinux.map(Path::to_path_buf),
            symbols: SymbolMap::parse(&text),
            limitation,
        })
    }

    /// Fill in `location` and `inlined` of every frame it can; say in
    /// `undecoded` why not where it cannot.
    pub fn decode(&self, report: &mut KernelReport) {
        if !self.limitation.is_empty() {
            report.undecoded = self.limitation.clone();
            return;
        }
        let Some(vmlinux) = &self.vmlinux else {
            return;
        };
        // Return addresses point after the call: look up the call itself
        // (addr - 1), as decode_stacktrace.sh does; RIP is exact.
        let mut wanted: Vec<(usize, usize, u64)> = Vec::new();
        for (si, s) in report.stacks.iter().enumerate() {
            for (fi, f) in s.frames.iter().enumerate() {
                if let Some(a) = self.symbols.address(f) {
                    let a = if s.label == "RIP" || f.offset == 0 {
                        a
                    } else {
                        a - 1
                    };
                    wanted.push((si, fi, a));
                }
            }
        }
        if wanted.is_empty() {
            report.undecoded = "no frame's symbol is in System.map".into();
            return;
        }
        let mut addrs: Vec<u64> = wanted.iter().map(|w| w.2).collect();
        addrs.sort_unstable();
        addrs.dedup();
        match self.symbolize(vmlinux, &addrs) {
            Ok(found) => {
                for (si, fi, a) in wanted {
                    if let Some(chain) = found.get(&a)
                        && let Some((first, rest)) = chain.split_first()
                    {
                        // The outermost entry is the frame's own function;
                        // the ones before it were inlined into it.
                        let f = &mut report.stacks[si].frames[fi];
                        let (own, inner) = match rest.split_last() {
                            Some((last, inner_rest)) => {
                                let mut inner = vec![first.clone()];
                                inner.extend(inner_rest.iter().cloned());
                                (last.clone(), inner)
                            }
                            None => (first.clone(), Vec::new()),
                        };
                        f.location = Some(own.1);
                        f.inlined = inner
                            .into_iter()
                            .map(|(func, loc)| format!("{func} ({loc})"))
                            .collect();
                    }
                }
            }
            Err(e) => report.undecoded = e.to_string(),
        }
    }

    fn symbolize(
        &self,
        vmlinux: &Path,
        addrs: &[u64],
    ) -> Result<HashMap<u64, Vec<(String, String)>>, DecodeError> {
        let mut argv: Vec<String> = vec![
            "llvm-symbolizer".into(),
            "--inlining".into(),
            "--demangle".into(),
            "--functions=linkage".into(),
            "--output-style=LLVM".into(),
            format!("--obj={}", vmlinux.display()),
        ];
        argv.extend(addrs.iter().map(|a| format!("0x{a:x}")));
        let dir = vmlinux.parent().unwrap_or(Path::new("/"));
        let out = self
            .rt
            .build_command(&argv, &[dir.to_path_buf()], dir)
            .stdin(Stdio::null())
            .output()
            .map_err(DecodeError::Spawn)?;
        if !out.status.success() {
            return Err(DecodeError::Failed(sanitize(
                String::from_utf8_lossy(&out.stderr).trim(),
            )));
        }
        Ok(parse_symbolizer(
            &String::from_utf8_lossy(&out.stdout),
            addrs,
        ))
    }
}

/// llvm-symbolizer's LLVM-style output: per address, `function` and
/// `file:line:column` lines (innermost inlined function first), then a
/// blank line. Paths are shortened to the part from the source tree's
/// top (`drivers/…`, `rust/…`).
pub fn parse_symbolizer(out: &str, addrs: &[u64]) -> HashMap<u64, Vec<(String, String)>> {
    let mut map = HashMap::new();
    let mut blocks = out.split("\n\n").filter(|b| !b.trim().is_empty());
    for a in addrs {
        let Some(block) = blocks.next() else { break };
        let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut chain = Vec::new();
        for pair in lines.chunks(2) {
            let [func, loc] = pair else { continue };
            let loc = loc.trim();
            if loc.starts_with("??") || loc.is_empty() {
                continue;
            }
            chain.push((
                sanitize(&crate::parse::demangle(func.trim())),
                sanitize(&short_path(loc)),
            ));
        }
        if !chain.is_empty() {
            map.insert(*a, chain);
        }
    }
    map
}

/// `/var/cache/…/src/drivers/x.c:12:5` → `drivers/x.c:12`: from the
/// first directory the kernel tree has at its top, without the column.
pub fn short_path(loc: &str) -> String {
    const TOP: &[&str] = &[
        "arch/",
        "block/",
        "crypto/",
        "drivers/",
        "fs/",
        "include/",
        "init/",
        "io_uring/",
        "ipc/",
        "kernel/",
        "lib/",
        "mm/",
        "net/",
        "rust/",
        "samples/",
        "security/",
        "sound/",
        "virt/",
    ];
    // `file:line:column` → `file:line`.
    let mut s = loc;
    if let Some((head, col)) = s.rsplit_once(':')
        && col.bytes().all(|b| b.is_ascii_digit())
        && let Some((_, line)) = head.rsplit_once(':')
        && line.bytes().all(|b| b.is_ascii_digit())
    {
        s = head;
    }
    if TOP.iter().any(|t| s.starts_with(t)) {
        return s.to_string();
    }
    // The last place where what follows is the tree's own top (the
    // cache's path has a `kernel/` of its own).
    (0..s.len())
        .rev()
        .filter(|&i| s.as_bytes()[i] == b'/')
        .find(|&i| TOP.iter().any(|t| s[i + 1..].starts_with(t)) && s[..i].ends_with("/src"))
        .or_else(|| TOP.iter().filter_map(|t| s.find(&format!("/{t}"))).min())
        .map_or_else(|| s.to_string(), |i| s[i + 1..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, offset: u64, size: u64) -> Frame {
        Frame {
            function: name.into(),
            symbol: None,
            offset,
            size,
            reliable: true,
            location: None,
            inlined: vec![],
        }
    }

    #[test]
    fn addresses_come_from_system_map_with_sizes_telling_twins_apart() {
        let map = SymbolMap::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81000100 t helper\n\
             ffffffff81000180 T provoke_write\n\
             ffffffff81000200 t helper\n\
             ffffffff81000240 D some_data\n\
             ffffffff81000300 T end\n",
        );
        assert_eq!(
            map.address(&frame("provoke_write", 0x10, 0x80)),
            Some(0xffffffff81000190)
        );
        // Two static `helper`s: the printed size (to the next symbol) picks.
        assert_eq!(
            map.address(&frame("helper", 4, 0x80)),
            Some(0xffffffff81000104)
        );
        assert_eq!(
            map.address(&frame("helper", 4, 0x40)),
            Some(0xffffffff81000204)
        );
        assert_eq!(map.address(&frame("helper", 4, 0x99)), None);
        assert_eq!(map.address(&frame("some_data", 0, 0)), None);
        assert_eq!(map.address(&frame("nope", 0, 0)), None);
    }

    #[test]
    fn symbolizer_output_gives_inlined_chains_with_short_paths() {
        let out = "provoke_leak\n/var/cache/gasbench/kernel/trees/7.2.12-x/src/drivers/misc/gasbench_provoke.c:58:12\nprovoke_write\n/var/cache/gasbench/kernel/trees/7.2.12-x/src/drivers/misc/gasbench_provoke.c:121:3\n\n\
                   ??\n??:0:0\n\n\
                   vfs_write\nfs/read_write.c:684:9\n\n";
        let m = parse_symbolizer(out, &[1, 2, 3]);
        assert_eq!(
            m[&1],
            vec![
                (
                    "provoke_leak".to_string(),
                    "drivers/misc/gasbench_provoke.c:58".to_string()
                ),
                (
                    "provoke_write".to_string(),
                    "drivers/misc/gasbench_provoke.c:121".to_string()
                ),
            ]
        );
        assert!(!m.contains_key(&2), "?? is no location");
        assert_eq!(m[&3][0].1, "fs/read_write.c:684");
    }

    #[test]
    fn paths_are_cut_at_the_tree_top() {
        assert_eq!(short_path("/a/b/src/mm/slub.c:10:2"), "mm/slub.c:10");
        assert_eq!(short_path("rust/kernel/lib.rs:5:1"), "rust/kernel/lib.rs:5");
        assert_eq!(short_path("/x/y.c:3"), "/x/y.c:3");
    }
}
