//! Production models, loaded once and shared by every task in the process.
//!
//! The production pointer is re-read from the registry at most every few
//! seconds, so a promotion or rollback reaches running workers without a
//! restart. A version whose artifact fails its checksum is remembered as bad
//! and the newest good archived version serves instead.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpa_ml_shared::ml::{Target, TrainedModel, cache_artifact, load_artifact, parse_artifact};
use rpa_ml_shared::store::{ModelRow, ModelStage, Store, StoreError};

const POINTER_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no production model for {target}: {why}")]
    NoProduction { target: Target, why: String },
    #[error(transparent)]
    Store(#[from] rpa_ml_shared::store::StoreError),
}

#[derive(Clone)]
pub struct LoadedModel {
    pub version: i32,
    pub model: Arc<TrainedModel>,
    /// Set when the production artifact was unusable and an older version
    /// answers in its place.
    pub fallback_from: Option<i32>,
}

pub struct ModelCache {
    store: Store,
    /// This host's copy of artifacts fetched from the store
    /// (MODEL_STORAGE_PATH).
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    pointers: HashMap<Target, (Instant, Option<LoadedModel>)>,
    loaded: HashMap<(Target, i32), Arc<TrainedModel>>,
    bad: HashSet<(Target, i32)>,
}

impl ModelCache {
    pub fn new(store: Store, dir: PathBuf) -> Self {
        ModelCache {
            store,
            dir,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The model that answers for `target` now.
    pub async fn production(&self, target: Target) -> Result<LoadedModel, ModelError> {
        if let Ok(inner) = self.inner.lock()
            && let Some((at, Some(m))) = inner.pointers.get(&target)
            && at.elapsed() < POINTER_TTL
        {
            return Ok(m.clone());
        }
        let row = self.store.production_model(target).await?;
        let Some(row) = row else {
            let why = match self.store.list_models().await {
                Ok(all) => {
                    let mine: Vec<&ModelRow> = all.iter().filter(|m| m.target == target).collect();
                    if mine.is_empty() {
                        "no model has been trained yet; POST /api/v1/models/retrain".to_string()
                    } else {
                        format!(
                            "{} version(s) trained, none promoted (latest v{} is {}{}); promote one with POST /api/v1/models/{}/promote",
                            mine.len(),
                            mine[0].version,
                            mine[0].stage.as_str(),
                            mine[0]
                                .stage_reason
                                .as_deref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default(),
                            target
                        )
                    }
                }
                Err(_) => "the registry could not be read".into(),
            };
            return Err(ModelError::NoProduction { target, why });
        };
        let loaded = match self.load(&row).await {
            Ok(m) => LoadedModel {
                version: row.version,
                model: m,
                fallback_from: None,
            },
            Err(e) => {
                tracing::error!(model.target = %target, model.version = row.version, error = %e,
                    "production artifact unusable; falling back to the newest good version");
                self.fallback(target, row.version, &e).await?
            }
        };
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .pointers
                .insert(target, (Instant::now(), Some(loaded.clone())));
        }
        Ok(loaded)
    }

    async fn fallback(
        &self,
        target: Target,
        broken: i32,
        err: &str,
    ) -> Result<LoadedModel, ModelError> {
        let mut candidates: Vec<ModelRow> = self
            .store
            .list_models()
            .await?
            .into_iter()
            .filter(|m| {
                m.target == target && m.version != broken && m.stage == ModelStage::Archived
            })
            .collect();
        // The version most recently in production first: that is what was
        // answering before the broken one.
        candidates.sort_by(|a, b| {
            b.promoted_at
                .cmp(&a.promoted_at)
                .then(b.version.cmp(&a.version))
        });
        for row in &candidates {
            if let Ok(m) = self.load(row).await {
                return Ok(LoadedModel {
                    version: row.version,
                    model: m,
                    fallback_from: Some(broken),
                });
            }
        }
        Err(ModelError::NoProduction {
            target,
            why: format!(
                "artifact of production v{broken} is unusable ({err}) and no earlier version loads"
            ),
        })
    }

    async fn load(&self, row: &ModelRow) -> Result<Arc<TrainedModel>, String> {
        let key = (row.target, row.version);
        if let Ok(inner) = self.inner.lock() {
            if inner.bad.contains(&key) {
                return Err(format!("v{} was found corrupt earlier", row.version));
            }
            if let Some(m) = inner.loaded.get(&key) {
                return Ok(m.clone());
            }
        }
        let res = self.load_verified(row).await?;
        match res {
            Ok(model) => {
                tracing::info!(model.target = %row.target, model.version = row.version,
                    scoring_kb = model.scoring_bytes() / 1024, "model loaded");
                let model = Arc::new(model);
                if let Ok(mut inner) = self.inner.lock() {
                    inner.loaded.insert(key, model.clone());
                }
                Ok(model)
            }
            Err(e) => {
                if let Ok(mut inner) = self.inner.lock() {
                    inner.bad.insert(key);
                }
                Err(e.to_string())
            }
        }
    }

    /// The artifact from this host's disk (where it was written, or this
    /// host's cache), else from the ML store, cached here once its
    /// checksum holds. Err(..) only when the loader itself failed.
    async fn load_verified(
        &self,
        row: &ModelRow,
    ) -> Result<Result<TrainedModel, rpa_ml_shared::ml::ArtifactError>, String> {
        let written = PathBuf::from(&row.artifact_path);
        let file = written
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("{}-v{}.json", row.target, row.version)));
        let cached = self.dir.join(row.target.as_str()).join(file);
        let sha = row.artifact_sha256.clone();
        let candidates = if cached == written {
            vec![written]
        } else {
            vec![written, cached.clone()]
        };
        let local = tokio::task::spawn_blocking(move || {
            let mut last = None;
            for path in candidates {
                let res = load_artifact(&path, &sha);
                // The parser's tree is gone: its pages need not stay resident.
                rpa_ml_shared::memory::release_freed();
                match res {
                    Ok(m) => return Ok(m),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.expect("at least one candidate"))
        })
        .await
        .map_err(|e| format!("loader panicked: {e}"))?;
        let local_err = match local {
            Ok(m) => return Ok(Ok(m)),
            Err(e) => e,
        };
        let bytes = match self.store.artifact_content(&row.artifact_sha256).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Err(local_err)),
            Err(e) => return Err(format!("{local_err}; the ML store did not answer: {e}")),
        };
        let sha = row.artifact_sha256.clone();
        let res = tokio::task::spawn_blocking(move || {
            let model = parse_artifact(&bytes, &sha, &cached);
            if model.is_ok()
                && let Err(e) = cache_artifact(&cached, &bytes)
            {
                tracing::warn!(error = %e, "could not cache a model artifact locally; it is fetched again next time");
            }
            drop(bytes);
            // The parser's tree and the fetched bytes are gone: their pages need not stay resident.
            rpa_ml_shared::memory::release_freed();
            model
        })
        .await
        .map_err(|e| format!("loader panicked: {e}"))?;
        if res.is_ok() {
            tracing::info!(model.target = %row.target, model.version = row.version, "model artifact fetched from the ML store");
        }
        Ok(res)
    }

    /// Forget cached pointers (after this process promoted something).
    pub fn invalidate(&self, target: Target) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.pointers.remove(&target);
        }
    }
}

/// Applies `MODEL_RETENTION` (`keep`) to one target: the newest versions
/// and the production one stay; older rows and their artifacts go. Returns
/// the versions removed. Callers log a failure rather than fail: a new
/// model is registered whether or not old ones could be removed.
pub async fn prune(store: &Store, target: Target, keep: usize) -> Result<Vec<i32>, StoreError> {
    let removed = store.prune_models(target, keep).await?;
    for m in &removed {
        if let Err(e) = std::fs::remove_file(&m.artifact_path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(model.target = %target, model.version = m.version, error = %e, "could not remove artifact");
        }
        tracing::info!(model.target = %target, model.version = m.version, "model version removed by retention");
    }
    if !removed.is_empty()
        && let Err(e) = store.delete_unreferenced_artifacts().await
    {
        tracing::warn!(model.target = %target, error = %e, "could not remove stored artifacts of removed versions");
    }
    Ok(removed.into_iter().map(|m| m.version).collect())
}
