//! Short, fixed-width renderings of numbers for dense tables.

/// A duration in ns, 3 significant digits: `850ns`, `12.3µs`, `1.20ms`, `3.40s`.
pub fn duration_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        sig3(f / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        sig3(f / 1e6, "ms")
    } else {
        sig3(f / 1e9, "s")
    }
}

fn sig3(v: f64, unit: &str) -> String {
    if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// Time since the run started, for a trace row: `12.345` (seconds).
pub fn stamp_us(us: u64) -> String {
    format!("{}.{:03}", us / 1_000_000, (us / 1_000) % 1_000)
}

/// Wall-clock style elapsed time: `0:07`, `3:12`, `1:03:12`.
pub fn elapsed_us(us: u64) -> String {
    let s = us / 1_000_000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Milliseconds as `850ms`, `1.4s`, `3m12s`.
pub fn ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// Bytes in binary units: `4 KiB`, `1.5 MiB`, `16 GiB`, `100 B`.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `12345` → `12,345`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Cut `s` to `width` characters, ending in `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Keep the end of `s` in `width` characters, starting with `…` when cut
/// (text being typed: its end is where the cursor is).
pub fn tail(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - (width - 1)));
    out
}

/// Pad or cut to exactly `width` characters.
pub fn pad(s: &str, width: usize) -> String {
    let f = fit(s, width);
    let n = f.chars().count();
    format!("{f}{}", " ".repeat(width - n))
}

/// Right-align in `width` characters (cut on the left side if too long).
pub fn rpad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        fit(s, width)
    } else {
        format!("{}{s}", " ".repeat(width - n))
    }
}

/// A text progress bar of `width` cells.
pub fn bar(done: u64, total: u64, width: usize) -> (String, String) {
    let filled = if total == 0 {
        0
    } else {
        ((done.min(total) as u128 * width as u128) / total as u128) as usize
    };
    ("━".repeat(filled), "─".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_short() {
        assert_eq!(duration_ns(850), "850ns");
        assert_eq!(duration_ns(12_340), "12.3µs");
        assert_eq!(duration_ns(1_200_000), "1.20ms");
        assert_eq!(duration_ns(250_000_000), "250ms");
        assert_eq!(stamp_us(12_345_678), "12.345");
        assert_eq!(elapsed_us(192_000_000), "3:12");
        assert_eq!(elapsed_us(3_792_000_000), "1:03:12");
        assert_eq!(ms(1400), "1.4s");
        assert_eq!(ms(505_000), "8m25s");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(0x18000), "96 KiB");
        assert_eq!(bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(999), "999");
        assert_eq!(fit("ALLOCATE_BLOCK", 8), "ALLOCAT…");
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(tail("alloc ok", 4), "… ok");
        assert_eq!(tail("ok", 4), "ok");
        assert_eq!(rpad("ab", 4), "  ab");
        assert_eq!(bar(1, 4, 8), ("━━".into(), "──────".into()));
        assert_eq!(bar(5, 0, 3).0, "");
    }
}
