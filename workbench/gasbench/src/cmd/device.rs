//! `gasbench device serve`: the emulated goldfish address space device as
//! a standalone vfio-user server, for the pipeline (as a child) or for
//! anyone's own QEMU.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use gasbench_device::{DeviceConfig, FaultPlan, errno, parse_size};
use gasbench_events::device::{Access, DeviceEvent, Space};
use gasbench_events::{Event, EventBody};
use gasbench_vfu::pipe::PipedServer;
use gasbench_vfu::{DeviceServer, ServerStatus, signals};
use miette::{IntoDiagnostic, LabeledSpan, NamedSource, WrapErr};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(clap::Subcommand)]
enum DeviceCommand {
    /// Serve the device on a unix socket for QEMU's vfio-user-pci.
    ///
    /// Guest RAM must be shareable: start QEMU (>= 10.1) with
    /// `-object memory-backend-memfd,id=mem,size=1G,share=on -machine
    /// q35,memory-backend=mem` and `-device
    /// '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"PATH"},"x-no-posted-writes":true}'`.
    /// The server listens before QEMU starts and serves until SIGINT or
    /// SIGTERM, removing the socket on the way out.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The unix socket to listen on (a stale socket is replaced, a live one
    /// refused).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Size of the shared area (BAR1): a power of two from 4K to 64G
    /// [default: 16M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    bar1_size: Option<u64>,
    /// Write every event as one JSON line to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// A fault plan: TOML (`[[fault]]` tables), or JSON if it starts with `{`.
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// Pulse INTx after every command, as the Android emulator does.
    #[arg(long)]
    irq_on_command: bool,
    /// Also print every register access on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Be driven by a parent gasbench: events out on stdout, commands in
    /// on stdin (gasbench_vfu::pipe's line protocol). This is how
    /// `gasbench run --device-process` runs the device.
    #[arg(long, hide = true, conflicts_with = "trace")]
    pipe_protocol: bool,
    /// Once listening, switch to this user for good (`UID:GID`): the
    /// pipeline starts the server as root (the run directory is root's)
    /// and has it drop to the VM user.
    #[arg(long, hide = true, value_name = "UID:GID", value_parser = parse_ids)]
    run_as: Option<(u32, u32)>,
}

fn parse_ids(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').ok_or("expected UID:GID")?;
    let n = |x: &str| x.parse::<u32>().map_err(|e| format!("{x:?}: {e}"));
    Ok((n(u)?, n(g)?))
}

pub fn run(_g: &Globals, args: Args) -> miette::Result<ExitCode> {
    match args.command {
        DeviceCommand::Serve(a) => serve(a),
    }
}

/// Read and check a fault plan, with the offending span on error.
fn load_faults(path: &Path) -> miette::Result<FaultPlan> {
    // A regular file only, and bounded: a FIFO or /dev/zero given by
    // mistake is an error, not a hang or an exhausted memory.
    let bytes = gasbench_safefs::read_regular_file(path, gasbench_device::faults::MAX_PLAN_BYTES)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the fault plan {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| miette::miette!("the fault plan {} is not UTF-8 text: {e}", path.display()))?;
    FaultPlan::parse(&text).map_err(|e| {
        let labels = e
            .span
            .clone()
            .map(|s| vec![LabeledSpan::at(s, "here")])
            .unwrap_or_default();
        miette::miette!(labels = labels, "bad fault plan: {}", e.message)
            .with_source_code(NamedSource::new(path.display().to_string(), text))
    })
}

fn serve(a: ServeArgs) -> miette::Result<ExitCode> {
    let cfg = DeviceConfig {
        bar1_size: a.bar1_size.unwrap_or(gasbench_device::DEFAULT_BAR1_SIZE),
        irq_on_command: a.irq_on_command,
    };
    cfg.validate().into_diagnostic()?;
    let plan = match &a.faults {
        Some(p) => match load_faults(p) {
            Ok(plan) => plan,
            // A plan that cannot be read or parsed is bad input.
            Err(report) => {
                super::eprint_report(&report);
                return Ok(super::exit::code(super::exit::BAD_INPUT));
            }
        },
        None => FaultPlan::default(),
    };
    let socket = std::path::absolute(&a.socket).unwrap_or(a.socket.clone());
    if a.pipe_protocol {
        return serve_piped(&socket, cfg, plan, a.run_as);
    }
    let mut trace_out: Option<Box<dyn Write + Send>> = match &a.trace {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(
            std::fs::File::create(p)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create the trace file {}", p.display()))?,
        )),
    };

    // Signals are blocked before any thread starts, so every thread
    // inherits the mask and only the waiter below sees them.
    signals::block_termination_signals().into_diagnostic()?;
    let (sink, mut events) = gasbench_events::bus();
    let verbose = a.verbose;
    let writer = std::thread::spawn(move || {
        let mut out = trace_out.take().map(BufWriter::new);
        let mut batch = Vec::new();
        loop {
            // Poll on a short tick instead of parking in recv: a parked
            // receiver is woken by every event, and on a busy machine that
            // wake-up lands on the server thread's reply path (measured:
            // several µs per MMIO). The server emits before it replies, so
            // order is kept either way.
            match events.try_recv() {
                Ok(ev) => batch.push(ev),
                // Every sender gone and nothing left: done.
                Err(_) if events.is_closed() => break,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            }
            while let Ok(more) = events.try_recv() {
                batch.push(more);
            }
            for ev in batch.drain(..) {
                let ev = &ev;
                if let Some(o) = out.as_mut()
                    && (serde_json::to_writer(&mut *o, ev).is_err() || o.write_all(b"\n").is_err())
                {
                    eprintln!("gasbench device: cannot write the trace; continuing without it");
                    out = None;
                }
                print_event(ev, verbose);
            }
            // Flush when the bus is momentarily idle: nothing already seen
            // is lost if the process dies.
            if let Some(o) = out.as_mut() {
                let _ = o.flush();
            }
        }
    });

    let faults = plan.faults.len();
    let mut server = DeviceServer::start(&socket, cfg.clone(), sink).into_diagnostic()?;
    server.set_fault_plan(plan);
    eprintln!(
        "gasbench device: serving the goldfish address space device (607d:f153 rev 1, BAR1 {}) on {}{}",
        human_size(cfg.bar1_size),
        socket.display(),
        if faults > 0 {
            format!(" with {faults} fault rule(s)")
        } else {
            String::new()
        }
    );
    eprintln!(
        "gasbench device: attach QEMU >= 10.1 with: -object memory-backend-memfd,id=mem,size=1G,share=on \
         -machine q35,memory-backend=mem -device '{{\"driver\":\"vfio-user-pci\",\"socket\":{{\"type\":\"unix\",\"path\":\"{}\"}},\"x-no-posted-writes\":true}}'",
        socket.display()
    );

    let sig_rx = wait_for_signal();
    let (reason, failed) = loop {
        match sig_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(sig) => break (format!("stopped by {}", signals::signal_name(sig)), false),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break ("the signal waiter failed".to_string(), true);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let ServerStatus::Stopped { reason, error } = server.status() {
                    break (reason, error);
                }
            }
        }
    };
    let state = server.state();
    let stats = server.stats();
    server.stop();
    drop(server);
    let _ = writer.join();
    report_end(&reason, &state);
    eprintln!(
        "gasbench device: served {} vfio-user messages, {:.2} µs each in the server on average",
        stats.messages,
        stats.mean_us()
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The termination signal, once one comes (they must be blocked first).
fn wait_for_signal() -> mpsc::Receiver<i32> {
    let (sig_tx, sig_rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(sig) = signals::wait_termination_signal() {
            let _ = sig_tx.send(sig);
        }
    });
    sig_rx
}

/// The server as a child of the pipeline: stdout is the protocol, so
/// everything human goes to stderr.
fn serve_piped(
    socket: &Path,
    cfg: DeviceConfig,
    plan: FaultPlan,
    run_as: Option<(u32, u32)>,
) -> miette::Result<ExitCode> {
    signals::block_termination_signals().into_diagnostic()?;
    let server = PipedServer::start(
        socket,
        cfg,
        plan,
        Box::new(std::io::stdin()),
        Box::new(std::io::stdout()),
    )
    .into_diagnostic()?;
    if let Some((uid, gid)) = run_as {
        let id = gasbench_confine::Identity {
            name: format!("{uid}:{gid}"),
            uid,
            gid,
        };
        gasbench_confine::drop_privileges(&id)
            .map_err(|e| miette::miette!("switching to {uid}:{gid} after listening: {e}"))?;
    }
    eprintln!(
        "gasbench device: serving on {} for the pipeline (pid {})",
        socket.display(),
        std::process::id()
    );
    let sig_rx = wait_for_signal();
    let (reason, failed, state) = server.run(|| {
        sig_rx
            .try_recv()
            .ok()
            .map(|sig| format!("stopped by {}", signals::signal_name(sig)))
    });
    report_end(&reason, &state);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn report_end(reason: &str, state: &gasbench_events::device::DeviceState) {
    let c = &state.counters;
    eprintln!(
        "gasbench device: {reason}; {} handle(s) and {} block(s) still held; {} reads, {} writes, {} pings, {} fault(s) injected",
        state.handles.len(),
        state
            .blocks
            .iter()
            .filter(|b| b.owner != gasbench_events::device::BlockOwner::Free)
            .count(),
        c.reads,
        c.writes,
        c.ping.ok + c.ping.failed + c.ping_with_data.ok + c.ping_with_data.failed,
        c.faults
    );
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// One human line per interesting event on stderr.
fn print_event(ev: &Event, verbose: bool) {
    let EventBody::Device(d) = &ev.body else {
        return;
    };
    let t = ev.t_us as f64 / 1e6;
    let line = match d {
        DeviceEvent::Listening { .. } => return,
        DeviceEvent::Connected { client_version, .. } => {
            format!("client connected (vfio-user {client_version})")
        }
        DeviceEvent::Disconnected { reason } => format!("client gone: {reason}"),
        DeviceEvent::DmaMap { gpa, size, mapped } => format!(
            "guest RAM {gpa:#x}+{size:#x}{}",
            if *mapped { "" } else { " (unreachable)" }
        ),
        DeviceEvent::DmaUnmap { gpa, size } => format!("guest RAM {gpa:#x}+{size:#x} unmapped"),
        DeviceEvent::Irqs { index, action, .. } => format!("irq {index}: {action}"),
        DeviceEvent::Reset { by } => format!("reset by {by}"),
        DeviceEvent::Command(c) => format!(
            "{} [handle {}] {} → {}",
            c.command.name(),
            c.handle,
            c.decoded,
            if c.status == 0 {
                "ok".into()
            } else {
                errno::describe(c.status)
            }
        ),
        DeviceEvent::Ping(p) => format!(
            "{} handle {}: {}{}",
            if p.with_data {
                "PING_WITH_DATA"
            } else {
                "PING"
            },
            p.handle,
            p.decoded,
            p.error
                .as_deref()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        ),
        DeviceEvent::Fault(f) => format!(
            "FAULT rule {} on {} #{}: {}",
            f.rule, f.trigger, f.occurrence, f.action
        ),
        DeviceEvent::Anomaly { text } => format!("anomaly: {text}"),
        DeviceEvent::Stopped { reason } => format!("server stopped: {reason}"),
        DeviceEvent::State(_) => return,
        DeviceEvent::Reg(r) => {
            if !verbose {
                return;
            }
            let space = match r.space {
                Space::Config => "cfg ",
                Space::Bar0 => "bar0",
                Space::Bar1 => "bar1",
            };
            let dir = match r.access {
                Access::Read => "R",
                Access::Write => "W",
            };
            let name = r.reg.map(|x| x.name()).unwrap_or("");
            format!(
                "{space} {dir} {:#06x}/{} {name:<19} {:#010x} {}",
                r.offset, r.width, r.value, r.decoded
            )
        }
    };
    eprintln!("[{t:10.6}] {line}");
}
