//! Every case runs with both resolvers: `openat2` and the walk that
//! stands in for it on kernels without it.

use super::*;
use std::os::unix::fs::symlink;
use std::sync::mpsc;
use std::time::Duration;

const BOTH: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

/// A share with a canary file next to it (outside), as in a run directory.
struct Fixture {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    outside: PathBuf,
    canary: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&share).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let canary = outside.join("canary");
    std::fs::write(&canary, "host data").unwrap();
    Fixture {
        _tmp: tmp,
        share,
        outside,
        canary,
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Run `f` on a thread and fail (rather than hang) if it blocks.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the call blocked (a FIFO was opened?)")
}

#[test]
fn detect_picks_a_resolver_that_works() {
    let fx = fixture();
    let d = GuestDir::open(&fx.share).unwrap();
    d.create_new("x", b"1").unwrap();
    assert_eq!(d.read("x", 10).unwrap(), b"1");
    eprintln!("resolver here: {:?}", Resolver::detect());
}

#[test]
fn new_files_are_created_beneath_and_read_back() {
    for r in BOTH {
        let fx = fixture();
        let d = GuestDir::open_with(&fx.share, r).unwrap();
        let b = d.make_dir("bundles", 0o755).unwrap();
        b.create_new("1.json", b"{}").unwrap();
        assert_eq!(d.read("bundles/1.json", 2).unwrap(), b"{}", "{r:?}");
        assert_eq!(
            std::fs::read(fx.share.join("bundles/1.json")).unwrap(),
            b"{}"
        );
        // An existing name is never written again.
        assert!(
            matches!(
                b.create_new("1.json", b"x"),
                Err(SafeFsError::Exists { .. })
            ),
            "{r:?}"
        );
        // make_dir on an existing directory opens it.
        d.make_dir("bundles", 0o755).unwrap();
        assert_eq!(d.kind("bundles").unwrap(), Some("a directory"));
        assert_eq!(d.kind("absent").unwrap(), None);
    }
}

#[test]
fn a_planted_symlink_is_never_written_through() {
    for r in BOTH {
        let fx = fixture();
        let d = GuestDir::open_with(&fx.share, r).unwrap();
        let b = d.make_dir("bundles", 0o755).unwrap();
        // Absolute and relative links to the canary, and a dangling one
        // to a file that must not come to exist.
        symlink(&fx.canary, fx.share.join("bundles/1.json")).unwrap();
        symlink("../../outside/canary", fx.share.join("bundles/2.json")).unwrap();
        let fresh = fx.outside.join("made-by-host");
        symlink(&fresh, fx.share.join("bundles/3.json")).unwrap();
        for name in ["1.json", "2.json", "3.json"] {
            let e = b.create_new(name, b"overwritten").unwrap_err();
            assert!(matches!(e, SafeFsError::Exists { .. }), "{r:?} {name}: {e}");
        }
        assert_eq!(std::fs::read_to_string(&fx.canary).unwrap(), "host data");
        assert!(!fresh.exists(), "{r:?}: the dangling link was followed");
        // Reading through a link is refused too.
        for name in ["bundles/1.json", "bundles/2.json"] {
            let e = d.read(name, 100).unwrap_err();
            assert!(
                matches!(e, SafeFsError::Symlink { .. }),
                "{r:?} {name}: {e}"
            );
        }
        // A fresh name is not one the guest could plant ahead.
        let name = b.create_fresh("1", "json", b"ok").unwrap();
        assert!(name.starts_with("1-") && name.ends_with(".json"), "{name}");
        assert_eq!(b.read(&name, 10).unwrap(), b"ok");
    }
}

#[test]
fn a_directory_replaced_by_a_symlink_is_refused_and_can_be_replaced() {
    for r in BOTH {
        let fx = fixture();
        let d = GuestDir::open_with(&fx.share, r).unwrap();
        symlink(&fx.outside, fx.share.join("bundles")).unwrap();
        let e = d.make_dir("bundles", 0o755).unwrap_err();
        assert!(matches!(e, SafeFsError::Symlink { .. }), "{r:?}: {e}");
        let e = d.create_new("bundles/1.json", b"x").unwrap_err();
        assert!(matches!(e, SafeFsError::Symlink { .. }), "{r:?}: {e}");
        assert!(!fx.outside.join("1.json").exists());
        assert_eq!(d.kind("bundles").unwrap(), Some("a symbolic link"));
        // The link itself goes, not what it points to.
        d.remove("bundles").unwrap();
        assert!(fx.canary.exists());
        d.make_dir("bundles", 0o755)
            .unwrap()
            .create_new("1.json", b"x")
            .unwrap();
        assert!(fx.share.join("bundles/1.json").is_file());

        // A file where a directory should be.
        std::fs::write(fx.share.join("plain"), "x").unwrap();
        let e = d.make_dir("plain", 0o755).unwrap_err();
        assert!(
            matches!(
                e,
                SafeFsError::NotADirectory {
                    kind: "a regular file",
                    ..
                }
            ),
            "{r:?}: {e}"
        );
        let e = d.create_new("plain/x", b"x").unwrap_err();
        assert!(matches!(e, SafeFsError::NotADirectory { .. }), "{r:?}: {e}");
    }
}

#[test]
fn paths_that_climb_out_or_start_at_root_are_refused() {
    for r in BOTH {
        let fx = fixture();
        let d = GuestDir::open_with(&fx.share, r).unwrap();
        for bad in [
            "../outside/canary",
            "/etc/passwd",
            "",
            "a/../../x",
            "./x",
            "a\0b",
        ] {
            let e = d.create_new(bad, b"x").unwrap_err();
            assert!(
                matches!(e, SafeFsError::BadPath { .. }),
                "{r:?} {bad:?}: {e}"
            );
            assert!(d.read(bad, 10).is_err());
        }
        assert!(matches!(
            d.make_dir("a/b", 0o755),
            Err(SafeFsError::BadPath { .. })
        ));
        assert!(matches!(d.remove("a/b"), Err(SafeFsError::BadPath { .. })));
    }
}

#[test]
fn fifos_sockets_and_devices_are_refused_without_being_opened() {
    for r in BOTH {
        let fx = fixture();
        mkfifo(&fx.share.join("fifo"));
        let _sock = std::os::unix::net::UnixListener::bind(fx.share.join("sock")).unwrap();
        symlink("/dev/zero", fx.share.join("zero")).unwrap();
        let share = fx.share.clone();
        let (fifo, sock, zero, create) = within(move || {
            let d = GuestDir::open_with(&share, r).unwrap();
            (
                d.read("fifo", 10).unwrap_err(),
                d.read("sock", 10).unwrap_err(),
                d.read("zero", 10).unwrap_err(),
                d.create_new("fifo", b"x").unwrap_err(),
            )
        });
        assert!(
            matches!(fifo, SafeFsError::NotRegular { kind: "a FIFO", .. }),
            "{r:?}: {fifo}"
        );
        assert!(
            matches!(
                sock,
                SafeFsError::NotRegular {
                    kind: "a socket",
                    ..
                }
            ),
            "{r:?}: {sock}"
        );
        assert!(matches!(zero, SafeFsError::Symlink { .. }), "{r:?}: {zero}");
        assert!(
            matches!(create, SafeFsError::Exists { .. }),
            "{r:?}: {create}"
        );
        // A directory is not a regular file either.
        std::fs::create_dir(fx.share.join("d")).unwrap();
        let d = GuestDir::open_with(&fx.share, r).unwrap();
        assert!(matches!(
            d.read("d", 10),
            Err(SafeFsError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
    }
}

#[test]
fn reads_are_bounded() {
    for r in BOTH {
        let fx = fixture();
        std::fs::write(fx.share.join("big"), vec![b'x'; 4097]).unwrap();
        let d = GuestDir::open_with(&fx.share, r).unwrap();
        assert!(matches!(
            d.read("big", 4096),
            Err(SafeFsError::TooLarge { limit: 4096, .. })
        ));
        assert_eq!(d.read("big", 4097).unwrap().len(), 4097);
    }
}

#[test]
fn the_root_itself_must_be_a_directory_not_a_link() {
    let fx = fixture();
    let link = fx.outside.join("link");
    symlink(&fx.share, &link).unwrap();
    assert!(matches!(
        GuestDir::open(&link),
        Err(SafeFsError::NotADirectory {
            kind: "a symbolic link",
            ..
        })
    ));
    assert!(matches!(
        GuestDir::open(&fx.canary),
        Err(SafeFsError::NotADirectory {
            kind: "a regular file",
            ..
        })
    ));
}

#[test]
fn user_named_files_regular_only_and_bounded() {
    let fx = fixture();
    assert_eq!(read_regular_file(&fx.canary, 9).unwrap(), b"host data");
    assert!(matches!(
        read_regular_file(&fx.canary, 8),
        Err(SafeFsError::TooLarge { limit: 8, .. })
    ));
    // The user's own symlink to a regular file is followed.
    let link = fx.outside.join("link");
    symlink(&fx.canary, &link).unwrap();
    assert_eq!(read_regular_file(&link, 100).unwrap(), b"host data");
    let fifo = fx.outside.join("fifo");
    mkfifo(&fifo);
    let e = within(move || read_regular_file(&fifo, 100).unwrap_err());
    assert!(
        matches!(e, SafeFsError::NotRegular { kind: "a FIFO", .. }),
        "{e}"
    );
    let e = read_regular_file(Path::new("/dev/zero"), 100).unwrap_err();
    assert!(
        matches!(
            e,
            SafeFsError::NotRegular {
                kind: "a character device",
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        read_regular_file(&fx.outside, 100),
        Err(SafeFsError::NotRegular {
            kind: "a directory",
            ..
        })
    ));
    let e = read_regular_file(&fx.outside.join("absent"), 100).unwrap_err();
    assert!(e.to_string().contains("absent"), "{e}");
}

#[test]
fn a_tail_is_the_last_bytes_only() {
    let fx = fixture();
    let log = fx.outside.join("log");
    std::fs::write(&log, "0123456789").unwrap();
    assert_eq!(read_tail(&log, 4).unwrap(), b"6789");
    assert_eq!(read_tail(&log, 100).unwrap(), b"0123456789");
    assert!(read_tail(Path::new("/dev/zero"), 4).is_err());
}
