//! Values that are known only at run time: references to captured results
//! (`${blk.offset}`), built-in variables (`${workdir}`), and strings that
//! interpolate them (`"${workdir}/newdir"`).
//!
//! The scenario compiler parses these to validate them (and to point at the
//! exact character of a mistake); the agent parses them again from the
//! bundle and resolves them against the values it captured. One parser for
//! both sides keeps them from disagreeing.
//!
//! Syntax:
//! - integer fields: a number, or `${name}`, `${name.field}`, optionally
//!   followed by `+ N` or `- N` (`"${blk.offset} + 4096"`);
//! - text fields: any string; `${name}` / `${name.field}` is replaced by the
//!   value, `$$` is a literal `$`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Variables every step can use without capturing them.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "workdir",
        "a fresh directory the agent creates for the bundle",
    ),
    ("pid", "the process id of the thread running the step"),
    (
        "thread",
        "the index of the thread within its parallel group",
    ),
    ("iteration", "the 0-based repetition of the step"),
];

/// Is `name` one of [`BUILTINS`]?
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _)| *n == name)
}

/// `${var}` or `${var.field}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VarRef {
    pub var: String,
    pub field: Option<String>,
}

impl fmt::Display for VarRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "${{{}.{}}}", self.var, field),
            None => write!(f, "${{{}}}", self.var),
        }
    }
}

/// An integer known now or at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntExpr {
    Lit(i128),
    Ref { var: VarRef, add: i128 },
}

impl IntExpr {
    pub fn lit(value: impl Into<i128>) -> Self {
        IntExpr::Lit(value.into())
    }

    /// The variable this refers to, if any.
    pub fn var(&self) -> Option<&VarRef> {
        match self {
            IntExpr::Lit(_) => None,
            IntExpr::Ref { var, .. } => Some(var),
        }
    }
}

impl fmt::Display for IntExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntExpr::Lit(v) => write!(f, "{v}"),
            IntExpr::Ref { var, add } if *add == 0 => write!(f, "{var}"),
            IntExpr::Ref { var, add } if *add < 0 => write!(f, "{var} - {}", add.unsigned_abs()),
            IntExpr::Ref { var, add } => write!(f, "{var} + {add}"),
        }
    }
}

/// A parse error, with the byte offset in the parsed string where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for ExprError {}

fn err(offset: usize, len: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        offset,
        len: len.max(1),
        message: message.into(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parse the inside of `${…}` starting at `start` (the offset of `$`);
/// returns the reference and the offset just past `}`.
fn parse_ref(s: &str, start: usize) -> Result<(VarRef, usize), ExprError> {
    debug_assert!(s[start..].starts_with("${"));
    let body_start = start + 2;
    let Some(close) = s[body_start..].find('}') else {
        return Err(err(start, s.len() - start, "`${` is not closed by `}`"));
    };
    let body = &s[body_start..body_start + close];
    let end = body_start + close + 1;
    let (var, field) = match body.split_once('.') {
        Some((v, f)) => (v, Some(f)),
        None => (body, None),
    };
    let check = |name: &str, at: usize, what: &str| -> Result<(), ExprError> {
        let mut chars = name.chars();
        match chars.next() {
            None => Err(err(at, 1, format!("empty {what} name in `${{…}}`"))),
            Some(c) if !is_ident_start(c) => Err(err(
                at,
                name.len(),
                format!("{what} name `{name}` must start with a letter or `_`"),
            )),
            _ if !chars.all(is_ident_char) => Err(err(
                at,
                name.len(),
                format!("{what} name `{name}` may only hold letters, digits and `_`"),
            )),
            _ => Ok(()),
        }
    };
    check(var, body_start, "variable")?;
    if let Some(field) = field {
        check(field, body_start + var.len() + 1, "field")?;
    }
    Ok((
        VarRef {
            var: var.to_string(),
            field: field.map(str::to_string),
        },
        end,
    ))
}

/// Parse an integer literal the way scenario files write them: decimal,
/// `0x`, `0o`, `0b`, `_` separators, an optional leading `-`.
pub fn parse_int_literal(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) = if let Some(d) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = t.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = t.strip_prefix("0b") {
        (2, d)
    } else {
        (10, t)
    };
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Parse an integer expression (`42`, `${fd}`, `${blk.offset} + 0x1000`).
pub fn parse_int_expr(s: &str) -> Result<IntExpr, ExprError> {
    let lead = s.len() - s.trim_start().len();
    let t = s.trim();
    if !t.starts_with("${") {
        return parse_int_literal(t).map(IntExpr::Lit).ok_or_else(|| {
            err(
                lead,
                t.len(),
                format!("`{t}` is neither a number nor a `${{name}}` reference"),
            )
        });
    }
    let (var, end) = parse_ref(s, lead)?;
    let rest = &s[end..];
    let rest_trim = rest.trim_start();
    if rest_trim.is_empty() {
        return Ok(IntExpr::Ref { var, add: 0 });
    }
    let op_at = end + (rest.len() - rest_trim.len());
    let (sign, num) = match rest_trim.chars().next() {
        Some('+') => (1, &rest_trim[1..]),
        Some('-') => (-1, &rest_trim[1..]),
        _ => {
            return Err(err(
                op_at,
                rest_trim.len(),
                "after `${…}` only `+ N` or `- N` may follow",
            ));
        }
    };
    let num_at = op_at + 1 + (num.len() - num.trim_start().len());
    let n = parse_int_literal(num)
        .filter(|n| *n >= 0)
        .ok_or_else(|| err(num_at, num.trim().len(), "expected a number after the sign"))?;
    Ok(IntExpr::Ref { var, add: sign * n })
}

/// One piece of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Ref(VarRef),
}

/// A string with `${…}` interpolations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    raw: String,
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(raw: &str) -> Result<Template, ExprError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < raw.len() {
            let rest = &raw[i..];
            if rest.starts_with("$$") {
                lit.push('$');
                i += 2;
            } else if rest.starts_with("${") {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                let (var, end) = parse_ref(raw, i)?;
                pieces.push(Piece::Ref(var));
                i = end;
            } else {
                let c = rest.chars().next().expect("non-empty rest");
                lit.push(c);
                i += c.len_utf8();
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template {
            raw: raw.to_string(),
            pieces,
        })
    }

    /// A template without references.
    pub fn literal(text: &str) -> Template {
        Template {
            raw: text.replace('$', "$$"),
            pieces: vec![Piece::Lit(text.to_string())],
        }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    pub fn refs(&self) -> impl Iterator<Item = &VarRef> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Lit(_) => None,
        })
    }

    /// Substitute every reference with `lookup`'s answer.
    pub fn render<E>(
        &self,
        mut lookup: impl FnMut(&VarRef) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Ref(r) => out.push_str(&lookup(r)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Template::parse(&raw).map_err(de::Error::custom)
    }
}

impl Serialize for IntExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntExpr::Lit(v) => {
                if let Ok(v) = i64::try_from(*v) {
                    s.serialize_i64(v)
                } else if let Ok(v) = u64::try_from(*v) {
                    s.serialize_u64(v)
                } else {
                    s.serialize_str(&v.to_string())
                }
            }
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for IntExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntExpr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a `${name}` expression")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntExpr, E> {
                Ok(IntExpr::Lit(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntExpr, E> {
                Ok(IntExpr::Lit(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntExpr, E> {
                parse_int_expr(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(var: &str, field: Option<&str>) -> VarRef {
        VarRef {
            var: var.into(),
            field: field.map(Into::into),
        }
    }

    #[test]
    fn int_literals_in_every_radix() {
        assert_eq!(parse_int_literal("42"), Some(42));
        assert_eq!(parse_int_literal("-42"), Some(-42));
        assert_eq!(parse_int_literal("0x1_000"), Some(4096));
        assert_eq!(parse_int_literal("0o700"), Some(0o700));
        assert_eq!(parse_int_literal("0b101"), Some(5));
        assert_eq!(
            parse_int_literal("0xffff_ffff_ffff_ffff"),
            Some(u64::MAX as i128)
        );
        assert_eq!(parse_int_literal("0x"), None);
        assert_eq!(parse_int_literal("--1"), None);
        assert_eq!(parse_int_literal("0x-1"), None);
        assert_eq!(parse_int_literal("12abc"), None);
        // Beyond i128 is not a number we can hold.
        assert_eq!(parse_int_literal(&"9".repeat(60)), None);
    }

    #[test]
    fn int_expressions() {
        assert_eq!(parse_int_expr("7").unwrap(), IntExpr::Lit(7));
        assert_eq!(
            parse_int_expr("${fd}").unwrap(),
            IntExpr::Ref {
                var: r("fd", None),
                add: 0
            }
        );
        assert_eq!(
            parse_int_expr(" ${blk.offset} + 0x1000 ").unwrap(),
            IntExpr::Ref {
                var: r("blk", Some("offset")),
                add: 4096
            }
        );
        assert_eq!(
            parse_int_expr("${blk.offset}-1").unwrap(),
            IntExpr::Ref {
                var: r("blk", Some("offset")),
                add: -1
            }
        );
        let e = parse_int_expr("${blk.offset} * 2").unwrap_err();
        assert_eq!(e.offset, 14);
        let e = parse_int_expr("${1x}").unwrap_err();
        assert_eq!(e.offset, 2);
        let e = parse_int_expr("${a.}").unwrap_err();
        assert_eq!(e.offset, 4);
        let e = parse_int_expr("${a").unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(parse_int_expr("fd").is_err());
        assert!(parse_int_expr("${a} + -3").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["${a}", "${a.b} + 4", "${a.b} - 4", "-5"] {
            let e = parse_int_expr(s).unwrap();
            assert_eq!(parse_int_expr(&e.to_string()).unwrap(), e);
        }
    }

    #[test]
    fn templates() {
        let t = Template::parse("${workdir}/d.${pid}$$x").unwrap();
        assert_eq!(
            t.pieces(),
            &[
                Piece::Ref(r("workdir", None)),
                Piece::Lit("/d.".into()),
                Piece::Ref(r("pid", None)),
                Piece::Lit("$x".into()),
            ]
        );
        let out: Result<String, ()> = t.render(|v| Ok(format!("<{}>", v.var)));
        assert_eq!(out.unwrap(), "<workdir>/d.<pid>$x");
        assert!(Template::parse("a${b").is_err());
        let lit = Template::literal("cost $5");
        assert_eq!(Template::parse(lit.raw()).unwrap(), lit);
    }

    #[test]
    fn serde_forms() {
        let v: Vec<IntExpr> =
            serde_json::from_str(r#"[1, -2, 18446744073709551615, "${a.b} + 1"]"#).unwrap();
        assert_eq!(v[2], IntExpr::Lit(u64::MAX as i128));
        let back = serde_json::to_string(&v).unwrap();
        assert_eq!(back, r#"[1,-2,18446744073709551615,"${a.b} + 1"]"#);
    }
}
