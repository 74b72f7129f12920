//! Export to a real MLflow tracking server (installed by scripts/mlflow.sh).

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mode, TestEnv, free_port};
use serde_json::{Value, json};

/// `mlflow server` in its own process group: it forks a uvicorn server and
/// job runners that outlive a kill of the parent alone, so the whole group
/// is stopped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fits_are_logged_registered_and_aliased_in_mlflow() {
    let mlflow = std::env::var("RPA_ML_MLFLOW").unwrap_or_default();
    if mlflow.is_empty() || !std::path::Path::new(&mlflow).exists() {
        eprintln!(
            "skipped: no MLflow at RPA_ML_MLFLOW={mlflow:?} (scripts/mlflow.sh installs one)"
        );
        return;
    }
    let mut env = TestEnv::new(Mode::Scale).await;
    let port = free_port();
    let dir = env.dir.join("mlflow");
    std::fs::create_dir_all(&dir).expect("mlflow dir");
    let log = std::fs::File::create(env.dir.join("mlflow-server.log")).expect("log");
    let _server = Server(
        Command::new(&mlflow)
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            // The server proxies artifacts (`mlflow-artifacts:` run URIs),
            // as `mlflow server` does by default, into this folder.
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mlflow server did not start\n{}",
            env.dump_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    env.extra.insert("MLFLOW_TRACKING_URI".into(), base.clone());
    env.extra
        .insert("MLFLOW_EXPERIMENT_NAME".into(), "rpa-ml-test".into());
    env.spawn("api", &["api"], &[]);
    env.spawn("worker", &["worker"], &[]);
    env.wait_ready().await;
    let c = env.client();
    let (s, body) = c
        .post("/api/v1/models/retrain", json!({"targets": ["risk"]}))
        .await;
    assert_eq!(s, 202, "{body}");
    let job = c.wait_job(body["job_id"].as_str().expect("id"), 120).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let exported = &job["result"]["targets"]["risk"]["mlflow"];
    let run_id = exported["run_id"]
        .as_str()
        .expect("run id in the job result");

    let run: Value = http
        .get(format!("{base}/api/2.0/mlflow/runs/get"))
        .query(&[("run_id", run_id)])
        .send()
        .await
        .expect("runs/get")
        .json()
        .await
        .expect("json");
    let metrics = run["run"]["data"]["metrics"].as_array().expect("metrics");
    assert!(metrics.iter().any(|m| m["key"] == "holdout"), "{run}");
    assert!(metrics.iter().any(|m| m["key"] == "baseline"), "{run}");
    let params = run["run"]["data"]["params"].as_array().expect("params");
    assert!(
        params.iter().any(|p| p["key"] == "feature_set_version"),
        "{run}"
    );

    // The artifact itself is in the run, byte for byte the one registered.
    assert_eq!(exported["artifact_uploaded"], true, "{exported}");
    let listed: Value = http
        .get(format!("{base}/api/2.0/mlflow/artifacts/list"))
        .query(&[("run_id", run_id), ("path", "model")])
        .send()
        .await
        .expect("artifacts/list")
        .json()
        .await
        .expect("json");
    let files: Vec<&str> = listed["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(files.contains(&"model/MLmodel"), "{listed}");
    let artifact = files
        .iter()
        .find(|f| f.ends_with(".json"))
        .unwrap_or_else(|| panic!("no model file in {listed}"));
    let artifact_uri = run["run"]["info"]["artifact_uri"]
        .as_str()
        .expect("artifact uri");
    let prefix = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .expect("proxied artifact uri")
        .trim_start_matches('/');
    let bytes = http
        .get(format!(
            "{base}/api/2.0/mlflow-artifacts/artifacts/{prefix}/{artifact}"
        ))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    let (s, version) = c.get("/api/v1/models/risk/versions/1").await;
    assert_eq!(s, 200, "{version}");
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        version["artifact_sha256"].as_str().expect("sha"),
        "uploaded artifact differs from the registered one"
    );

    // The first risk model is promoted (test gates), so the alias points at it.
    let alias: Value = http
        .get(format!("{base}/api/2.0/mlflow/registered-models/alias"))
        .query(&[("name", "rpa-ml-risk"), ("alias", "production")])
        .send()
        .await
        .expect("alias")
        .json()
        .await
        .expect("json");
    assert_eq!(
        alias["model_version"]["version"], exported["model_version"],
        "{alias}"
    );
}
