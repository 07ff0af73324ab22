//! The real HTTP client against a public-inbox stand-in on loopback.

use std::collections::HashMap;

use gasbench_lore::stand_in::{Answer, PublicInbox, gzip};
use gasbench_lore::{Archive, LoreError, MailCache, USER_AGENT};

const ID: &str = "20260501.1-1-dev@example.org";

fn thread_text() -> Vec<u8> {
    format!(
        "From dev Mon Sep 17 00:00:00 2001\nMessage-Id: <{ID}>\nSubject: [PATCH 1/1] x\n\nbody\n"
    )
    .into_bytes()
}

fn serve(routes: &[(&str, Answer)]) -> PublicInbox {
    let map: HashMap<String, Answer> = routes
        .iter()
        .map(|(p, a)| (p.to_string(), a.clone()))
        .collect();
    PublicInbox::start(map).unwrap()
}

#[test]
fn the_thread_comes_from_all_with_a_b4_style_user_agent() {
    let server = serve(&[(
        &format!("/all/{ID}/t.mbox.gz"),
        Answer::Body(gzip(&thread_text())),
    )]);
    let t = Archive::new(&server.url())
        .unwrap()
        .thread(ID, &[])
        .unwrap();
    assert_eq!(t.mbox, thread_text());
    assert_eq!(t.source, format!("{}/all/{ID}/t.mbox.gz", server.url()));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].1, USER_AGENT);
    assert!(USER_AGENT.starts_with("gasbench/"));
}

#[test]
fn a_404_from_all_falls_back_to_the_lists_inboxes() {
    let server = serve(&[
        (&format!("/all/{ID}/t.mbox.gz"), Answer::Status(404)),
        (
            &format!("/linux-api/{ID}/t.mbox.gz"),
            Answer::Body(gzip(&thread_text())),
        ),
    ]);
    let lists = vec![
        "linux-fsdevel@vger.kernel.org".to_string(),
        "linux-api@vger.kernel.org".to_string(),
        // Not an inbox name: never put in a URL.
        "../x".to_string(),
    ];
    let t = Archive::new(&server.url())
        .unwrap()
        .thread(ID, &lists)
        .unwrap();
    assert!(t.source.ends_with(&format!("/linux-api/{ID}/t.mbox.gz")));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.0).collect();
    assert_eq!(
        paths,
        [
            format!("GET /all/{ID}/t.mbox.gz HTTP/1.1"),
            format!("GET /linux-fsdevel/{ID}/t.mbox.gz HTTP/1.1"),
            format!("GET /linux-api/{ID}/t.mbox.gz HTTP/1.1"),
        ]
    );
}

#[test]
fn not_found_anywhere_says_where_it_looked() {
    let server = serve(&[]);
    let err = Archive::new(&server.url())
        .unwrap()
        .thread(ID, &["linux-api".to_string()])
        .unwrap_err();
    match &err {
        LoreError::NotFound { tried, .. } => assert_eq!(tried.len(), 2),
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains(ID), "{err}");
    assert!(err.help().contains("Message-Id"), "{}", err.help());
}

#[test]
fn a_truncated_gzip_and_a_server_error_are_errors() {
    let gz = gzip(&thread_text().repeat(200));
    let server = serve(&[
        (
            &format!("/all/{ID}/t.mbox.gz"),
            Answer::Body(gz[..gz.len() - 20].to_vec()),
        ),
        ("/all/other@x/t.mbox.gz", Answer::Status(503)),
    ]);
    let archive = Archive::new(&server.url()).unwrap();
    let err = archive.thread(ID, &[]).unwrap_err();
    assert!(matches!(err, LoreError::BadGzip { .. }), "{err}");
    let err = archive.thread("other@x", &[]).unwrap_err();
    assert!(matches!(err, LoreError::Http { status: 503, .. }), "{err}");
}

#[test]
fn no_server_is_unreachable_with_help_for_a_machine_without_network() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Archive::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .thread(ID, &[])
        .unwrap_err();
    assert!(matches!(err, LoreError::Unreachable { .. }), "{err}");
    assert!(err.help().contains("gasbench repro -"), "{}", err.help());
}

#[test]
fn a_fetched_thread_is_cached_by_message_id_and_read_back_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cache = MailCache::new(dir.path());
    let server = serve(&[(
        &format!("/all/{ID}/t.mbox.gz"),
        Answer::Body(gzip(&thread_text())),
    )]);
    let archive = Archive::new(&server.url()).unwrap();
    let first = cache.get_or_fetch(ID, || archive.thread(ID, &[])).unwrap();
    assert!(!first.cached);
    drop(server);
    // The server is gone: the second comes from the cache.
    let second = cache.get_or_fetch(ID, || panic!("fetched again")).unwrap();
    assert!(second.cached);
    assert_eq!(second.mbox, thread_text());
    assert!(cache.path(ID).starts_with(dir.path()));
}

#[test]
fn b4_am_is_run_with_the_message_id_and_its_failures_are_said() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A stand-in b4 that prints a thread for `am -o - ID` and fails else.
    let script = dir.path().join("b4");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1 $2 $3 $4\" = \"am -o - {ID}\" ]; then printf 'From dev\\nSubject: x\\n\\nb\\n'; \
             elif [ \"$1\" = --version ]; then echo 0.16.0; \
             else echo 'Looking up https://x/\\033[31m' >&2; echo 'No messages found' >&2; exit 1; fi\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let b4 = gasbench_lore::B4 {
        program: script.clone(),
    };
    assert!(b4.available());
    let t = b4.am(ID).unwrap();
    assert_eq!(t.mbox, b"From dev\nSubject: x\n\nb\n");
    let err = b4.am("other@x").unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("No messages found"), "{shown}");
    assert!(
        !shown.contains('\u{1b}'),
        "control characters printed raw: {shown:?}"
    );
    let missing = gasbench_lore::B4 {
        program: dir.path().join("no-b4"),
    };
    assert!(!missing.available());
    assert!(matches!(
        missing.am(ID).unwrap_err(),
        LoreError::B4Missing { .. }
    ));
}
