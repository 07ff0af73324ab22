//! Packs the data an installed gasbench needs into one deterministic
//! tar.gz the library embeds: `kernel/`, `scenarios/` and the guest
//! agent's sources (`guest-tools/` with a workspace manifest of their
//! own, so cargo can build the agent from the unpacked copy).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Directories of the checkout that go in whole.
const DIRS: &[&str] = &["kernel", "scenarios", "guest-tools"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("the checkout holding workbench/gasbench-data");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());

    for d in DIRS {
        println!("cargo::rerun-if-changed={}", root.join(d).display());
    }
    println!(
        "cargo::rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    println!(
        "cargo::rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for d in DIRS {
        collect(&root, &root.join(d), &mut files);
    }
    files.push((
        "Cargo.toml".into(),
        agent_workspace(&read(&root.join("Cargo.toml"))).into_bytes(),
        false,
    ));
    files.push((
        "Cargo.lock".into(),
        read(&root.join("Cargo.lock")).into_bytes(),
        false,
    ));
    for f in &mut files {
        if f.0 == "guest-tools/gasbench-agent/Cargo.toml" {
            let text = String::from_utf8(std::mem::take(&mut f.1)).unwrap();
            f.1 = without_dev_dependencies(&text).into_bytes();
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    for (path, bytes, executable) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(if *executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let sha: String = Sha256::digest(&gz)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::File::create(out_dir.join("data.tar.gz"))
        .and_then(|mut f| f.write_all(&gz))
        .expect("write data.tar.gz");

    // The profile directory this build puts binaries in (OUT_DIR is
    // <target>/<profile>/build/<pkg>-<hash>/out): a gasbench running from
    // there is a development build of this checkout.
    let build_dir = out_dir.ancestors().nth(3).unwrap_or(&out_dir);
    println!("cargo::rustc-env=GASBENCH_DATA_SHA256={sha}");
    println!("cargo::rustc-env=GASBENCH_DATA_FILES={}", files.len());
    println!("cargo::rustc-env=GASBENCH_DATA_CHECKOUT={}", root.display());
    println!(
        "cargo::rustc-env=GASBENCH_DATA_BUILD_DIR={}",
        build_dir.display()
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every regular file under `dir`, by its path relative to `root`
/// (build products and editor files left out).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect(root, &path, out);
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
            out.push((rel, bytes, meta.permissions().mode() & 0o111 != 0));
        }
    }
}

/// The checkout's workspace manifest with only the guest tools as
/// members: the unpacked copy has no `workbench/` or `xtask/`.
/// Unused `[workspace.dependencies]` paths are never opened by cargo.
fn agent_workspace(root_manifest: &str) -> String {
    let mut out = String::new();
    for line in root_manifest.lines() {
        if line.starts_with("members =") {
            out.push_str("members = [\"guest-tools/*\"]\n");
        } else if !line.starts_with("default-members =") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The agent's manifest without `[dev-dependencies]`: its tests use host
/// crates that the unpacked copy does not have, and cargo resolves
/// dev-dependencies even for a build.
fn without_dev_dependencies(manifest: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            skipping = line.trim() == "[dev-dependencies]";
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
