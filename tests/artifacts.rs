//! Model artifacts without a shared volume: a model trained on one "node"
//! is served by workers on others, each with its own local cache and no
//! directory in common, because the artifact travels through the ML store,
//! checked against its SHA-256.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Mode, TestEnv};

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out
}

/// Every target: a worker serving `predict` also runs the scoring run the
/// first promotions enqueued, which loads every production model.
async fn predict_succeeds(te: &TestEnv, ids: &[i64], node: &str) {
    let c = te.client();
    let id = c
        .predict(&["completion_time", "budget_variance", "risk"], ids)
        .await;
    let job = c.wait_job(&id, 60).await;
    assert_eq!(
        job["status"],
        "succeeded",
        "prediction on {node}: {job}\n{}",
        te.dump_logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_on_other_nodes_serve_a_model_trained_elsewhere() {
    let mut te = TestEnv::new(Mode::Scale).await;
    let node = |n: &str| te.dir.join(n).join("models");
    let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
    let (a_s, b_s, c_s) = (
        a.display().to_string(),
        b.display().to_string(),
        c.display().to_string(),
    );
    te.spawn("api", &["api"], &[]);
    let trainer = te.spawn(
        "trainer",
        &["worker", "--queues", "train,maintenance"],
        &[("MODEL_STORAGE_PATH", &a_s)],
    );
    te.wait_ready().await;
    te.train().await;
    assert!(!files_under(&a).is_empty(), "the trainer wrote no artifact");
    // The training node goes away with its disk.
    te.kill9(trainer);
    std::fs::remove_dir_all(te.dir.join("node-a")).expect("remove node a");
    let ids = common::open_projects(&common::shared_backend(), 5).await;

    let w1 = te.spawn(
        "worker-b",
        &["worker", "--queues", "predict", "--no-reconcile"],
        &[("MODEL_STORAGE_PATH", &b_s)],
    );
    predict_succeeds(&te, &ids, "node b").await;
    let cached_b = files_under(&b);
    assert!(
        cached_b.len() >= 2,
        "node b cached {cached_b:?}\n{}",
        te.dump_logs()
    );
    te.term(w1);
    assert!(te.wait_exit(w1, Duration::from_secs(30)).is_some());

    // Node c's cache starts damaged: the checksum refuses it and the store
    // answers again.
    for f in &cached_b {
        let rel = f.strip_prefix(&b).expect("under b");
        let damaged = c.join(rel);
        std::fs::create_dir_all(damaged.parent().expect("parent")).expect("mkdir");
        std::fs::write(&damaged, b"{\"not\": \"a model\"}").expect("write");
    }
    let w2 = te.spawn(
        "worker-c",
        &["worker", "--queues", "predict", "--no-reconcile"],
        &[("MODEL_STORAGE_PATH", &c_s)],
    );
    predict_succeeds(&te, &ids, "node c").await;
    for f in &cached_b {
        let rel = f.strip_prefix(&b).expect("under b");
        let bytes_c = std::fs::read(c.join(rel)).expect("cached on c");
        assert_eq!(bytes_c, std::fs::read(f).expect("cached on b"), "{rel:?}");
    }
    te.term(w2);
}

/// Artifacts written to disk before the store kept them are moved in by
/// `rpa-ml migrate`, verified against their checksum.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_moves_artifacts_from_disk_into_the_store() {
    let mut te = TestEnv::new(Mode::Scale).await;
    te.spawn("api", &["api"], &[]);
    te.spawn("trainer", &["worker", "--queues", "train,maintenance"], &[]);
    te.wait_ready().await;
    te.train().await;
    let probe = te.store().await;
    let stored = probe.count("SELECT COUNT(*) FROM model_artifacts").await;
    let models = probe.count("SELECT COUNT(*) FROM models").await;
    assert!(
        stored >= 1 && stored == models,
        "{stored} artifacts for {models} models"
    );
    // As before artifacts were kept in the store.
    probe
        .count("WITH d AS (DELETE FROM model_artifacts RETURNING 1) SELECT COUNT(*) FROM d")
        .await;
    assert_eq!(probe.count("SELECT COUNT(*) FROM model_artifacts").await, 0);
    let out = std::process::Command::new(common::bin())
        .arg("migrate")
        .current_dir(&te.dir)
        .env_clear()
        .envs(te.env())
        .output()
        .expect("migrate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("moved {models} model artifact(s)")),
        "{text}"
    );
    assert_eq!(
        probe.count("SELECT COUNT(*) FROM model_artifacts").await,
        models
    );
}

async fn predictions(te: &TestEnv, ids: &[i64]) -> serde_json::Value {
    let c = te.client();
    let id = c.predict(&["completion_time", "risk"], ids).await;
    let job = c.wait_job(&id, 60).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", te.dump_logs());
    let preds = job["result"]["predictions"].clone();
    assert!(
        preds.as_array().is_some_and(|p| p.len() == 2 * ids.len()),
        "{job}"
    );
    preds
}

fn rpa_ml(te: &TestEnv, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::bin())
        .args(args)
        .current_dir(&te.dir)
        .env_clear()
        .envs(te.env())
        .output()
        .expect("rpa-ml")
}

/// Backup, a new empty store, restore: the same versions answer with the
/// same predictions. A damaged artifact stops the restore before it writes.
#[tokio::test(flavor = "multi_thread")]
async fn backup_then_restore_into_an_empty_store_gives_the_same_predictions() {
    let mut te = TestEnv::new(Mode::Scale).await;
    te.spawn("api", &["api"], &[]);
    te.spawn("worker", &["worker"], &[]);
    te.wait_ready().await;
    te.train().await;
    let ids = common::open_projects(&common::shared_backend(), 4).await;
    let before = predictions(&te, &ids).await;
    let out = te.dir.join("backup");
    let b = rpa_ml(&te, &["backup", "--out", &out.display().to_string()]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(out.join("registry.json").exists() && out.join("SHA256SUMS").exists());

    // The same system on a new, empty ML store, with empty local caches.
    let mut fresh = TestEnv::new(Mode::Scale).await;
    let damaged = fresh.dir.join("damaged");
    std::fs::create_dir_all(damaged.join("artifacts")).expect("mkdir");
    std::fs::copy(out.join("registry.json"), damaged.join("registry.json")).expect("copy");
    for e in std::fs::read_dir(out.join("artifacts"))
        .expect("artifacts")
        .flatten()
    {
        let mut bytes = std::fs::read(e.path()).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        std::fs::write(damaged.join("artifacts").join(e.file_name()), bytes).expect("write");
    }
    let r = rpa_ml(
        &fresh,
        &["restore", "--from", &damaged.display().to_string()],
    );
    assert!(!r.status.success(), "a damaged backup restored");
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("sha256"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let probe = fresh.store().await;
    assert_eq!(probe.count("SELECT COUNT(*) FROM models").await, 0);

    let r = rpa_ml(&fresh, &["restore", "--from", &out.display().to_string()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    fresh.spawn("api", &["api"], &[]);
    fresh.spawn("worker", &["worker", "--queues", "predict"], &[]);
    fresh.wait_ready().await;
    let after = predictions(&fresh, &ids).await;
    // The same versions answer the same; features that depend on the clock
    // (pace, utilisation) move a little in the seconds between the two.
    let close = |a: &serde_json::Value, b: &serde_json::Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-3 * x.abs().max(1.0),
        _ => a == b,
    };
    let (before, after) = (
        before.as_array().expect("array"),
        after.as_array().expect("array"),
    );
    assert_eq!(before.len(), after.len());
    for (x, y) in before.iter().zip(after) {
        for key in ["project_id", "target", "model_version", "class"] {
            assert_eq!(x[key], y[key], "{key}: {x} vs {y}");
        }
        assert!(close(&x["value"], &y["value"]), "{x} vs {y}");
        for (class, p) in x["probabilities"].as_object().into_iter().flatten() {
            assert!(close(p, &y["probabilities"][class]), "{x} vs {y}");
        }
    }
    let (_, models_before) = te.client().get("/api/v1/models").await;
    let (_, models_after) = fresh.client().get("/api/v1/models").await;
    assert_eq!(models_before, models_after, "the registry as it was");
    // Restoring twice is refused rather than merged.
    let r = rpa_ml(&fresh, &["restore", "--from", &out.display().to_string()]);
    assert!(!r.status.success());
}
