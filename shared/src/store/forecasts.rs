//! The latest forecast of each project for each target (`latest_predictions`),
//! written with the outcome of the job that made it (`jobs.rs`) and read
//! here without a job.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::jobs::{RawJob, job_columns};
use super::{JobRow, Store, StoreError, parse};
use crate::jobs::JobKind;
use crate::ml::Target;

/// One kept forecast.
#[derive(Debug, Clone, Serialize)]
pub struct LatestPrediction {
    pub project_id: i64,
    pub target: Target,
    pub model_version: i32,
    /// The cut-off the features were computed as of.
    pub as_of: DateTime<Utc>,
    pub value: Option<f64>,
    pub class: Option<String>,
    /// The whole answer (interval, contributions, probabilities, dates).
    pub output: Option<serde_json::Value>,
    /// The job that made it.
    pub job_id: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RawLatest {
    project_id: i64,
    target: String,
    model_version: i32,
    as_of: DateTime<Utc>,
    value: Option<f64>,
    class: Option<String>,
    output: Option<Json<serde_json::Value>>,
    job_id: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RawLatest> for LatestPrediction {
    type Error = StoreError;
    fn try_from(r: RawLatest) -> Result<Self, StoreError> {
        Ok(LatestPrediction {
            target: parse(&r.target)?,
            project_id: r.project_id,
            model_version: r.model_version,
            as_of: r.as_of,
            value: r.value,
            class: r.class,
            output: r.output.map(|j| j.0),
            job_id: r.job_id,
            updated_at: r.updated_at,
        })
    }
}

/// Per target: how many forecasts are kept and the oldest one's time.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastSummary {
    pub count: i64,
    pub oldest_as_of: Option<DateTime<Utc>>,
    pub newest_as_of: Option<DateTime<Utc>>,
}

/// target, count, oldest and newest `as_of`.
type SummaryRow = (String, i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

const LATEST_COLUMNS: &str =
    "project_id, target, model_version, as_of, value, class, output, job_id, updated_at";

/// Ids per query: far under both databases' bind limits.
const IDS_PER_QUERY: usize = 1000;

impl Store {
    /// Every target's kept forecast of one project.
    pub async fn latest_for_project(
        &self,
        project_id: i64,
    ) -> Result<Vec<LatestPrediction>, StoreError> {
        let sql = format!(
            "SELECT {LATEST_COLUMNS} FROM latest_predictions WHERE project_id = $1 ORDER BY target"
        );
        let raws: Vec<RawLatest> = fetch!(
            self,
            fetch_all,
            sqlx::AssertSqlSafe(sql.as_str()),
            project_id
        )?;
        raws.into_iter().map(LatestPrediction::try_from).collect()
    }

    /// The kept forecasts of `target` for the projects in `ids` (those
    /// that have one), by project id.
    pub async fn latest_for_projects(
        &self,
        target: Target,
        ids: &[i64],
    ) -> Result<BTreeMap<i64, LatestPrediction>, StoreError> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {LATEST_COLUMNS} FROM latest_predictions WHERE target = $1 AND project_id IN ({})",
                marks.join(", ")
            );
            let raws: Vec<RawLatest> = on_pool!(self, p => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(target.as_str());
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })?;
            for r in raws {
                let r = LatestPrediction::try_from(r)?;
                out.insert(r.project_id, r);
            }
        }
        Ok(out)
    }

    /// Per target with kept forecasts: their count and age span.
    pub async fn forecast_summary(&self) -> Result<BTreeMap<Target, ForecastSummary>, StoreError> {
        let rows: Vec<SummaryRow> = fetch!(
            self,
            fetch_all,
            "SELECT target, COUNT(*), MIN(as_of), MAX(as_of) FROM latest_predictions GROUP BY target"
        )?;
        rows.into_iter()
            .map(|(t, count, oldest, newest)| {
                Ok((
                    parse(&t)?,
                    ForecastSummary {
                        count,
                        oldest_as_of: oldest,
                        newest_as_of: newest,
                    },
                ))
            })
            .collect()
    }

    /// The newest job of a kind that ended (any state), and the newest
    /// that succeeded: the last scoring run and the last good one.
    pub async fn last_finished_of_kind(
        &self,
        kind: JobKind,
    ) -> Result<(Option<JobRow>, Option<JobRow>), StoreError> {
        let any = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = $1 AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
        );
        let ok = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE kind = $1 AND state = 'succeeded' ORDER BY finished_at DESC LIMIT 1"
        );
        let last: Option<RawJob> = fetch!(self, fetch_optional, any, kind.as_str())?;
        let good: Option<RawJob> = fetch!(self, fetch_optional, ok, kind.as_str())?;
        Ok((
            last.map(JobRow::try_from).transpose()?,
            good.map(JobRow::try_from).transpose()?,
        ))
    }
}
