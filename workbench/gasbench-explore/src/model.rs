//! What a model says about one call, and what the explorer reports when
//! the kernel does otherwise.

use serde::Serialize;

/// The model's answer for one call's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It must succeed.
    Ok,
    /// It must fail with one of these errnos (any errno when empty).
    Fails(Vec<&'static str>),
    /// The sources do not say. `question` is asked when the call
    /// succeeded (the driver chose to accept it).
    Unspecified { question: Option<Question> },
}

impl Outcome {
    pub fn fails(errnos: &[&'static str]) -> Outcome {
        Outcome::Fails(errnos.to_vec())
    }

    pub fn unspecified() -> Outcome {
        Outcome::Unspecified { question: None }
    }

    pub fn ask(signature: &'static str, title: &'static str, why: &'static str) -> Outcome {
        Outcome::Unspecified {
            question: Some(Question {
                signature,
                title,
                why,
            }),
        }
    }

    /// Does a call that returned `errno` (None: success) agree?
    pub fn admits(&self, errno: Option<&str>) -> bool {
        match (self, errno) {
            (Outcome::Ok, None) => true,
            (Outcome::Ok, Some(_)) => false,
            (Outcome::Fails(_), None) => false,
            (Outcome::Fails(set), Some(e)) => set.is_empty() || set.contains(&e),
            (Outcome::Unspecified { .. }, _) => true,
        }
    }

    /// The expectation a scenario writes for this outcome.
    pub fn expect_toml(&self) -> String {
        match self {
            Outcome::Ok => "expect.ok = true".into(),
            Outcome::Fails(set) if set.len() == 1 => format!("expect.errno = \"{}\"", set[0]),
            Outcome::Fails(_) => "expect.ok = false".into(),
            Outcome::Unspecified { .. } => "expect.ok = \"any\"".into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::Ok => "succeeds".into(),
            Outcome::Fails(set) if set.is_empty() => "fails".into(),
            Outcome::Fails(set) => format!("fails with {}", set.join(" or ")),
            Outcome::Unspecified { .. } => "is not specified".into(),
        }
    }
}

/// A question the model asks when the driver accepts a call the sources
/// say nothing about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub signature: &'static str,
    pub title: &'static str,
    /// Why it is a question: which source is silent or unclear.
    pub why: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The kernel breaks what the model says is promised.
    Defect,
    /// The sources do not say; the kernel's behaviour is put as a
    /// question.
    Question,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Defect => "defect",
            Kind::Question => "question",
        }
    }
}

/// A difference between the model and what ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// Stable across runs and shrinking: what kind of difference
    /// (`claim.out-of-area`), so a shrunk sequence is checked for the same
    /// one.
    pub signature: String,
    pub kind: Kind,
    /// The step key it was seen at (`x3.7`, `x3.live`).
    pub at: String,
    /// One line for the report.
    pub title: String,
    /// What the model says and where that comes from.
    pub model: String,
    /// What the kernel did (numbers and errno names only).
    pub observed: String,
    /// The expectation the reproducer writes at `at`: the model's for a
    /// defect (it fails on the kernel that diverged), the observed one for
    /// a question (it shows the behaviour asked about).
    pub expect: Vec<String>,
}

/// What checking one sequence gave.
#[derive(Clone, Debug, Default)]
pub struct SeqCheck {
    /// Questions (any number) and at most one defect, which ends the
    /// check: the model cannot follow a kernel that broke it.
    pub divergences: Vec<Divergence>,
    /// Calls the sequence made.
    pub calls: usize,
    /// The sequence did not run to its end (the agent could not run a
    /// step, the run stopped): what is checked is what ran.
    pub incomplete: Option<String>,
    /// The model's expectation per step key, for a reproducer.
    pub expects: Vec<(String, Vec<String>)>,
}

impl SeqCheck {
    pub fn has(&self, signature: &str) -> bool {
        self.divergences.iter().any(|d| d.signature == signature)
    }

    pub fn defect(&self) -> Option<&Divergence> {
        self.divergences.iter().find(|d| d.kind == Kind::Defect)
    }

    pub fn expects_at(&self, key: &str) -> Option<&[String]> {
        self.expects
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}
