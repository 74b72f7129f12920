//! The model registry: one row per fitted version of a target, its stage,
//! and the JSON documents kept beside it.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use super::text::{storable_json, storable_opt};
use super::{Store, StoreError, parse};
use crate::ml::Target;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelStage {
    Candidate,
    Production,
    Archived,
    Rejected,
}

impl ModelStage {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelStage::Candidate => "candidate",
            ModelStage::Production => "production",
            ModelStage::Archived => "archived",
            ModelStage::Rejected => "rejected",
        }
    }
}

impl FromStr for ModelStage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "candidate" => ModelStage::Candidate,
            "production" => ModelStage::Production,
            "archived" => ModelStage::Archived,
            "rejected" => ModelStage::Rejected,
            other => return Err(format!("unknown model stage {other:?}")),
        })
    }
}

/// A model version in the registry.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub target: Target,
    pub version: i32,
    pub learner: String,
    pub stage: ModelStage,
    pub stage_reason: Option<String>,
    pub feature_set_version: String,
    pub data_fingerprint: String,
    pub code_version: String,
    pub metrics: serde_json::Value,
    pub artifact_path: String,
    pub artifact_sha256: String,
    pub job_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub promoted_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RawModel {
    target: String,
    version: i32,
    learner: String,
    stage: String,
    stage_reason: Option<String>,
    feature_set_version: String,
    data_fingerprint: String,
    code_version: String,
    metrics: Json<serde_json::Value>,
    artifact_path: String,
    artifact_sha256: String,
    job_id: Option<String>,
    created_at: DateTime<Utc>,
    promoted_at: Option<DateTime<Utc>>,
}

/// The columns [`RawModel`] reads, for `concat!`.
macro_rules! model_columns {
    () => {
        "target, version, learner, stage, stage_reason, feature_set_version, \
         data_fingerprint, code_version, metrics, artifact_path, artifact_sha256, job_id, created_at, promoted_at"
    };
}

impl TryFrom<RawModel> for ModelRow {
    type Error = StoreError;
    fn try_from(r: RawModel) -> Result<Self, StoreError> {
        Ok(ModelRow {
            target: parse(&r.target)?,
            stage: parse(&r.stage)?,
            version: r.version,
            learner: r.learner,
            stage_reason: r.stage_reason,
            feature_set_version: r.feature_set_version,
            data_fingerprint: r.data_fingerprint,
            code_version: r.code_version,
            metrics: r.metrics.0,
            artifact_path: r.artifact_path,
            artifact_sha256: r.artifact_sha256,
            job_id: r.job_id,
            created_at: r.created_at,
            promoted_at: r.promoted_at,
        })
    }
}

/// A model version about to be registered.
#[derive(Debug, Clone)]
pub struct NewModel {
    pub target: Target,
    pub learner: String,
    pub feature_set_version: String,
    pub data_fingerprint: String,
    pub code_version: String,
    pub metrics: serde_json::Value,
    pub artifact_path: String,
    pub artifact_sha256: String,
    pub job_id: Option<String>,
}

/// A JSON document kept beside a model version, each in a column of its own
/// and written after the version is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelDocument {
    /// Where the version was exported to MLflow.
    Mlflow,
    /// The training reference drift is measured against
    /// (`ml::drift::Reference`).
    DriftReference,
}

impl ModelDocument {
    /// The only text ever spliced into this module's SQL: a closed list.
    fn column(self) -> &'static str {
        match self {
            ModelDocument::Mlflow => "mlflow",
            ModelDocument::DriftReference => "reference",
        }
    }
}

impl Store {
    /// Registers a new version as a candidate and returns it.
    pub async fn insert_model(&self, m: NewModel) -> Result<ModelRow, StoreError> {
        let sql = concat!(
            "INSERT INTO models (target, version, learner, stage, feature_set_version, data_fingerprint, \
             code_version, metrics, artifact_path, artifact_sha256, job_id, created_at) \
             VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE target = $1), $2, 'candidate', \
             $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ",
            model_columns!()
        );
        let raw: RawModel = fetch!(
            self,
            fetch_one,
            sql,
            m.target.as_str(),
            &m.learner,
            &m.feature_set_version,
            &m.data_fingerprint,
            &m.code_version,
            Json(storable_json(&m.metrics)),
            &m.artifact_path,
            &m.artifact_sha256,
            &m.job_id,
            Utc::now(),
        )?;
        raw.try_into()
    }

    /// Sets a version's stage. Promoting archives the current production
    /// version first (one production model per target).
    pub async fn set_model_stage(
        &self,
        target: Target,
        version: i32,
        stage: ModelStage,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            if stage == ModelStage::Production {
                sqlx::query(
                    "UPDATE models SET stage = 'archived', stage_reason = $3 \
                     WHERE target = $1 AND stage = 'production' AND version <> $2",
                )
                .bind(target.as_str())
                .bind(version)
                .bind(format!("replaced by version {version}"))
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE models SET stage = $3, stage_reason = $4, \
                 promoted_at = CASE WHEN $3 = 'production' THEN $5 ELSE promoted_at END \
                 WHERE target = $1 AND version = $2",
            )
            .bind(target.as_str())
            .bind(version)
            .bind(stage.as_str())
            .bind(storable_opt(reason))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Keeps `value` as a version's `doc` (replacing any earlier one).
    pub async fn set_model_document(
        &self,
        target: Target,
        version: i32,
        doc: ModelDocument,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE models SET {} = $3 WHERE target = $1 AND version = $2",
            doc.column()
        );
        exec!(
            self,
            sqlx::AssertSqlSafe(sql.as_str()),
            target.as_str(),
            version,
            Json(storable_json(value)),
        )?;
        Ok(())
    }

    /// A version's `doc`; `None` when it was never written (a version not
    /// exported, or fitted before references were recorded) or the version
    /// is unknown.
    pub async fn model_document(
        &self,
        target: Target,
        version: i32,
        doc: ModelDocument,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let sql = format!(
            "SELECT {} FROM models WHERE target = $1 AND version = $2",
            doc.column()
        );
        let row: Option<(Option<Json<serde_json::Value>>,)> = fetch!(
            self,
            fetch_optional,
            sqlx::AssertSqlSafe(sql.as_str()),
            target.as_str(),
            version,
        )?;
        Ok(row.and_then(|r| r.0).map(|j| j.0))
    }

    pub async fn production_model(&self, target: Target) -> Result<Option<ModelRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE target = $1 AND stage = 'production'"
        );
        let raw: Option<RawModel> = fetch!(self, fetch_optional, sql, target.as_str())?;
        raw.map(ModelRow::try_from).transpose()
    }

    pub async fn get_model(
        &self,
        target: Target,
        version: i32,
    ) -> Result<Option<ModelRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            model_columns!(),
            " FROM models WHERE target = $1 AND version = $2"
        );
        let raw: Option<RawModel> = fetch!(self, fetch_optional, sql, target.as_str(), version)?;
        raw.map(ModelRow::try_from).transpose()
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            model_columns!(),
            " FROM models ORDER BY target, version DESC"
        );
        let raws: Vec<RawModel> = fetch!(self, fetch_all, sql)?;
        raws.into_iter().map(ModelRow::try_from).collect()
    }

    /// Keeps the newest `keep` versions of `target` (and always the
    /// production one); deletes the other rows and returns them so the
    /// caller can remove their artifacts.
    pub async fn prune_models(
        &self,
        target: Target,
        keep: usize,
    ) -> Result<Vec<ModelRow>, StoreError> {
        let all: Vec<ModelRow> = self
            .list_models()
            .await?
            .into_iter()
            .filter(|m| m.target == target)
            .collect();
        // list_models is newest first.
        let doomed: Vec<ModelRow> = all
            .into_iter()
            .enumerate()
            .filter(|(i, m)| *i >= keep && m.stage != ModelStage::Production)
            .map(|(_, m)| m)
            .collect();
        for m in &doomed {
            exec!(
                self,
                "DELETE FROM models WHERE target = $1 AND version = $2 AND stage <> 'production'",
                target.as_str(),
                m.version,
            )?;
        }
        Ok(doomed)
    }

    /// The production version of each target that has one.
    pub async fn production_versions(
        &self,
    ) -> Result<std::collections::BTreeMap<Target, i32>, StoreError> {
        let rows: Vec<(String, i32)> = fetch!(
            self,
            fetch_all,
            "SELECT target, version FROM models WHERE stage = 'production'"
        )?;
        rows.into_iter()
            .map(|(t, v)| Ok((super::parse(&t)?, v)))
            .collect()
    }

    pub async fn model_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = fetch!(self, fetch_one, "SELECT COUNT(*) FROM models")?;
        Ok(n)
    }
}
