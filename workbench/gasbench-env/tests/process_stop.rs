//! Stopping every running tool from elsewhere (what an interrupted
//! gasbench does): each group gets SIGTERM, and a tool that ends from then
//! on is known to have been stopped. Its own binary: the flag is global.

use std::io::BufRead;
use std::process::{Command, Stdio};

use gasbench_env::process::{self, OnParentDeath, Tool};

#[test]
fn stop_tools_terminates_every_registered_group_and_says_so() {
    assert!(!process::stopping());
    // A tool that reports SIGTERM, with a job of its own in its group.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "trap 'echo stopped; exit 7' TERM; sleep 300 & echo ready; wait",
    ])
    .stdout(Stdio::piped());
    let mut tool = Tool::spawn(&mut cmd, OnParentDeath::Terminate).unwrap();
    let mut out = std::io::BufReader::new(tool.child_mut().stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    assert_eq!(process::running_tools(), 1);

    process::stop_tools();
    let status = tool.wait().unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "stopped\n");
    assert_eq!(status.code(), Some(7));
    assert!(process::stopping());
    assert_eq!(process::running_tools(), 0);
    // Nothing new starts once stopping.
    let e = process::output(&mut Command::new("true"), OnParentDeath::Kill).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Interrupted);
}
