//! Job definitions: what can be enqueued, on which queue, and the message the
//! queue carries. The jobs table in the ML store is the truth about a job; the
//! queue message only says "job X needs running".

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ml::Target;

/// The queues workers can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    Predict,
    Train,
    Maintenance,
}

impl QueueName {
    pub const ALL: [QueueName; 3] = [QueueName::Predict, QueueName::Train, QueueName::Maintenance];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Predict => "predict",
            QueueName::Train => "train",
            QueueName::Maintenance => "maintenance",
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
            "train" => Ok(QueueName::Train),
            "maintenance" => Ok(QueueName::Maintenance),
            other => Err(format!(
                "unknown queue {other:?}; expected predict, train or maintenance"
            )),
        }
    }
}

/// Job kinds, each with a stable name (stored in the jobs table and the
/// queue message; renaming one is a migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Predict,
    Retrain,
    Drift,
    Maintenance,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::Predict,
        JobKind::Retrain,
        JobKind::Drift,
        JobKind::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Predict => "predict",
            JobKind::Retrain => "retrain",
            JobKind::Drift => "drift",
            JobKind::Maintenance => "maintenance",
        }
    }

    pub fn queue(self) -> QueueName {
        match self {
            JobKind::Predict => QueueName::Predict,
            JobKind::Retrain => QueueName::Train,
            JobKind::Drift | JobKind::Maintenance => QueueName::Maintenance,
        }
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
        match s {
            "predict" => Ok(JobKind::Predict),
            "retrain" => Ok(JobKind::Retrain),
            "drift" => Ok(JobKind::Drift),
            "maintenance" => Ok(JobKind::Maintenance),
            other => Err(format!(
                "unknown job kind {other:?}; expected predict, retrain, drift or maintenance"
            )),
        }
    }
}

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
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "dead" => JobState::Dead,
            "cancelled" => JobState::Cancelled,
            other => return Err(format!("unknown job state {other:?}")),
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
}

/// Payload of a `retrain` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrainJob {
    pub targets: BTreeSet<Target>,
    /// Who asked: "api", "scheduler", "drift", "standalone".
    #[serde(default)]
    pub reason: String,
}

/// Payload of a `drift` job: compare recent projects with each production
/// model's training reference and score realised performance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftJob {
    /// Who asked: "api", "scheduler <tick>".
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
    Retrain(RetrainJob),
    Drift(DriftJob),
    Maintenance(MaintenanceJob),
}

impl JobPayload {
    pub fn kind(&self) -> JobKind {
        match self {
            JobPayload::Predict(_) => JobKind::Predict,
            JobPayload::Retrain(_) => JobKind::Retrain,
            JobPayload::Drift(_) => JobKind::Drift,
            JobPayload::Maintenance(_) => JobKind::Maintenance,
        }
    }

    /// Key that makes a second identical job collapse onto the first while
    /// it is still queued or running. Only retrains deduplicate: two
    /// predictions for the same projects are two questions asked at two
    /// moments. A drift check or maintenance pass already waiting makes a
    /// second one pointless.
    pub fn dedup_key(&self) -> Option<String> {
        match self {
            JobPayload::Predict(_) => None,
            JobPayload::Drift(_) => Some("drift".into()),
            JobPayload::Maintenance(_) => Some("maintenance".into()),
            JobPayload::Retrain(r) => Some(format!(
                "retrain:{}",
                r.targets
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
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
    fn retrain_dedup_key_is_canonical() {
        let a = JobPayload::Retrain(RetrainJob {
            targets: [Target::Risk, Target::BudgetVariance].into_iter().collect(),
            reason: "api".into(),
        });
        assert_eq!(
            a.dedup_key().as_deref(),
            Some("retrain:budget_variance,risk")
        );
    }
}
