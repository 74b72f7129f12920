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
}

/// Where a fit landed in MLflow.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub experiment_id: String,
    pub run_id: String,
    pub registered_model: String,
    pub model_version: String,
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
        // The artifact stays in MODEL_STORAGE_PATH (checksummed there); the
        // run records where, since MLflow only accepts model sources under
        // the run's own artifact location.
        let tags = vec![json!({"key": "rpa_ml.artifact_uri", "value": fit.artifact_uri})];
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
        })
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
