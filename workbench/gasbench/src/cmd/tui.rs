//! `gasbench` with no subcommand: the TUI on a live, interactive session.
//! The TUI renders the bus and sends requests; the engine's service does
//! the work; the run directory is the same as a headless run's.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use gasbench_engine::pipeline::{AccelPref, RunSettings};
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
    let files =
        super::scenario::expand(&[gasbench_engine::agent_build::source_root().join("scenarios")]);
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
        let kdir =
            gasbench_kbuild::layout::KernelDir::locate(None).map_err(super::kernel::diagnostic)?;
        gasbench_kbuild::profile::profile(&kdir, &kernel.profile)
            .map_err(super::kernel::diagnostic)?;
    }
    let profile = std::sync::Arc::new(std::sync::Mutex::new(kernel.profile.clone()));
    let profiles = match &kernel.kernel {
        Some(_) => Vec::new(),
        None => gasbench_kbuild::layout::KernelDir::locate(None)
            .and_then(|k| gasbench_kbuild::profile::names(&k))
            .unwrap_or_default(),
    };
    let provider = kernel.provider_with(&runtime, &g.cache, profile.clone());
    let run_dir = RunDir::create(&g.cache.root().join("runs"), "tui").into_diagnostic()?;
    let settings = RunSettings {
        isolate: false,
        accel: AccelPref::Auto,
        memory_mib: 512,
        cpus: 2,
        ready_timeout: Duration::from_secs(120),
        cache: g.cache.clone(),
        runtime,
        run_dir: run_dir.path().to_path_buf(),
        busybox: false,
        device_host: Default::default(),
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
        let recorder = {
            let log = log.clone();
            tokio::spawn(async move { gasbench_trace::log::record(rx, &log, forward).await })
        };
        sink.emit(RunEvent::Started {
            run_dir: run_dir.path().display().to_string(),
            command: "gasbench (interactive)".into(),
        });
        let (tx, service) = service::spawn(settings, suite, provider, sink.clone());
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
        })
        .await;
        let _ = service.await;
        let _ = recorder.await;
        tui
    });
    // The same files a headless run leaves.
    if let Ok((events, _)) = gasbench_trace::log::read_all(&run_dir.events()) {
        let summary = RunSummary::from_events(&events);
        if let Ok(json) = serde_json::to_string_pretty(&summary) {
            let _ = std::fs::write(run_dir.results(), json);
        }
        let _ = std::fs::write(run_dir.junit(), gasbench_trace::junit::to_junit(&summary));
    }
    result.map_err(|e| miette!("{e}"))?;
    eprintln!("run directory: {}", run_dir.path().display());
    Ok(ExitCode::SUCCESS)
}
