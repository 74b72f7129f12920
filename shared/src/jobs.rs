//! Job definitions: what can be enqueued, on which queue, and the message the
//! queue carries. The jobs table in the ML store is the truth about a job; the
//! queue message only says "job X needs running".

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ml::Target;

listed_enum! {
    /// The queues workers can serve.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum QueueName {
        /// Normal-priority predictions (the queue name predictions always had,
        /// so messages queued before priorities existed are still served).
        Predict,
        /// High-priority (interactive) predictions.
        PredictHigh,
        /// Low-priority predictions and scheduled batch scoring.
        PredictLow,
        Train,
        Maintenance,
    }
}

impl QueueName {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Predict => "predict",
            QueueName::PredictHigh => "predict_high",
            QueueName::PredictLow => "predict_low",
            QueueName::Train => "train",
            QueueName::Maintenance => "maintenance",
        }
    }

    /// The queues a worker serves when asked for `self`: `predict` means
    /// every prediction lane, so a worker started as before serves them all.
    pub fn served_with(self) -> &'static [QueueName] {
        match self {
            QueueName::Predict => &[
                QueueName::PredictHigh,
                QueueName::Predict,
                QueueName::PredictLow,
            ],
            QueueName::PredictHigh => &[QueueName::PredictHigh],
            QueueName::PredictLow => &[QueueName::PredictLow],
            QueueName::Train => &[QueueName::Train],
            QueueName::Maintenance => &[QueueName::Maintenance],
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "predict" => Ok(QueueName::Predict),
            "predict_high" => Ok(QueueName::PredictHigh),
            "predict_low" => Ok(QueueName::PredictLow),
            "train" => Ok(QueueName::Train),
            "maintenance" => Ok(QueueName::Maintenance),
            other => Err(format!(
                "unknown queue {other:?}; expected predict, predict_high, predict_low, train or maintenance"
            )),
        }
    }
}

listed_enum! {
    /// Job kinds, each with a stable name (stored in the jobs table and the
    /// queue message; renaming one is a migration).
    ///
    /// Everything the roles need to know about a kind, besides its payload
    /// (below) and its handler (`worker/src/jobs/`), is in [`JobKind::spec`].
    /// Adding a kind: a variant here, a row in `spec`, a payload variant in
    /// [`JobPayload`]; the compiler then points at the handler dispatch and the
    /// scheduler's schedule table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum JobKind {
        Predict,
        Score,
        Retrain,
        Drift,
        Maintenance,
    }
}

listed_enum! {
    /// How urgently a prediction is wanted. Each priority is its own queue
    /// (a lane): workers keep slots for every lane, so a high job never
    /// waits behind a backlog of low ones and low ones still progress.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
    #[serde(rename_all = "snake_case")]
    pub enum Priority {
        High,
        #[default]
        Normal,
        Low,
    }
}

impl Priority {
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// The queue (lane) of a prediction at this priority.
    pub const fn queue(self) -> QueueName {
        match self {
            Priority::High => QueueName::PredictHigh,
            Priority::Normal => QueueName::Predict,
            Priority::Low => QueueName::PredictLow,
        }
    }

    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|p| p.as_str()).collect()
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown priority {s:?}; expected one of {}",
                    Self::names().join(", ")
                )
            })
    }
}

/// When a second job of a kind collapses onto an active (queued or running)
/// one instead of being created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedup {
    /// Never: two predictions for the same projects are two questions asked
    /// at two moments.
    Never,
    /// One active job of the kind at a time: a second drift check or
    /// maintenance pass while one waits says nothing more.
    PerKind,
    /// One active job per set of targets.
    PerTargets,
}

/// One row of the job-kind table.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub name: &'static str,
    pub queue: QueueName,
    pub dedup: Dedup,
    /// A running job of this kind reads cancellation marks at checkpoints;
    /// one without checkpoints can only be cancelled while queued.
    pub checkpoints: bool,
    /// One line for the OpenAPI document and the ops page.
    pub summary: &'static str,
}

impl JobKind {
    pub const fn spec(self) -> KindSpec {
        match self {
            JobKind::Predict => KindSpec {
                name: "predict",
                queue: QueueName::Predict,
                dedup: Dedup::Never,
                checkpoints: true,
                summary: "score projects for one or more targets with the production models",
            },
            JobKind::Score => KindSpec {
                name: "score",
                queue: QueueName::PredictLow,
                dedup: Dedup::PerKind,
                checkpoints: true,
                summary: "score every open project for every target with a production model and keep each latest forecast",
            },
            JobKind::Retrain => KindSpec {
                name: "retrain",
                queue: QueueName::Train,
                dedup: Dedup::PerTargets,
                checkpoints: true,
                summary: "fit, evaluate and register new model versions of some targets",
            },
            JobKind::Drift => KindSpec {
                name: "drift",
                queue: QueueName::Maintenance,
                dedup: Dedup::PerKind,
                checkpoints: false,
                summary: "compare recent projects with each production model's reference",
            },
            JobKind::Maintenance => KindSpec {
                name: "maintenance",
                queue: QueueName::Maintenance,
                dedup: Dedup::PerKind,
                checkpoints: false,
                summary: "result and model retention, and one reconciliation sweep",
            },
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.spec().name
    }

    pub const fn queue(self) -> QueueName {
        self.spec().queue
    }

    /// The kind names, for messages and documents.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.as_str()).collect()
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job kind {s:?}; expected one of {}",
                    Self::names().join(", ")
                )
            })
    }
}

listed_enum! {
    /// Life cycle of a job row.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum JobState {
        Queued,
        Running,
        Succeeded,
        /// A permanent failure: retrying cannot help (bad input, no model).
        Failed,
        /// Attempts exhausted on transient failures or worker crashes.
        Dead,
        Cancelled,
    }
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown job state {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Which projects a prediction job covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectSelection {
    Ids(Vec<i64>),
    AllOpen,
}

/// Payload of a `predict` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictJob {
    pub targets: BTreeSet<Target>,
    pub projects: ProjectSelection,
    /// Which lane it waits in; absent (as in every payload written before
    /// priorities existed) means normal.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
}

/// Payload of a `score` job: every open project, every target with a
/// production model, at low priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreJob {
    /// Who asked: "scheduler" and the tick time, or the promotion or
    /// rollback that changed a production model.
    #[serde(default)]
    pub reason: String,
}

/// Payload of a `retrain` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrainJob {
    pub targets: BTreeSet<Target>,
    /// Who asked: "api", "scheduler", "drift", "standalone".
    #[serde(default)]
    pub reason: String,
    /// `rpa-ml standalone`'s first models: a target without a production
    /// model gets its new version even when it misses its gate, and the
    /// reason recorded says so (the demo's stand-in for an operator).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote_first: bool,
}

/// Payload of a `drift` job: compare recent projects with each production
/// model's training reference and score realised performance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftJob {
    /// Who asked: "api", or "scheduler" and the tick time.
    #[serde(default)]
    pub reason: String,
}

/// Payload of a `maintenance` job: retention and reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceJob {
    #[serde(default)]
    pub reason: String,
}

/// A job's typed payload; serialized into the jobs table and the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobPayload {
    Predict(PredictJob),
    Score(ScoreJob),
    Retrain(RetrainJob),
    Drift(DriftJob),
    Maintenance(MaintenanceJob),
}

impl JobPayload {
    pub fn kind(&self) -> JobKind {
        match self {
            JobPayload::Predict(_) => JobKind::Predict,
            JobPayload::Score(_) => JobKind::Score,
            JobPayload::Retrain(_) => JobKind::Retrain,
            JobPayload::Drift(_) => JobKind::Drift,
            JobPayload::Maintenance(_) => JobKind::Maintenance,
        }
    }

    /// The targets a job is about, for kinds that have them.
    pub fn targets(&self) -> Option<&BTreeSet<Target>> {
        match self {
            JobPayload::Predict(p) => Some(&p.targets),
            JobPayload::Retrain(r) => Some(&r.targets),
            JobPayload::Score(_) | JobPayload::Drift(_) | JobPayload::Maintenance(_) => None,
        }
    }

    /// The queue this job's message goes to: a prediction's lane follows
    /// its priority; every other kind has one queue.
    pub fn queue(&self) -> QueueName {
        match self {
            JobPayload::Predict(p) => p.priority.queue(),
            other => other.kind().queue(),
        }
    }

    /// The priority of kinds that wait in a prediction lane.
    pub fn priority(&self) -> Option<Priority> {
        match self {
            JobPayload::Predict(p) => Some(p.priority),
            JobPayload::Score(_) => Some(Priority::Low),
            JobPayload::Retrain(_) | JobPayload::Drift(_) | JobPayload::Maintenance(_) => None,
        }
    }

    /// Key that makes a second identical job collapse onto the first while
    /// it is still queued or running (see [`Dedup`]).
    pub fn dedup_key(&self) -> Option<String> {
        let kind = self.kind();
        match kind.spec().dedup {
            Dedup::Never => None,
            Dedup::PerKind => Some(kind.as_str().to_string()),
            Dedup::PerTargets => {
                let targets: Vec<&str> = self
                    .targets()
                    .into_iter()
                    .flatten()
                    .map(|t| t.as_str())
                    .collect();
                Some(format!("{kind}:{}", targets.join(",")))
            }
        }
    }
}

/// What travels on the queue: the job id (to claim the row) plus the payload
/// for anyone reading the queue directly. The worker trusts the row, not this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: String,
    pub kind: JobKind,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_with_stable_names() {
        let p = JobPayload::Predict(PredictJob {
            targets: [Target::Risk, Target::CompletionTime].into_iter().collect(),
            projects: ProjectSelection::Ids(vec![1, 2]),
            priority: Priority::Normal,
        });
        let s = serde_json::to_string(&p).expect("serialize");
        assert_eq!(
            s,
            r#"{"kind":"predict","targets":["completion_time","risk"],"projects":{"ids":[1,2]}}"#
        );
        let back: JobPayload = serde_json::from_str(&s).expect("parse");
        assert_eq!(back, p);
    }

    #[test]
    fn priority_picks_the_lane_and_normal_keeps_the_old_payload() {
        let old = r#"{"kind":"predict","targets":["risk"],"projects":"all_open"}"#;
        let p: JobPayload = serde_json::from_str(old).expect("parse");
        assert_eq!(p.queue(), QueueName::Predict);
        assert_eq!(p.priority(), Some(Priority::Normal));
        let high = JobPayload::Predict(PredictJob {
            targets: [Target::Risk].into_iter().collect(),
            projects: ProjectSelection::Ids(vec![1]),
            priority: Priority::High,
        });
        assert_eq!(high.queue(), QueueName::PredictHigh);
        let s = serde_json::to_string(&high).expect("serialize");
        assert!(s.contains(r#""priority":"high""#), "{s}");
        let score = JobPayload::Score(ScoreJob { reason: "t".into() });
        assert_eq!(score.queue(), QueueName::PredictLow);
        assert_eq!(score.dedup_key().as_deref(), Some("score"));
    }

    #[test]
    fn retrain_dedup_key_is_canonical() {
        let a = JobPayload::Retrain(RetrainJob {
            targets: [Target::Risk, Target::BudgetVariance].into_iter().collect(),
            reason: "api".into(),
            promote_first: false,
        });
        assert_eq!(
            a.dedup_key().as_deref(),
            Some("retrain:budget_variance,risk")
        );
    }
}
