//! `gasbench b4-check`: b4's review check command. b4 pipes one message
//! (a patch for `b4.review-perpatch-check-cmd`, the cover letter for
//! `b4.review-series-check-cmd`) to stdin and reads a JSON array of
//! `{tool, status, summary, url, details}` from stdout. gasbench answers
//! from the review `repro` keeps of that series (found by Message-Id,
//! else by the patch's patch-id); with `--run` it reproduces the series
//! first when it has none.
//!
//! ```sh
//! git config b4.review-perpatch-check-cmd 'gasbench b4-check'
//! git config b4.review-series-check-cmd 'gasbench b4-check --run'
//! ```

use std::process::{Command, ExitCode, Stdio};

use gasbench_review::checks::{self, CheckResult, ReviewIndex};
use gasbench_review::resolve;
use gasbench_series::patch::PatchBody;

use super::exit;
use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// When gasbench has no review of the series, reproduce it now
    /// (`gasbench repro` on the message's thread, fetched if need be).
    #[arg(long)]
    run: bool,
    #[command(flatten)]
    fetch: super::fetch::FetchArgs,
}

/// Where `repro` registers its reviews.
pub fn index(g: &Globals) -> ReviewIndex {
    ReviewIndex::new(&g.cache.root().join("reviews"))
}

fn print(results: &[CheckResult]) {
    // Serialising plain strings cannot fail.
    // What a review says quotes the guest and the mail.
    println!(
        "{}",
        gasbench_termsafe::json(&serde_json::to_string(results).unwrap_or_else(|_| "[]".into()))
    );
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let bad = |what: String| {
        print(&[CheckResult {
            tool: checks::TOOL.into(),
            status: "fail".into(),
            summary: "gasbench could not read the message b4 gave it".into(),
            url: String::new(),
            details: what,
        }]);
        Ok(exit::code(exit::BAD_INPUT))
    };
    let bytes = match resolve::read_bounded_stream(std::io::stdin().lock(), "standard input") {
        Ok(b) => b,
        Err(e) => return bad(e.to_string()),
    };
    let text = match gasbench_series::mail_text(&bytes) {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    let message = match gasbench_series::parse_mail(&text) {
        Ok((_, mut m)) if !m.is_empty() => m.remove(0),
        Ok(_) => return bad("no message on standard input".into()),
        Err(e) => return bad(e.to_string()),
    };
    let msgid = message
        .message_id
        .as_deref()
        .map(|m| {
            m.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|m| !m.is_empty());
    let patch_id = PatchBody::split(&message.body)
        .map(|p| checks::patch_id(&message.body[p.diff]))
        .filter(|_| message.body.contains("diff --git"));
    let index = index(g);
    let mut found = index.find(msgid.as_deref(), patch_id.as_deref());
    if found.is_none()
        && args.run
        && let Some(id) = &msgid
    {
        // The review is made by repro itself, as a child whose output
        // goes to stderr: stdout is b4's, for the JSON alone.
        let mut cmd = Command::new(std::env::current_exe().unwrap_or_else(|_| "gasbench".into()));
        cmd.arg("--cache-dir")
            .arg(g.cache.root())
            .arg("repro")
            .arg(format!("<{id}>"));
        if let Some(l) = &args.fetch.lore {
            cmd.args(["--lore", l]);
        }
        if args.fetch.b4 {
            cmd.arg("--b4");
        }
        let status = cmd.stdin(Stdio::null()).stdout(std::io::stderr()).status();
        eprintln!("gasbench b4-check: repro <{id}>: {status:?}");
        found = index.find(msgid.as_deref(), patch_id.as_deref());
        if found.is_none() {
            print(&[CheckResult {
                tool: checks::TOOL.into(),
                status: "warn".into(),
                summary: "gasbench could not reproduce the series".into(),
                url: String::new(),
                details: format!("`gasbench repro <{id}>` ended with {status:?}; see its output"),
            }]);
            return Ok(exit::code(exit::TOOL_FAILED));
        }
    }
    let Some((review, i)) = found else {
        print(&checks::not_reviewed(msgid.as_deref()));
        // Nothing was judged: no finding, no failure.
        return Ok(exit::code(exit::CLEAN));
    };
    let results = checks::answer(&review, i);
    print(&results);
    let status = if review.findings.iter().any(|f| f.tool_failure) {
        exit::TOOL_FAILED
    } else if results.iter().any(|r| r.status != "pass") {
        exit::FINDINGS
    } else {
        exit::CLEAN
    };
    Ok(exit::code(status))
}
