//! End-to-end tests of features, training and artifacts on demo backends,
//! by topic: `features` (point-in-time extraction, messy rows, SQLite and
//! PostgreSQL alike), `training` (every target trains, predicts,
//! round-trips and refits identically), `baselines` (the margins over the
//! plain baselines), `experiment` (a manual run on a bigger backend). Here:
//! the demo backends and options they share.

mod backend_mess;
mod baselines;
mod choice;
mod drift_population;
mod experiment;
mod extraction;
mod features;
mod forest;
mod training;

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};

use super::*;
use crate::backend::BackendDb;
use crate::demo::{DemoConfig, generate, write_sqlite};

pub(crate) const AS_OF: (i32, u32, u32) = (2026, 3, 1);

pub(crate) fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(AS_OF.0, AS_OF.1, AS_OF.2).unwrap()
}

pub(crate) async fn demo_sqlite(dir: &Path, projects: usize, seed: u64) -> PathBuf {
    let path = dir.join(format!("demo-{projects}-{seed}.db"));
    let data = generate(&DemoConfig {
        projects,
        seed,
        as_of: as_of(),
        shift: None,
        long_projects: None,
    });
    write_sqlite(&path, &data).await.unwrap();
    path
}

pub(crate) fn opts(target: Target) -> TrainOptions {
    TrainOptions {
        seed: 7,
        ..TrainOptions::new(target)
    }
}

pub(crate) fn show(r: &TrainReport) {
    println!(
        "{:<16} {} holdout={:.4} start={:?} baseline={:.4} ({}) improvement={:.1}% baselines={:?} references={:?} f1={:?} rows={} projects={} holdout_rows={} holdout_projects={} fit={:.2}s train={:.2}s passed={} learner={}",
        r.target.as_str(),
        r.metric,
        r.holdout,
        r.start_snapshot_holdout.map(|v| (v * 1e4).round() / 1e4),
        r.baseline,
        r.baseline_name,
        100.0 * r.improvement_over_baseline,
        r.baselines,
        r.references,
        r.macro_f1.map(|v| (v * 1e4).round() / 1e4),
        r.rows,
        r.projects,
        r.holdout_rows,
        r.holdout_projects,
        r.fit_seconds,
        r.train_seconds,
        r.passed,
        r.learner
    );
    if let Some(c) = &r.interval_coverage {
        println!(
            "  interval coverage {c:?} mean width {:?}",
            r.interval_mean_width
        );
    }
    if let Some(f) = &r.class_frequencies {
        println!("  class frequencies {f:?}");
    }
    if let Some(cv) = &r.cv {
        println!(
            "  cv: {} folds on {} projects, {} trials, best {:.4} with {:?}",
            cv.folds,
            cv.projects,
            cv.trials.len(),
            cv.best_metric,
            cv.best_params
        );
    }
}

/// Trains every target once per seed and shares the result between tests.
async fn fitted_demo(projects: usize, seed: u64) -> (TempDemo, TrainingSet) {
    let dir = tempfile::tempdir().unwrap();
    let path = demo_sqlite(dir.path(), projects, seed).await;
    let db = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();
    let set = build_training_set(&db).await.unwrap();
    (TempDemo { _dir: dir, db }, set)
}

struct TempDemo {
    _dir: tempfile::TempDir,
    db: BackendDb,
}

/// A scratch PostgreSQL database, dropped when the test ends (pass or fail).
struct ScratchPg {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchPg {
    async fn create() -> Self {
        let admin_url = std::env::var("RPA_ML_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let name = format!(
            "rpa_ml_backend_test_{}_{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap()
        );
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .expect("a PostgreSQL server for tests (RPA_ML_TEST_POSTGRES_URL)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let base = admin_url.rsplit_once('/').unwrap().0;
        let url = format!("{base}/{name}");
        ScratchPg {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a fresh one on another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}
