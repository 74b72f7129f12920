//! A manual experiment on a bigger backend (ignored by default): timings,
//! the reports, and the hold-out error by snapshot age.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{TimeZone, Utc};

use super::*;

fn quantiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "empty".into();
    }
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "n={} min={:.2} p10={:.2} p25={:.2} p50={:.2} p75={:.2} p90={:.2} max={:.2}",
        v.len(),
        q(0.0),
        q(0.1),
        q(0.25),
        q(0.5),
        q(0.75),
        q(0.9),
        q(1.0)
    )
}

fn describe(set: &TrainingSet) {
    for target in Target::ALL {
        let starts: Vec<f64> = set
            .rows
            .iter()
            .filter(|r| r.at_start)
            .filter_map(|r| set.value(target, r))
            .collect();
        let grid: Vec<f64> = set
            .rows
            .iter()
            .filter(|r| r.on_grid)
            .filter_map(|r| set.value(target, r))
            .collect();
        println!("{target} per project (start rows): {}", quantiles(starts));
        println!("{target} grid rows: {}", quantiles(grid));
    }
}

/// Manual experiment on a bigger backend: `RPA_ML_EXPERIMENT_PROJECTS=5000
/// cargo test -p rpa-ml-shared --release experiment -- --ignored --nocapture`;
/// `RPA_ML_EXPERIMENT_SEED` picks the generator seed (42), and
/// `RPA_ML_EXPERIMENT_TRIALS=10` turns the search on with that many trials.
/// The whole retrain (training set plus three targets) is timed.
#[tokio::test]
#[ignore]
async fn experiment() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let n = env("RPA_ML_EXPERIMENT_PROJECTS").unwrap_or(5000);
    let seed = env("RPA_ML_EXPERIMENT_SEED").unwrap_or(42) as u64;
    let trials = env("RPA_ML_EXPERIMENT_TRIALS");
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let path = demo_sqlite(dir.path(), n, seed).await;
    println!("generate+write {n}: {:.2}s", t.elapsed().as_secs_f64());
    let db = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();

    let t = Instant::now();
    let open = db.open_project_ids().await.unwrap();
    let now = Utc
        .with_ymd_and_hms(AS_OF.0, AS_OF.1, AS_OF.2, 0, 0, 0)
        .unwrap();
    let ex = extract_features(&db, &open, now).await.unwrap();
    println!(
        "features for {} open projects: {:.3}s skipped={:?}",
        ex.rows.len(),
        t.elapsed().as_secs_f64(),
        ex.skipped
    );

    let retrain = Instant::now();
    let t = Instant::now();
    let set = build_training_set(&db).await.unwrap();
    println!(
        "training set: {:.2}s, skipped={:?}",
        t.elapsed().as_secs_f64(),
        set.skipped
    );
    for target in Target::ALL {
        println!(
            "  {target}: {} projects, {} rows",
            set.projects(target),
            set.rows(target)
        );
    }
    describe(&set);
    if std::env::var("RPA_ML_EXPERIMENT_POSTGRES").is_ok() {
        let data = generate(&DemoConfig {
            projects: n,
            seed: 42,
            as_of: as_of(),
            shift: None,
            long_projects: None,
        });
        let pg = ScratchPg::create().await;
        let t = Instant::now();
        crate::demo::write_postgres(&pg.url, &data).await.unwrap();
        println!("write_postgres {n}: {:.2}s", t.elapsed().as_secs_f64());
        let post = BackendDb::connect(&pg.url, 2).await.unwrap();
        let t = Instant::now();
        let ex = extract_features(&post, &open, now).await.unwrap();
        println!(
            "postgres: features for {} open projects: {:.3}s",
            ex.rows.len(),
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let pset = build_training_set(&post).await.unwrap();
        println!(
            "postgres: training set {:.2}s, same fingerprint as SQLite: {}",
            t.elapsed().as_secs_f64(),
            pset.fingerprint() == set.fingerprint()
        );
    }
    let mut fitted = Vec::new();
    let retrain_build = retrain.elapsed().as_secs_f64();
    let mut train_total = 0.0;
    for target in Target::ALL {
        let t = Instant::now();
        let o = TrainOptions {
            tuning: trials.is_some(),
            max_trials: trials.unwrap_or(10),
            ..opts(target)
        };
        let (model, report) = train(target, &set, &o).unwrap();
        train_total += t.elapsed().as_secs_f64();
        show(&report);
        let size = serde_json::to_vec(&model).unwrap().len();
        println!(
            "  train() total {:.2}s, artifact {:.0} KB",
            t.elapsed().as_secs_f64(),
            size as f64 / 1024.0
        );
        fitted.push((model, report));
    }
    println!(
        "RETRAIN {n} projects seed {seed} tuning={:?}: training set {retrain_build:.2}s + train {train_total:.2}s = {:.2}s",
        trials,
        retrain.elapsed().as_secs_f64()
    );
    for (model, report) in &fitted {
        if report.target != Target::Risk {
            diagnose(&set, model, report.target);
        }
    }
}

/// Hold-out error by snapshot age, beside single features used as predictors.
fn diagnose(set: &TrainingSet, model: &TrainedModel, target: Target) {
    let names = feature_names();
    let col = |n: &str| names.iter().position(|x| *x == n).unwrap();
    let candidates = [
        "pace_adjusted_remaining_days",
        "remaining_effort_days",
        "projected_remaining_by_pace",
        "planned_remaining_days",
    ];
    let mut buckets: BTreeMap<&str, (f64, f64, usize, Vec<f64>)> = BTreeMap::new();
    for r in set.rows.iter().filter(|r| r.on_grid) {
        let p = &set.projects[r.project];
        if !p.holdout {
            continue;
        }
        let Some(y) = set.value(target, r) else {
            continue;
        };
        let row = FeatureRow {
            project_id: p.id,
            as_of: crate::backend::time::day_start(r.cutoff),
            values: r.values.clone(),
            elapsed_days: r.elapsed_days,
            start_date: None,
            planned_days: None,
        };
        let pred = model.predict(&row);
        let yhat = match target {
            Target::CompletionTime => pred.days_remaining.unwrap(),
            _ => pred.value.unwrap(),
        };
        let age = r.elapsed_days / 14.0;
        let bucket = match age as usize {
            0 => "k=0",
            1..=2 => "k=1-2",
            3..=5 => "k=3-5",
            6..=10 => "k=6-10",
            _ => "k>10",
        };
        let e = buckets
            .entry(bucket)
            .or_insert((0.0, 0.0, 0, vec![0.0; candidates.len()]));
        e.0 += (yhat - y).abs();
        e.1 += y.abs();
        e.2 += 1;
        for (i, c) in candidates.iter().enumerate() {
            e.3[i] += (r.values[col(c)] - y).abs();
        }
    }
    let train_y: Vec<f64> = set
        .rows
        .iter()
        .filter(|r| !set.projects[r.project].holdout)
        .filter_map(|r| set.value(target, r))
        .collect();
    let mut sorted = train_y.clone();
    sorted.sort_by(f64::total_cmp);
    let med = sorted[sorted.len() / 2];
    let holdout: Vec<f64> = set
        .rows
        .iter()
        .filter(|r| r.on_grid && set.projects[r.project].holdout)
        .filter_map(|r| set.value(target, r))
        .collect();
    println!(
        "  median-of-training-targets baseline MAE: {:.4}",
        holdout.iter().map(|y| (y - med).abs()).sum::<f64>() / holdout.len() as f64
    );
    for (b, (err, mag, n, cand)) in buckets {
        let n = n as f64;
        print!(
            "  {b:<7} n={n:<5} model_mae={:.3} mean|y|={:.3}",
            err / n,
            mag / n
        );
        if target == Target::CompletionTime {
            for (i, c) in candidates.iter().enumerate() {
                print!(" {c}={:.1}", cand[i] / n);
            }
        }
        println!();
    }
}
