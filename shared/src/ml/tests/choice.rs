//! The learner choice of the regressions: the shipped learner is the one
//! that wins on validation rows inside the training data, never one a
//! baseline beats there, and what it ships predicts and round-trips as
//! chosen.

use super::*;
use crate::ml::fit::{Pick, feature_rows, fit_baseline, predict_rows, split};
use crate::ml::metrics::mae;
use crate::ml::model::{BlendedRegressor, Params};

const REGRESSIONS: [Target; 2] = [Target::CompletionTime, Target::BudgetVariance];

/// Every candidate and baseline is scored on validation, the chosen one is
/// the lowest of them, the shipped model is that learner, and its artifact
/// loads back to the same predictions and the same hold-out figure.
#[tokio::test]
async fn ships_the_learner_that_wins_on_validation() {
    let (_demo, set) = fitted_demo(1200, 5).await;
    let dir = tempfile::tempdir().unwrap();
    for target in REGRESSIONS {
        let (model, report) = train(target, &set, &opts(target)).unwrap();
        show(&report);
        let c = report.learner_choice.clone().expect("a learner choice");
        println!("  choice {c:?}");
        for key in [
            "booster",
            "linear_all_features",
            "median",
            "linear_planning",
        ] {
            assert!(c.validation[key].is_finite(), "{key}: {c:?}");
        }
        assert!(c.validation_projects >= 10 && c.validation_rows > 0);
        let best = c.validation.values().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(c.validation[&c.chosen], best, "{c:?}");
        assert!(
            c.validation["median"] >= best && c.validation["linear_planning"] >= best,
            "{c:?}"
        );
        match (&model.params, c.chosen.as_str()) {
            (Params::Boosted(_), "booster") => {}
            (Params::Blend(b), "blend" | "linear_all_features") => {
                assert_eq!(Some(b.weight), c.blend_weight);
            }
            (Params::Linear(_), "median" | "linear_planning") => {}
            (p, chosen) => panic!("{chosen} shipped as {p:?}"),
        }
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["learner_choice"]["chosen"], c.chosen.as_str());

        let (path, sha) = save_artifact(dir.path(), &format!("{target}.json"), &model).unwrap();
        let loaded = load_artifact(&path, &sha).unwrap();
        assert_eq!(loaded, model);
        assert_eq!(evaluate(&loaded, &set).unwrap(), report.holdout);
    }
}

/// A blend answers the weighted mean of its booster's and its linear
/// model's answers (each kept in range), with intervals around it, and
/// round-trips through an artifact; weight 0 is the linear model.
#[tokio::test]
async fn a_blend_answers_the_weighted_mean_of_its_learners() {
    let (_demo, set) = fitted_demo(600, 9).await;
    let dir = tempfile::tempdir().unwrap();
    for target in REGRESSIONS {
        let (model, _) = train(target, &set, &opts(target)).unwrap();
        let boosted = match &model.params {
            Params::Boosted(b) => b.clone(),
            Params::Blend(b) => b.boosted.clone(),
            p => panic!("{target}: {p:?}"),
        };
        let s = split(target, &set);
        let rows: Vec<&[f64]> = s.train.iter().map(|r| r.values.as_slice()).collect();
        let (linear, _) =
            crate::ml::linear::fit_linear(&rows, &s.train_y, feature_names().len()).unwrap();
        let as_model = |params: Params| TrainedModel {
            params,
            ..model.clone()
        };
        // A booster alone, the artifact every earlier retrain wrote, still
        // loads and predicts.
        let alone = as_model(Params::Boosted(boosted.clone()));
        let (path, sha) = save_artifact(dir.path(), "boosted.json", &alone).unwrap();
        assert_eq!(load_artifact(&path, &sha).unwrap(), alone);
        let b = predict_rows(&alone, &s.eval);
        let l = predict_rows(&as_model(Params::Linear(linear.clone())), &s.eval);
        for w in [0.0, 0.3, 1.0] {
            let blend = as_model(Params::Blend(BlendedRegressor {
                boosted: boosted.clone(),
                linear: linear.clone(),
                weight: w,
            }));
            let (path, sha) = save_artifact(dir.path(), "blend.json", &blend).unwrap();
            let blend = load_artifact(&path, &sha).unwrap();
            let p = predict_rows(&blend, &s.eval);
            for i in 0..s.eval.len() {
                let want = w * b[i].0 + (1.0 - w) * l[i].0;
                assert!(
                    (p[i].0 - want).abs() < 1e-9,
                    "{target} w {w}: {} vs {want}",
                    p[i].0
                );
            }
            let rows = feature_rows(s.eval.iter().take(20).copied());
            for (row, pred) in rows.iter().zip(blend.predict_many(&rows)) {
                let [lo, hi] = pred.interval_90.expect("blend intervals");
                let v = pred.value.unwrap();
                assert!(lo <= v && v <= hi, "{pred:?}");
                assert!(!pred.contributions.is_empty() || row.values.iter().all(|v| *v == 0.0));
            }
        }
    }
}

/// A baseline shipped when it wins on validation answers exactly what the
/// report's baseline answers: the median, and the planning OLS (for
/// completion time fitted on the total and answering days remaining).
#[tokio::test]
async fn a_shipped_baseline_answers_as_the_reported_baseline() {
    let (_demo, set) = fitted_demo(600, 9).await;
    for target in REGRESSIONS {
        let (model, report) = train(target, &set, &opts(target)).unwrap();
        let s = split(target, &set);
        for (pick, name) in [
            (Pick::Median, "median"),
            (Pick::Planning, "linear_planning"),
        ] {
            let m = fit_baseline(target, pick, &s.train, &s.train_y).unwrap();
            let shipped = TrainedModel {
                params: Params::Linear(m),
                ..model.clone()
            };
            let pred: Vec<f64> = predict_rows(&shipped, &s.eval)
                .iter()
                .map(|p| p.0)
                .collect();
            let got = mae(&pred, &s.eval_y);
            assert!(
                (got - report.baselines[name]).abs() < 1e-6 * report.baselines[name].max(1.0),
                "{target} {name}: shipped {got} vs reported {}",
                report.baselines[name]
            );
        }
    }
}
