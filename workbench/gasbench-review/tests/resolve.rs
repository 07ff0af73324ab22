//! Resolving what the reviewer typed: files with known, changed and new
//! series, a file with two series, Message-Ids found and not found, and
//! bad input. Uses the repository's kernel/ directory; no build, no VM.

use std::path::{Path, PathBuf};

use gasbench_kbuild::KbuildError;
use gasbench_kbuild::layout::KernelDir;
use gasbench_review::resolve::{self, KnownSeries};
use gasbench_review::{Input, ResolveError};

fn kernel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")
}

fn setup() -> (KernelDir, Vec<KnownSeries>) {
    let k = KernelDir::open(&kernel()).unwrap();
    let known = resolve::known_series(&k).unwrap();
    (k, known)
}

fn digest() -> PathBuf {
    kernel().join("sources/000_cc8941013480fefb.txt")
}

/// The mkdirat2 series as `b4 am` would save it: cover and patches in one
/// mbox (here: the extracted files, which keep the posted diffs).
fn mkdirat2_mbox() -> String {
    let dir = kernel().join("series/mkdirat2-v2");
    [
        "cover-letter.eml",
        "0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch",
        "0002-selftest-add-tests-for-mkdirat2.patch",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
    .collect::<Vec<_>>()
    .join("\n")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_digest_holds_two_known_series() {
    let (_, known) = setup();
    let mail = resolve::read_mail_file(&digest(), &known).unwrap();
    let names: Vec<(&str, Option<&str>)> = mail
        .series
        .iter()
        .map(|s| (s.name.as_str(), s.known.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            (
                "goldfish-address-space-v3",
                Some("goldfish-address-space-v3")
            ),
            ("mkdirat2-v2", Some("mkdirat2-v2")),
        ]
    );
    let gf = &mail.series[0];
    assert_eq!(gf.posted, [2, 3, 4, 5, 6]);
    assert_eq!(gf.missing, [1], "1/6 is only quoted in the digest");
    assert!(gf.how.contains("5 of its 6 patches"), "{}", gf.how);

    // Both by default; one by name, with or without its version.
    assert_eq!(mail.select(&[]).unwrap().len(), 2);
    for w in ["mkdirat2-v2", "mkdirat2"] {
        let one = mail.select(&[w.to_string()]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "mkdirat2-v2");
    }
    let gf = mail.select(&["goldfish".to_string()]).unwrap();
    assert_eq!(gf[0].name, "goldfish-address-space-v3", "a unique prefix");
    assert!(mail.select(&["".to_string()]).is_err(), "a prefix of both");
    match mail.select(&["mkdirat3".to_string()]) {
        Err(ResolveError::NoSuchSeries { wanted, have, .. }) => {
            assert_eq!(wanted, "mkdirat3");
            assert_eq!(have, ["goldfish-address-space-v3", "mkdirat2-v2"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_mbox_of_one_known_series() {
    let (k, known) = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mkdirat2.mbox", &mkdirat2_mbox());
    assert_eq!(
        Input::parse(path.to_str().unwrap()),
        Input::File(path.clone())
    );
    let mail = resolve::read_mail_file(&path, &known).unwrap();
    assert_eq!(mail.series.len(), 1);
    let s = &mail.series[0];
    assert_eq!(s.known.as_deref(), Some("mkdirat2-v2"));
    assert!(s.how.contains("(same cover letter)"), "{}", s.how);
    let t = resolve::known_target(&k, &s.name, &s.how, "mkdirat2.mbox");
    assert!(!t.posted_only && t.known);
    assert_eq!(t.kernel_dir, k.root());
}

#[test]
fn a_changed_posting_is_not_the_known_one_and_gets_a_private_kernel_dir() {
    let (k, known) = setup();
    let dir = tempfile::tempdir().unwrap();
    // The reviewer's copy has the semicolon the posting lacks.
    let text = mkdirat2_mbox().replacen(
        "umode_t mode,\n+\t\t\t\t     unsigned int flags)\n",
        "umode_t mode,\n+\t\t\t\t     unsigned int flags);\n",
        1,
    );
    assert_ne!(text, mkdirat2_mbox(), "the fixture line moved");
    let path = write(dir.path(), "fixed.mbox", &text);
    let mail = resolve::read_mail_file(&path, &known).unwrap();
    let s = &mail.series[0];
    assert_eq!(s.known, None);
    assert_eq!(s.name, "mkdirat2-v2");
    assert!(s.how.contains("patch(es) 1 differ"), "{}", s.how);

    let private = dir.path().join("kernel");
    let t = resolve::private_target(&k, &mail, s, &private).unwrap();
    assert!(t.posted_only && !t.known);
    let pk = KernelDir::open(&private).unwrap();
    assert_eq!(pk.base, k.base, "the same base pin");
    assert_eq!(pk.fragments().unwrap(), {
        // Same fragments, by name and text.
        let mut f = k.fragments().unwrap();
        for x in &mut f {
            x.path = private.join("config").join(&x.name);
        }
        f
    });
    assert!(pk.port().is_ok(), "the port is copied");
    // Every kernel profile can be built for it.
    assert_eq!(
        gasbench_kbuild::profile::names(&pk).unwrap(),
        gasbench_kbuild::profile::names(&k).unwrap()
    );
    gasbench_kbuild::profile::profile(&pk, "debug").unwrap();
    // The posting in the private dir is the reviewer's, not the known one.
    let m = pk.series("mkdirat2-v2").unwrap();
    assert_ne!(
        m.patches[0].diff_sha256,
        k.series("mkdirat2-v2").unwrap().patches[0].diff_sha256
    );
    let patch =
        std::fs::read_to_string(pk.series_dir("mkdirat2-v2").join(&m.patches[0].file)).unwrap();
    assert!(patch.contains("unsigned int flags);\n"));
    // As posted: the plan is the two posted patches, no port.
    let plan = pk.plan(None, Some(&["mkdirat2-v2".to_string()])).unwrap();
    assert_eq!(plan.steps.len(), 2);
    assert!(plan.steps.iter().all(|s| s.replacement.is_none()));
}

#[test]
fn a_new_series_is_extracted_under_its_own_name() {
    let (k, known) = setup();
    let dir = tempfile::tempdir().unwrap();
    let mbox = [
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
        "From: A Hacker <a@example.org>",
        "Date: Mon, 4 May 2026 10:00:00 +0200",
        "Subject: [PATCH] fs: make frobnicate() return 0",
        "Message-Id: <frob-1@example.org>",
        "To: linux-fsdevel@vger.kernel.org",
        "",
        "Frobnicate always succeeds.",
        "",
        "Signed-off-by: A Hacker <a@example.org>",
        "---",
        " fs/frob.c | 2 +-",
        " 1 file changed, 1 insertion(+), 1 deletion(-)",
        "",
        "diff --git a/fs/frob.c b/fs/frob.c",
        "--- a/fs/frob.c",
        "+++ b/fs/frob.c",
        "@@ -1,3 +1,3 @@",
        " int frobnicate(void)",
        " {",
        "-\treturn 1;",
        "+\treturn 0;",
        "-- ",
        "2.47.0",
        "",
    ]
    .join("\n");
    let path = write(dir.path(), "frob.mbox", &mbox);
    let mail = resolve::read_mail_file(&path, &known).unwrap();
    assert_eq!(mail.series.len(), 1);
    let s = &mail.series[0];
    assert_eq!(s.known, None);
    assert!(
        s.how.starts_with("not a series gasbench knows"),
        "{}",
        s.how
    );
    let t = resolve::private_target(&k, &mail, s, &dir.path().join("kernel")).unwrap();
    assert_eq!(t.name, s.name);
    let pk = KernelDir::open(&t.kernel_dir).unwrap();
    let m = pk.series(&t.name).unwrap();
    assert_eq!(m.title, "fs: make frobnicate() return 0");
    assert_eq!(m.patches[0].message_id, "frob-1@example.org");
    // The known series are there too, so the kernel stage knows which
    // config symbols belong to them and leaves them out.
    let (_, left_out) = pk.fragments_for(std::slice::from_ref(&t.name)).unwrap();
    assert!(left_out.contains_key("GOLDFISH_ADDRESS_SPACE"));
}

#[test]
fn message_ids_of_known_series() {
    let (_, known) = setup();
    let cover = "20260412135434.3095416-1-jkoolstra@xs4all.nl";
    let m = resolve::find_message_id(cover, &known).unwrap();
    assert_eq!(m.name, "mkdirat2-v2");
    assert!(m.how.contains("cover letter"), "{}", m.how);

    // A patch's own (synthesized) id, and the id git send-email gives it.
    let m = resolve::find_message_id("gasbench-v2-2-2.211fd3ecad694f6e@digest.invalid", &known)
        .unwrap();
    assert_eq!(m.name, "mkdirat2-v2");
    assert!(m.how.contains("patch 2/2"), "{}", m.how);
    let m =
        resolve::find_message_id("20260406165120.166928-2-wenzhaoliao@ruc.edu.cn", &known).unwrap();
    assert_eq!(m.name, "goldfish-address-space-v3");
    assert!(m.how.contains("git send-email"), "{}", m.how);
}

#[test]
fn a_message_id_not_known_here_says_how_it_is_fetched_and_how_to_get_an_mbox_offline() {
    let (_, known) = setup();
    let arg = "<20990101000000.1-1-someone@example.org>";
    let Input::MessageId(id) = Input::parse(arg) else {
        panic!("not taken as a Message-Id")
    };
    let e = resolve::find_message_id(&id, &known).unwrap_err();
    assert!(matches!(e, ResolveError::UnknownMessageId { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "no series gasbench knows has the Message-Id <20990101000000.1-1-someone@example.org>"
    );
    let help = e.help();
    assert!(help.contains("--lore URL"), "{help}");
    assert!(help.contains("offline"), "{help}");
    assert!(help.contains("gasbench repro - < FILE"), "{help}");
    assert!(
        help.contains("b4 am -o . '20990101000000.1-1-someone@example.org'"),
        "{help}"
    );
    assert!(help.contains("gasbench repro FILE"), "{help}");
    assert!(help.contains("mkdirat2-v2 (cover <20260412135434.3095416-1-jkoolstra@xs4all.nl>)"));
}

#[test]
fn bad_input_is_an_error_with_a_place_not_a_panic() {
    let (_, known) = setup();
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("nope.mbox");
    assert!(matches!(
        resolve::read_mail_file(&missing, &known),
        Err(ResolveError::Read { .. })
    ));

    let not_mail = write(dir.path(), "notes.txt", "just some notes\nnothing else\n");
    match resolve::read_mail_file(&not_mail, &known) {
        Err(ResolveError::Kbuild(KbuildError::Series { error, .. })) => {
            assert!(
                matches!(error, gasbench_series::Error::NotMail),
                "{error:?}"
            )
        }
        other => panic!("{other:?}"),
    }

    let no_series = write(
        dir.path(),
        "hello.eml",
        "From: a@b\nSubject: hello\nDate: Mon, 4 May 2026 10:00:00 +0200\n\nno patch here\n",
    );
    match resolve::read_mail_file(&no_series, &known) {
        Err(ResolveError::Kbuild(KbuildError::Series { error, .. })) => {
            assert!(
                matches!(error, gasbench_series::Error::NotASeries { .. }),
                "{error:?}"
            )
        }
        other => panic!("{other:?}"),
    }

    // A patch wrapped by a mail client: the error points into the file.
    let wrapped = mkdirat2_mbox().replacen("+#include", "+#in\nclude", 1);
    let damaged = write(dir.path(), "wrapped.mbox", &wrapped);
    match resolve::read_mail_file(&damaged, &known) {
        Err(ResolveError::Kbuild(KbuildError::Series { error, text, .. })) => {
            let span = error.span().expect("a span");
            assert!(
                text[span.offset..].starts_with("clude") || span.offset < text.len(),
                "{error:?}"
            );
            assert!(
                matches!(error, gasbench_series::Error::CorruptPatch { .. }),
                "{error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Binary junk.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, [0u8, 159, 146, 150, 0, 1]).unwrap();
    assert!(resolve::read_mail_file(&junk, &known).is_err());
}

#[test]
fn a_crlf_copy_of_a_known_series_is_the_known_series() {
    let (_, known) = setup();
    let dir = tempfile::tempdir().unwrap();
    let crlf = mkdirat2_mbox().replace('\n', "\r\n");
    let path = write(dir.path(), "mkdirat2-crlf.mbox", &crlf);
    let mail = resolve::read_mail_file(&path, &known).unwrap();
    assert_eq!(mail.series.len(), 1);
    let s = &mail.series[0];
    assert_eq!(s.known.as_deref(), Some("mkdirat2-v2"), "{}", s.how);
    assert!(!mail.text.contains('\r'), "read as LF");
}

/// One patch by `who`, adding `line` to drivers/frob/frob.c.
fn frob_patch(who: &str, hour: u32, headers: &str, line: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\n\
         From: {who} <{}@example.org>\n\
         Date: Mon, 4 May 2026 {hour}:01:00 +0200\n\
         Subject: [PATCH 1/1] frob: add the frobnicator core\n\
         {headers}\
         \n\
         Change 1.\n\
         \n\
         Signed-off-by: {who} <t@example.org>\n\
         ---\n\
         diff --git a/drivers/frob/frob.c b/drivers/frob/frob.c\n\
         --- a/drivers/frob/frob.c\n\
         +++ b/drivers/frob/frob.c\n\
         @@ -1,2 +1,3 @@\n \
         first line\n\
         +",
        who.split(' ').next().unwrap().to_lowercase()
    )
    .into_bytes();
    m.extend_from_slice(line);
    m.extend_from_slice(b"\n second line\n-- \n2.53.0\n\n");
    m
}

/// The patch file `s` is extracted as into a private kernel dir in `dir`.
fn extracted_patch(
    k: &KernelDir,
    mail: &resolve::MailFile,
    s: &resolve::FileSeries,
    dir: &Path,
) -> String {
    let t = resolve::private_target(k, mail, s, &dir.join(&s.name)).unwrap();
    let pk = KernelDir::open(&t.kernel_dir).unwrap();
    let m = pk.series(&t.name).unwrap();
    std::fs::read_to_string(pk.series_dir(&t.name).join(&m.patches[0].file)).unwrap()
}

#[test]
fn latin1_mail_is_applied_as_the_text_it_is() {
    let (k, known) = setup();
    let dir = tempfile::tempdir().unwrap();
    let qp = frob_patch(
        "Test Person",
        10,
        "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n",
        b"/* caf=E9 */",
    );
    let eight_bit = frob_patch(
        "Test Person",
        10,
        "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n",
        b"/* caf\xe9 */",
    );
    for (name, bytes) in [("qp.mbox", qp), ("8bit.mbox", eight_bit)] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let mail = resolve::read_mail_file(&path, &known).unwrap();
        let patch = extracted_patch(
            &k,
            &mail,
            &mail.series[0],
            &dir.path().join(format!("{name}.kernel")),
        );
        assert!(patch.contains("+/* café */\n"), "{name}: {patch}");
        assert!(!patch.contains('\u{FFFD}'), "{name}");
    }

    // Undeclared 8-bit bytes: the message and the charset, not "give a
    // file that exists".
    let path = dir.path().join("undeclared.mbox");
    std::fs::write(&path, frob_patch("Test Person", 10, "", b"/* caf\xe9 */")).unwrap();
    match resolve::read_mail_file(&path, &known) {
        Err(ResolveError::Kbuild(KbuildError::Series { error, .. })) => {
            let shown = error.to_string();
            assert!(shown.contains("frob: add the frobnicator core"), "{shown}");
            assert!(shown.contains("UTF-8 (no charset declared)"), "{shown}");
            assert!(error.help().contains("Content-Type"), "{}", error.help());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_same_subject_from_two_authors_is_two_series_each_reviewed_as_itself() {
    let (k, known) = setup();
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = frob_patch("Alice Person", 10, "", b"added by ALICE");
    bytes.extend(frob_patch("Bob Person", 11, "", b"added by BOB"));
    let path = dir.path().join("twoauth.mbox");
    std::fs::write(&path, bytes).unwrap();
    let mail = resolve::read_mail_file(&path, &known).unwrap();
    let names: Vec<&str> = mail.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "frob-add-the-frobnicator-alice-person-v1",
            "frob-add-the-frobnicator-bob-person-v1"
        ]
    );
    let alice = extracted_patch(&k, &mail, &mail.series[0], dir.path());
    let bob = extracted_patch(&k, &mail, &mail.series[1], dir.path());
    assert!(alice.contains("+added by ALICE\n"), "{alice}");
    assert!(bob.contains("+added by BOB\n"), "{bob}");
    // Selecting by a name one of them has.
    let one = mail
        .select(&["frob-add-the-frobnicator-bob-person".to_string()])
        .unwrap();
    assert_eq!(one[0].name, names[1]);
}

#[test]
fn a_new_series_with_a_hole_says_to_fix_the_mbox_not_a_directory_that_is_deleted() {
    let (k, known) = setup();
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = frob_patch("Test Person", 10, "", b"one");
    bytes.extend(frob_patch("Test Person", 11, "", b"three"));
    let text = String::from_utf8(bytes)
        .unwrap()
        .replacen("[PATCH 1/1]", "[PATCH 1/3]", 1)
        .replacen("[PATCH 1/1]", "[PATCH 3/3]", 1);
    let path = write(dir.path(), "gap.mbox", &text);
    let mail = resolve::read_mail_file(&path, &known).unwrap();
    assert_eq!(mail.series[0].missing, [2]);
    let staging = dir.path().join(".staging");
    let err = resolve::private_target(&k, &mail, &mail.series[0], &staging).unwrap_err();
    assert!(
        matches!(
            err,
            ResolveError::MissingPatch {
                index: 2,
                total: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("gap.mbox"), "{err}");
    let help = err.help();
    assert!(help.contains("a copy of"), "{help}");
    assert!(
        !help.contains(staging.to_str().unwrap()),
        "points into the staging directory: {help}"
    );
}

/// The mkdirat2 posting as revision `v` (subjects and Message-Ids
/// rewritten, diffs as posted), leaving out the patches in `without`.
fn mkdirat2_as_revision(v: u32, without: &[u32]) -> String {
    let dir = kernel().join("series/mkdirat2-v2");
    let files = [
        (0, "cover-letter.eml"),
        (
            1,
            "0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch",
        ),
        (2, "0002-selftest-add-tests-for-mkdirat2.patch"),
    ];
    files
        .iter()
        .filter(|(i, _)| !without.contains(i))
        .map(|(_, f)| {
            std::fs::read_to_string(dir.join(f))
                .unwrap()
                .replace("PATCH v2 ", &format!("PATCH v{v} "))
                .replace("3095416-", &format!("3095416-v{v}-"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_thread_with_two_revisions_reviews_the_newest_complete_one_and_says_so() {
    let (_, known) = setup();
    let dir = tempfile::tempdir().unwrap();

    // v2 as posted and a v3 in reply to it: v3 is newest and complete.
    let both = format!("{}\n{}", mkdirat2_mbox(), mkdirat2_as_revision(3, &[]));
    let mail = resolve::read_mail_file(&write(dir.path(), "t.mbox", &both), &known).unwrap();
    let versions: Vec<u32> = mail.series.iter().map(|s| s.version).collect();
    assert_eq!(versions.len(), 2, "{:?}", mail.series);
    let chosen = mail.select(&[]).unwrap();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].version, 3);
    let notes = mail.revision_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("2 revisions"), "{}", notes[0]);
    assert!(notes[0].contains("reviewing v3"), "{}", notes[0]);
    assert!(notes[0].contains("--series mkdirat2-v2"), "{}", notes[0]);
    // Named, the older one is still there to review.
    let v2 = mail.select(&["mkdirat2-v2".to_string()]).unwrap();
    assert_eq!(v2[0].known.as_deref(), Some("mkdirat2-v2"));

    // A v3 that lacks 2/2: the newest complete is v2, the known posting.
    let holed = format!("{}\n{}", mkdirat2_mbox(), mkdirat2_as_revision(3, &[2]));
    let mail = resolve::read_mail_file(&write(dir.path(), "h.mbox", &holed), &known).unwrap();
    let chosen = mail.select(&[]).unwrap();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].version, 2);
    assert_eq!(chosen[0].known.as_deref(), Some("mkdirat2-v2"));
    let notes = mail.revision_notes();
    assert!(notes[0].contains("v3 (lacks 2/2 of 2)"), "{}", notes[0]);
    assert!(notes[0].contains("the newest complete one"), "{}", notes[0]);
}

#[test]
fn an_mbox_on_standard_input_is_read_like_a_file_and_bounded() {
    let (_, known) = setup();
    assert_eq!(Input::parse("-"), Input::Stdin);
    let bytes = resolve::read_bounded_stream(mkdirat2_mbox().as_bytes(), "standard input").unwrap();
    let mail = resolve::read_mail_bytes(&bytes, "standard input", Path::new("stdin.mbox"), &known)
        .unwrap();
    assert_eq!(mail.label, "standard input");
    assert_eq!(mail.series[0].known.as_deref(), Some("mkdirat2-v2"));
    // /dev/zero through a pipe ends at the bound, with an error.
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let err = resolve::read_bounded_stream(zero, "standard input").unwrap_err();
    assert!(matches!(err, ResolveError::TooLarge { .. }), "{err}");
}
