//! Writing scenario TOML: quoted strings and numbers as the scenario
//! language reads them.

/// A TOML basic string.
pub fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A number: decimal when small, hex (with `_` every four digits) when it
/// reads better that way.
pub fn num(v: u64) -> String {
    if v < 0x10000 {
        return v.to_string();
    }
    let hex = format!("{v:x}");
    let mut groups = Vec::new();
    let mut end = hex.len();
    while end > 0 {
        let start = end.saturating_sub(4);
        groups.push(&hex[start..end]);
        end = start;
    }
    groups.reverse();
    format!("0x{}", groups.join("_"))
}

/// `name = "…"` and the rest of a step's header lines.
pub fn step(name: &str) -> String {
    format!("\n[[step]]\nname = {}\n", string(name))
}

/// A nested step of the last `[[step]]` (a fork's).
pub fn nested_step(name: &str) -> String {
    format!("\n[[step.steps]]\nname = {}\n", string(name))
}

/// Comment lines, each prefixed `# `.
pub fn comment(text: &str) -> String {
    crate::explorer::wrap(text, 70)
        .into_iter()
        .map(|l| format!("# {l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings() {
        assert_eq!(num(4096), "4096");
        assert_eq!(num(0x1_0000), "0x1_0000");
        assert_eq!(num(u64::MAX), "0xffff_ffff_ffff_ffff");
        let t = format!("x = {}", string("a\"b\\c"));
        let v: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(v["x"].as_str(), Some("a\"b\\c"));
    }
}
