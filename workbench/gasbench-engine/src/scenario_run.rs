//! Running one compiled scenario on a booted guest.
//!
//! The engine writes the bundle into the share, tells the agent to run
//! it, feeds the [`Evaluator`] everything it observes (agent messages,
//! console lines with the step that was running, device snapshots and
//! host-action results at sync points), acts at each sync point, and emits
//! the verdicts. A guest that stops answering is stopped at the step's or
//! the scenario's deadline and the verdicts say where it hung.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gasbench_abi::protocol::{AgentMsg, HostMsg, ThreadId};
use gasbench_events::EventSink;
use gasbench_events::report::ReportKind;
use gasbench_events::run::{ProfileChoice, RunEvent};
use gasbench_safefs::{GuestDir, SafeFsError};
use gasbench_scenario::{Compiled, Evaluator, HostAction, Report, Verdict};
use gasbench_vfu::ServerStatus;

use crate::guest::Guest;
use crate::interrupt::Interrupt;
use crate::preflight;
use crate::reports::{ReportBook, Watcher};
use crate::session::SessionError;

/// How a scenario ended.
pub struct ScenarioOutcome {
    pub report: Report,
    pub elapsed: Duration,
    /// Set when the guest cannot serve another scenario (it hung, the
    /// device was left unplugged): the run reboots before the next one.
    pub unfit: Option<String>,
    /// Set when a part of the guest died mid-scenario (QEMU, virtiofsd,
    /// the device server, the agent): the run cannot go on. The report
    /// still has the verdicts of the steps that finished.
    pub died: Option<ScenarioError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The guest or a process under it died: the run cannot go on.
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the goldfish device server died: {0}")]
    DeviceDied(String),
    #[error("writing the bundle for {scenario}: {source}")]
    Bundle {
        scenario: String,
        #[source]
        source: SafeFsError,
    },
    /// Preflight checks every fault plan before a boot, so this is a bug;
    /// the scenario does not run without the faults it asked for.
    #[error("{scenario}: the device refuses its fault plan: {}", problems.join("; "))]
    FaultPlan {
        scenario: String,
        problems: Vec<String>,
    },
}

/// Hand a bundle to the guest: a new file under `share/bundles`, its name
/// fresh (`<id>-<random>.json`, so a boot after a reboot, or a guest that
/// planted names ahead, never meets an existing one), created beneath the
/// share without following anything the guest left there. Returns its
/// path relative to the share.
pub fn write_bundle(
    share: &Path,
    id: u64,
    json: &[u8],
    sink: &EventSink,
) -> Result<String, SafeFsError> {
    let root = GuestDir::open(share)?;
    let dir = match root.make_dir(BUNDLES, 0o755) {
        Ok(d) => d,
        // The guest put something else where bundles go (a symlink out of
        // the share, a file, a FIFO): the entry itself goes, never what
        // it points to.
        Err(SafeFsError::Symlink { .. } | SafeFsError::NotADirectory { .. }) => {
            let kind = root
                .kind(BUNDLES)
                .ok()
                .flatten()
                .unwrap_or("not a directory");
            root.remove(BUNDLES)?;
            sink.emit(RunEvent::Note {
                text: format!(
                    "share/{BUNDLES} was {kind} (left by the guest); replaced with a directory"
                ),
            });
            root.make_dir(BUNDLES, 0o755)?
        }
        Err(e) => return Err(e),
    };
    let name = dir.create_fresh(&id.to_string(), "json", json)?;
    Ok(format!("{BUNDLES}/{name}"))
}

/// Where bundles go in the share.
const BUNDLES: &str = "bundles";

/// How long QEMU's hot-unplug may take: the guest must unbind the driver.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(60);

/// Run `c` on `guest`. `bundle_id` is unique within the boot. Kernel
/// reports are numbered in `book` across the run; `profile` says which
/// detectors the kernel has (kmemleak: scans before and after). `Err`: the
/// scenario could not begin (its bundle could not be written, the agent or
/// device could not be told); a part that dies once it runs ends it with
/// the verdicts it has and [`ScenarioOutcome::died`].
pub async fn run_scenario(
    guest: &mut Guest,
    c: &Compiled,
    bundle_id: u64,
    share: &Path,
    sink: &EventSink,
    interrupt: &mut Interrupt,
    (book, profile): (&mut ReportBook, &ProfileChoice),
) -> Result<ScenarioOutcome, ScenarioError> {
    let start = Instant::now();
    let plan = &c.plan;
    let name = plan.scenario.clone();
    sink.emit(RunEvent::ScenarioBegin {
        scenario: name.clone(),
        steps: plan.steps.len() as u32,
    });
    let mut ev = Evaluator::new(c);

    // The device starts each scenario with the scenario's own fault plan
    // (or none): occurrences count from here.
    if let Some(d) = &guest.device {
        let plan = match &plan.initial_faults {
            Some(f) => preflight::fault_plan(f).map_err(|problems| ScenarioError::FaultPlan {
                scenario: name.clone(),
                problems: problems.into_iter().map(|p| p.message).collect(),
            })?,
            None => Default::default(),
        };
        d.set_fault_plan(plan).map_err(ScenarioError::DeviceDied)?;
    }

    // Calls are marked in the kernel log (reports are tied to them); a
    // kernel with kmemleak is scanned around the scenario.
    let mut bundle = c.bundle.clone();
    bundle.kmsg_markers = true;
    bundle.kmemleak = profile.detectors.iter().any(|d| d == "kmemleak");
    let json = serde_json::to_vec_pretty(&bundle).unwrap_or_default();
    let rel =
        write_bundle(share, bundle_id, &json, sink).map_err(|source| ScenarioError::Bundle {
            scenario: name.clone(),
            source,
        })?;

    let mut console = guest.session.vm.console();
    let mut watcher = Watcher::new(bundle_id, &name);
    guest.session.send(&HostMsg::RunBundle {
        id: bundle_id,
        path: rel,
    })?;

    let deadline = start + plan.timeout;
    // The step begun last: console lines belong to it.
    let mut current: Option<u32> = None;
    // Every step running now, per thread, since when: a block or group is
    // running while its inner steps come and go, and keeps its deadline.
    let mut running: BTreeMap<(ThreadId, u32), Instant> = BTreeMap::new();
    // The step that ran out of time (or was running when the guest went
    // quiet), once one did.
    let mut timed_out: Option<Option<u32>> = None;
    // Set when an interrupt (a signal, a full disk) ended it: where it was.
    let mut interrupted: Option<String> = None;
    let mut unfit = None;
    // Set when a part died: the loop ends, the verdicts so far are kept.
    let mut died: Option<ScenarioError> = None;
    let mut last_heard = Instant::now();
    let mut device_status = guest.device.as_ref().map(|d| d.subscribe());
    loop {
        let now = Instant::now();
        // The earliest deadline: the scenario's or a running step's. A
        // guest that keeps talking past it is stopped here; a silent one
        // when the wait for its next message runs out.
        let (due, due_step) = running
            .iter()
            .filter_map(|(&(_, step), &began)| plan.step(step).map(|i| (began + i.timeout, step)))
            .min()
            .filter(|(d, _)| *d < deadline)
            .map_or((deadline, None), |(d, s)| (d, Some(s)));
        if now >= due {
            let why = out_of_time(c, due_step, current, start.elapsed(), last_heard.elapsed());
            sink.emit(RunEvent::Note { text: why.clone() });
            timed_out = Some(due_step.or(current));
            unfit = Some(why);
            break;
        }
        let wait = due - now;
        let device_changed = async {
            match &mut device_status {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = guest.session.next(wait, "running a scenario") => {
                let msg = match msg {
                    Ok(m) => m,
                    // The wait was what the earliest deadline had left:
                    // the top of the loop says which ran out.
                    Err(SessionError::Silent { .. }) => continue,
                    Err(e) => {
                        died = Some(e.into());
                        break;
                    }
                };
                last_heard = Instant::now();
                ev.agent(&msg);
                match msg {
                    AgentMsg::StepBegin { step, thread, .. } => {
                        current = Some(step);
                        running.entry((thread, step)).or_insert_with(Instant::now);
                    }
                    AgentMsg::StepEnd { step, thread, .. } => {
                        running.remove(&(thread, step));
                    }
                    AgentMsg::SyncWait { bundle, sync, .. } => {
                        let result = host_actions(guest, c, sync, sink).await;
                        ev.host_action(sync, result.map_err(|e| e.to_string()));
                        if plan.sync(sync).is_some_and(|s| s.snapshot)
                            && let Some(d) = &guest.device {
                                match d.state() {
                                    Ok(state) => ev.device_snapshot(sync, &state),
                                    Err(why) => {
                                        died = Some(ScenarioError::DeviceDied(why));
                                        break;
                                    }
                                }
                            }
                        if let Err(e) = guest.session.send(&HostMsg::Resume { bundle, sync }) {
                            died = Some(e.into());
                            break;
                        }
                    }
                    AgentMsg::Kmemleak { step, text, error, .. } => {
                        ev.kmemleak_scan(step, error);
                        watcher.kmemleak(step, &text);
                    }
                    AgentMsg::BundleEnd { .. } => break,
                    _ => {}
                }
            }
            cause = interrupt.wait() => {
                let why = format!("{name}: {cause} {}", place(c, current));
                sink.emit(RunEvent::Note { text: why.clone() });
                unfit = Some(why.clone());
                interrupted = Some(why);
                break;
            }
            line = console.recv() => {
                if let Ok(line) = line {
                    ev.console(current, &line);
                    watcher.console(&line, current);
                }
            }
            alive = device_changed => {
                if let Some(d) = &mut guest.device
                    && let Some(why) = d.died().await
                {
                    died = Some(ScenarioError::DeviceDied(why));
                    break;
                }
                if !alive {
                    device_status = None;
                }
            }
        }
    }
    // Console lines racing the end of the bundle still belong to it (not
    // when the VM died, nothing more is coming; nor when the run is being
    // stopped: its verdicts go out at once).
    let settle_ms = if died.is_some() || interrupted.is_some() {
        0
    } else {
        200
    };
    let settle = Instant::now() + Duration::from_millis(settle_ms);
    while let Ok(Ok(line)) = tokio::time::timeout(
        settle.saturating_duration_since(Instant::now()),
        console.recv(),
    )
    .await
    {
        ev.console(current, &line);
        watcher.console(&line, current);
    }
    if !guest.plugged && unfit.is_none() {
        unfit = Some(format!("{name} left the goldfish device unplugged"));
    }
    // Kernel reports: numbered, decoded, on the bus, to the verdicts.
    let (found, dropped) = watcher.finish(current);
    if dropped > 0 {
        sink.emit(RunEvent::Note {
            text: format!("{name}: {dropped} more kernel report(s) were not kept"),
        });
    }
    let filed = book.file(found, sink).await;
    for f in &filed {
        ev.kernel_report(&f.report);
        if f.report.kind.spoils_the_boot() && unfit.is_none() {
            unfit = Some(match f.report.kind {
                ReportKind::Lockdep => format!(
                    "{name}: lockdep reported (report #{}); it reports once per boot and is off until the next",
                    f.report.id
                ),
                ReportKind::Kasan => format!(
                    "{name}: KASAN reported (report #{}); the taint it sets turns lockdep off until the next boot",
                    f.report.id
                ),
                kind => format!(
                    "{name}: the kernel reported a {} (report #{}); it is not trusted for another scenario",
                    kind.name(),
                    f.report.id
                ),
            });
        }
    }
    // A step that provoked a detector on purpose and got its report.
    for e in &plan.expectations {
        if let gasbench_scenario::Check::Report { kinds } = &e.check {
            let under = |s: Option<u32>| {
                let mut s = s;
                while let Some(id) = s {
                    if id == e.step {
                        return true;
                    }
                    s = plan.step(id).and_then(|i| i.parent);
                }
                false
            };
            for kind in kinds {
                if let Some(f) = filed
                    .iter()
                    .find(|f| f.report.kind.name() == kind && under(f.report.attribution.step))
                {
                    sink.emit(RunEvent::DetectorProven {
                        detector: kind.clone(),
                        scenario: name.clone(),
                        step: e.step,
                        report: f.report.id,
                    });
                }
            }
        }
    }
    let mut report = ev.finish();
    if let (Some(why), Some(step)) = (&unfit, timed_out) {
        let info = step.and_then(|s| plan.step(s));
        report.verdicts.push(Verdict {
            step,
            step_name: info.map_or_else(|| "(none)".into(), |i| i.name.clone()),
            line: info.map_or(0, |i| i.line),
            what: "the guest finished the step".into(),
            expected: format!(
                "within the step's timeout ({} s) and the scenario's ({} s)",
                info.map_or(0, |i| i.timeout.as_secs()),
                plan.timeout.as_secs()
            ),
            actual: why.clone(),
            held: false,
        });
    }
    // A scenario cut short says where, and why: an interrupt, or the part
    // that died (its first line; the run's error has the console's tail).
    let cut_short = interrupted.clone().or_else(|| {
        died.as_ref().map(|e| {
            let what = e.to_string();
            let what = what
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches("; the console's last lines:");
            format!("{name}: stopped {}: {what}", place(c, current))
        })
    });
    if let Some(why) = &cut_short {
        let info = current.and_then(|s| plan.step(s));
        report.verdicts.push(Verdict {
            step: current,
            step_name: info.map_or_else(|| "(none)".into(), |i| i.name.clone()),
            line: info.map_or(0, |i| i.line),
            what: "the scenario ran to its end".into(),
            expected: "every step run".into(),
            actual: why.clone(),
            held: false,
        });
    }
    for v in &report.verdicts {
        sink.emit(RunEvent::Expectation {
            scenario: name.clone(),
            step: v.step.unwrap_or(0),
            line: u32::try_from(v.line).unwrap_or(u32::MAX),
            step_name: v.step_name.clone(),
            what: v.what.clone(),
            expected: v.expected.clone(),
            actual: v.actual.clone(),
            held: v.held,
        });
    }
    let elapsed = start.elapsed();
    sink.emit(RunEvent::ScenarioEnd {
        scenario: name,
        passed: report.passed(),
        elapsed_ms: elapsed.as_millis() as u64,
    });
    Ok(ScenarioOutcome {
        report,
        elapsed,
        unfit,
        died,
    })
}

/// Where a scenario was: "during step 1 \"name\" (file:line)".
fn place(c: &Compiled, current: Option<u32>) -> String {
    current
        .and_then(|s| c.plan.step(s))
        .map_or("before the first step".to_string(), |i| {
            format!(
                "during step {} \"{}\" ({}:{})",
                i.id, i.name, c.origin, i.line
            )
        })
}

/// Why a scenario was stopped at a deadline: the step (or scenario) whose
/// timeout ran out, and whether the guest had gone quiet (a hang) or was
/// still reporting (a block or a repeat that takes too long).
fn out_of_time(
    c: &Compiled,
    due_step: Option<u32>,
    current: Option<u32>,
    elapsed: Duration,
    quiet: Duration,
) -> String {
    let place = match due_step.or(current).and_then(|s| c.plan.step(s)) {
        Some(i) => format!("step {} \"{}\" ({}:{})", i.id, i.name, c.origin, i.line),
        None => "the scenario, before the first step".into(),
    };
    if quiet >= Duration::from_secs(1) {
        return format!(
            "{}: the guest stopped answering during {place} after {:.1} s (silent for {:.1} s)",
            c.plan.scenario,
            elapsed.as_secs_f64(),
            quiet.as_secs_f64()
        );
    }
    match due_step.and_then(|s| c.plan.step(s)) {
        Some(i) => format!(
            "{}: {place} did not finish within its timeout of {:.1} s; the guest was still running it",
            c.plan.scenario,
            i.timeout.as_secs_f64()
        ),
        None => format!(
            "{}: the scenario did not finish within its timeout of {:.1} s, during {place}; the guest was still running it",
            c.plan.scenario,
            c.plan.timeout.as_secs_f64()
        ),
    }
}

/// Why a host step (`host = "device_del"`, …) failed; its text is the
/// step's verdict.
#[derive(Debug, thiserror::Error)]
pub enum HostStepError {
    #[error("this run has no goldfish device")]
    NoDevice,
    #[error("the goldfish device is not plugged in")]
    NotPlugged,
    #[error("the goldfish device is already plugged in")]
    AlreadyPlugged,
    #[error(transparent)]
    Hotplug(#[from] gasbench_qemu::HotplugError),
    #[error("the device server is not waiting for QEMU: {0}")]
    ServerNotWaiting(String),
    #[error("QEMU did not connect to the device server after device_add")]
    NotConnected,
    #[error("{0} fault rule(s) refused by the device")]
    FaultsRefused(usize),
    #[error("{0}")]
    Device(String),
}

/// Carry out the host actions of sync point `sync`, in order; the first
/// failure ends them and is the result.
async fn host_actions(
    guest: &mut Guest,
    c: &Compiled,
    sync: u32,
    sink: &EventSink,
) -> Result<(), HostStepError> {
    let Some(sp) = c.plan.sync(sync) else {
        return Ok(());
    };
    for action in &sp.actions {
        sink.emit(RunEvent::Note {
            text: format!("{}: host step: {}", c.plan.scenario, action.name()),
        });
        match action {
            HostAction::DeviceDel => device_del(guest).await?,
            HostAction::DeviceAdd => device_add(guest).await?,
            HostAction::SetFaults(f) => {
                let d = guest.device.as_ref().ok_or(HostStepError::NoDevice)?;
                let plan =
                    preflight::fault_plan(f).map_err(|p| HostStepError::FaultsRefused(p.len()))?;
                d.set_fault_plan(plan).map_err(HostStepError::Device)?;
            }
        }
    }
    Ok(())
}

async fn device_del(guest: &mut Guest) -> Result<(), HostStepError> {
    if !guest.plugged {
        return Err(HostStepError::NotPlugged);
    }
    guest.session.vm.unplug_goldfish(UNPLUG_TIMEOUT).await?;
    guest.plugged = false;
    Ok(())
}

async fn device_add(guest: &mut Guest) -> Result<(), HostStepError> {
    if guest.plugged {
        return Err(HostStepError::AlreadyPlugged);
    }
    let d = guest.device.as_ref().ok_or(HostStepError::NoDevice)?;
    let before = match d.status() {
        ServerStatus::Listening { sessions, .. } => sessions,
        other => return Err(HostStepError::ServerNotWaiting(format!("{other:?}"))),
    };
    guest.session.vm.plug_goldfish().await?;
    // QEMU connects to the server as part of device_add.
    let connected = d
        .wait_status(
            Duration::from_secs(10),
            |s| matches!(s, ServerStatus::Connected { session } if *session > before),
        )
        .await;
    if connected.is_none() {
        return Err(HostStepError::NotConnected);
    }
    guest.plugged = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_events::EventBody;
    use std::os::unix::fs::symlink;

    /// What a guest that writes into its share could plant for the next
    /// bundles: links to a host file, a FIFO, and `bundles` itself turned
    /// into a link out of the share. The host's bundle goes to a fresh
    /// file beneath the share and nothing outside changes.
    #[test]
    fn bundles_are_written_beneath_the_share_whatever_the_guest_planted() {
        let tmp = tempfile::tempdir().unwrap();
        let share = tmp.path().join("share");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(share.join("bundles")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let canary = tmp.path().join("canary");
        std::fs::write(&canary, "host file").unwrap();
        for id in 1..=3 {
            symlink(&canary, share.join(format!("bundles/{id}.json"))).unwrap();
        }
        let (sink, mut bus) = gasbench_events::bus();
        let rel = write_bundle(&share, 1, b"{\"bundle\":1}", &sink).unwrap();
        assert!(
            rel.starts_with("bundles/1-") && rel.ends_with(".json"),
            "{rel}"
        );
        assert_eq!(
            std::fs::read_to_string(share.join(&rel)).unwrap(),
            "{\"bundle\":1}"
        );
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host file");

        // `bundles` replaced by a link out of the share: the link goes.
        std::fs::rename(share.join("bundles"), share.join("old")).unwrap();
        symlink(&outside, share.join("bundles")).unwrap();
        let rel = write_bundle(&share, 2, b"{}", &sink).unwrap();
        assert!(share.join(&rel).is_file());
        assert!(!share.join("bundles").is_symlink());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let note = bus.try_recv().unwrap();
        assert!(
            matches!(&note.body, EventBody::Run(RunEvent::Note { text }) if text.contains("was a symbolic link")),
            "{note:?}"
        );
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host file");
    }
}
