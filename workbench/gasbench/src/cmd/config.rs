//! `gasbench config`: the effective settings and where each came from
//! (a flag, an environment variable, a configuration file, the default).

use std::process::ExitCode;

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// Print the settings as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let rows = g.config.rows();
    if args.json {
        let settings: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(k, v, s)| {
                (
                    k.to_string(),
                    serde_json::json!({ "value": v, "source": s }),
                )
            })
            .collect();
        let files: Vec<_> = g
            .config
            .files
            .iter()
            .map(|f| serde_json::json!({ "path": f.path, "found": f.found }))
            .collect();
        let data = g.data().map(|d| d.to_string()).map_err(|e| e.to_string());
        println!(
            "{}",
            serde_json::json!({ "settings": settings, "files": files, "data": match data {
                Ok(d) => serde_json::json!({ "found": d }),
                Err(e) => serde_json::json!({ "error": e }),
            } })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let key_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (key, value, source) in &rows {
        tell!("{key:key_w$}  {value:value_w$}  {source}");
    }
    match g.data() {
        Ok(d) => tell!("data: {d}"),
        Err(e) => tell!("data: not found: {e}"),
    }
    tell!("");
    tell!("configuration files, first wins (flags, then environment, then these):");
    for f in &g.config.files {
        tell!(
            "  {} ({})",
            f.path.display(),
            if f.found { "read" } else { "not present" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
