//! `gasbench` with no subcommand: the TUI on a live, interactive session.
//! The TUI renders the bus and sends requests; the engine's service does
//! the work; the run directory is the same as a headless run's.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use gasbench_engine::pipeline::RunSettings;
use gasbench_engine::service::{self, Request, Which};
use gasbench_events::run::RunEvent;
use gasbench_trace::{RunDir, RunSummary};
use gasbench_tui::{ControlError, Controller, Live, Selection};
use miette::{IntoDiagnostic, miette};
use tokio::sync::mpsc::UnboundedSender;

use crate::Globals;
use crate::cmd::kernel_choice::KernelArgs;

struct EngineController {
    tx: UnboundedSender<Request>,
    suite: Vec<String>,
    /// The kernel profile the next build uses, and the ones to cycle.
    profile: std::sync::Arc<std::sync::Mutex<String>>,
    profiles: Vec<String>,
}

impl EngineController {
    fn send(&self, r: Request) -> Result<(), ControlError> {
        self.tx
            .send(r)
            .map_err(|_| ControlError("the pipeline has stopped".into()))
    }
}

impl Controller for EngineController {
    fn suite(&self) -> Vec<String> {
        self.suite.clone()
    }
    fn run(&mut self, which: Selection) -> Result<(), ControlError> {
        self.send(Request::Run(match which {
            Selection::All => Which::All,
            Selection::One(name) => Which::Named(name),
        }))
    }
    fn rebuild_kernel(&mut self) -> Result<(), ControlError> {
        self.send(Request::Rebuild)
    }
    fn next_profile(&mut self) -> Result<(), ControlError> {
        if self.profiles.len() < 2 {
            return Err(ControlError("only one kernel profile is defined".into()));
        }
        {
            let mut p = self.profile.lock().unwrap_or_else(|p| p.into_inner());
            let i = self.profiles.iter().position(|x| *x == *p).unwrap_or(0);
            *p = self.profiles[(i + 1) % self.profiles.len()].clone();
        }
        self.send(Request::Rebuild)
    }
    fn stop_vm(&mut self) -> Result<(), ControlError> {
        self.send(Request::StopVm)
    }
    fn quit(&mut self) -> Result<(), ControlError> {
        self.send(Request::Quit)
    }
}

pub fn run(g: &Globals, kernel: KernelArgs) -> miette::Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(miette!(
            help = "for a headless run use `gasbench run`",
            "the gasbench TUI needs a terminal on stdin and stdout"
        ));
    }
    kernel.prebuilt().map_err(|e| miette!("{e}"))?;
    let files = super::scenario::expand(&[super::run::default_suite(g)?]);
    let suite = match super::scenario::load_all(&files) {
        Ok(s) => s,
        Err(bad) => {
            eprintln!("gasbench: {bad} scenario file(s) of the default suite have problems");
            return Ok(ExitCode::FAILURE);
        }
    };
    let runtime = super::setup::ready_runtime(g)?;
    if kernel.kernel.is_none() {
        // A profile name that does not exist is refused here, not after
        // the TUI has taken the terminal.
        let kdir = g.kernel_dir()?;
        gasbench_kbuild::profile::profile(&kdir, &kernel.profile(g))
            .map_err(super::kernel::diagnostic)?;
    }
    let profile = std::sync::Arc::new(std::sync::Mutex::new(kernel.profile(g)));
    let profiles = match &kernel.kernel {
        Some(_) => Vec::new(),
        None => g
            .kernel_dir()
            .ok()
            .and_then(|k| gasbench_kbuild::profile::names(&k).ok())
            .unwrap_or_default(),
    };
    let provider = kernel.provider_with(g, &runtime, profile.clone())?;
    let run_dir = RunDir::create(&g.cache.root().join("runs"), "tui").into_diagnostic()?;
    let settings = RunSettings {
        isolate: false,
        accel: super::headless::accel_pref(&g.config.accel.value),
        memory_mib: g.config.memory_mib.value,
        cpus: g.config.cpus.value,
        ready_timeout: Duration::from_secs(120),
        agent_source: super::headless::agent_source(g),
        cache: g.cache.clone(),
        runtime,
        run_dir: run_dir.path().to_path_buf(),
        busybox: false,
        device_host: Default::default(),
        guest_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
    };
    let names: Vec<String> = suite.iter().map(|c| c.plan.scenario.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let result = rt.block_on(async {
        let (sink, rx) = gasbench_events::bus();
        let (forward, events) = gasbench_tui::tap();
        let log = run_dir.events();
        let mut recorder = {
            let log = log.clone();
            tokio::spawn(async move { gasbench_trace::log::record(rx, &log, forward).await })
        };
        sink.emit(RunEvent::Started {
            run_dir: run_dir.path().display().to_string(),
            command: "gasbench (interactive)".into(),
        });
        let (tx, mut service) = service::spawn(settings, suite, provider, sink.clone());
        // The service holds the bus from here: when it ends, the bus
        // closes and the TUI knows the pipeline has stopped.
        drop(sink);
        let controller = EngineController {
            tx,
            suite: names,
            profile,
            profiles,
        };
        let tui = gasbench_tui::run_live(Live {
            events,
            log,
            controller: Box::new(controller),
            theme: super::progress::reporter().tui_theme(),
        })
        .await;
        match &tui {
            Ok(end) if !end.forced => {
                let _ = service.await;
            }
            // Left at once (or the terminal failed): the service goes now,
            // and with it the VM and the device server (their Drop kills
            // them); the kernel stage's tools are killed by group.
            _ => {
                service.abort();
                let _ = (&mut service).await;
                gasbench_env::process::kill_tools();
            }
        }
        // What reached the recorder is on disk within its tick; a part
        // that still holds the bus is not waited for.
        if tokio::time::timeout(RECORDER_DRAIN, &mut recorder)
            .await
            .is_err()
        {
            recorder.abort();
        }
        tui
    });
    rt.shutdown_timeout(SHUTDOWN_WAIT);
    // The same files a headless run leaves, each whole or not at all.
    if let Ok((events, _)) = gasbench_trace::log::read_all(&run_dir.events()) {
        let summary = RunSummary::from_events(&events);
        let checkout = g
            .kernel_dir()
            .map(|k| super::checkout::of_all(&k))
            .unwrap_or_default();
        let (_, unwritten) = super::headless::write_results(&run_dir, &summary, &checkout, None);
        for e in unwritten {
            eprintln!("gasbench: {e}");
        }
    }
    let end = result.map_err(|e| miette!("{e}"))?;
    eprintln!("run directory: {}", run_dir.path().display());
    // A signal ended it: the shell's code for it (130, 143, 129).
    Ok(match end.signal {
        Some(n) => ExitCode::from(128 + n as u8),
        None => ExitCode::SUCCESS,
    })
}

/// How long the recorder gets to write what is left once the TUI is gone.
const RECORDER_DRAIN: Duration = Duration::from_secs(5);
/// How long tasks still on the runtime get when the TUI has ended.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
