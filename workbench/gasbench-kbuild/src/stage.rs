//! The kernel stage's timing events: a stage begun, ended, failed, and
//! notes along the way.

use super::*;

pub(crate) struct StageTimer<'a> {
    sink: &'a EventSink,
    stage: Stage,
    start: Instant,
}

impl<'a> StageTimer<'a> {
    pub(crate) fn begin(sink: &'a EventSink, stage: Stage, detail: impl Into<String>) -> Self {
        sink.emit(RunEvent::StageBegin {
            stage,
            detail: detail.into(),
        });
        Self {
            sink,
            stage,
            start: Instant::now(),
        }
    }
    pub(crate) fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    pub(crate) fn end(self, outcome: Outcome, detail: impl Into<String>) -> u64 {
        let ms = self.ms();
        self.sink.emit(RunEvent::StageEnd {
            stage: self.stage,
            outcome,
            detail: detail.into(),
            elapsed_ms: ms,
        });
        ms
    }
    pub(crate) fn fail(self, e: &KbuildError) {
        self.end(Outcome::Failed, e.to_string());
    }
}

pub(crate) fn note(sink: &EventSink, stage: Stage, text: &str) {
    sink.emit(RunEvent::StageProgress {
        stage,
        done: 0,
        total: 0,
        detail: text.to_string(),
    });
}
