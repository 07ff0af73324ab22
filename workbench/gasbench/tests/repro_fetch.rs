//! `gasbench repro MESSAGE-ID` for a series gasbench does not know: the
//! thread is fetched from a public-inbox stand-in on loopback (the real
//! HTTP client, the real gzip), cached by Message-Id, and read like a
//! file. Nothing here boots: each case stops at bad input (2) or a failed
//! fetch (3) before the runtime is needed.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use gasbench_lore::stand_in::{Answer, PublicInbox, gzip};

const GASBENCH: &str = env!("CARGO_BIN_EXE_gasbench");

fn kernel() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")
}

/// The mkdirat2 posting as a v3 that lacks patch 2/2 (so it cannot be
/// extracted and the repro stops before anything runs), with its
/// Message-Ids rewritten.
fn holed_v3() -> (String, Vec<u8>) {
    let dir = kernel().join("series/mkdirat2-v2");
    let text = [
        "cover-letter.eml",
        "0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch",
    ]
    .iter()
    .map(|f| {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .replace("PATCH v2 ", "PATCH v3 ")
            .replace("3095416-", "3095416-v3-")
    })
    .collect::<Vec<_>>()
    .join("\n");
    (
        "20260412135434.3095416-v3-1-jkoolstra@xs4all.nl".to_string(),
        text.into_bytes(),
    )
}

fn repro(cache: &Path, lore: &str, id: &str) -> Output {
    Command::new(GASBENCH)
        .arg("--cache-dir")
        .arg(cache)
        .args(["repro", "--lore", lore, "--kernel-dir"])
        .arg(kernel())
        .arg(format!("<{id}>"))
        .env("NO_COLOR", "1")
        .env_remove("GASBENCH_LORE")
        .output()
        .unwrap()
}

#[test]
fn a_message_id_is_fetched_cached_and_then_read_offline() {
    let (id, thread) = holed_v3();
    let mut routes = HashMap::new();
    routes.insert(format!("/all/{id}/t.mbox.gz"), Answer::Body(gzip(&thread)));
    let server = PublicInbox::start(routes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    let out = repro(&cache, &server.url(), &id);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Fetched, read, and found wanting: bad input, nothing started.
    assert!(
        stderr.contains("fetched from http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("patch 2/2"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!cache.join("runs").read_dir().is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.')))
    }));
    assert_eq!(server.requests().len(), 1);

    // The archive is gone: the same id comes from the cache.
    drop(server);
    let out = repro(&cache, "http://127.0.0.1:9", &id);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("from the cache"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
}

#[test]
fn an_id_the_archive_does_not_have_is_bad_input_and_no_archive_is_a_tool_failure() {
    let server = PublicInbox::start(HashMap::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = repro(&cache, &server.url(), "nobody.1@example.org");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("has no thread for <nobody.1@example.org>"),
        "{stderr}"
    );
    // The lists of the series gasbench knows were tried after all/.
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.0).collect();
    assert!(
        paths[0].starts_with("GET /all/nobody.1@example.org/t.mbox.gz"),
        "{paths:?}"
    );
    assert!(paths.len() > 1, "{paths:?}");

    // Nothing listens there: the network (the environment) failed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = repro(
        &cache,
        &format!("http://127.0.0.1:{port}"),
        "nobody.2@example.org",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(
        stderr.contains("gasbench repro -"),
        "the offline way: {stderr}"
    );
}
