//! The flat scoring layout answers what forust answers: raw scores and
//! Average contributions of every booster of every target, missing values
//! included, and through `TrainedModel::predict_many` the same predictions,
//! intervals and top contributions, before and after an artifact round trip.

use chrono::Utc;
use sha2::Digest;

use super::*;
use crate::ml::boost::{Booster, through_forust};
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
