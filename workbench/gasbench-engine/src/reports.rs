//! Kernel reports during a scenario: console lines through the report
//! parser, the agent's call markers tying each report to the call that
//! was running, kmemleak scans, decoding against the built vmlinux, and
//! numbering across the run (the same report again is counted).
//!
//! Attribution, in order: the report names a task (PRINTK_CALLER's
//! `[T97]`, or its `PID: 97`) with a call open between its markers → that
//! call; else exactly one call is open → that call (a kernel thread the
//! call started, a race it provoked); else the step that was running.

use std::collections::HashMap;
use std::sync::Arc;

use gasbench_abi::kmsg::Marker;
use gasbench_abi::protocol::ThreadId;
use gasbench_events::EventSink;
use gasbench_events::report::{Attribution, KernelReport};
use gasbench_events::vm::VmEvent;
use gasbench_kreport::decode::Decoder;
use gasbench_kreport::line::Caller;
use gasbench_kreport::parse::{self, Parsed, ReportParser};

/// At most this many reports are kept per scenario (a kernel that
/// reports in a loop must not exhaust the host).
const MAX_PER_SCENARIO: usize = 200;

#[derive(Clone, Copy, Debug)]
struct OpenCall {
    call: u64,
    step: u32,
    thread: ThreadId,
}

/// One scenario's reports as they come.
pub struct Watcher {
    parser: ReportParser,
    bundle: u64,
    scenario: String,
    /// Calls between their begin and end markers, by kernel task id.
    open: HashMap<u32, OpenCall>,
    reports: Vec<KernelReport>,
    dropped: usize,
}

impl Watcher {
    pub fn new(bundle: u64, scenario: &str) -> Watcher {
        Watcher {
            parser: ReportParser::new(),
            bundle,
            scenario: scenario.to_string(),
            open: HashMap::new(),
            reports: Vec::new(),
            dropped: 0,
        }
    }

    /// A console line; `current` is the step the agent began last.
    pub fn console(&mut self, line: &str, current: Option<u32>) {
        if let Some(m) = Marker::find(line)
            && m.bundle == self.bundle
        {
            if m.begin {
                self.open.insert(
                    m.tid,
                    OpenCall {
                        call: m.call,
                        step: m.step,
                        thread: m.thread,
                    },
                );
            } else if self.open.get(&m.tid).is_some_and(|c| c.call == m.call) {
                self.open.remove(&m.tid);
            }
            return;
        }
        for p in self.parser.push(line) {
            let a = self.attribute(&p, current);
            self.keep(p.report, a);
        }
    }

    /// What a kmemleak scan after `step` (None: after the scenario) found.
    pub fn kmemleak(&mut self, step: Option<u32>, text: &str) {
        let room = MAX_PER_SCENARIO.saturating_sub(self.reports.len());
        let (found, total) = parse::kmemleak(text, room);
        self.dropped += total - found.len();
        for p in found {
            let how = match step {
                Some(s) => format!("kmemleak scan after step {s}"),
                None => "kmemleak scan after the scenario".to_string(),
            };
            let a = Attribution {
                scenario: Some(self.scenario.clone()),
                step,
                call: None,
                thread: None,
                how,
            };
            self.keep(p.report, a);
        }
    }

    /// Every report of the scenario, reports cut off by its end included;
    /// and how many were dropped over the cap.
    pub fn finish(mut self, current: Option<u32>) -> (Vec<KernelReport>, usize) {
        for p in self.parser.finish() {
            let a = self.attribute(&p, current);
            self.keep(p.report, a);
        }
        (self.reports, self.dropped)
    }

    fn keep(&mut self, mut r: KernelReport, a: Attribution) {
        if self.reports.len() >= MAX_PER_SCENARIO {
            self.dropped += 1;
            return;
        }
        r.attribution = a;
        self.reports.push(r);
    }

    fn attribute(&self, p: &Parsed, current: Option<u32>) -> Attribution {
        let tid = match p.caller {
            Some(Caller::Task(t)) => Some(t),
            _ => p.report.task.as_ref().map(|t| t.pid),
        };
        let scenario = Some(self.scenario.clone());
        if let Some(tid) = tid
            && let Some(c) = self.open.get(&tid)
        {
            return Attribution {
                scenario,
                step: Some(c.step),
                call: Some(c.call),
                thread: Some(c.thread),
                how: format!("the call's task ({tid}) printed it"),
            };
        }
        if self.open.len() == 1
            && let Some(c) = self.open.values().next()
        {
            return Attribution {
                scenario,
                step: Some(c.step),
                call: Some(c.call),
                thread: Some(c.thread),
                how: "the only call in the kernel when it was printed".into(),
            };
        }
        Attribution {
            scenario,
            step: current,
            call: None,
            thread: None,
            how: if current.is_some() {
                "printed while the step was running".into()
            } else {
                "printed before the first step".into()
            },
        }
    }
}

/// Reports across a run: numbered, counted, decoded once.
pub struct ReportBook {
    next: u32,
    /// Signature → (id, times seen).
    seen: HashMap<String, (u32, u32)>,
    decoder: Option<Arc<Decoder>>,
    /// Why there is no decoder, if there is none.
    pub no_decoder: Option<String>,
}

/// A report filed in the book.
pub struct Filed {
    pub report: KernelReport,
    /// First time this signature was seen in the run.
    pub new: bool,
    pub count: u32,
}

impl ReportBook {
    pub fn new(decoder: Result<Decoder, String>) -> ReportBook {
        let (decoder, no_decoder) = match decoder {
            Ok(d) => (Some(Arc::new(d)), None),
            Err(e) => (None, Some(e)),
        };
        ReportBook {
            next: 1,
            seen: HashMap::new(),
            decoder,
            no_decoder,
        }
    }

    /// Number, decode (new ones only) and put the reports on the bus.
    pub async fn file(&mut self, reports: Vec<KernelReport>, sink: &EventSink) -> Vec<Filed> {
        let mut out = Vec::new();
        let mut fresh = Vec::new();
        for r in reports {
            match self.seen.get_mut(&r.signature) {
                Some((id, n)) => {
                    *n += 1;
                    let mut r = r;
                    r.id = *id;
                    out.push(Filed {
                        report: r,
                        new: false,
                        count: *n,
                    });
                }
                None => {
                    let mut r = r;
                    r.id = self.next;
                    self.next += 1;
                    self.seen.insert(r.signature.clone(), (r.id, 1));
                    fresh.push(out.len());
                    out.push(Filed {
                        report: r,
                        new: true,
                        count: 1,
                    });
                }
            }
        }
        if !fresh.is_empty() {
            let mut todo: Vec<KernelReport> =
                fresh.iter().map(|&i| out[i].report.clone()).collect();
            match &self.decoder {
                Some(d) => {
                    let d = d.clone();
                    todo = tokio::task::spawn_blocking(move || {
                        for r in &mut todo {
                            d.decode(r);
                        }
                        todo
                    })
                    .await
                    .unwrap_or_default();
                }
                None => {
                    let why = self.no_decoder.clone().unwrap_or_default();
                    for r in &mut todo {
                        r.undecoded = why.clone();
                    }
                }
            }
            for (&i, r) in fresh.iter().zip(todo) {
                out[i].report = r;
            }
        }
        for f in &out {
            if f.new {
                sink.emit(VmEvent::KernelReport(Box::new(f.report.clone())));
            } else {
                sink.emit(VmEvent::KernelReportAgain {
                    id: f.report.id,
                    count: f.count,
                    attribution: f.report.attribution.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(call: u64, begin: bool, step: u32, tid: u32) -> String {
        let m = Marker {
            call,
            begin,
            bundle: 4,
            step,
            thread: 0,
            tid,
        };
        format!("[   20.100000][  T{tid}] {}", m.line())
    }

    const SLEEP: &str =
        "[ 31.0] [  T102] BUG: sleeping function called from invalid context at x.c:5
[ 31.0] [  T102] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 102, name: gasbench-agent
[ 31.0] [  T102] Call Trace:
[ 31.0] [  T102]  <TASK>
[ 31.0] [  T102]  provoke_sleep_in_atomic+0x39/0x60
[ 31.0] [  T102]  </TASK>";

    #[test]
    fn a_report_goes_to_the_call_its_task_was_in() {
        let mut w = Watcher::new(4, "detectors");
        w.console(&marker(7, true, 2, 102), Some(2));
        w.console(&marker(8, true, 5, 103), Some(5));
        for l in SLEEP.lines() {
            w.console(l, Some(5));
        }
        w.console(&marker(7, false, 2, 102), Some(5));
        let (r, dropped) = w.finish(Some(5));
        assert_eq!(dropped, 0);
        assert_eq!(r.len(), 1);
        let a = &r[0].attribution;
        assert_eq!((a.step, a.call), (Some(2), Some(7)), "{a:?}");
        assert!(a.how.contains("102"));
    }

    #[test]
    fn a_report_from_elsewhere_goes_to_the_only_open_call_or_the_step() {
        let race = SLEEP
            .replace("T102", "T120")
            .replace("pid: 102", "pid: 120");
        let mut w = Watcher::new(4, "detectors");
        w.console(&marker(9, true, 3, 102), Some(3));
        for l in race.lines() {
            w.console(l, Some(3));
        }
        w.console(&marker(9, false, 3, 102), Some(3));
        // No call open: the step running.
        for l in race.lines() {
            w.console(l, Some(4));
        }
        let (r, _) = w.finish(Some(4));
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].attribution.step, r[0].attribution.call),
            (Some(3), Some(9))
        );
        assert_eq!(
            (r[1].attribution.step, r[1].attribution.call),
            (Some(4), None)
        );
    }

    #[test]
    fn markers_of_another_bundle_or_forged_ones_do_not_open_calls() {
        let mut w = Watcher::new(4, "s");
        w.console("[ 1.0] gasbench: call 7 begin b3 s2 t0 k102", Some(1));
        w.console("[ 1.0] gasbench: call 7 begin b4 s2 t0", Some(1));
        assert!(w.open.is_empty());
    }

    #[test]
    fn kmemleak_objects_belong_to_the_scan_that_found_them() {
        let mut w = Watcher::new(1, "leaks");
        w.kmemleak(
            Some(6),
            "unreferenced object 0xffff888004b2c000 (size 256):\n  comm \"gasbench-agent\", pid 102, jiffies 1\n  backtrace (crc 1):\n    provoke_leak+0x1c/0x50\n",
        );
        let (r, _) = w.finish(None);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].attribution.step, Some(6));
        assert_eq!(r[0].attribution.how, "kmemleak scan after step 6");
    }

    #[tokio::test]
    async fn the_same_report_twice_is_counted_with_one_number() {
        let (sink, mut rx) = gasbench_events::bus();
        let mut book = ReportBook::new(Err("no vmlinux in this test".into()));
        let mut w = Watcher::new(1, "s");
        for _ in 0..2 {
            for l in SLEEP.lines() {
                w.console(l, Some(1));
            }
        }
        let (r, _) = w.finish(Some(1));
        let filed = book.file(r, &sink).await;
        assert_eq!(filed.len(), 2);
        assert!(filed[0].new && !filed[1].new);
        assert_eq!((filed[0].report.id, filed[1].report.id), (1, 1));
        assert_eq!(filed[1].count, 2);
        assert_eq!(filed[0].report.undecoded, "no vmlinux in this test");
        drop(sink);
        let mut kinds = Vec::new();
        while let Some(e) = rx.recv().await {
            kinds.push(match e.body {
                gasbench_events::EventBody::Vm(VmEvent::KernelReport(_)) => "new",
                gasbench_events::EventBody::Vm(VmEvent::KernelReportAgain { .. }) => "again",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["new", "again"]);
    }
}
