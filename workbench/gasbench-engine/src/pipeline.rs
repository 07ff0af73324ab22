//! `gasbench run`: from scenarios to verdicts.
//!
//! Stages, each reported on the bus: the kernel (built by the kernel stage
//! or given), the initramfs (the static agent, the kselftest binaries),
//! the accelerator (KVM only when it really runs a kernel), boot, the
//! scenarios, teardown. One boot serves every scenario unless a scenario
//! leaves the guest unfit (a hang, the device unplugged, device state left
//! behind) or `isolate` asks for a boot per scenario.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gasbench_env::kvm::KvmVerdict;
use gasbench_env::{CacheDir, Runtime};
use gasbench_events::EventSink;
use gasbench_events::run::{AccelChoice, Outcome, RunEvent, Stage};
use gasbench_qemu::Accel;
use gasbench_scenario::{Compiled, Report};

use crate::agent_build::{build_agent, source_root};
use crate::guest::Guest;
use crate::guest_image::GuestImage;
use crate::scenario_run::{ScenarioError, run_scenario};
use crate::session::BootSpec;

/// The kernel to boot and what it offers the guest.
#[derive(Clone, Debug)]
pub struct KernelArtifacts {
    pub bzimage: PathBuf,
    /// mkdirat2's syscall number on this kernel, if it has the syscall.
    pub mkdirat2: Option<i64>,
    /// kselftest binaries for the guest: (name, host path).
    pub selftests: Vec<(String, PathBuf)>,
    /// Human-readable: "7.2.12 + goldfish v3 + mkdirat2 v2 (built)".
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelPref {
    Auto,
    Kvm,
    Tcg,
}

pub struct RunOptions {
    pub scenarios: Vec<Compiled>,
    pub kernel: KernelArtifacts,
    pub isolate: bool,
    pub accel: AccelPref,
    pub memory_mib: u32,
    pub cpus: u32,
    pub ready_timeout: Duration,
    pub cache: CacheDir,
    pub runtime: Runtime,
    /// The run directory (VM sockets, logs, the share).
    pub run_dir: PathBuf,
    /// Put busybox in the guest (for a shell when debugging).
    pub busybox: bool,
}

/// What the run found.
pub struct RunOutcome {
    pub reports: Vec<Report>,
    /// Set when the run stopped early: what died or failed.
    pub error: Option<String>,
    pub accel: String,
}

impl RunOutcome {
    /// Every scenario ran and every expectation held.
    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.reports.is_empty() && self.reports.iter().all(Report::passed)
    }
}

fn stage_end(sink: &EventSink, stage: Stage, outcome: Outcome, detail: String, since: Instant) {
    sink.emit(RunEvent::StageEnd {
        stage,
        outcome,
        detail,
        elapsed_ms: since.elapsed().as_millis() as u64,
    });
}

/// Decide KVM or TCG.
pub fn choose_accel(
    pref: AccelPref,
    rt: &Runtime,
    cache: &CacheDir,
    kernel: &std::path::Path,
) -> KvmVerdict {
    match pref {
        AccelPref::Tcg => KvmVerdict {
            usable: false,
            reason: "TCG was asked for".into(),
        },
        AccelPref::Kvm => KvmVerdict {
            usable: true,
            reason: "KVM was asked for (not probed)".into(),
        },
        AccelPref::Auto => {
            let qemu = gasbench_env::checks::qemu_version(rt).unwrap_or_default();
            gasbench_env::kvm::probe_kvm_cached(
                rt,
                Some(kernel),
                &qemu,
                &cache.state(),
                gasbench_env::checks::KVM_PROBE_TIMEOUT,
            )
            .0
        }
    }
}

/// Run every scenario; never panics on what the guest does, and always
/// tears down what it started.
pub async fn run(opts: RunOptions, sink: EventSink) -> RunOutcome {
    let mut out = RunOutcome {
        reports: Vec::new(),
        error: None,
        accel: String::new(),
    };

    // The initramfs: the agent and the selftests.
    let t = Instant::now();
    sink.emit(RunEvent::StageBegin {
        stage: Stage::Initramfs,
        detail: "building the static guest agent".into(),
    });
    let agent = match tokio::task::spawn_blocking({
        let target = opts.cache.root().join("agent-target");
        move || build_agent(&source_root(), &target)
    })
    .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return fail(&sink, out, Stage::Initramfs, e.to_string(), t),
        Err(e) => return fail(&sink, out, Stage::Initramfs, e.to_string(), t),
    };
    let initramfs = opts.run_dir.join("initramfs.cpio");
    let busybox = opts
        .busybox
        .then(|| opts.runtime.file("/usr/bin/busybox"))
        .filter(|p| p.exists());
    let image = GuestImage {
        agent,
        selftests: opts.kernel.selftests.clone(),
        busybox,
    };
    match image.write(&initramfs) {
        Ok(bytes) => stage_end(
            &sink,
            Stage::Initramfs,
            Outcome::Ok,
            format!(
                "{:.1} MiB, {} selftest(s)",
                bytes as f64 / (1 << 20) as f64,
                image.selftests.len()
            ),
            t,
        ),
        Err(e) => return fail(&sink, out, Stage::Initramfs, e.to_string(), t),
    }

    let verdict = choose_accel(opts.accel, &opts.runtime, &opts.cache, &opts.kernel.bzimage);
    out.accel = verdict.accel().to_string();
    sink.emit(RunEvent::Accel(AccelChoice {
        accel: verdict.accel().into(),
        reason: verdict.reason.clone(),
    }));
    let boot_spec = BootSpec {
        kernel: opts.kernel.bzimage.clone(),
        initramfs,
        mkdirat2: opts.kernel.mkdirat2,
        accel: if verdict.usable {
            Accel::Kvm
        } else {
            Accel::Tcg
        },
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        goldfish_socket: None,
        run_dir: opts.run_dir.clone(),
    };
    let share = opts.run_dir.join("share");

    let mut guest: Option<Guest> = None;
    let mut bundle_id = 0;
    let mut boots = 0;
    let run_started = Instant::now();
    sink.emit(RunEvent::StageBegin {
        stage: Stage::Run,
        detail: format!("{} scenario(s)", opts.scenarios.len()),
    });
    for c in &opts.scenarios {
        // Does the guest we have still suit this scenario?
        let reboot_because = match &guest {
            None => Some("first boot".to_string()),
            Some(_) if opts.isolate => Some("one boot per scenario (--isolate)".into()),
            Some(g) if g.unfit.is_some() => g.unfit.clone(),
            Some(g) => match &g.device {
                Some(d) if !d.state().is_idle() => Some(format!(
                    "the device still holds state from the previous scenario ({} handle(s)); {} starts on a fresh boot",
                    d.state().handles.len(),
                    c.plan.scenario
                )),
                _ => None,
            },
        };
        if let Some(why) = reboot_because {
            if let Some(old) = guest.take() {
                sink.emit(RunEvent::Note {
                    text: format!("rebooting: {why}"),
                });
                old.shutdown().await;
            }
            let t = Instant::now();
            sink.emit(RunEvent::StageBegin {
                stage: Stage::Boot,
                detail: format!(
                    "{} under {}",
                    opts.kernel.description,
                    verdict.accel().to_uppercase()
                ),
            });
            match Guest::boot(
                &boot_spec,
                Some(gasbench_device::DeviceConfig::default()),
                &opts.runtime,
                &sink,
                opts.ready_timeout,
            )
            .await
            {
                Ok(g) => {
                    boots += 1;
                    stage_end(
                        &sink,
                        Stage::Boot,
                        Outcome::Ok,
                        format!(
                            "ready in {:.2} s ({})",
                            t.elapsed().as_secs_f64(),
                            g.session.ready.kernel_release
                        ),
                        t,
                    );
                    guest = Some(g);
                    bundle_id = 0;
                }
                Err(e) => {
                    out = fail(&sink, out, Stage::Boot, e.to_string(), t);
                    break;
                }
            }
        }
        let Some(g) = guest.as_mut() else { break };
        bundle_id += 1;
        match run_scenario(g, c, bundle_id, &share, &sink).await {
            Ok(o) => {
                if let Some(why) = o.unfit {
                    g.unfit = Some(why);
                }
                out.reports.push(o.report);
            }
            Err(e) => {
                let text = match &e {
                    ScenarioError::Session(_) | ScenarioError::DeviceDied(_) => {
                        format!("{} stopped the run: {e}", c.plan.scenario)
                    }
                    ScenarioError::Bundle { .. } => e.to_string(),
                };
                sink.emit(RunEvent::ScenarioEnd {
                    scenario: c.plan.scenario.clone(),
                    passed: false,
                    elapsed_ms: 0,
                });
                sink.emit(RunEvent::Error { text: text.clone() });
                out.error = Some(text);
                break;
            }
        }
    }
    let (passed, failed) =
        out.reports.iter().fold(
            (0, 0),
            |(p, f), r| if r.passed() { (p + 1, f) } else { (p, f + 1) },
        );
    stage_end(
        &sink,
        Stage::Run,
        if out.error.is_none() {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
        format!("{passed} passed, {failed} failed, {boots} boot(s)"),
        run_started,
    );

    let t = Instant::now();
    sink.emit(RunEvent::StageBegin {
        stage: Stage::Teardown,
        detail: String::new(),
    });
    let how = match guest.take() {
        Some(g) => g.shutdown().await,
        None => "nothing was running".into(),
    };
    stage_end(&sink, Stage::Teardown, Outcome::Ok, how, t);
    out
}

fn fail(
    sink: &EventSink,
    mut out: RunOutcome,
    stage: Stage,
    text: String,
    since: Instant,
) -> RunOutcome {
    stage_end(sink, stage, Outcome::Failed, text.clone(), since);
    sink.emit(RunEvent::Error { text: text.clone() });
    out.error = Some(text);
    out
}
