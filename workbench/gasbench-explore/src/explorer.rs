//! The explorer's loop, without I/O: it hands out batches (scenario text
//! to compile and run), takes what each run showed, checks every sequence
//! against the domain's model, shrinks each new kind of divergence to a
//! minimal sequence, and writes it out as an ordinary scenario file that
//! is then run once more, as written, to confirm it reproduces.
//!
//! The caller drives it: `while let Some(b) = ex.next_batch() { run b;
//! ex.observe(&b, observed) }`. The engine's runner does that in the
//! binary; a fake driver does it in the unit tests.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::model::{Divergence, Kind, SeqCheck};
use crate::observe::Observed;

/// A uapi the explorer can drive: how to generate, render, check and
/// shrink its call sequences.
pub trait Domain {
    type Op: Clone + std::fmt::Debug + PartialEq;

    /// Short name, for scenario names and the report (`goldfish`,
    /// `mkdirat2-tmpfs`).
    fn name(&self) -> String;
    /// The `[scenario]` table and anything before the steps.
    fn header(&self, scenario: &str, description: &str) -> String;
    /// Steps at the start of every batch and reproducer (mounts, a device
    /// snapshot to start from). Their keys start with `setup.`.
    fn prologue(&self) -> String;
    /// Steps at the end of every batch and reproducer.
    fn epilogue(&self) -> String {
        String::new()
    }
    /// One random sequence.
    fn generate(&self, rng: &mut fastrand::Rng) -> Vec<Self::Op>;
    /// Calls the sequence makes, about (for batch sizing).
    fn cost(&self, seq: &[Self::Op]) -> usize;
    /// The steps of a sequence, every key prefixed `tag.`. With `check`
    /// (a reproducer), each step carries the model's expectation and the
    /// diverging step the divergence's, with comments.
    fn render(
        &self,
        seq: &[Self::Op],
        tag: &str,
        check: Option<(&SeqCheck, &Divergence)>,
    ) -> String;
    /// Check the sequence `tag` against the model. `prev` is the key of
    /// the snapshot to take as the starting state (the previous
    /// sequence's last checkpoint, or the prologue's).
    fn check(&self, seq: &[Self::Op], tag: &str, prev: &str, obs: &Observed) -> SeqCheck;
    /// The key of the sequence's last checkpoint (the next one's `prev`).
    fn last_checkpoint(&self, tag: &str) -> String;
    /// The prologue's checkpoint.
    fn first_checkpoint(&self) -> String;
    /// Smaller sequences to try, most reduced first; each well formed.
    fn shrink(&self, seq: &[Self::Op]) -> Vec<Vec<Self::Op>>;
    /// Ops in a sequence, nested ones included (for minimality).
    fn size(&self, seq: &[Self::Op]) -> usize;
    /// Fixed sequences run before any random one, by name (the matrix's
    /// columns).
    fn cases(&self) -> Vec<(String, Vec<Self::Op>)> {
        Vec::new()
    }
}

/// How a fixed case went.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    /// `same` (the kernel agreed with the model), the signature of the
    /// divergence, or `incomplete`/`not run`.
    pub status: String,
}

/// How much the explorer may run.
#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    /// Calls for generating and shrinking. Confirming is not held to it:
    /// each finding's reproducer is run once more as written (one run per
    /// finding, at most `max_findings`), so a finding is always checked;
    /// the caller's time budget bounds everything.
    pub calls: usize,
    /// Share of `calls` generation may use; the rest is kept for
    /// shrinking, counted from where generation ended (the first batch,
    /// the fixed cases, may cost more than the share on its own).
    pub generate_share: f64,
    /// Sequences per generated batch.
    pub batch_sequences: usize,
    /// Steps in one batch (scenario files allow 2000).
    pub batch_steps: usize,
    /// Shrink candidates run per round.
    pub shrink_candidates: usize,
    /// Shrink rounds per divergence.
    pub shrink_rounds: u32,
    /// New kinds of divergence shrunk and reported; more are counted.
    pub max_findings: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            calls: 2000,
            generate_share: 0.7,
            batch_sequences: 40,
            batch_steps: 1500,
            shrink_candidates: 48,
            shrink_rounds: 40,
            max_findings: 8,
        }
    }
}

/// One scenario for the caller to compile and run.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The scenario's name (also its origin for diagnostics).
    pub name: String,
    pub toml: String,
    /// What the batch is for, for progress lines.
    pub purpose: String,
    seqs: Vec<String>,
    stage: Stage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Generate,
    Shrink,
    Confirm,
}

/// One kind of divergence, from the sequence that first showed it to the
/// minimal one and its scenario file.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub domain: String,
    pub signature: String,
    pub kind: Kind,
    pub title: String,
    pub model: String,
    pub observed: String,
    /// Ops in the sequence that first showed it, and in the shrunk one.
    pub original_ops: usize,
    pub minimal_ops: usize,
    pub shrink_rounds: u32,
    /// No single op can be removed without the divergence going away.
    pub minimal: bool,
    /// The scenario file, as written.
    pub reproducer: String,
    /// A file name for it (`explore-goldfish-claim-out-of-area.toml`).
    pub file: String,
    /// The reproducer, run as written, showed the divergence again (and,
    /// for a defect, failed an expectation). None: not run (the budget ran
    /// out or the run stopped).
    pub confirmed: Option<bool>,
    /// Why it is not confirmed, when it is not.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub batches: usize,
    pub sequences: usize,
    pub calls: usize,
    pub shrink_batches: usize,
    pub shrink_sequences: usize,
    pub confirm_runs: usize,
    /// Divergences seen, of kinds already found (not shrunk again).
    pub repeats: usize,
    /// Kinds of divergence past `max_findings`, not shrunk.
    pub not_shrunk: Vec<String>,
    /// Sequences that did not run to their end, and why (the first few).
    pub incomplete: Vec<String>,
    pub incomplete_count: usize,
    /// Why the explorer stopped before its budget was spent, if it did.
    pub stopped_early: Option<String>,
    /// The fixed cases, in order.
    pub cases: Vec<CaseResult>,
}

/// What the explorer did and found, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct ExploreReport {
    pub domain: String,
    pub seed: u64,
    pub budget: Budget,
    pub stats: Stats,
    pub findings: Vec<Finding>,
}

struct Found<Op> {
    /// The tag the sequence had when `check` and `div` were made: their
    /// step keys start with it.
    tag: String,
    div: Divergence,
    original: Vec<Op>,
    minimal: Vec<Op>,
    check: SeqCheck,
    rounds: u32,
    is_minimal: bool,
    reproducer: Option<String>,
    confirmed: Option<bool>,
    note: Option<String>,
}

enum State {
    Generating,
    /// Shrinking `found[i]`.
    Shrinking(usize),
    /// Confirming `found[i]`'s reproducer.
    Confirming(usize),
    Done,
}

pub struct Explorer<D: Domain> {
    domain: D,
    seed: u64,
    rng: fastrand::Rng,
    budget: Budget,
    stats: Stats,
    state: State,
    found: Vec<Found<D::Op>>,
    /// Sequences of the batch handed out, by tag.
    pending: Vec<(String, Vec<D::Op>)>,
    seen: BTreeSet<String>,
    /// Calls made when generation ended: shrinking's share counts from
    /// here.
    generated_calls: Option<usize>,
}

impl<D: Domain> Explorer<D> {
    pub fn new(domain: D, seed: u64, budget: Budget) -> Explorer<D> {
        Explorer {
            domain,
            seed,
            rng: fastrand::Rng::with_seed(seed),
            budget,
            stats: Stats::default(),
            state: State::Generating,
            found: Vec::new(),
            pending: Vec::new(),
            seen: BTreeSet::new(),
            generated_calls: None,
        }
    }

    pub fn domain(&self) -> &D {
        &self.domain
    }

    fn generation_left(&self) -> usize {
        let cap = (self.budget.calls as f64 * self.budget.generate_share) as usize;
        cap.saturating_sub(self.stats.calls)
    }

    /// Calls shrinking may still make: the share generation left,
    /// counted from where generation ended.
    fn shrink_left(&self) -> usize {
        let cap = (self.budget.calls as f64 * self.budget.generate_share) as usize;
        let reserve = self.budget.calls.saturating_sub(cap);
        let since = self
            .stats
            .calls
            .saturating_sub(self.generated_calls.unwrap_or(self.stats.calls));
        reserve.saturating_sub(since)
    }

    /// Stop generating and shrinking (a time budget ran out, the run is
    /// being stopped): what was found is reported as far as it got.
    pub fn stop(&mut self, why: &str) {
        if self.stats.stopped_early.is_none() {
            self.stats.stopped_early = Some(why.to_string());
        }
        self.state = State::Done;
    }

    /// The next scenario to run, or None when the explorer is done.
    pub fn next_batch(&mut self) -> Option<Batch> {
        loop {
            match self.state {
                State::Done => return None,
                State::Generating => {
                    if self.generation_left() == 0 {
                        self.next_after_generation();
                        continue;
                    }
                    return Some(self.generate_batch());
                }
                State::Shrinking(i) => {
                    if self.found[i].rounds >= self.budget.shrink_rounds || self.shrink_left() == 0
                    {
                        self.finish_shrinking(i);
                        continue;
                    }
                    let candidates = self.domain.shrink(&self.found[i].minimal);
                    if candidates.is_empty() {
                        self.found[i].is_minimal = true;
                        self.finish_shrinking(i);
                        continue;
                    }
                    return Some(self.shrink_batch(i, candidates));
                }
                State::Confirming(i) => return Some(self.confirm_batch(i)),
            }
        }
    }

    fn next_after_generation(&mut self) {
        self.generated_calls = Some(self.stats.calls);
        self.next_finding(0);
    }

    fn next_finding(&mut self, i: usize) {
        self.state = if i < self.found.len() {
            State::Shrinking(i)
        } else {
            State::Done
        };
    }

    fn finish_shrinking(&mut self, i: usize) {
        let f = &mut self.found[i];
        let tag = "r";
        let name = format!("explore-{}-{}", self.domain.name(), slug(&f.div.signature));
        let text = reproducer_text(
            &self.domain,
            &name,
            &f.minimal,
            (&f.tag, tag),
            &f.check,
            &f.div,
            self.seed,
        );
        f.reproducer = Some(text);
        self.state = State::Confirming(i);
    }

    /// A batch of generated or shrink-candidate sequences (`body`, their
    /// rendered steps) to run, the sequences kept until it is observed.
    fn hand_out(
        &mut self,
        name: String,
        description: String,
        body: &str,
        seqs: Vec<(String, Vec<D::Op>)>,
        stage: Stage,
    ) -> Batch {
        let toml = self.batch_text(&name, &description, body);
        let tags = seqs.iter().map(|(t, _)| t.clone()).collect();
        self.pending = seqs;
        Batch {
            name,
            toml,
            purpose: description,
            seqs: tags,
            stage,
        }
    }

    fn batch_text(&self, name: &str, description: &str, body: &str) -> String {
        let mut s = self.domain.header(name, description);
        s.push_str(&self.domain.prologue());
        s.push_str(body);
        s.push_str(&self.domain.epilogue());
        s
    }

    fn generate_batch(&mut self) -> Batch {
        self.stats.batches += 1;
        let n = self.stats.batches;
        let left = self.generation_left();
        let mut seqs = Vec::new();
        let mut body = String::new();
        let mut cost = 0;
        let mut steps = 0;
        if n == 1 {
            for (i, (name, seq)) in self.domain.cases().into_iter().enumerate() {
                let tag = format!("k{i}");
                let text = self.domain.render(&seq, &tag, None);
                cost += self.domain.cost(&seq);
                steps += text.matches("[[step").count();
                body.push_str(&format!("\n# ---- case {name} ({tag}) ----\n"));
                body.push_str(&text);
                self.stats.cases.push(CaseResult {
                    name,
                    status: "not run".into(),
                });
                seqs.push((tag, seq));
            }
        }
        for k in 0..self.budget.batch_sequences {
            let seq = self.domain.generate(&mut self.rng);
            let c = self.domain.cost(&seq);
            let tag = format!("x{k}");
            let text = self.domain.render(&seq, &tag, None);
            let s = text.matches("[[step").count();
            if !seqs.is_empty() && (cost + c > left || steps + s > self.budget.batch_steps) {
                break;
            }
            cost += c;
            steps += s;
            body.push_str(&format!(
                "\n# ---- sequence {tag} ({} ops) ----\n",
                self.domain.size(&seq)
            ));
            body.push_str(&text);
            seqs.push((tag, seq));
        }
        let name = format!("explore-{}-batch-{n}", self.domain.name());
        let description = format!(
            "explorer batch {n}: {} random sequences (seed {})",
            seqs.len(),
            self.seed
        );
        self.hand_out(name, description, &body, seqs, Stage::Generate)
    }

    fn shrink_batch(&mut self, i: usize, mut candidates: Vec<Vec<D::Op>>) -> Batch {
        self.stats.shrink_batches += 1;
        candidates.truncate(self.budget.shrink_candidates);
        let mut body = String::new();
        let mut seqs = Vec::new();
        let mut steps = 0;
        for (k, c) in candidates.into_iter().enumerate() {
            let tag = format!("c{k}");
            let text = self.domain.render(&c, &tag, None);
            let s = text.matches("[[step").count();
            if !seqs.is_empty() && steps + s > self.budget.batch_steps {
                break;
            }
            steps += s;
            body.push_str(&format!("\n# ---- candidate {tag} ----\n"));
            body.push_str(&text);
            seqs.push((tag, c));
        }
        let sig = self.found[i].div.signature.clone();
        let name = format!(
            "explore-{}-shrink-{}-{}",
            self.domain.name(),
            slug(&sig),
            self.found[i].rounds + 1
        );
        let description = format!(
            "explorer: shrinking {sig}, round {} ({} candidates)",
            self.found[i].rounds + 1,
            seqs.len()
        );
        self.hand_out(name, description, &body, seqs, Stage::Shrink)
    }

    fn confirm_batch(&mut self, i: usize) -> Batch {
        self.stats.confirm_runs += 1;
        let f = &self.found[i];
        let name = format!("explore-{}-{}", self.domain.name(), slug(&f.div.signature));
        self.pending = vec![("r".to_string(), f.minimal.clone())];
        Batch {
            purpose: format!(
                "explorer: running the reproducer of {} as written",
                f.div.signature
            ),
            name,
            toml: f.reproducer.clone().unwrap_or_default(),
            seqs: vec!["r".into()],
            stage: Stage::Confirm,
        }
    }

    /// What the run of `batch` showed.
    pub fn observe(&mut self, batch: &Batch, obs: &Observed) {
        let seqs = std::mem::take(&mut self.pending);
        let mut prev = self.domain.first_checkpoint();
        let mut checks = Vec::new();
        for (tag, seq) in &seqs {
            if !batch.seqs.contains(tag) {
                continue;
            }
            if !obs.reached(tag) {
                // The run stopped before it: nothing to say about it.
                break;
            }
            let c = self.domain.check(seq, tag, &prev, obs);
            self.stats.calls += c.calls;
            if let Some(why) = &c.incomplete {
                self.stats.incomplete_count += 1;
                if self.stats.incomplete.len() < 5 {
                    self.stats
                        .incomplete
                        .push(format!("{}: {tag}: {why}", batch.name));
                }
            }
            prev = self.domain.last_checkpoint(tag);
            checks.push((tag.clone(), seq.clone(), c));
        }
        match batch.stage {
            Stage::Generate => {
                self.stats.sequences += checks.len();
                for (tag, _, c) in &checks {
                    if let Some(i) = tag.strip_prefix('k').and_then(|i| i.parse::<usize>().ok())
                        && let Some(case) = self.stats.cases.get_mut(i)
                    {
                        case.status = match (c.defect(), &c.incomplete) {
                            (Some(d), _) => d.signature.clone(),
                            (None, Some(_)) => "incomplete".into(),
                            (None, None) => match c.divergences.first() {
                                Some(q) => q.signature.clone(),
                                None => "same".into(),
                            },
                        };
                    }
                }
                for (tag, seq, c) in checks {
                    for d in &c.divergences {
                        if self.seen.contains(&d.signature) {
                            self.stats.repeats += 1;
                            continue;
                        }
                        self.seen.insert(d.signature.clone());
                        if self.found.len() >= self.budget.max_findings {
                            self.stats.not_shrunk.push(d.signature.clone());
                            continue;
                        }
                        self.found.push(Found {
                            tag: tag.clone(),
                            div: d.clone(),
                            original: seq.clone(),
                            minimal: seq.clone(),
                            check: c.clone(),
                            rounds: 0,
                            is_minimal: false,
                            reproducer: None,
                            confirmed: None,
                            note: None,
                        });
                    }
                }
                if obs.stopped.is_some() && self.stats.stopped_early.is_none() {
                    // The guest died under a batch: the sequence that was
                    // running is the finding; another batch would die too.
                    self.stats.stopped_early = obs.stopped.clone();
                    self.next_after_generation();
                }
            }
            Stage::Shrink => {
                self.stats.shrink_sequences += checks.len();
                let State::Shrinking(i) = self.state else {
                    return;
                };
                let sig = self.found[i].div.signature.clone();
                self.found[i].rounds += 1;
                // Candidates come most reduced first: take the first that
                // still shows the same kind of divergence.
                match checks.into_iter().find(|(_, _, c)| c.has(&sig)) {
                    Some((tag, seq, c)) => {
                        let f = &mut self.found[i];
                        f.tag = tag;
                        f.minimal = seq;
                        f.div = c
                            .divergences
                            .iter()
                            .find(|d| d.signature == sig)
                            .cloned()
                            .unwrap_or_else(|| f.div.clone());
                        f.check = c;
                    }
                    None => {
                        // Every candidate lost it. When the round tried
                        // every candidate there was, the sequence is
                        // 1-minimal.
                        let all = self.domain.shrink(&self.found[i].minimal).len()
                            <= self.budget.shrink_candidates;
                        self.found[i].is_minimal = all && obs.stopped.is_none();
                        self.finish_shrinking(i);
                    }
                }
            }
            Stage::Confirm => {
                let State::Confirming(i) = self.state else {
                    return;
                };
                let f = &mut self.found[i];
                let shown = checks
                    .first()
                    .is_some_and(|(_, _, c)| c.has(&f.div.signature));
                let failed = !obs.failed_expectations.is_empty();
                let ok = shown && (f.div.kind == Kind::Question || failed);
                f.confirmed = Some(ok);
                if !ok {
                    f.note = Some(match (shown, failed) {
                        (false, _) => "run as written, the reproducer did not show it again".into(),
                        (true, false) => {
                            "run as written, it diverged again but no expectation failed".into()
                        }
                        _ => String::new(),
                    });
                }
                self.next_finding(i + 1);
            }
        }
    }

    /// Whether a finding is waiting for its run (for callers that stop).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub fn report(&self) -> ExploreReport {
        let name = self.domain.name();
        ExploreReport {
            domain: name.clone(),
            seed: self.seed,
            budget: self.budget.clone(),
            stats: self.stats.clone(),
            findings: self
                .found
                .iter()
                .map(|f| {
                    let reproducer = f.reproducer.clone().unwrap_or_else(|| {
                        reproducer_text(
                            &self.domain,
                            &format!("explore-{name}-{}", slug(&f.div.signature)),
                            &f.minimal,
                            (&f.tag, "r"),
                            &f.check,
                            &f.div,
                            self.seed,
                        )
                    });
                    Finding {
                        domain: name.clone(),
                        signature: f.div.signature.clone(),
                        kind: f.div.kind,
                        title: f.div.title.clone(),
                        model: f.div.model.clone(),
                        observed: f.div.observed.clone(),
                        original_ops: self.domain.size(&f.original),
                        minimal_ops: self.domain.size(&f.minimal),
                        shrink_rounds: f.rounds,
                        minimal: f.is_minimal,
                        reproducer,
                        file: format!("explore-{name}-{}.toml", slug(&f.div.signature)),
                        confirmed: f.confirmed,
                        note: f.note.clone(),
                    }
                })
                .collect(),
        }
    }

    /// The minimal sequence of each finding (for tests).
    pub fn minimal_sequences(&self) -> Vec<(String, Vec<D::Op>)> {
        self.found
            .iter()
            .map(|f| (f.div.signature.clone(), f.minimal.clone()))
            .collect()
    }
}

fn reproducer_text<D: Domain>(
    domain: &D,
    name: &str,
    seq: &[D::Op],
    (from, tag): (&str, &str),
    check: &SeqCheck,
    div: &Divergence,
    seed: u64,
) -> String {
    // The check was made under the sequence's tag in its batch; the
    // reproducer's steps have their own.
    let rekey = |k: &str| match k.strip_prefix(from).filter(|r| r.starts_with('.')) {
        Some(rest) => format!("{tag}{rest}"),
        None => k.to_string(),
    };
    let check = &SeqCheck {
        expects: check
            .expects
            .iter()
            .map(|(k, v)| (rekey(k), v.clone()))
            .collect(),
        ..check.clone()
    };
    let div = &Divergence {
        at: rekey(&div.at),
        ..div.clone()
    };
    let what = match div.kind {
        Kind::Defect => "fails where the kernel breaks the model",
        Kind::Question => "shows the behaviour the model cannot judge",
    };
    let mut s = String::new();
    s.push_str(&format!(
        "# Written by `gasbench explore` (seed {seed}): the {} `{}`, shrunk to\n",
        div.kind.as_str(),
        div.signature
    ));
    s.push_str(&format!(
        "# {} op(s). It is an ordinary scenario and {what}.\n#\n",
        domain.size(seq)
    ));
    for line in wrap(&format!("{}.", div.title), 72) {
        s.push_str(&format!("# {line}\n"));
    }
    s.push_str("#\n");
    for line in wrap(&format!("Model: {}", div.model), 72) {
        s.push_str(&format!("# {line}\n"));
    }
    for line in wrap(&format!("Observed: {}", div.observed), 72) {
        s.push_str(&format!("# {line}\n"));
    }
    s.push('\n');
    s.push_str(&domain.header(name, &div.title));
    s.push_str(&domain.prologue());
    s.push_str(&domain.render(seq, tag, Some((check, div))));
    s.push_str(&domain.epilogue());
    s
}

/// `claim.out-of-area` → `claim-out-of-area`.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Words into lines of at most `width` characters.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in text.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}
