//! The flat scoring layout answers what forust answers: raw scores and
//! Average contributions of every booster of every target, missing values
//! included, and through `TrainedModel::predict_many` the same predictions,
//! intervals and top contributions, before and after an artifact round trip.

use chrono::Utc;

use crate::backend::BackendDb;
use sha2::Digest;

use super::*;
use crate::ml::boost::{Booster, keeping_forust, through_forust};
use crate::ml::fit::{feature_rows, split};

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

fn assert_close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(close(*x, *y), "{what}[{i}]: {x} vs forust {y}");
    }
}

/// `rows` row-major, then the same rows with the features the booster
/// splits on most set to NaN in turn, so forust's missing branch is taken.
fn matrix_with_missing(rows: &[FeatureRow], width: usize) -> Vec<f64> {
    let mut x: Vec<f64> = rows.iter().flat_map(|r| r.values.clone()).collect();
    for (k, r) in rows.iter().enumerate().take(200) {
        let mut v = r.values.clone();
        for f in (k % width..width).step_by(7) {
            v[f] = f64::NAN;
        }
        x.extend(v);
    }
    x
}

fn check_booster(what: &str, b: &Booster, x: &[f64], width: usize) {
    let (s, c) = b.score_rows(x, width);
    let (fs, fc) = through_forust(|| b.score_rows(x, width));
    assert_eq!(s.len(), x.len() / width, "{what}");
    assert_close(&format!("{what} scores"), &s, &fs);
    assert_close(&format!("{what} contributions"), &c, &fc);
    // Contributions add up to the score, as forust's do.
    for (i, row) in c.chunks(width + 1).enumerate() {
        let sum: f64 = row.iter().sum();
        assert!(
            (sum - s[i]).abs() < 1e-6,
            "{what} row {i}: {sum} vs {}",
            s[i]
        );
    }
}

#[tokio::test]
async fn the_flat_layout_scores_and_explains_as_forust_does() {
    let (demo, set) = fitted_demo(600, 9).await;
    let ids: Vec<i64> = (1..=600).collect();
    let open = extract_features(&demo.db, &ids, Utc::now()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut missing_taken = false;
    for target in Target::ALL {
        let (model, _) = train(target, &set, &opts(target)).unwrap();
        let width = model.feature_names().len();
        let s = split(target, &set);
        let mut rows = feature_rows(s.eval.iter().copied());
        rows.extend(open.rows.iter().cloned());
        assert!(rows.len() > 100, "{target}: {} rows", rows.len());
        let x = matrix_with_missing(&rows, width);
        let boosters = model.boosters();
        assert!(!boosters.is_empty(), "{target} ships no booster");
        for (k, b) in boosters.iter().enumerate() {
            check_booster(&format!("{target} booster {k}"), b, &x, width);
            let clean = b.score_rows(&x[..rows.len() * width], width).0;
            let all = b.score_rows(&x, width).0;
            missing_taken |= all[rows.len()..].iter().zip(&clean).any(|(m, c)| m != c);
        }

        // The whole answer, as `predict_many` builds it.
        let flat = model.predict_many(&rows);
        let forust = through_forust(|| model.predict_many(&rows));
        assert_eq!(flat, forust, "{target}");
        assert!(flat.iter().any(|p| !p.contributions.is_empty()), "{target}");

        // Loaded from its artifact, the booster keeps only the flat layout
        // and still answers the same.
        let (path, sha) = save_artifact(dir.path(), &format!("{target}.json"), &model).unwrap();
        let loaded = load_artifact(&path, &sha).unwrap();
        assert_eq!(loaded, model);
        assert_eq!(loaded.predict_many(&rows), forust, "{target} loaded");
        // A loaded model cannot be written back: there is no forust object.
        let err = serde_json::to_vec(&loaded).unwrap_err();
        assert!(err.to_string().contains("artifact"), "{err}");
    }
    assert!(missing_taken, "no NaN row changed a score");
}

/// A damaged booster (a child before its parent, a split past the row)
/// is refused at load rather than looping or reading out of bounds.
#[tokio::test]
async fn an_artifact_whose_trees_do_not_fit_is_refused() {
    let (_demo, set) = fitted_demo(300, 3).await;
    let (model, _) = train(Target::CompletionTime, &set, &opts(Target::CompletionTime)).unwrap();
    let json = serde_json::to_value(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = match json["params"]["kind"].as_str() {
        Some("boosted") => "/params/booster/trees",
        Some("blend") => "/params/boosted/booster/trees",
        k => panic!("{k:?}"),
    };
    let t = json.pointer(key).unwrap().as_array().unwrap();
    let split = t
        .iter()
        .position(|t| t["nodes"].as_array().unwrap().len() > 1)
        .unwrap();
    for (field, value, expect) in [
        ("left_child", 0, "child"),
        ("split_feature", 5000, "feature"),
    ] {
        let mut bad = json.clone();
        *bad.pointer_mut(&format!("{key}/{split}/nodes/0/{field}"))
            .unwrap() = value.into();
        let bytes = serde_json::to_vec(&bad).unwrap();
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let path = dir.path().join("bad.json");
        std::fs::write(&path, &bytes).unwrap();
        let err = load_artifact(&path, &sha).unwrap_err();
        assert!(
            matches!(err, ArtifactError::Corrupt(_)) && err.to_string().contains(expect),
            "{field}: {err}"
        );
    }
}

/// CPU time of this process's threads (forust scores on rayon's), in ns.
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Mean CPU ms of `f` over `n` runs.
fn cpu_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = cpu_ns();
    for _ in 0..n {
        f();
    }
    (cpu_ns() - t) as f64 / n as f64 / 1e6
}

/// Scoring 1,000 rows with contributions through forust and through the
/// flat layout, in one run. With RPA_ML_BENCH_MODELS (a MODEL_STORAGE_PATH
/// holding `<target>/*.json`) and RPA_ML_BENCH_BACKEND (its backend's
/// SQLite file) it scores those models on that backend's first 1,000
/// projects; without, models trained on a 1,500-project demo.
/// `cargo test --release -p rpa-ml-shared --lib scoring_cpu -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn scoring_cpu_forust_vs_flat() {
    let ids: Vec<i64> = (1..=1000).collect();
    let (models, rows) = match (
        std::env::var("RPA_ML_BENCH_MODELS"),
        std::env::var("RPA_ML_BENCH_BACKEND"),
    ) {
        (Ok(dir), Ok(backend)) => {
            let db = BackendDb::connect(&backend, 2).await.unwrap();
            let rows = extract_features(&db, &ids, Utc::now()).await.unwrap().rows;
            let models: Vec<TrainedModel> = Target::ALL
                .iter()
                .map(|t| {
                    let d = std::path::Path::new(&dir).join(t.as_str());
                    let file = std::fs::read_dir(&d)
                        .unwrap()
                        .flatten()
                        .next()
                        .unwrap()
                        .path();
                    let bytes = std::fs::read(&file).unwrap();
                    keeping_forust(|| serde_json::from_slice(&bytes).unwrap())
                })
                .collect();
            (models, rows)
        }
        _ => {
            let (demo, set) = fitted_demo(1500, 11).await;
            let rows = extract_features(&demo.db, &ids, Utc::now())
                .await
                .unwrap()
                .rows;
            let models = Target::ALL
                .iter()
                .map(|t| train(*t, &set, &opts(*t)).unwrap().0)
                .collect();
            (models, rows)
        }
    };
    assert_eq!(rows.len(), 1000);
    let runs = 20;
    let (mut before, mut after) = (0.0, 0.0);
    for model in &models {
        let width = model.feature_names().len();
        let x: Vec<f64> = rows.iter().flat_map(|r| r.values.clone()).collect();
        for (k, b) in model.boosters().iter().enumerate() {
            let f = through_forust(|| cpu_ms(runs, || drop(b.score_rows(&x, width))));
            let t = cpu_ms(runs, || drop(b.score_rows(&x, width)));
            println!(
                "{} booster {k}: {} trees, {} KB flat; scores+contributions of 1,000 rows: forust {f:.2} ms CPU, flat {t:.2} ms CPU",
                model.target(),
                b.trees(),
                b.heap_bytes() / 1024
            );
        }
        let f = through_forust(|| cpu_ms(runs, || drop(model.predict_many(&rows))));
        let t = cpu_ms(runs, || drop(model.predict_many(&rows)));
        assert_eq!(
            through_forust(|| model.predict_many(&rows)),
            model.predict_many(&rows)
        );
        println!(
            "{} predict_many(1,000 rows): forust {f:.2} ms CPU, flat {t:.2} ms CPU",
            model.target()
        );
        before += f;
        after += t;
    }
    println!("three targets, 1,000 rows: forust {before:.2} ms CPU, flat {after:.2} ms CPU");
}
