//! Optional export of fits to an MLflow tracking server (REST API 2.0), for
//! teams that kept MLflow from the service this one replaces. Enabled when
//! `MLFLOW_TRACKING_URI` is an http(s) URL. Best effort: the registry in
//! the ML store is the truth, and an unreachable MLflow never fails a
//! retrain (the error is logged and returned to the caller to report).

use std::time::Duration;

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("MLflow request to {endpoint} failed: {message}")]
    Request { endpoint: String, message: String },
}

#[derive(Clone, Debug)]
pub struct Mlflow {
    http: reqwest::Client,
    base: String,
    experiment: String,
}

/// One fit, as MLflow sees it.
pub struct FitRecord<'a> {
    pub model_name: &'a str,
    pub run_name: String,
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub tags: Vec<(String, String)>,
    pub artifact_uri: String,
    /// The artifact file on this host, uploaded to the run when the server
    /// serves artifacts.
    pub artifact_file: std::path::PathBuf,
    pub artifact_sha256: String,
}

/// Where a fit landed in MLflow.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub experiment_id: String,
    pub run_id: String,
    pub registered_model: String,
    pub model_version: String,
    /// Whether the artifact was uploaded into the run (the server proxies
    /// artifacts); otherwise the run only names it in a tag.
    pub artifact_uploaded: bool,
}

impl Mlflow {
    /// `None` unless `uri` is an http(s) URL.
    pub fn from_config(uri: Option<&str>, experiment: &str) -> Option<Mlflow> {
        let uri = uri?.trim();
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return None;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        Some(Mlflow {
            http,
            base: uri.trim_end_matches('/').to_string(),
            experiment: experiment.to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        endpoint: &str,
        body: Value,
    ) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let req = self.http.request(method.clone(), &url);
        let req = if method == reqwest::Method::GET {
            let pairs: Vec<(String, String)> = body
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            req.query(&pairs)
        } else {
            req.json(&body)
        };
        let err = |message: String| MlflowError::Request {
            endpoint: endpoint.to_string(),
            message,
        };
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(err(format!("{status}: {value}")))
        }
    }

    async fn experiment_id(&self) -> Result<String, MlflowError> {
        match self
            .call(
                reqwest::Method::GET,
                "experiments/get-by-name",
                json!({"experiment_name": self.experiment}),
            )
            .await
        {
            Ok(v) => Ok(v["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()),
            Err(_) => {
                let v = self
                    .call(
                        reqwest::Method::POST,
                        "experiments/create",
                        json!({"name": self.experiment}),
                    )
                    .await?;
                Ok(v["experiment_id"].as_str().unwrap_or_default().to_string())
            }
        }
    }

    /// Logs a run with params and metrics, and registers a model version
    /// pointing at the artifact.
    pub async fn log_fit(&self, fit: &FitRecord<'_>) -> Result<Exported, MlflowError> {
        let experiment_id = self.experiment_id().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let tags: Vec<Value> = fit
            .tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let run = self
            .call(
                reqwest::Method::POST,
                "runs/create",
                json!({"experiment_id": experiment_id, "start_time": now, "run_name": fit.run_name, "tags": tags}),
            )
            .await?;
        let run_id = run["run"]["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let run_artifacts = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let metrics: Vec<Value> = fit
            .metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": now, "step": 0}))
            .collect();
        let params: Vec<Value> = fit
            .params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": truncate(v, 6000)}))
            .collect();
        // The artifact in MODEL_STORAGE_PATH stays the one served
        // (checksummed there); a copy goes into the run's `model/` folder
        // when the server proxies artifacts (`mlflow-artifacts:` URIs, the
        // default of `mlflow server`). Other artifact stores are the
        // server's own business, so the run then only names the file.
        let artifact_uploaded = match proxied_path(&run_artifacts) {
            Some(prefix) => {
                self.upload_model(&prefix, &run_id, fit).await?;
                true
            }
            None => false,
        };
        let tags = vec![
            json!({"key": "rpa_ml.artifact_uri", "value": fit.artifact_uri}),
            json!({"key": "rpa_ml.artifact_uploaded", "value": artifact_uploaded.to_string()}),
        ];
        self.call(
            reqwest::Method::POST,
            "runs/log-batch",
            json!({"run_id": run_id, "metrics": metrics, "params": params, "tags": tags}),
        )
        .await?;
        self.call(
            reqwest::Method::POST,
            "runs/update",
            json!({"run_id": run_id, "status": "FINISHED", "end_time": chrono::Utc::now().timestamp_millis()}),
        )
        .await?;
        // Creating an existing registered model fails; that is fine.
        let _ = self
            .call(
                reqwest::Method::POST,
                "registered-models/create",
                json!({"name": fit.model_name}),
            )
            .await;
        let mv = self
            .call(
                reqwest::Method::POST,
                "model-versions/create",
                json!({"name": fit.model_name, "source": format!("{run_artifacts}/model"), "run_id": run_id}),
            )
            .await?;
        Ok(Exported {
            experiment_id,
            run_id,
            registered_model: fit.model_name.to_string(),
            model_version: mv["model_version"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            artifact_uploaded,
        })
    }

    /// Puts the artifact and an `MLmodel` descriptor under `model/` of the
    /// run whose proxied artifact path is `prefix`.
    async fn upload_model(
        &self,
        prefix: &str,
        run_id: &str,
        fit: &FitRecord<'_>,
    ) -> Result<(), MlflowError> {
        let err = |message: String| MlflowError::Request {
            endpoint: "mlflow-artifacts/artifacts".into(),
            message,
        };
        let bytes = tokio::fs::read(&fit.artifact_file)
            .await
            .map_err(|e| err(format!("{}: {e}", fit.artifact_file.display())))?;
        let file = fit
            .artifact_file
            .file_name()
            .map_or_else(|| "model.json".into(), |n| n.to_string_lossy().into_owned());
        let descriptor = format!(
            "artifact_path: model\nrun_id: {run_id}\nutc_time_created: '{}'\nflavors:\n  rpa_ml:\n    artifact: {file}\n    sha256: {}\n    format: rpa-ml TrainedModel JSON\n    loader: rpa-ml (Rust); not a Python flavor\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f"),
            fit.artifact_sha256,
        );
        for (name, body) in [(file.as_str(), bytes), ("MLmodel", descriptor.into_bytes())] {
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{prefix}/model/{name}",
                self.base
            );
            let resp = self
                .http
                .put(&url)
                .timeout(Duration::from_secs(60))
                .body(body)
                .send()
                .await
                .map_err(|e| err(e.to_string()))?;
            if !resp.status().is_success() {
                let status = resp.status();
                return Err(err(format!(
                    "{status}: {}",
                    truncate(&resp.text().await.unwrap_or_default(), 500)
                )));
            }
        }
        Ok(())
    }

    /// Moves the `production` alias to a registered version.
    pub async fn set_production(&self, model_name: &str, version: &str) -> Result<(), MlflowError> {
        self.call(
            reqwest::Method::POST,
            "registered-models/alias",
            json!({"name": model_name, "alias": "production", "version": version}),
        )
        .await
        .map(|_| ())
    }
}

/// The path under the server's artifact proxy of a run artifact URI such
/// as `mlflow-artifacts:/1/abc/artifacts` or
/// `mlflow-artifacts://host:5000/1/abc/artifacts`; `None` for any other
/// store.
fn proxied_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(with_host) => &with_host[with_host.find('/')?..],
        None => rest,
    };
    let path = rest.trim_matches('/');
    (!path.is_empty() && !path.split('/').any(|p| p == "..")).then(|| path.to_string())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::proxied_path;

    #[test]
    fn proxied_artifact_uris_map_to_their_path() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://mlflow:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_path("/var/mlruns/1/abc/artifacts"), None);
        assert_eq!(proxied_path("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(proxied_path("mlflow-artifacts:/../etc"), None);
        assert_eq!(proxied_path("mlflow-artifacts://host"), None);
    }
}
