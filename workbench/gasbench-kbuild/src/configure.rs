//! Configuring: tinyconfig, the fragments merged on top, olddefconfig,
//! then every requested symbol verified.

use std::path::PathBuf;

use gasbench_events::EventSink;
use gasbench_events::kernel::KernelEvent;
use sha2::{Digest, Sha256};

use crate::KbuildError;
use crate::kconfig::{self, Mismatch, Request};
use crate::layout::Fragment;
use crate::make::Make;
use crate::tree::hex;

/// The outcome of configuring.
#[derive(Clone, Debug)]
pub struct Configured {
    pub config: PathBuf,
    pub config_sha256: String,
    pub requested: Vec<Request>,
    pub mismatches: Vec<Mismatch>,
    /// True when the fragments and the tree were unchanged since the last
    /// configure, so `.config` was left alone.
    pub reused: bool,
}

/// Where the key of the last configure is kept.
const KEY_FILE: &str = ".gasbench-config-key";

/// Configure the build directory. `tree_state` names the tree's content
/// (its commit and any local changes); with the same fragments on the
/// same tree `.config` is left untouched, which keeps kbuild's view of
/// the configuration, and so the incremental build, as it was.
/// `strict` makes a symbol that did not stick an error; otherwise the
/// mismatches are only reported (per-patch mode, where the driver's
/// symbol does not exist before the driver's patch).
pub fn configure(
    make: &Make,
    fragments: &[Fragment],
    tree_state: &str,
    sink: &EventSink,
    strict: bool,
) -> Result<Configured, KbuildError> {
    let mut h = Sha256::new();
    h.update(tree_state.as_bytes());
    h.update(make.arch.as_bytes());
    for f in fragments {
        h.update(format!("\0{}\0", f.name).as_bytes());
        h.update(f.text.as_bytes());
    }
    let key = hex(&h.finalize());
    let config = make.out.join(".config");
    let key_path = make.out.join(KEY_FILE);
    let requested: Vec<Request> = fragments
        .iter()
        .flat_map(|f| kconfig::parse_fragment(&f.text, &f.name))
        .collect();

    let reused =
        config.is_file() && std::fs::read_to_string(&key_path).is_ok_and(|k| k.trim() == key);
    if !reused {
        std::fs::create_dir_all(&make.out).map_err(|e| KbuildError::io("create", &make.out, e))?;
        let _ = std::fs::remove_file(&key_path);
        if requested
            .iter()
            .any(|r| r.symbol == "RUST" && r.value == "y")
        {
            let (ok, text) = make.capture(&["rustavailable"])?;
            if !ok {
                return Err(KbuildError::RustUnavailable {
                    output: crate::git::tail(text.trim(), 15),
                });
            }
        }
        let (ok, text) = make.capture(&["tinyconfig"])?;
        if !ok {
            return Err(command_failed("make tinyconfig", &text));
        }
        // The fragments go into the build directory, which the build
        // root can see.
        let fdir = make.out.join("gasbench-fragments");
        let _ = std::fs::remove_dir_all(&fdir);
        std::fs::create_dir_all(&fdir).map_err(|e| KbuildError::io("create", &fdir, e))?;
        let mut argv: Vec<String> = vec![
            "sh".into(),
            "scripts/kconfig/merge_config.sh".into(),
            "-m".into(),
            "-O".into(),
            make.out.display().to_string(),
            config.display().to_string(),
        ];
        for f in fragments {
            let p = fdir.join(&f.name);
            std::fs::write(&p, &f.text).map_err(|e| KbuildError::io("write", &p, e))?;
            argv.push(p.display().to_string());
        }
        let mut cmd = make.rt.build_command(&argv, &make.binds, &make.src);
        cmd.env("ARCH", &make.arch);
        let out = gasbench_env::process::output(
            &mut cmd,
            gasbench_env::process::OnParentDeath::Terminate,
        )
        .map_err(|e| KbuildError::Spawn {
            what: "merge_config.sh".into(),
            source: e,
        })?;
        if !out.status.success() {
            let mut t = String::from_utf8_lossy(&out.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(command_failed("merge_config.sh", &t));
        }
        let (ok, text) = make.capture(&["olddefconfig"])?;
        if !ok {
            return Err(command_failed("make olddefconfig", &text));
        }
    }

    let text = std::fs::read_to_string(&config).map_err(|e| KbuildError::io("read", &config, e))?;
    let values = kconfig::parse_dotconfig(&text);
    let mut mismatches = kconfig::verify(&requested, &values);
    for m in &mut mismatches {
        m.reason = Some(kconfig::explain(
            &make.src,
            make.srcarch(),
            &m.symbol,
            &values,
        ));
    }
    for r in &requested {
        let got = values.get(&r.symbol).cloned().unwrap_or_else(|| "n".into());
        sink.emit(KernelEvent::ConfigChecked {
            symbol: r.symbol.clone(),
            wanted: r.value.clone(),
            ok: !mismatches.iter().any(|m| m.symbol == r.symbol),
            got,
        });
    }
    if strict && !mismatches.is_empty() {
        return Err(KbuildError::ConfigNotSet { mismatches });
    }
    if !reused {
        std::fs::write(&key_path, &key).map_err(|e| KbuildError::io("write", &key_path, e))?;
    }
    Ok(Configured {
        config_sha256: hex(&Sha256::digest(text.as_bytes())),
        config,
        requested,
        mismatches,
        reused,
    })
}

fn command_failed(what: &str, text: &str) -> KbuildError {
    KbuildError::Command {
        command: what.to_string(),
        status: "failed".into(),
        detail: crate::git::tail(text.trim(), 20),
    }
}
