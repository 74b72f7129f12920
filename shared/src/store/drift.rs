//! Drift reports: what the `drift` job found, kept for the monitoring API;
//! the stored predictions that realised performance is measured on. (A
//! version's training reference is a `ModelDocument` of the registry.)

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::text::storable_json;
use super::{Store, StoreError, parse};
use crate::ml::Target;

/// One target's outcome of one drift check, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReportRow {
    pub job_id: String,
    pub target: Target,
    pub model_version: Option<i32>,
    pub checked_at: DateTime<Utc>,
    /// `None` when the target could not be checked (no production model,
    /// no reference, too few projects); the report says why.
    pub drift_score: Option<f64>,
    pub drift_detected: bool,
    pub retrain_job_id: Option<String>,
    /// The whole report (features, prediction drift, realised performance).
    pub report: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct RawReport {
    job_id: String,
    target: String,
    model_version: Option<i32>,
    checked_at: DateTime<Utc>,
    drift_score: Option<f64>,
    drift_detected: bool,
    retrain_job_id: Option<String>,
    report: Json<serde_json::Value>,
}

impl TryFrom<RawReport> for DriftReportRow {
    type Error = StoreError;
    fn try_from(r: RawReport) -> Result<Self, StoreError> {
        Ok(DriftReportRow {
            target: parse(&r.target)?,
            job_id: r.job_id,
            model_version: r.model_version,
            checked_at: r.checked_at,
            drift_score: r.drift_score,
            drift_detected: r.drift_detected,
            retrain_job_id: r.retrain_job_id,
            report: r.report.0,
        })
    }
}

/// A stored successful prediction of one model version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredPrediction {
    pub project_id: i64,
    pub value: Option<f64>,
    pub class: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Successful predictions stored per model version.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionCount {
    pub target: Target,
    pub model_version: i32,
    pub predictions: i64,
    pub projects: i64,
    pub last_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores one target's report; a rerun of the same job replaces it.
    pub async fn insert_drift_report(&self, r: &DriftReportRow) -> Result<(), StoreError> {
        exec!(
            self,
            "INSERT INTO drift_reports (job_id, target, model_version, checked_at, drift_score, \
             drift_detected, retrain_job_id, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (job_id, target) DO UPDATE SET model_version = excluded.model_version, \
             checked_at = excluded.checked_at, drift_score = excluded.drift_score, \
             drift_detected = excluded.drift_detected, retrain_job_id = excluded.retrain_job_id, \
             report = excluded.report",
            &r.job_id,
            r.target.as_str(),
            r.model_version,
            r.checked_at,
            r.drift_score,
            r.drift_detected,
            &r.retrain_job_id,
            Json(storable_json(&r.report)),
        )?;
        Ok(())
    }

    /// The newest report of each target (the figure for `/metrics`).
    pub async fn latest_drift_reports(&self) -> Result<Vec<DriftReportRow>, StoreError> {
        self.drift_reports(None, 1).await
    }

    /// The newest `per_target` reports of each target (or of `target`),
    /// newest first within a target, targets in name order.
    pub async fn drift_reports(
        &self,
        target: Option<Target>,
        per_target: i64,
    ) -> Result<Vec<DriftReportRow>, StoreError> {
        let sql = "SELECT job_id, target, model_version, checked_at, drift_score, drift_detected, \
                   retrain_job_id, report FROM ( \
                   SELECT *, ROW_NUMBER() OVER (PARTITION BY target ORDER BY checked_at DESC, job_id DESC) AS n \
                   FROM drift_reports WHERE ($1 IS NULL OR target = $1)) ranked \
                   WHERE n <= $2 ORDER BY target, checked_at DESC, job_id DESC";
        let raws: Vec<RawReport> =
            fetch!(self, fetch_all, sql, target.map(|t| t.as_str()), per_target)?;
        raws.into_iter().map(DriftReportRow::try_from).collect()
    }

    /// Successful predictions of one model version, oldest first.
    pub async fn predictions_of_version(
        &self,
        target: Target,
        version: i32,
    ) -> Result<Vec<StoredPrediction>, StoreError> {
        fetch!(
            self,
            fetch_all,
            "SELECT project_id, value, class, created_at FROM predictions \
             WHERE target = $1 AND model_version = $2 AND error IS NULL ORDER BY created_at",
            target.as_str(),
            version,
        )
    }

    /// Successful predictions per target and model version.
    pub async fn prediction_counts(&self) -> Result<Vec<PredictionCount>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Raw {
            target: String,
            model_version: i32,
            n: i64,
            projects: i64,
            last_at: Option<DateTime<Utc>>,
        }
        let rows: Vec<Raw> = fetch!(
            self,
            fetch_all,
            "SELECT target, model_version, COUNT(*) AS n, COUNT(DISTINCT project_id) AS projects, \
             MAX(created_at) AS last_at \
             FROM predictions WHERE error IS NULL AND model_version IS NOT NULL \
             GROUP BY target, model_version ORDER BY target, model_version",
        )?;
        rows.into_iter()
            .map(|r| {
                Ok(PredictionCount {
                    target: parse(&r.target)?,
                    model_version: r.model_version,
                    predictions: r.n,
                    projects: r.projects,
                    last_at: r.last_at,
                })
            })
            .collect()
    }
}
