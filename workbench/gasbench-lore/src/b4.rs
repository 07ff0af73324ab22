//! `b4 am -o - <msgid>`: the thread through the reviewer's own b4.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{LoreError, MAX_THREAD_BYTES, Thread, url_segment};

/// A b4 to run.
#[derive(Clone, Debug)]
pub struct B4 {
    pub program: PathBuf,
}

impl Default for B4 {
    fn default() -> Self {
        B4 {
            program: PathBuf::from("b4"),
        }
    }
}

impl B4 {
    /// Whether the program can be run at all (`b4 --version`).
    pub fn available(&self) -> bool {
        Command::new(&self.program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The series' mbox as `b4 am` makes it (the newest revision, trailers
    /// collected), written to stdout.
    pub fn am(&self, msgid: &str) -> Result<Thread, LoreError> {
        // Checked like a URL segment: no whitespace or brackets reach b4.
        url_segment(msgid)?;
        let mut child = Command::new(&self.program)
            .args(["am", "-o", "-", msgid])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LoreError::B4Missing {
                program: self.program.clone(),
                source,
            })?;
        let mut mbox = Vec::new();
        let read = child
            .stdout
            .take()
            .map(|out| out.take(MAX_THREAD_BYTES + 1).read_to_end(&mut mbox));
        let output = child.wait_with_output().map_err(|e| LoreError::Io {
            op: "wait for",
            path: self.program.clone(),
            source: e,
        })?;
        if let Some(Err(e)) = read {
            return Err(LoreError::Io {
                op: "read the output of",
                path: self.program.clone(),
                source: e,
            });
        }
        let source_name = format!("`{} am -o - {msgid}`", self.program.display());
        if mbox.len() as u64 > MAX_THREAD_BYTES {
            return Err(LoreError::TooLarge {
                source_name,
                limit: MAX_THREAD_BYTES,
            });
        }
        if !output.status.success() {
            return Err(LoreError::B4Failed {
                msgid: msgid.to_string(),
                status: output.status.to_string(),
                stderr: tail_clean(&output.stderr),
            });
        }
        if mbox.is_empty() {
            return Err(LoreError::Empty { source_name });
        }
        Ok(Thread {
            mbox,
            source: source_name,
            cached: false,
        })
    }
}

/// The last lines of what a tool printed, without control characters:
/// its output may quote mail, which is not ours to print raw.
fn tail_clean(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..]
        .iter()
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" / ")
}
