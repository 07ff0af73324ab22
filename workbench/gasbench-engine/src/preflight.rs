//! What the engine checks in a scenario before any VM starts: the parts
//! the scenario language carries without interpreting (device fault rules
//! and device configuration) against the device model that will read
//! them. Problems come back as the scenario crate's diagnostics, pointing
//! at the rule in the file.

use gasbench_device::{DeviceConfig, FaultPlan, FaultRule};
use gasbench_scenario::{Compiled, FaultPlan as ScenarioFaults, HostAction, Problem, Problems};

/// Turn a scenario's fault rules into the device's plan; each rule that
/// the device refuses is a problem at that rule.
pub fn fault_plan(rules: &ScenarioFaults) -> Result<FaultPlan, Vec<Problem>> {
    let mut faults = Vec::new();
    let mut problems = Vec::new();
    for r in &rules.rules {
        match serde_json::from_value::<FaultRule>(r.value.clone()) {
            Ok(rule) => faults.push(rule),
            Err(e) => problems.push(
                Problem::new(r.span, format!("the device refuses this fault rule: {e}"), "this rule")
                    .with_help("rules are {on, nth, times, action, errno|xor|ms}; see workbench/gasbench-device/src/faults.rs"),
            ),
        }
    }
    if problems.is_empty() {
        let plan = FaultPlan { faults };
        if let Err(e) = plan.check_size() {
            return Err(vec![Problem::new(rules.span, e.message, "this plan")]);
        }
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// The scenario's device configuration, or the default.
pub fn device_config(c: &Compiled) -> Result<DeviceConfig, Vec<Problem>> {
    let Some(cfg) = &c.plan.device_config else {
        return Ok(DeviceConfig::default());
    };
    let parsed: DeviceConfig = serde_json::from_value(cfg.value.clone()).map_err(|e| {
        vec![Problem::new(
            cfg.span,
            format!("the device refuses this configuration: {e}"),
            "this table",
        )]
    })?;
    parsed.validate().map_err(|e| {
        vec![Problem::new(
            cfg.span,
            format!("the device refuses this configuration: {e}"),
            "this table",
        )]
    })?;
    Ok(parsed)
}

/// Every device-side problem in a compiled scenario.
pub fn check(c: &Compiled) -> Result<(), Box<Problems>> {
    let mut problems = Vec::new();
    if let Some(f) = &c.plan.initial_faults {
        problems.extend(fault_plan(f).err().unwrap_or_default());
    }
    for sp in &c.plan.syncs {
        for a in &sp.actions {
            if let HostAction::SetFaults(f) = a {
                problems.extend(fault_plan(f).err().unwrap_or_default());
            }
        }
    }
    problems.extend(device_config(c).err().unwrap_or_default());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Box::new(Problems::new(
            &c.origin,
            c.source.clone(),
            problems,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"[scenario]
name = "f"
requires = ["goldfish"]
[device]
faults = [ { on = "allocate_block", nth = 2, action = "fail", errno = "ENOMEM" } ]
[[step]]
name = "open"
open = { path = "/dev/goldfish_address_space", flags = ["O_RDWR"] }
"#;

    #[test]
    fn rules_the_device_accepts_become_its_plan() {
        let c = gasbench_scenario::compile("good.toml", GOOD).unwrap();
        check(&c).unwrap();
        let plan = fault_plan(c.plan.initial_faults.as_ref().unwrap()).unwrap();
        assert_eq!(plan.faults.len(), 1);
        assert_eq!(plan.faults[0].nth, 2);
    }

    #[test]
    fn a_rule_the_device_refuses_points_at_the_rule() {
        let text = GOOD.replace("\"fail\"", "\"explode\"");
        let c = gasbench_scenario::compile("bad.toml", &text).unwrap();
        let problems = check(&c).unwrap_err();
        let pos = problems.positions();
        assert_eq!(pos.len(), 1, "{pos:?}");
        // Line 5 of the text, where the rule is.
        assert_eq!(pos[0].0, 5, "{pos:?}");
        assert!(pos[0].2.contains("refuses this fault rule"), "{pos:?}");
    }
}
