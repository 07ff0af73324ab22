//! `gasbench kernel`: extract posted series from mail; build the patched
//! kernel (gasbench-kbuild does the work).

use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_kbuild::KbuildError;
use miette::{LabeledSpan, MietteDiagnostic, NamedSource, Report};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Extract every patch series from a digest or mbox into series
    /// directories (git-am-able patches, cover letter, series.toml).
    Extract(ExtractArgs),
}

#[derive(clap::Args)]
struct ExtractArgs {
    /// A public-inbox thread digest, an mbox or a single message.
    source: PathBuf,
    /// Where the series directories go.
    #[arg(long, default_value = "kernel/series")]
    out: PathBuf,
    /// How the manifest names the source [default: the path as given].
    #[arg(long)]
    label: Option<String>,
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let _ = g;
    match args.command {
        Command::Extract(a) => extract(a),
    }
}

fn extract(a: ExtractArgs) -> miette::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.source)
        .map_err(|e| diagnostic(KbuildError::io("read", &a.source, e)))?;
    let label = a.label.unwrap_or_else(|| a.source.display().to_string());
    let done = gasbench_kbuild::extract::extract(&text, &label, &a.out).map_err(diagnostic)?;
    for e in &done {
        let m = &e.manifest;
        println!(
            "{}: {} v{} by {} <{}>, {} patch(es){}",
            e.dir.display(),
            m.title,
            m.version,
            m.author.name,
            m.author.email,
            m.patches.len(),
            if m.cover.is_some() {
                " + cover letter"
            } else {
                ""
            }
        );
        for p in &m.patches {
            println!("  {:>2}/{} {:?} {}", p.index, m.total, p.origin, p.file);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A library error as a miette report, with the source span when the
/// error points into a file.
pub fn diagnostic(e: KbuildError) -> Report {
    let help = e.help();
    let mut d = MietteDiagnostic::new(e.to_string()).with_help(help);
    if let KbuildError::Series { label, text, error } = &e {
        if let Some(span) = error.span() {
            let end = span.end().min(text.len());
            let start = span.offset.min(end);
            d = d.with_label(LabeledSpan::at(start..end, "here"));
        }
        return Report::new(d).with_source_code(NamedSource::new(label.clone(), text.clone()));
    }
    Report::new(d)
}
