//! gasbench-agent: the guest side of gasbench.
//!
//! As PID 1 of the test initramfs (or with `--init`) it mounts /proc, /sys,
//! /dev and the virtiofs share, finds its virtio-serial port, announces
//! itself and runs the bundles the host sends. For tests and debugging it
//! runs on any Linux host as an ordinary process:
//!
//! ```text
//! gasbench-agent --local BUNDLE.json [--mkdirat2 N] [--workdir-base DIR]
//!     run one bundle against this kernel; print the messages on stdout
//! gasbench-agent --serve-stdio --share DIR [--mkdirat2 N] [--workdir-base DIR]
//!     speak the host protocol on stdin/stdout
//! ```

mod argbuf;
mod init;
mod kdebug;
mod out;
mod runner;
mod serve;
mod shell;
mod sys;

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_abi::protocol::AgentMsg;

use crate::out::Out;
use crate::runner::{NoHost, Runner};
use crate::serve::{ServeOpts, load_bundle_file, make_workdir, mkdirat2_number, ready, serve};

const USAGE: &str = "\
usage: gasbench-agent                      (as PID 1, or with --init)
       gasbench-agent --local BUNDLE.json [--mkdirat2 N] [--workdir-base DIR]
       gasbench-agent --serve-stdio --share DIR [--mkdirat2 N] [--workdir-base DIR]";

#[derive(Default)]
struct Args {
    init: bool,
    local: Option<PathBuf>,
    serve_stdio: bool,
    share: Option<PathBuf>,
    mkdirat2: Option<i64>,
    workdir_base: Option<PathBuf>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--init" => a.init = true,
            "--local" => a.local = Some(value("--local")?.into()),
            "--serve-stdio" => a.serve_stdio = true,
            "--share" => a.share = Some(value("--share")?.into()),
            "--workdir-base" => a.workdir_base = Some(value("--workdir-base")?.into()),
            "--mkdirat2" => {
                let v = value("--mkdirat2")?;
                a.mkdirat2 = Some(
                    v.parse()
                        .map_err(|_| format!("--mkdirat2 {v}: not a number"))?,
                );
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn workdir_base(a: &Args) -> PathBuf {
    a.workdir_base
        .clone()
        .or_else(|| std::env::var_os("TMPDIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn main() -> ExitCode {
    // The kernel passes init no arguments we must honour; PID 1 always
    // takes the init path, whatever argv holds.
    if sys::getpid() == 1 {
        init::pid1();
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("gasbench-agent: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.init {
        init::pid1();
    }
    sys::init_counters();
    let out = match Out::stdout() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gasbench-agent: stdout: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok();
    if let Some(bundle_path) = &args.local {
        let mut missing = Vec::new();
        let nr = mkdirat2_number(args.mkdirat2, cmdline.as_deref(), &mut missing);
        out.send(&ready(nr, missing));
        let bundle = match load_bundle_file(bundle_path) {
            Ok(b) => b,
            Err(e) => {
                out.send(&AgentMsg::BundleEnd {
                    bundle: 0,
                    error: Some(e.clone()),
                });
                eprintln!("gasbench-agent: {e}");
                return ExitCode::from(2);
            }
        };
        let workdir = match make_workdir(&workdir_base(&args), 0) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("gasbench-agent: {e}");
                return ExitCode::from(2);
            }
        };
        let runner = Runner {
            out: &out,
            bundle_id: 0,
            mkdirat2_nr: nr,
            workdir,
            kmsg: Default::default(),
        };
        return match runner.run(&bundle, &mut NoHost(&out)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(stop) => {
                eprintln!("gasbench-agent: stopped: {stop:?}");
                ExitCode::FAILURE
            }
        };
    }
    if args.serve_stdio {
        let Some(share) = args.share.clone() else {
            eprintln!("gasbench-agent: --serve-stdio needs --share DIR\n{USAGE}");
            return ExitCode::from(2);
        };
        let mut missing = Vec::new();
        let nr = mkdirat2_number(args.mkdirat2, cmdline.as_deref(), &mut missing);
        out.send(&ready(nr, missing));
        let opts = ServeOpts {
            share,
            mkdirat2_nr: nr,
            workdir_base: workdir_base(&args),
            eof_is_lost: true,
        };
        let mut input = BufReader::new(std::io::stdin());
        return match serve(&mut input, &out, &opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("gasbench-agent: {why}");
                ExitCode::FAILURE
            }
        };
    }
    eprintln!("gasbench-agent: not PID 1; say what to do.\n{USAGE}");
    ExitCode::from(2)
}
