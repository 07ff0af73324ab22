//! The real digest the two series were posted in (kernel/sources/), with
//! all its quirks: thread order, unrelated threads, a missing patch that
//! only a reply quotes, no Message-Ids, names without addresses.

use gasbench_series::render::{Provenance, render_patch};
use gasbench_series::series::{EmailSource, IdSource};
use gasbench_series::{MailFormat, find_series, parse_mail};

fn seed() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../kernel/sources/000_cc8941013480fefb.txt"
    );
    std::fs::read_to_string(path).expect("the seed digest is in kernel/sources")
}

#[test]
fn finds_both_series_in_order_with_the_missing_patch_noticed() {
    let text = seed();
    let (format, messages) = parse_mail(&text).unwrap();
    assert_eq!(format, MailFormat::PublicInboxDigest);
    // Every `* ...` message block of the page, and no body line mistaken
    // for one (`* H. J. Lu:` inside Florian Weimer's reply).
    assert_eq!(messages.len(), 25);
    assert!(messages.iter().all(|m| !m.subject.starts_with("H. J. Lu")));

    let series = find_series(&messages).unwrap();
    assert_eq!(series.len(), 2);
    let (gf, mk) = (&series[0], &series[1]);
    assert_eq!(gf.suggested_name(), "goldfish-address-space");
    assert_eq!(mk.suggested_name(), "mkdirat2");

    // Posted out of order (2/2 before 1/2; 6,5,3,2,4): ordered by index.
    let idx: Vec<u32> = mk.patches.iter().map(|p| p.subject.index).collect();
    assert_eq!(idx, vec![1, 2]);
    let idx: Vec<u32> = gf.patches.iter().map(|p| p.subject.index).collect();
    assert_eq!(idx, vec![2, 3, 4, 5, 6]);
    assert_eq!((gf.version, gf.total, mk.version, mk.total), (3, 6, 2, 2));
    assert_eq!(gf.tags, vec!["RFC", "PATCH"]);

    // Addresses come from the authors' own sign-offs.
    assert_eq!(gf.author.email.as_deref(), Some("wenzhaoliao@ruc.edu.cn"));
    assert_eq!(mk.author.email.as_deref(), Some("jkoolstra@xs4all.nl"));
    assert_eq!(gf.email_source, EmailSource::SignedOffBy);
    assert!(gf.lists.contains(&"rust-for-linux".to_string()));
    assert!(mk.lists.contains(&"linux-fsdevel".to_string()));

    // Cover ids: what all the patches reply to.
    let gc = gf.cover.as_ref().unwrap();
    assert_eq!(
        gc.message_id,
        "20260406165120.166928-1-wenzhaoliao@ruc.edu.cn"
    );
    assert_eq!(gc.id_source, IdSource::Replies);
    assert_eq!(
        gc.message.in_reply_to.as_deref(),
        Some("cover.1775456181.git.wenzhaoliao@ruc.edu.cn")
    );
    let mc = mk.cover.as_ref().unwrap();
    assert_eq!(
        mc.message_id,
        "20260412135434.3095416-1-jkoolstra@xs4all.nl"
    );

    // 1/6 is missing; Arnd's reply names it, proves its id and quotes it.
    assert_eq!(gf.missing.len(), 1);
    let m = &gf.missing[0];
    assert_eq!(m.index, 1);
    assert_eq!(
        m.title.as_deref(),
        Some("uapi: add goldfish_address_space userspace ABI header")
    );
    assert_eq!(
        m.message_id.as_deref(),
        Some("20260406165120.166928-2-wenzhaoliao@ruc.edu.cn")
    );
    let quoted = &m.quotes[0].lines;
    assert!(quoted.contains(&"+#define GOLDFISH_ADDRESS_SPACE_IOCTL_MAGIC 'G'".to_string()));
    assert!(quoted.contains(&"+struct goldfish_address_space_claim_shared {".to_string()));

    // Patches without ids get stable synthesized ones.
    assert!(
        gf.patches
            .iter()
            .all(|p| p.id_source == IdSource::Synthesized
                && p.message_id.ends_with("@digest.invalid"))
    );
    let again = find_series(&parse_mail(&text).unwrap().1).unwrap();
    assert_eq!(again[0].patches[0].message_id, gf.patches[0].message_id);
}

#[test]
fn rendered_patches_carry_the_posted_diff_byte_for_byte() {
    let text = seed();
    let (_, messages) = parse_mail(&text).unwrap();
    for s in find_series(&messages).unwrap() {
        for p in &s.patches {
            let out = render_patch(&s, p, &Provenance::default());
            let diff = p.diff_text();
            assert!(diff.starts_with("diff --git "));
            // The diff is a verbatim slice of the source...
            let start = p.message.body_offset + p.parts.diff.start;
            assert_eq!(&text[start..start + diff.len()], diff);
            // ...and of the rendered file.
            assert!(out.contains(diff), "{}", p.message.subject);
            assert!(out.contains(&format!("Message-Id: <{}>\n", p.message_id)));
            assert!(out.contains(&format!(
                "From: {} <{}>\n",
                s.author.name,
                s.author.email.as_deref().unwrap()
            )));
        }
    }
}

#[test]
fn the_posted_files_are_what_the_diffstats_say() {
    let (_, messages) = parse_mail(&seed()).unwrap();
    let series = find_series(&messages).unwrap();
    let mk = &series[1];
    let files: Vec<&str> = mk.patches[0].files.iter().map(|f| f.path()).collect();
    assert_eq!(
        files,
        vec![
            "arch/x86/entry/syscalls/syscall_64.tbl",
            "fs/internal.h",
            "fs/namei.c",
            "include/linux/syscalls.h",
            "include/uapi/asm-generic/unistd.h",
            "scripts/syscall.tbl",
        ]
    );
    let driver = &series[0].patches[4];
    assert_eq!(driver.subject.index, 6);
    let rs = driver
        .files
        .iter()
        .find(|f| f.path().ends_with("goldfish_address_space.rs"))
        .unwrap();
    assert!(rs.new_file);
    assert_eq!(rs.hunks[0].new_len, 917);
}
