//! `rpa-ml backup --out DIR` and `rpa-ml restore --from DIR`: the model
//! registry (every version with its stage, metrics and documents) and the
//! artifacts, each file named by and checked against its SHA-256. Job
//! history is not included: jobs are transient, and results the backend
//! has not fetched yet are lost with them.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use rpa_ml_shared::ml::{Target, parse_artifact};
use rpa_ml_shared::store::{ModelDocument, ModelRow, ModelStage, Store};

const FORMAT: &str = "rpa-ml-backup-1";
const DOCUMENTS: [(&str, ModelDocument); 2] = [
    ("mlflow", ModelDocument::Mlflow),
    ("reference", ModelDocument::DriftReference),
];

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub async fn backup(store: &Store, out: &Path) -> anyhow::Result<()> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!("--out: {} is not empty; give a new folder", out.display());
    }
    std::fs::create_dir_all(out.join("artifacts"))
        .with_context(|| format!("creating {}", out.display()))?;
    let models = store.list_models().await?;
    let mut rows = Vec::new();
    let mut sums = String::new();
    for m in &models {
        let sha = m.artifact_sha256.to_ascii_lowercase();
        let file = format!("artifacts/{sha}.json");
        if !out.join(&file).exists() {
            let bytes = store.artifact_content(&sha).await?.with_context(|| {
                format!(
                    "{} v{}: its artifact is not in the ML store (run `rpa-ml migrate` where the file is)",
                    m.target, m.version
                )
            })?;
            if sha256_hex(&bytes) != sha {
                bail!(
                    "{} v{}: the stored artifact does not match its SHA-256",
                    m.target,
                    m.version
                );
            }
            std::fs::write(out.join(&file), &bytes)?;
            sums.push_str(&format!("{sha}  {file}\n"));
        }
        let mut documents = serde_json::Map::new();
        for (name, doc) in DOCUMENTS {
            let v = store.model_document(m.target, m.version, doc).await?;
            documents.insert(name.into(), v.unwrap_or(Value::Null));
        }
        rows.push(json!({
            "target": m.target.as_str(),
            "version": m.version,
            "learner": m.learner,
            "stage": m.stage.as_str(),
            "stage_reason": m.stage_reason,
            "feature_set_version": m.feature_set_version,
            "data_fingerprint": m.data_fingerprint,
            "code_version": m.code_version,
            "metrics": m.metrics,
            "artifact_path": m.artifact_path,
            "artifact_sha256": sha,
            "job_id": m.job_id,
            "created_at": m.created_at,
            "promoted_at": m.promoted_at,
            "documents": documents,
        }));
    }
    let registry = serde_json::to_vec_pretty(&json!({
        "format": FORMAT,
        "created_at": chrono::Utc::now(),
        "models": rows,
    }))?;
    std::fs::write(out.join("registry.json"), &registry)?;
    sums.push_str(&format!("{}  registry.json\n", sha256_hex(&registry)));
    std::fs::write(out.join("SHA256SUMS"), sums)?;
    println!(
        "backed up {} model version(s) and their artifacts to {}",
        models.len(),
        out.display()
    );
    Ok(())
}

fn text(v: &Value, key: &str) -> anyhow::Result<String> {
    v[key]
        .as_str()
        .map(String::from)
        .with_context(|| format!("registry.json: a model without {key}"))
}

fn row(v: &Value) -> anyhow::Result<ModelRow> {
    let opt = |k: &str| v[k].as_str().map(String::from);
    let time = |k: &str| -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
        opt(k)
            .map(|s| {
                s.parse()
                    .with_context(|| format!("registry.json: {k} {s:?}"))
            })
            .transpose()
    };
    Ok(ModelRow {
        target: Target::from_str(&text(v, "target")?).map_err(anyhow::Error::msg)?,
        version: v["version"]
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .context("registry.json: a model without version")?,
        learner: text(v, "learner")?,
        stage: ModelStage::from_str(&text(v, "stage")?).map_err(anyhow::Error::msg)?,
        stage_reason: opt("stage_reason"),
        feature_set_version: text(v, "feature_set_version")?,
        data_fingerprint: text(v, "data_fingerprint")?,
        code_version: text(v, "code_version")?,
        metrics: v["metrics"].clone(),
        artifact_path: text(v, "artifact_path")?,
        artifact_sha256: text(v, "artifact_sha256")?,
        job_id: opt("job_id"),
        created_at: time("created_at")?.context("registry.json: a model without created_at")?,
        promoted_at: time("promoted_at")?,
    })
}

pub async fn restore(store: &Store, from: &Path) -> anyhow::Result<()> {
    let registry = std::fs::read(from.join("registry.json"))
        .with_context(|| format!("--from: no registry.json in {}", from.display()))?;
    let doc: Value = serde_json::from_slice(&registry).context("registry.json is not JSON")?;
    if doc["format"] != FORMAT {
        bail!("registry.json: format {} is not {FORMAT}", doc["format"]);
    }
    let existing = store.model_count().await?;
    if existing > 0 {
        bail!("the ML store already has {existing} model version(s); restore into an empty one");
    }
    // Everything is checked before anything is written.
    let mut plan = Vec::new();
    for v in doc["models"]
        .as_array()
        .context("registry.json: no models")?
    {
        let m = row(v)?;
        let path = from.join(format!("artifacts/{}.json", m.artifact_sha256));
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        parse_artifact(&bytes, &m.artifact_sha256, &path)
            .with_context(|| format!("{} v{}", m.target, m.version))?;
        plan.push((m, bytes, v["documents"].clone()));
    }
    for (m, bytes, documents) in &plan {
        store.put_artifact(&m.artifact_sha256, bytes).await?;
        if !store.restore_model(m).await? {
            bail!(
                "{} v{} appeared in the ML store during the restore",
                m.target,
                m.version
            );
        }
        for (name, kind) in DOCUMENTS {
            if !documents[name].is_null() {
                store
                    .set_model_document(m.target, m.version, kind, &documents[name])
                    .await?;
            }
        }
    }
    println!(
        "restored {} model version(s) from {}, every artifact checked against its SHA-256",
        plan.len(),
        from.display()
    );
    Ok(())
}
