//! Model artifacts in the store, addressed by SHA-256: every worker reaches
//! them, whatever node it runs on (no shared volume).

use chrono::Utc;

use super::{Store, StoreError};

impl Store {
    /// Keeps `content` under `sha256` (the caller computed it). Storing the
    /// same artifact twice is a no-op.
    pub async fn put_artifact(&self, sha256: &str, content: &[u8]) -> Result<(), StoreError> {
        exec!(
            self,
            "INSERT INTO model_artifacts (sha256, content, size_bytes, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
            sha256.to_ascii_lowercase(),
            content,
            content.len() as i64,
            Utc::now(),
        )?;
        Ok(())
    }

    /// The bytes stored under `sha256`, if any (not verified: the caller
    /// checks them against the registry's record).
    pub async fn artifact_content(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = fetch!(
            self,
            fetch_optional,
            "SELECT content FROM model_artifacts WHERE sha256 = $1",
            sha256.to_ascii_lowercase(),
        )?;
        Ok(row.map(|(c,)| c))
    }

    /// Model versions whose artifact is not in the store yet: (SHA-256, the
    /// path it was written to). For moving artifacts from disk.
    pub async fn models_without_stored_artifact(
        &self,
    ) -> Result<Vec<(String, String)>, StoreError> {
        fetch!(
            self,
            fetch_all,
            "SELECT artifact_sha256, artifact_path FROM models m WHERE NOT EXISTS \
             (SELECT 1 FROM model_artifacts a WHERE a.sha256 = LOWER(m.artifact_sha256))",
        )
    }

    /// Removes artifacts no model version refers to any more (after
    /// retention removed versions). Returns how many went.
    pub async fn delete_unreferenced_artifacts(&self) -> Result<u64, StoreError> {
        exec!(
            self,
            "DELETE FROM model_artifacts WHERE NOT EXISTS \
             (SELECT 1 FROM models m WHERE LOWER(m.artifact_sha256) = model_artifacts.sha256)",
        )
    }
}

impl Store {
    /// Puts back a registry row from a backup, with its version and stage
    /// as they were. Returns false when that version already exists.
    pub async fn restore_model(&self, m: &super::ModelRow) -> Result<bool, StoreError> {
        let n = exec!(
            self,
            "INSERT INTO models (target, version, learner, stage, stage_reason, feature_set_version, \
             data_fingerprint, code_version, metrics, artifact_path, artifact_sha256, job_id, created_at, \
             promoted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (target, version) DO NOTHING",
            m.target.as_str(),
            m.version,
            &m.learner,
            m.stage.as_str(),
            &m.stage_reason,
            &m.feature_set_version,
            &m.data_fingerprint,
            &m.code_version,
            sqlx::types::Json(&m.metrics),
            &m.artifact_path,
            &m.artifact_sha256,
            &m.job_id,
            m.created_at,
            m.promoted_at,
        )?;
        Ok(n == 1)
    }
}
