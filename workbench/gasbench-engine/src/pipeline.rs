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
use gasbench_events::run::{AccelChoice, Outcome, ProfileChoice, RunEvent, Stage};
use gasbench_qemu::Accel;
use gasbench_scenario::{Compiled, Report};

use crate::agent_build::build_agent;
use crate::device_host::DeviceHost;
use crate::explore_run::{self, ExplorePlan};
use crate::interrupt::Interrupt;
use gasbench_explore::ExploreReport;

use crate::guest::Guest;
use crate::guest_image::GuestImage;
use crate::reports::ReportBook;
use crate::scenario_run::{ScenarioError, ScenarioOutcome, run_scenario};
use crate::session::BootSpec;

/// The run's error when `cause` ("interrupted (Ctrl-C)") stopped it.
pub fn interrupted_error(cause: &str) -> String {
    format!("{cause}{INTERRUPTED_TAIL}")
}

const INTERRUPTED_TAIL: &str = ": the run was stopped and the VM torn down";

/// Whether a run error is one [`interrupted_error`] made (a recorded run
/// read back, e.g. a shard to merge, knows it was stopped only from this).
pub fn is_interrupted_error(error: &str) -> bool {
    error.starts_with("interrupted (") && error.ends_with(INTERRUPTED_TAIL)
}

/// The run cannot go on: what stopped it, and the verdicts the scenario
/// that was running had earned (`None` when it never began: a failed boot).
#[derive(Debug)]
pub struct RunStopped {
    pub error: String,
    pub report: Option<Report>,
}

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
    /// The profile it was built with: its detectors and command line.
    pub profile: KernelProfile,
    /// What decodes its stack traces; None for a kernel image given
    /// without them.
    pub symbols: Option<KernelSymbols>,
}

impl KernelArtifacts {
    /// What a run needs from the kernel stage's result: the image, the
    /// guest's extras (the kselftest under the name the kernel stage
    /// built it with), the profile and what decodes its stack traces. The
    /// one conversion: `run`, `repro`, the TUI and the benches use it.
    pub fn from_build(
        a: &gasbench_kbuild::KernelArtifacts,
        description: String,
    ) -> KernelArtifacts {
        let m = &a.manifest;
        // Line tables only with CONFIG_DEBUG_INFO (the debug profiles).
        let debug_info = std::fs::read_to_string(&a.config)
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "CONFIG_DEBUG_INFO=y"));
        KernelArtifacts {
            bzimage: a.bzimage.clone(),
            mkdirat2: a.mkdirat2_syscall.map(i64::from),
            selftests: a
                .selftest
                .iter()
                .map(|p| (gasbench_kbuild::selftest::SELFTEST.to_string(), p.clone()))
                .collect(),
            description,
            profile: KernelProfile {
                choice: ProfileChoice {
                    name: m.profile.name.clone(),
                    detectors: m.profile.detectors.clone(),
                    about: m.profile.about.clone(),
                },
                cmdline: m.profile.cmdline.clone(),
            },
            symbols: Some(KernelSymbols {
                system_map: a.system_map.clone(),
                vmlinux: m.artifacts.vmlinux.clone(),
                debug_info,
            }),
        }
    }
}

/// A kernel profile as the run needs it.
#[derive(Clone, Debug, Default)]
pub struct KernelProfile {
    pub choice: ProfileChoice,
    /// Added to the kernel command line.
    pub cmdline: String,
}

/// The files that turn a stack frame into `file:line`.
#[derive(Clone, Debug)]
pub struct KernelSymbols {
    pub system_map: PathBuf,
    pub vmlinux: Option<PathBuf>,
    /// The kernel has line tables (CONFIG_DEBUG_INFO).
    pub debug_info: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelPref {
    Auto,
    Kvm,
    Tcg,
}

pub struct RunOptions {
    pub scenarios: Vec<Compiled>,
    pub kernel: KernelProvider,
    pub settings: RunSettings,
    /// The explorer, run on the same boot after the scenarios.
    pub explore: Option<ExplorePlan>,
}

/// Produces the kernel to boot: the kernel stage, or a given image. Called
/// on a blocking thread; reports its own progress on the bus.
pub type KernelProvider = std::sync::Arc<
    std::sync::Mutex<dyn FnMut(&EventSink) -> Result<KernelArtifacts, String> + Send>,
>;

/// Run the kernel provider off the async threads.
pub async fn build_kernel(
    kernel: &KernelProvider,
    sink: &EventSink,
) -> Result<KernelArtifacts, String> {
    let kernel = kernel.clone();
    let sink = sink.clone();
    tokio::task::spawn_blocking(move || {
        let mut f = kernel.lock().unwrap_or_else(|p| p.into_inner());
        f(&sink)
    })
    .await
    .map_err(|e| format!("the kernel stage panicked: {e}"))?
}

/// [`build_kernel`] that stops the kernel stage's tools when `interrupt`
/// is set (make deletes what it was writing; nothing half-made is kept)
/// and waits for the stage to say how it ended.
pub async fn build_kernel_until(
    kernel: &KernelProvider,
    sink: &EventSink,
    mut interrupt: Interrupt,
) -> Result<KernelArtifacts, String> {
    let build = build_kernel(kernel, sink);
    tokio::pin!(build);
    tokio::select! {
        k = &mut build => k,
        cause = interrupt.wait() => {
            gasbench_env::process::stop_tools();
            let _ = build.await;
            Err(interrupted_error(&cause))
        }
    }
}

/// How to run, whatever the kernel and the scenarios.
#[derive(Clone)]
pub struct RunSettings {
    pub isolate: bool,
    pub accel: AccelPref,
    pub memory_mib: u32,
    pub cpus: u32,
    pub ready_timeout: Duration,
    /// The workspace the guest agent is built from (gasbench-data's
    /// `DataRoot::agent_source`).
    pub agent_source: PathBuf,
    pub cache: CacheDir,
    pub runtime: Runtime,
    /// The run directory (VM sockets, logs, the share).
    pub run_dir: PathBuf,
    /// Put busybox in the guest (for a shell when debugging).
    pub busybox: bool,
    /// Where the goldfish device server runs.
    pub device_host: DeviceHost,
    /// The most the guest may put in events.jsonl and in console.log
    /// (each); past it its output is counted, not recorded.
    pub guest_log_cap: u64,
}

/// What the run found.
pub struct RunOutcome {
    pub reports: Vec<Report>,
    /// What the explorer did and found, a report per domain.
    pub explored: Vec<ExploreReport>,
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

/// What a [`Runner`] needs besides the scenarios.
#[derive(Clone)]
pub struct RunnerOptions {
    pub kernel: KernelArtifacts,
    pub settings: RunSettings,
}

/// Runs scenarios on a guest it boots when needed and keeps between
/// scenarios while it stays fit. The headless run and the TUI's session
/// both drive one.
pub struct Runner {
    opts: RunnerOptions,
    sink: EventSink,
    boot_spec: BootSpec,
    accel: String,
    guest: Option<Guest>,
    bundle_id: u64,
    pub boots: u32,
    reports: ReportBook,
}

impl Runner {
    /// Build the initramfs and choose the accelerator; boots nothing yet.
    pub async fn prepare(opts: RunnerOptions, sink: EventSink) -> Result<Runner, String> {
        let t = Instant::now();
        // The accelerator is decided beside the agent's build: where KVM
        // hangs (as on hosts without nested virtualisation) the probe's
        // timeout passes while cargo works, not after it.
        let accel_probe = tokio::task::spawn_blocking({
            let (pref, rt, cache, kernel) = (
                opts.settings.accel,
                opts.settings.runtime.clone(),
                opts.settings.cache.clone(),
                opts.kernel.bzimage.clone(),
            );
            move || choose_accel(pref, &rt, &cache, &kernel)
        });
        sink.emit(RunEvent::StageBegin {
            stage: Stage::Initramfs,
            detail: "building the static guest agent".into(),
        });
        let agent = tokio::task::spawn_blocking({
            let target = opts.settings.cache.root().join("agent-target");
            let source = opts.settings.agent_source.clone();
            move || build_agent(&source, &target)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let agent = match agent {
            Ok(a) => a,
            Err(e) => return Err(stage_failed(&sink, Stage::Initramfs, e, t)),
        };
        if let Err(e) = std::fs::create_dir_all(&opts.settings.run_dir) {
            let text = format!("creating {}: {e}", opts.settings.run_dir.display());
            return Err(stage_failed(&sink, Stage::Initramfs, text, t));
        }
        let initramfs = opts.settings.run_dir.join("initramfs.cpio");
        let busybox = opts
            .settings
            .busybox
            .then(|| opts.settings.runtime.file("/usr/bin/busybox"))
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
            Err(e) => return Err(stage_failed(&sink, Stage::Initramfs, e.to_string(), t)),
        }
        let verdict = accel_probe.await.unwrap_or_else(|e| KvmVerdict {
            usable: false,
            reason: format!("the KVM probe failed ({e}): TCG"),
        });
        sink.emit(RunEvent::Accel(AccelChoice {
            accel: verdict.accel().into(),
            reason: verdict.reason.clone(),
        }));
        sink.emit(RunEvent::Profile(opts.kernel.profile.choice.clone()));
        let decoder = match &opts.kernel.symbols {
            Some(k) => gasbench_kreport::decode::Decoder::new(
                opts.settings.runtime.clone(),
                k.vmlinux.as_deref(),
                &k.system_map,
                k.debug_info,
            )
            .map_err(|e| e.to_string()),
            None => Err("the kernel was given without System.map and vmlinux".into()),
        };
        let reports = ReportBook::new(decoder);
        let boot_spec = BootSpec {
            kernel: opts.kernel.bzimage.clone(),
            initramfs,
            mkdirat2: opts.kernel.mkdirat2,
            accel: if verdict.usable {
                Accel::Kvm
            } else {
                Accel::Tcg
            },
            memory_mib: opts.settings.memory_mib,
            cpus: opts.settings.cpus,
            goldfish_socket: None,
            run_dir: opts.settings.run_dir.clone(),
            cmdline: opts.kernel.profile.cmdline.clone(),
            guest_log_cap: opts.settings.guest_log_cap,
        };
        Ok(Runner {
            reports,
            accel: verdict.accel().to_string(),
            opts,
            sink,
            boot_spec,
            guest: None,
            bundle_id: 0,
            boots: 0,
        })
    }

    pub fn accel(&self) -> &str {
        &self.accel
    }

    /// The kernel this runner boots.
    pub fn kernel(&self) -> &KernelArtifacts {
        &self.opts.kernel
    }

    /// Why the current guest cannot serve `c`, if it cannot.
    fn reboot_reason(&self, c: &Compiled) -> Option<String> {
        match &self.guest {
            None => Some("first boot".to_string()),
            Some(_) if self.opts.settings.isolate => {
                Some("one boot per scenario (--isolate)".into())
            }
            Some(g) if g.unfit.is_some() => g.unfit.clone(),
            Some(g)
                if g.plugged
                    && g.device.as_ref().is_some_and(|d| {
                        !matches!(d.status(), gasbench_vfu::ServerStatus::Connected { .. })
                    }) =>
            {
                Some("the goldfish device lost its connection to QEMU".into())
            }
            Some(g) => match g.device.as_ref().map(|d| d.state()) {
                Some(Ok(state)) if !state.is_idle() => Some(format!(
                    "the device still holds state from the previous scenario ({} handle(s)); {} starts on a fresh boot",
                    state.handles.len(),
                    c.plan.scenario
                )),
                Some(Err(e)) => Some(format!("the device server does not answer: {e}")),
                _ => None,
            },
        }
    }

    /// Run one scenario, booting first if the guest does not suit it.
    /// `Err` means the run cannot go on (the VM or device died, a boot
    /// failed), with the verdicts the scenario had earned; a scenario that
    /// fails its expectations is `Ok`.
    pub async fn run_one(&mut self, c: &Compiled) -> Result<Report, RunStopped> {
        self.run_one_until(c, &mut Interrupt::never()).await
    }

    /// Boot a guest (the device server with it) and wait for the agent;
    /// the Runner's next scenario runs on it.
    pub async fn boot(&mut self) -> Result<(), String> {
        self.boot_until(None).await
    }

    /// [`Runner::boot`] that gives up when `interrupt` is set: a boot is
    /// not waited out when the run is being stopped, and what it started
    /// dies with it (its Drop).
    async fn boot_until(&mut self, interrupt: Option<&mut Interrupt>) -> Result<(), String> {
        let t = Instant::now();
        self.sink.emit(RunEvent::StageBegin {
            stage: Stage::Boot,
            detail: format!(
                "{} under {}",
                self.opts.kernel.description,
                self.accel.to_uppercase()
            ),
        });
        let boot = Guest::boot(
            &self.boot_spec,
            Some((
                gasbench_device::DeviceConfig::default(),
                &self.opts.settings.device_host,
            )),
            &self.opts.settings.runtime,
            &self.sink,
            self.opts.settings.ready_timeout,
        );
        let booted = match interrupt {
            Some(interrupt) => tokio::select! {
                g = boot => g.map_err(|e| e.to_string()),
                cause = interrupt.wait() => Err(interrupted_error(&cause)),
            },
            None => boot.await.map_err(|e| e.to_string()),
        };
        let g = booted.map_err(|e| stage_failed(&self.sink, Stage::Boot, e, t))?;
        self.boots += 1;
        stage_end(
            &self.sink,
            Stage::Boot,
            Outcome::Ok,
            format!(
                "ready in {:.2} s ({})",
                t.elapsed().as_secs_f64(),
                g.session.ready.kernel_release
            ),
            t,
        );
        self.guest = Some(g);
        self.bundle_id = 0;
        Ok(())
    }

    /// Why `c` is not for this run's kernel, if it is not (it names the
    /// profiles it is for).
    pub fn skip_reason(&self, c: &Compiled) -> Option<String> {
        let profile = &self.opts.kernel.profile.choice.name;
        let wanted = &c.plan.profiles;
        (!wanted.is_empty() && !wanted.contains(profile)).then(|| {
            format!(
                "it is for the {} profile{} and this kernel is the {profile} profile (--profile {})",
                wanted.join(" or "),
                if wanted.len() > 1 { "s" } else { "" },
                wanted[0]
            )
        })
    }

    /// [`Runner::run_one`] that ends the scenario early, with the verdicts
    /// it has, when `interrupt` is set. (Callers check
    /// [`Runner::skip_reason`] first.)
    pub async fn run_one_until(
        &mut self,
        c: &Compiled,
        interrupt: &mut Interrupt,
    ) -> Result<Report, RunStopped> {
        let stopped = |error: String| RunStopped {
            error,
            report: None,
        };
        if let Some(why) = self.reboot_reason(c) {
            if let Some(old) = self.guest.take() {
                self.sink.emit(RunEvent::Note {
                    text: format!("rebooting: {why}"),
                });
                old.shutdown().await;
            }
            self.boot_until(Some(&mut *interrupt))
                .await
                .map_err(stopped)?;
        }
        let Some(g) = self.guest.as_mut() else {
            return Err(stopped("no guest".into()));
        };
        self.bundle_id += 1;
        let share = self.opts.settings.run_dir.join("share");
        let began = Instant::now();
        let profile = self.opts.kernel.profile.choice.clone();
        match run_scenario(
            g,
            c,
            self.bundle_id,
            &share,
            &self.sink,
            interrupt,
            (&mut self.reports, &profile),
        )
        .await
        {
            Ok(ScenarioOutcome {
                report,
                died: Some(e),
                ..
            }) => {
                // Its verdicts are on the bus already (and the one saying
                // where it stopped); the run ends here.
                let error = format!("{} stopped the run: {e}", c.plan.scenario);
                self.sink.emit(RunEvent::Error {
                    text: error.clone(),
                });
                if let Some(g) = self.guest.take() {
                    g.abort().await;
                }
                Err(RunStopped {
                    error,
                    report: Some(report),
                })
            }
            Ok(o) => {
                if let Some(why) = o.unfit {
                    g.unfit = Some(why);
                }
                Ok(o.report)
            }
            Err(e) => {
                let text = match &e {
                    ScenarioError::Session(_) | ScenarioError::DeviceDied(_) => {
                        format!("{} stopped the run: {e}", c.plan.scenario)
                    }
                    ScenarioError::Bundle { .. } | ScenarioError::FaultPlan { .. } => e.to_string(),
                };
                self.sink.emit(RunEvent::ScenarioEnd {
                    scenario: c.plan.scenario.clone(),
                    passed: false,
                    elapsed_ms: began.elapsed().as_millis() as u64,
                });
                self.sink.emit(RunEvent::Error { text: text.clone() });
                // Whatever is left of the guest is of no use, and its agent
                // may be stuck in the step that was running.
                if let Some(g) = self.guest.take() {
                    g.abort().await;
                }
                Err(stopped(text))
            }
        }
    }

    /// `gasbench shell`: boot if no guest is up, then relay the console
    /// to `io` while the agent runs a shell on it (see
    /// [`crate::shell::relay`]). [`Runner::stop`] tears down after.
    pub async fn shell(
        &mut self,
        io: crate::shell::ShellIo,
        interrupt: &mut Interrupt,
    ) -> Result<crate::shell::ShellEnd, String> {
        if self.guest.is_none() {
            self.boot_until(Some(&mut *interrupt)).await?;
        }
        let guest = self.guest.as_mut().expect("booted above");
        crate::shell::relay(guest, io, interrupt).await
    }

    /// A guest that was interrupted mid-scenario cannot be trusted.
    pub fn mark_unfit(&mut self, why: &str) {
        if let Some(g) = &mut self.guest {
            g.unfit = Some(why.to_string());
        }
    }

    /// Whether a VM is up.
    pub fn has_guest(&self) -> bool {
        self.guest.is_some()
    }

    /// Stop the VM if one runs; reports the teardown stage.
    pub async fn stop(&mut self) {
        let t = Instant::now();
        self.sink.emit(RunEvent::StageBegin {
            stage: Stage::Teardown,
            detail: String::new(),
        });
        let how = match self.guest.take() {
            Some(g) => g.shutdown().await,
            None => "nothing was running".into(),
        };
        stage_end(&self.sink, Stage::Teardown, Outcome::Ok, how, t);
    }
}

/// Run every scenario; never panics on what the guest does, and always
/// tears down what it started.
pub async fn run(opts: RunOptions, sink: EventSink) -> RunOutcome {
    run_until(opts, sink, Interrupt::never()).await
}

/// [`run`] that stops early when `interrupt` is set: the running scenario
/// ends with the verdicts it has, no other starts, teardown runs.
pub async fn run_until(opts: RunOptions, sink: EventSink, mut interrupt: Interrupt) -> RunOutcome {
    let scenarios = opts.scenarios;
    let explore = opts.explore;
    let mut out = RunOutcome {
        reports: Vec::new(),
        explored: Vec::new(),
        error: None,
        accel: String::new(),
    };
    let built = build_kernel_until(&opts.kernel, &sink, interrupt.clone()).await;
    let kernel = match built {
        Ok(k) => k,
        Err(e) => {
            sink.emit(RunEvent::Error { text: e.clone() });
            out.error = Some(e);
            return out;
        }
    };
    let opts = RunnerOptions {
        kernel,
        settings: opts.settings,
    };
    let mut runner = match Runner::prepare(opts, sink.clone()).await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    out.accel = runner.accel().to_string();
    let run_started = Instant::now();
    sink.emit(RunEvent::StageBegin {
        stage: Stage::Run,
        detail: format!(
            "{} scenario(s){}",
            scenarios.len(),
            if explore.is_some() {
                ", then the explorer"
            } else {
                ""
            }
        ),
    });
    for c in &scenarios {
        if interrupt.is_set() {
            break;
        }
        if let Some(why) = runner.skip_reason(c) {
            sink.emit(RunEvent::ScenarioSkipped {
                scenario: c.plan.scenario.clone(),
                why,
            });
            continue;
        }
        match runner.run_one_until(c, &mut interrupt).await {
            Ok(report) => out.reports.push(report),
            Err(stopped) => {
                out.reports.extend(stopped.report);
                out.error = Some(stopped.error);
                break;
            }
        }
    }
    if let Some(plan) = &explore
        && out.error.is_none()
        && !interrupt.is_set()
    {
        out.explored = explore_run::explore(&mut runner, plan, &sink, &mut interrupt).await;
    }
    if let Some(cause) = interrupt.cause()
        && out.error.is_none()
    {
        let text = interrupted_error(&cause);
        sink.emit(RunEvent::Error { text: text.clone() });
        out.error = Some(text);
    }
    let (passed, failed) =
        out.reports.iter().fold(
            (0, 0),
            |(p, f), r| {
                if r.passed() { (p + 1, f) } else { (p, f + 1) }
            },
        );
    stage_end(
        &sink,
        Stage::Run,
        if out.error.is_none() {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
        format!("{passed} passed, {failed} failed, {} boot(s)", runner.boots),
        run_started,
    );
    runner.stop().await;
    out
}

fn stage_failed(sink: &EventSink, stage: Stage, text: String, since: Instant) -> String {
    stage_end(sink, stage, Outcome::Failed, text.clone(), since);
    sink.emit(RunEvent::Error { text: text.clone() });
    text
}
