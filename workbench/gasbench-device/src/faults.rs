//! Fault plans: rules that change what the device does on the nth
//! occurrence of something, so a driver's error paths can be driven.
//!
//! A plan is data (serde), written in TOML or JSON:
//!
//! ```toml
//! [[fault]]
//! on = "gen_handle"          # what to watch
//! nth = 1                    # from the 1st occurrence (default 1)
//! times = 1                  # for this many occurrences (default 1; 0 = all)
//! action = "invalid_handle"
//!
//! [[fault]]
//! on = "allocate_block"
//! nth = 2
//! action = "fail"
//! errno = "ENOMEM"           # a name or a number
//! ```
//!
//! Triggers: the five commands (`allocate_block`, `deallocate_block`,
//! `gen_handle`, `destroy_handle`, `tell_ping_info_addr`), `ping`,
//! `ping_with_data`, and `access` (any BAR0 register access).
//!
//! Actions:
//! - `fail` (`errno`): the command is not executed; STATUS = errno
//!   (ALLOCATE_BLOCK also reports offset ~0, as on a real ENOMEM).
//! - `invalid_handle`: GEN_HANDLE returns `0xffffffff` and creates nothing.
//! - `corrupt_echo` (`xor`, default 1): TELL_PING_INFO_ADDR binds the page,
//!   then PING_INFO_ADDR reads back XORed with `xor`.
//! - `delay` (`ms`): the reply to the access is held back (QEMU gives up
//!   after its `x-msg-timeout`, 5000 ms by default).
//! - `drop_connection`: the server closes the connection instead of
//!   handling the access.
//!
//! Occurrences are counted per trigger from when the plan was installed.
//! When several rules match one occurrence, the first in the plan wins.

use serde::{Deserialize, Serialize};

use crate::errno;

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    AllocateBlock,
    DeallocateBlock,
    GenHandle,
    DestroyHandle,
    TellPingInfoAddr,
    Ping,
    PingWithData,
    Access,
}

impl Trigger {
    const COUNT: usize = 8;

    fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Trigger::AllocateBlock => "allocate_block",
            Trigger::DeallocateBlock => "deallocate_block",
            Trigger::GenHandle => "gen_handle",
            Trigger::DestroyHandle => "destroy_handle",
            Trigger::TellPingInfoAddr => "tell_ping_info_addr",
            Trigger::Ping => "ping",
            Trigger::PingWithData => "ping_with_data",
            Trigger::Access => "access",
        }
    }

    fn is_command(self) -> bool {
        matches!(
            self,
            Trigger::AllocateBlock
                | Trigger::DeallocateBlock
                | Trigger::GenHandle
                | Trigger::DestroyHandle
                | Trigger::TellPingInfoAddr
        )
    }
}

/// A positive errno, written as a number or a name (`"ENOMEM"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub u32);

impl Serialize for Errno {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match errno::name(self.0) {
            Some(n) => s.serialize_str(n),
            None => s.serialize_u32(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) if (1..=i64::from(errno::MAX_ERRNO)).contains(&n) => Ok(Errno(n as u32)),
            Raw::Num(n) => Err(serde::de::Error::custom(format!(
                "errno {n} is out of range (1..={})",
                errno::MAX_ERRNO
            ))),
            Raw::Name(s) => errno::from_name(&s).map(Errno).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown errno name {s:?} (try ENOMEM, EINVAL, EIO, … or a number)"
                ))
            }),
        }
    }
}

/// What a rule does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    Fail { errno: Errno },
    InvalidHandle,
    CorruptEcho { xor: u64 },
    Delay { ms: u64 },
    DropConnection,
}

impl FaultAction {
    pub fn describe(&self) -> String {
        match self {
            FaultAction::Fail { errno: e } => format!("fail {}", errno::describe(e.0)),
            FaultAction::InvalidHandle => "invalid handle 0xffffffff".into(),
            FaultAction::CorruptEcho { xor } => format!("corrupt ping info echo (xor {xor:#x})"),
            FaultAction::Delay { ms } => format!("delay {ms} ms"),
            FaultAction::DropConnection => "drop the connection".into(),
        }
    }
}

/// The longest delay a plan may ask for.
pub const MAX_DELAY_MS: u64 = 60_000;

/// One rule. Serialized flat: `{on, nth, times, action, errno|xor|ms}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRule", into = "RawRule")]
pub struct FaultRule {
    pub on: Trigger,
    /// First occurrence (from 1) the rule fires on.
    pub nth: u64,
    /// How many occurrences in a row it fires for; 0 = every one from `nth`.
    pub times: u64,
    pub action: FaultAction,
}

impl FaultRule {
    pub fn new(on: Trigger, nth: u64, action: FaultAction) -> Result<FaultRule, String> {
        FaultRule::try_from(RawRule::from(FaultRule {
            on,
            nth,
            times: 1,
            action,
        }))
    }

    fn matches(&self, occurrence: u64) -> bool {
        occurrence >= self.nth && (self.times == 0 || occurrence - self.nth < self.times)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ActionName {
    Fail,
    InvalidHandle,
    CorruptEcho,
    Delay,
    DropConnection,
}

/// The on-disk shape, validated into a [`FaultRule`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    on: Trigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nth: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<u64>,
    action: ActionName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errno: Option<Errno>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xor: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
}

impl From<FaultRule> for RawRule {
    fn from(r: FaultRule) -> RawRule {
        let mut raw = RawRule {
            on: r.on,
            nth: Some(r.nth),
            times: Some(r.times),
            action: ActionName::DropConnection,
            errno: None,
            xor: None,
            ms: None,
        };
        match r.action {
            FaultAction::Fail { errno } => {
                raw.action = ActionName::Fail;
                raw.errno = Some(errno);
            }
            FaultAction::InvalidHandle => raw.action = ActionName::InvalidHandle,
            FaultAction::CorruptEcho { xor } => {
                raw.action = ActionName::CorruptEcho;
                raw.xor = Some(xor);
            }
            FaultAction::Delay { ms } => {
                raw.action = ActionName::Delay;
                raw.ms = Some(ms);
            }
            FaultAction::DropConnection => raw.action = ActionName::DropConnection,
        }
        raw
    }
}

impl TryFrom<RawRule> for FaultRule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<FaultRule, String> {
        let on = raw.on;
        let nth = raw.nth.unwrap_or(1);
        if nth == 0 {
            return Err("`nth` counts from 1".into());
        }
        let times = raw.times.unwrap_or(1);
        let unused = |field: &str, present: bool| -> Result<(), String> {
            if present {
                Err(format!("`{field}` has no meaning for this action"))
            } else {
                Ok(())
            }
        };
        let action = match raw.action {
            ActionName::Fail => {
                if !on.is_command() {
                    return Err(format!(
                        "`fail` applies to commands, not to `{}`",
                        on.name()
                    ));
                }
                unused("xor", raw.xor.is_some())?;
                unused("ms", raw.ms.is_some())?;
                let errno = raw
                    .errno
                    .ok_or("`fail` needs `errno` (a name such as \"ENOMEM\" or a number)")?;
                FaultAction::Fail { errno }
            }
            ActionName::InvalidHandle => {
                if on != Trigger::GenHandle {
                    return Err("`invalid_handle` applies to `gen_handle` only".into());
                }
                unused("errno", raw.errno.is_some())?;
                unused("xor", raw.xor.is_some())?;
                unused("ms", raw.ms.is_some())?;
                FaultAction::InvalidHandle
            }
            ActionName::CorruptEcho => {
                if on != Trigger::TellPingInfoAddr {
                    return Err("`corrupt_echo` applies to `tell_ping_info_addr` only".into());
                }
                unused("errno", raw.errno.is_some())?;
                unused("ms", raw.ms.is_some())?;
                let xor = raw.xor.unwrap_or(1);
                if xor == 0 {
                    return Err("`xor = 0` would not corrupt anything".into());
                }
                FaultAction::CorruptEcho { xor }
            }
            ActionName::Delay => {
                unused("errno", raw.errno.is_some())?;
                unused("xor", raw.xor.is_some())?;
                let ms = raw.ms.ok_or("`delay` needs `ms`")?;
                if ms > MAX_DELAY_MS {
                    return Err(format!("`ms` is at most {MAX_DELAY_MS}"));
                }
                FaultAction::Delay { ms }
            }
            ActionName::DropConnection => {
                unused("errno", raw.errno.is_some())?;
                unused("xor", raw.xor.is_some())?;
                unused("ms", raw.ms.is_some())?;
                FaultAction::DropConnection
            }
        };
        Ok(FaultRule {
            on,
            nth,
            times,
            action,
        })
    }
}

/// The largest plan text accepted, like a scenario file: real plans are a
/// few lines, and a plan file is read whole.
pub const MAX_PLAN_BYTES: u64 = 1 << 20;

/// The most rules a plan may have: every command is checked against each.
pub const MAX_RULES: usize = 1_000;

/// A list of rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultRule>,
}

/// A plan file that did not parse, with where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FaultPlanError {
    pub message: String,
    /// Byte range in the text, when the parser knows it.
    pub span: Option<std::ops::Range<usize>>,
}

impl FaultPlan {
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    pub fn from_toml(text: &str) -> Result<FaultPlan, FaultPlanError> {
        toml::from_str(text).map_err(|e| FaultPlanError {
            message: e.message().to_string(),
            span: e.span(),
        })
    }

    pub fn from_json(text: &str) -> Result<FaultPlan, FaultPlanError> {
        serde_json::from_str(text).map_err(|e| {
            let span = line_col_offset(text, e.line(), e.column()).map(|o| o..o + 1);
            FaultPlanError {
                message: e.to_string(),
                span,
            }
        })
    }

    /// JSON if the text starts with `{`, else TOML. At most
    /// [`MAX_PLAN_BYTES`] of text and [`MAX_RULES`] rules.
    pub fn parse(text: &str) -> Result<FaultPlan, FaultPlanError> {
        if text.len() as u64 > MAX_PLAN_BYTES {
            return Err(FaultPlanError {
                message: format!(
                    "the plan is {} bytes; fault plans may be at most {MAX_PLAN_BYTES} bytes",
                    text.len()
                ),
                span: None,
            });
        }
        let plan = if text.trim_start().starts_with('{') {
            FaultPlan::from_json(text)
        } else {
            FaultPlan::from_toml(text)
        }?;
        plan.check_size()?;
        Ok(plan)
    }

    /// At most [`MAX_RULES`] rules.
    pub fn check_size(&self) -> Result<(), FaultPlanError> {
        if self.faults.len() > MAX_RULES {
            return Err(FaultPlanError {
                message: format!(
                    "the plan has {} rules; at most {MAX_RULES} are accepted",
                    self.faults.len()
                ),
                span: None,
            });
        }
        Ok(())
    }
}

fn line_col_offset(text: &str, line: usize, col: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    Some((start + col.saturating_sub(1)).min(text.len().saturating_sub(1)))
}

/// A rule that fired, for the model to act on and report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    pub rule: usize,
    pub trigger: Trigger,
    pub occurrence: u64,
    pub action: FaultAction,
}

/// A plan plus the occurrence counters it is evaluated against.
#[derive(Clone, Debug, Default)]
pub struct FaultState {
    plan: FaultPlan,
    seen: [u64; Trigger::COUNT],
}

impl FaultState {
    pub fn new(plan: FaultPlan) -> Self {
        FaultState {
            plan,
            seen: [0; Trigger::COUNT],
        }
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Count one occurrence of `t`; the first rule that matches it.
    pub fn observe(&mut self, t: Trigger) -> Option<Fired> {
        if self.plan.faults.is_empty() {
            return None;
        }
        let seen = &mut self.seen[t.index()];
        *seen = seen.saturating_add(1);
        let occurrence = *seen;
        self.plan
            .faults
            .iter()
            .enumerate()
            .find(|(_, r)| r.on == t && r.matches(occurrence))
            .map(|(rule, r)| Fired {
                rule,
                trigger: t,
                occurrence,
                action: r.action,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_plan_parses_with_defaults() {
        let plan = FaultPlan::from_toml(
            r#"
[[fault]]
on = "gen_handle"
action = "invalid_handle"

[[fault]]
on = "allocate_block"
nth = 2
times = 0
action = "fail"
errno = "ENOMEM"

[[fault]]
on = "tell_ping_info_addr"
action = "corrupt_echo"

[[fault]]
on = "ping"
action = "delay"
ms = 250

[[fault]]
on = "access"
nth = 40
action = "drop_connection"
"#,
        )
        .unwrap();
        assert_eq!(plan.faults.len(), 5);
        assert_eq!(plan.faults[0].nth, 1);
        assert_eq!(plan.faults[0].times, 1);
        assert_eq!(
            plan.faults[1].action,
            FaultAction::Fail { errno: Errno(12) }
        );
        assert_eq!(plan.faults[1].times, 0);
        assert_eq!(plan.faults[2].action, FaultAction::CorruptEcho { xor: 1 });
        assert_eq!(plan.faults[3].action, FaultAction::Delay { ms: 250 });
        assert_eq!(plan.faults[4].action, FaultAction::DropConnection);
        // And it survives a round trip through JSON.
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains(r#""errno":"ENOMEM""#), "{json}");
        assert_eq!(FaultPlan::parse(&json).unwrap(), plan);
    }

    #[test]
    fn bad_plans_say_what_and_where() {
        let cases = [
            (
                "[[fault]]\non = \"ping\"\naction = \"fail\"\nerrno = 5\n",
                "applies to commands",
            ),
            (
                "[[fault]]\non = \"allocate_block\"\naction = \"fail\"\n",
                "needs `errno`",
            ),
            (
                "[[fault]]\non = \"allocate_block\"\naction = \"fail\"\nerrno = \"ENOPE\"\n",
                "unknown errno name",
            ),
            (
                "[[fault]]\non = \"allocate_block\"\naction = \"fail\"\nerrno = 0\n",
                "out of range",
            ),
            (
                "[[fault]]\non = \"gen_handle\"\nnth = 0\naction = \"invalid_handle\"\n",
                "counts from 1",
            ),
            (
                "[[fault]]\non = \"ping\"\naction = \"invalid_handle\"\n",
                "gen_handle",
            ),
            (
                "[[fault]]\non = \"ping\"\naction = \"delay\"\n",
                "needs `ms`",
            ),
            (
                "[[fault]]\non = \"ping\"\naction = \"delay\"\nms = 999999\n",
                "at most",
            ),
            (
                "[[fault]]\non = \"tell_ping_info_addr\"\naction = \"corrupt_echo\"\nxor = 0\n",
                "xor = 0",
            ),
            (
                "[[fault]]\non = \"gen_handle\"\naction = \"invalid_handle\"\nms = 3\n",
                "no meaning",
            ),
            (
                "[[fault]]\non = \"teleport\"\naction = \"drop_connection\"\n",
                "unknown variant",
            ),
            (
                "[[fault]]\non = \"ping\"\naction = \"drop_connection\"\ntypo = 1\n",
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let err = FaultPlan::from_toml(text).unwrap_err();
            assert!(err.message.contains(want), "{text:?}: {}", err.message);
            let span = err.span.clone().expect("toml errors carry a span");
            assert!(span.end <= text.len());
        }
        let err = FaultPlan::from_json("{\"fault\": [ {\"on\": 3} ]}").unwrap_err();
        assert!(err.span.is_some());
    }

    #[test]
    fn plans_are_bounded_in_size_and_rules() {
        let rule =
            "[[fault]]\non = \"allocate_block\"\nnth = 1\naction = \"fail\"\nerrno = \"EIO\"\n";
        let ok = rule.repeat(MAX_RULES);
        assert_eq!(FaultPlan::parse(&ok).unwrap().faults.len(), MAX_RULES);
        let e = FaultPlan::parse(&rule.repeat(MAX_RULES + 1)).unwrap_err();
        assert!(e.message.contains("at most 1000 are accepted"), "{e}");
        let e = FaultPlan::parse(&" ".repeat(MAX_PLAN_BYTES as usize + 1)).unwrap_err();
        assert!(e.message.contains("at most 1048576 bytes"), "{e}");
    }

    #[test]
    fn rules_fire_on_the_nth_occurrence_for_times() {
        let rule = |nth, times| FaultRule {
            on: Trigger::AllocateBlock,
            nth,
            times,
            action: FaultAction::Fail { errno: Errno(12) },
        };
        let mut s = FaultState::new(FaultPlan {
            faults: vec![
                rule(2, 2),
                FaultRule {
                    on: Trigger::Ping,
                    nth: 1,
                    times: 0,
                    action: FaultAction::Delay { ms: 1 },
                },
            ],
        });
        let fired: Vec<bool> = (0..5)
            .map(|_| s.observe(Trigger::AllocateBlock).is_some())
            .collect();
        assert_eq!(fired, vec![false, true, true, false, false]);
        assert!(s.observe(Trigger::GenHandle).is_none());
        for n in 1..=3 {
            let f = s.observe(Trigger::Ping).unwrap();
            assert_eq!((f.rule, f.occurrence), (1, n));
        }
        assert!(FaultState::default().observe(Trigger::Ping).is_none());
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let plan = FaultPlan::parse(
            r#"{"fault":[
                {"on":"gen_handle","action":"invalid_handle"},
                {"on":"gen_handle","action":"fail","errno":5,"times":0}]}"#,
        )
        .unwrap();
        let mut s = FaultState::new(plan);
        assert_eq!(
            s.observe(Trigger::GenHandle).unwrap().action,
            FaultAction::InvalidHandle
        );
        assert_eq!(
            s.observe(Trigger::GenHandle).unwrap().action,
            FaultAction::Fail { errno: Errno(5) }
        );
        assert!(FaultRule::new(Trigger::Ping, 1, FaultAction::InvalidHandle).is_err());
    }
}
