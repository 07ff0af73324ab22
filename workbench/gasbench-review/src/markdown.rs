//! `review.md`: the review as Markdown a reviewer can paste into a reply.

use std::fmt::Write;

use gasbench_events::kernel::ApplyStatus;
use gasbench_series::manifest::FixupKind;

use crate::report::{MessageRef, Review};

/// A table cell: one line, no column breaks, control characters shown.
fn cell(s: &str) -> String {
    gasbench_termsafe::line_capped(&s.replace('|', "\\|").replace('\n', " "), 500).into_owned()
}

/// One line of what the guest or the mail said (an actual value, a
/// console line): shown, not obeyed, and capped.
fn said(s: &str) -> String {
    gasbench_termsafe::line_capped(s, 2_000).into_owned()
}

fn id(m: &MessageRef) -> String {
    let mut s = format!("<{}>", m.message_id);
    if m.id_source != "header" {
        s.push_str(&format!(" ({}", m.id_source));
        if let Some(g) = &m.id_guess {
            s.push_str(&format!("; git send-email would give <{g}>"));
        }
        s.push(')');
    }
    s
}

pub fn render(r: &Review) -> String {
    let mut o = String::new();
    let s = &r.series;
    let tags = s.tags.join(" ");
    let _ = writeln!(o, "# Review: [{tags} v{}] {}", s.version, s.title);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "**Verdict: {}** — {} (exit {})",
        if r.passed() { "clean" } else { "findings" },
        r.verdict_line(),
        r.exit_code
    );

    // ---- The series.
    let _ = writeln!(o, "\n## Series\n");
    let _ = writeln!(o, "- Title: {}", s.title);
    let _ = writeln!(
        o,
        "- Version: v{} ({tags}), {} patch(es){}",
        s.version,
        s.total,
        if s.cover.is_some() {
            " and a cover letter"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "- Author: {} (address from {})",
        s.author, s.author_email_source
    );
    if let Some(d) = &s.date {
        let _ = writeln!(o, "- Date: {d}");
    }
    let _ = writeln!(o, "- Lists: {}", s.lists.join(", "));
    let _ = writeln!(o, "- Source: {}", s.source);
    let _ = writeln!(o, "- Input: `{}` — {}", s.input, s.resolved);
    let _ = writeln!(o, "\n| # | subject | Message-Id |\n|---|---|---|");
    if let Some(c) = &s.cover {
        let _ = writeln!(
            o,
            "| 0/{} | {} | {} |",
            s.total,
            cell(&c.subject),
            cell(&id(c))
        );
    }
    for p in &s.patches {
        let subject = if p.origin == "posted" {
            cell(&p.subject)
        } else {
            format!("{} ({})", cell(&p.subject), p.origin)
        };
        let _ = writeln!(
            o,
            "| {}/{} | {subject} | {} |",
            p.index,
            s.total,
            cell(&id(p))
        );
    }

    // ---- The base.
    let b = &r.base;
    let _ = writeln!(o, "\n## Base\n");
    let _ = writeln!(
        o,
        "{} {} ({}; upstream {}), applied {}.",
        b.package, b.release, b.package_version, b.upstream_tag, b.applied
    );
    if let Some(choice) = &b.choice {
        let _ = writeln!(o, "{choice}.");
    }
    if let (Some(base), Some(head)) = (&b.base_commit, &b.head) {
        let _ = writeln!(
            o,
            "Base commit `{}`, built head `{}`{}.",
            short(base),
            short(head),
            b.kernel_release
                .as_deref()
                .map(|k| format!(", kernel {k}"))
                .unwrap_or_default()
        );
    }

    // ---- Patches.
    let _ = writeln!(o, "\n## Patches\n");
    let checked = r.build.per_patch;
    let _ = writeln!(
        o,
        "| # | patch | applies | builds after it{} | files |\n|---|---|---|---|---|",
        r.build
            .cross_arch
            .as_deref()
            .map(|a| format!(" (x86_64; {a})"))
            .unwrap_or_default()
    );
    for p in &r.patches {
        let applies = match p.status {
            ApplyStatus::Applied => "applied".to_string(),
            ApplyStatus::AppliedWithFuzz => "with fuzz".to_string(),
            ApplyStatus::Failed => "**failed**".to_string(),
        };
        let builds = match &p.build {
            Some(x) => {
                let mut t = if x.builds {
                    "yes".to_string()
                } else {
                    format!(
                        "**no**: `{}`",
                        cell(x.first_error.as_deref().unwrap_or("failed"))
                    )
                };
                if let Some(a) = &x.cross_arch {
                    match &x.cross_error {
                        Some(e) => t.push_str(&format!("; {a}: **no**: `{}`", cell(e))),
                        None => t.push_str(&format!("; {a}: yes")),
                    }
                }
                t
            }
            None if p.status == ApplyStatus::Failed => "—".into(),
            None if checked => "not checked".into(),
            None => "not checked (--no-per-patch)".into(),
        };
        let _ = writeln!(
            o,
            "| {} | {} \"{}\" | {applies} | {builds} | {} |",
            p.position,
            p.label(s.total),
            cell(&p.subject),
            cell(&p.files.join(", "))
        );
    }
    for p in r.patches.iter().filter(|p| !p.hunks.is_empty()) {
        let _ = writeln!(o, "\n{} {}:", p.label(s.total), p.subject);
        for h in &p.hunks {
            let _ = writeln!(o, "- {h}");
        }
    }
    let _ = writeln!(
        o,
        "\nThe tree with everything applied: {} — {}",
        match r.build.tree_builds {
            Some(true) => "builds",
            Some(false) => "**does not build**",
            None => "not built",
        },
        r.build.detail
    );

    // ---- Port.
    let _ = writeln!(o, "\n## Fixes the port needed\n");
    if r.port_fixes.is_empty() {
        let _ = writeln!(
            o,
            "{}",
            if r.base.applied.starts_with("as posted") {
                "None: the series was applied as posted, without a port."
            } else {
                "None."
            }
        );
    }
    for f in &r.port_fixes {
        let kind = match f.kind {
            FixupKind::PostingDefect => "posting-defect",
            FixupKind::BaseDrift => "base-drift",
        };
        let on = f
            .fixes
            .iter()
            .map(|i| format!("{i}/{}", s.total))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "- **{kind}** {} for {on} (`{}`): {}",
            f.role.name(),
            f.file,
            f.why
        );
    }

    // ---- Scenarios.
    let _ = writeln!(o, "\n## Scenarios\n");
    if let Some(n) = &r.scenarios_note {
        let _ = writeln!(o, "{n}\n");
    }
    if !r.scenarios.is_empty() {
        let _ = writeln!(
            o,
            "| scenario | file | verdict | expectations held |\n|---|---|---|---|"
        );
        for sc in &r.scenarios {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {}/{} |",
                sc.name,
                sc.file.as_deref().unwrap_or("?"),
                match sc.passed {
                    Some(true) => "pass",
                    Some(false) => "**FAIL**",
                    None => "did not finish",
                },
                sc.held,
                sc.total
            );
        }
        for sc in r.scenarios.iter().filter(|s| !s.failures.is_empty()) {
            let _ = writeln!(o, "\nFailing expectations of {}:\n", sc.name);
            if let Some(a) = &sc.about {
                let _ = writeln!(o, "The scenario: {a}\n");
            }
            for x in &sc.failures {
                let _ = writeln!(
                    o,
                    "- `{}` {}\n  - expected: {}\n  - actual: {}",
                    x.location.as_deref().unwrap_or("?"),
                    said(&x.what),
                    said(&x.expected),
                    said(&x.actual)
                );
                if let Some(why) = &x.why {
                    let _ = writeln!(o, "  - why: {why}");
                }
            }
        }
    }

    // ---- The explorer.
    if let Some(x) = &r.explorer {
        let _ = writeln!(o, "\n## Explorer\n");
        o.push_str(&gasbench_termsafe::text(x));
    }

    // ---- Series-level ABI checks.
    if let Some(x) = &r.series_checks {
        let _ = writeln!(o, "\n## ABI checks\n");
        o.push_str(&gasbench_termsafe::text(x));
    }

    // ---- Kernel log, kselftest.
    let _ = writeln!(o, "\n## Kernel log\n");
    if r.kernel_log.is_empty() {
        let _ = writeln!(o, "No warnings, oopses or BUGs on the console.");
    } else {
        let _ = writeln!(o, "```");
        for l in r.kernel_log.iter().take(40) {
            let _ = writeln!(o, "{}", said(&l.line));
        }
        if r.kernel_log.len() > 40 {
            let _ = writeln!(
                o,
                "… {} more line(s) in console.log",
                r.kernel_log.len() - 40
            );
        }
        let _ = writeln!(o, "```");
    }
    let _ = writeln!(o, "\n## kselftest\n");
    if r.kselftest.is_empty() {
        let _ = writeln!(o, "No kselftest ran.");
    }
    for k in &r.kselftest {
        let _ = writeln!(
            o,
            "- {}: {} ok, {} not ok, {} skipped{}",
            k.binary,
            k.ok,
            k.not_ok,
            k.skipped,
            if k.failed_tests.is_empty() {
                String::new()
            } else {
                format!(" (not ok: {})", k.failed_tests.join(", "))
            }
        );
    }
    if !r.errors.is_empty() {
        let _ = writeln!(o, "\n## Errors\n");
        for e in &r.errors {
            let _ = writeln!(o, "- {}", said(&e.replace('\n', " ")));
        }
    }

    // ---- Detectors and fault injection.
    let d = &r.detectors;
    if !d.profiles.is_empty() {
        let _ = writeln!(o, "\n## Kernel detectors and fault injection\n");
        let _ = writeln!(o, "{}.", d.line);
        for p in &d.profiles {
            let _ = writeln!(
                o,
                "\n- **{}** profile: {} scenario(s), {} failed; arms {}{}{}",
                p.profile,
                p.scenarios_run,
                p.scenarios_failed,
                if p.detectors.is_empty() {
                    "no detectors".to_string()
                } else {
                    p.detectors.join(", ")
                },
                if p.proven.is_empty() {
                    String::new()
                } else {
                    format!("; proven: {}", p.proven.join(", "))
                },
                if p.not_proven.is_empty() {
                    String::new()
                } else {
                    format!("; **not proven here**: {}", p.not_proven.join(", "))
                }
            );
        }
        let defects: Vec<_> = d.reports.iter().filter(|x| !x.expected).collect();
        for x in &defects {
            let _ = writeln!(
                o,
                "\n### {} report #{} ({} profile){}{}\n",
                x.detector,
                x.id,
                x.profile,
                if x.count > 1 {
                    format!(", seen {} times", x.count)
                } else {
                    String::new()
                },
                if x.in_series == Some(false) {
                    " — in the base kernel, not in code the series changes"
                } else {
                    ""
                }
            );
            let _ = writeln!(o, "`{}`\n", x.title.replace('`', "'"));
            let mut at = x.scenario.clone().unwrap_or_else(|| "(no scenario)".into());
            if let Some(s) = x.step {
                at.push_str(&format!(" step {s}"));
            }
            if let Some(c) = x.call {
                at.push_str(&format!(" call #{c}"));
            }
            let _ = writeln!(
                o,
                "- where: {at}{} — {}",
                x.location
                    .as_deref()
                    .map(|l| format!(" (`{l}`)"))
                    .unwrap_or_default(),
                x.how
            );
            if let Some(u) = &x.undecoded {
                let _ = writeln!(o, "- stack not decoded: {u}");
            }
            if !x.stack.is_empty() {
                let _ = writeln!(o, "\n```");
                for l in &x.stack {
                    let _ = writeln!(o, "{l}");
                }
                let _ = writeln!(o, "```");
            }
        }
        if !d.injection.is_empty() {
            let _ = writeln!(
                o,
                "\n| call | fault | attempts | injected | survived | errnos | no-fault attempt | where |\n|---|---|---|---|---|---|---|---|"
            );
            for x in &d.injection {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    cell(&x.call),
                    x.fault,
                    x.attempts,
                    x.injected,
                    x.survived,
                    cell(&x.errnos),
                    if x.reached_no_fault {
                        "reached"
                    } else {
                        "**not reached**"
                    },
                    cell(x.location.as_deref().unwrap_or(&x.scenario))
                );
            }
        }
    }

    // ---- Findings.
    let _ = writeln!(o, "\n## Findings\n");
    if r.findings.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for (i, f) in r.findings.iter().enumerate() {
        let _ = write!(o, "{}. [{}] {}", i + 1, f.severity.name(), f.title);
        if let Some(l) = &f.location {
            let _ = write!(o, " (`{l}`)");
        }
        let _ = writeln!(o);
        if let Some(d) = &f.detail {
            let _ = writeln!(o, "   {}", d.replace('\n', " "));
        }
    }
    if let Some(d) = &r.run.run_dir {
        let _ = writeln!(
            o,
            "\n---\nRun directory: `{d}` (events.jsonl, console.log, results.json, review.json){}",
            r.run
                .accel
                .as_deref()
                .map(|a| format!("; {} ", a.to_uppercase()) + "guest")
                .unwrap_or_default()
        );
    }
    // What is left of the mail's and the guest's words (titles, names,
    // subjects in running text) is made inert here, on the whole page:
    // review.md is printed to the terminal as it is written.
    gasbench_termsafe::text(&o).into_owned()
}

fn short(c: &str) -> &str {
    &c[..12.min(c.len())]
}
