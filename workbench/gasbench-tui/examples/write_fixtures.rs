//! Regenerate the synthetic fixtures under tests/fixtures/.
//!
//! `cargo run -p gasbench-tui --example write_fixtures`
//!
//! These stand in for recorded runs until the pipeline can record one;
//! replacing a fixture with a recorded `events.jsonl` needs no code change
//! (the snapshot tests read whatever file is there; review the new
//! snapshots with `cargo insta review`).

use std::path::Path;

#[path = "../synth/mod.rs"]
mod synth;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/synthetic-run");
    std::fs::create_dir_all(&dir)?;
    let events = synth::demo_run();
    std::fs::write(dir.join("events.jsonl"), synth::to_jsonl(&events))?;
    println!("{}: {} events", dir.display(), events.len());
    Ok(())
}
