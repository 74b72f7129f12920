//! Learner measurements on bigger demo backends (ignored; run by hand).

use std::path::PathBuf;
use std::time::Instant;

use super::boost::{BoostParams, Booster, Columns, Objective};
use super::linear::fit_linear;
use super::training::{Snapshot, TrainingSet};
use super::*;
use crate::backend::BackendDb;

pub(crate) async fn cached_set(projects: usize, seed: u64) -> TrainingSet {
    let dir = PathBuf::from("/var/tmp/rpa-lab");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("demo-{projects}-{seed}.db"));
    if !path.exists() {
        super::tests::demo_sqlite(&dir, projects, seed).await;
    }
    let db = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();
    build_training_set(&db).await.unwrap()
}

/// The demo set the experiments run on: `LAB_PROJECTS` (5,000) projects
/// of seed `LAB_SEED` (42).
async fn lab_set() -> TrainingSet {
    cached_set(env("LAB_PROJECTS", 5000), env("LAB_SEED", 42) as u64).await
}

pub(crate) struct LabSplit<'a> {
    pub train: Vec<&'a Snapshot>,
    pub ty: Vec<f64>,
    pub eval: Vec<&'a Snapshot>,
    pub ey: Vec<f64>,
}

/// The training pipeline's own split, under the lab's shorter names.
pub(crate) fn lab_split(set: &TrainingSet, target: Target) -> LabSplit<'_> {
    let s = super::fit::split(target, set);
    LabSplit {
        train: s.train,
        ty: s.train_y,
        eval: s.eval,
        ey: s.eval_y,
    }
}

fn mae(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
#[ignore]
async fn lab_regression() {
    let n = env("LAB_PROJECTS", 5000);
    let seed = env("LAB_SEED", 42) as u64;
    let t = Instant::now();
    let set = cached_set(n, seed).await;
    println!("set: {:.1}s", t.elapsed().as_secs_f64());
    let width = feature_names().len();
    for target in [Target::CompletionTime, Target::BudgetVariance] {
        let s = lab_split(&set, target);
        let rows: Vec<&[f64]> = s.train.iter().map(|r| r.values.as_slice()).collect();
        let erows: Vec<&[f64]> = s.eval.iter().map(|r| r.values.as_slice()).collect();
        println!(
            "{target}: train rows {} eval rows {}",
            rows.len(),
            erows.len()
        );
        let t = Instant::now();
        let (ols, _) = fit_linear(&rows, &s.ty, width).unwrap();
        let p: Vec<f64> = erows.iter().map(|r| ols.predict(r).max(0.0)).collect();
        println!(
            "  OLS mae={:.4} fit={:.2}s",
            mae(&p, &s.ey),
            t.elapsed().as_secs_f64()
        );
        let x = Columns::from_rows(&rows, width);
        let ex = Columns::from_rows(&erows, width);
        let mean = s.ty.iter().sum::<f64>() / s.ty.len() as f64;
        let sd = (s.ty.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / s.ty.len() as f64).sqrt();
        for (name, params) in [
            ("default", BoostParams::DEFAULT),
            (
                "d4",
                BoostParams {
                    max_depth: 4,
                    ..BoostParams::DEFAULT
                },
            ),
            (
                "d8 lr.05 600",
                BoostParams {
                    max_depth: 8,
                    learning_rate: 0.05,
                    iterations: 600,
                    ..BoostParams::DEFAULT
                },
            ),
        ] {
            let t = Instant::now();
            let z: Vec<f64> = s.ty.iter().map(|v| (v - mean) / sd).collect();
            let b = Booster::fit(&x, &z, Objective::SquaredError, &params, 7).unwrap();
            let fit = t.elapsed().as_secs_f64();
            let p: Vec<f64> = b.predict(&ex).iter().map(|v| v * sd + mean).collect();
            let p: Vec<f64> = if target == Target::CompletionTime {
                p.iter().map(|v| v.max(0.0)).collect()
            } else {
                p
            };
            let size = serde_json::to_vec(&b).unwrap().len();
            println!(
                "  boost {name} raw mae={:.4} fit={fit:.2}s size={}KB",
                mae(&p, &s.ey),
                size / 1024
            );
            if target == Target::CompletionTime {
                let t = Instant::now();
                let z: Vec<f64> = s.ty.iter().map(|v| v.max(0.0).ln_1p()).collect();
                let b = Booster::fit(&x, &z, Objective::SquaredError, &params, 7).unwrap();
                let fit = t.elapsed().as_secs_f64();
                let p: Vec<f64> = b.predict(&ex).iter().map(|v| v.exp_m1().max(0.0)).collect();
                println!(
                    "  boost {name} log1p mae={:.4} fit={fit:.2}s",
                    mae(&p, &s.ey)
                );
                // Residual of OLS.
                let base: Vec<f64> = rows.iter().map(|r| ols.predict(r)).collect();
                let z: Vec<f64> = s.ty.iter().zip(&base).map(|(y, b)| (y - b) / sd).collect();
                let b = Booster::fit(&x, &z, Objective::SquaredError, &params, 7).unwrap();
                let p: Vec<f64> = b
                    .predict(&ex)
                    .iter()
                    .zip(&erows)
                    .map(|(v, r)| (v * sd + ols.predict(r)).max(0.0))
                    .collect();
                println!("  boost {name} ols-residual mae={:.4}", mae(&p, &s.ey));
            }
        }
        let t = Instant::now();
        let c = Booster::fit(
            &x,
            &s.ty.iter().map(|v| (v - mean) / sd).collect::<Vec<_>>(),
            Objective::SquaredError,
            &BoostParams::DEFAULT,
            7,
        )
        .unwrap();
        let fit = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let sub = Columns::from_rows(&erows[..1000.min(erows.len())], width);
        let contrib = c.contributions(&sub);
        println!(
            "  contributions for {} rows: {:.3}s (fit {fit:.2}s)",
            contrib.len(),
            t.elapsed().as_secs_f64()
        );
        let again = Booster::fit(
            &x,
            &s.ty.iter().map(|v| (v - mean) / sd).collect::<Vec<_>>(),
            Objective::SquaredError,
            &BoostParams::DEFAULT,
            7,
        )
        .unwrap();
        println!("  refit identical: {}", again == c);
    }
}

fn buckets(eval: &[&Snapshot], pred: &[f64], y: &[f64]) -> String {
    let mut out = String::new();
    for (name, lo, hi) in [
        ("k0", 0.0, 1.0),
        ("k1-2", 1.0, 42.0),
        ("k3-5", 42.0, 84.0),
        ("k6-10", 84.0, 154.0),
        ("k>10", 154.0, 1e9),
    ] {
        let idx: Vec<usize> = (0..eval.len())
            .filter(|&i| eval[i].elapsed_days >= lo && eval[i].elapsed_days < hi)
            .collect();
        let e: f64 = idx.iter().map(|&i| (pred[i] - y[i]).abs()).sum::<f64>();
        out.push_str(&format!(
            " {name}:n={} mae={:.3} share={:.2}",
            idx.len(),
            e / idx.len().max(1) as f64,
            e / pred.iter().zip(y).map(|(p, t)| (p - t).abs()).sum::<f64>()
        ));
    }
    out
}

/// A regression target's lab split, its rows as slices and as forust
/// columns, and the lowest value the target can take.
struct RegressionLab<'a> {
    s: LabSplit<'a>,
    rows: Vec<&'a [f64]>,
    erows: Vec<&'a [f64]>,
    x: Columns,
    ex: Columns,
    floor: f64,
}

fn regression_lab(set: &TrainingSet, target: Target) -> RegressionLab<'_> {
    let width = feature_names().len();
    let s = lab_split(set, target);
    let rows: Vec<&[f64]> = s.train.iter().map(|r| r.values.as_slice()).collect();
    let erows: Vec<&[f64]> = s.eval.iter().map(|r| r.values.as_slice()).collect();
    RegressionLab {
        x: Columns::from_rows(&rows, width),
        ex: Columns::from_rows(&erows, width),
        floor: if target == Target::CompletionTime {
            0.0
        } else {
            -1.0
        },
        s,
        rows,
        erows,
    }
}

/// `z` standardized, with its mean and standard deviation.
fn standardized(z: &[f64]) -> (Vec<f64>, f64, f64) {
    let m = z.iter().sum::<f64>() / z.len() as f64;
    let sd = (z.iter().map(|v| (v - m).powi(2)).sum::<f64>() / z.len() as f64).sqrt();
    (z.iter().map(|v| (v - m) / sd).collect(), m, sd)
}

/// Transform of the target for fitting and its inverse.
#[derive(Clone, Copy, Debug)]
enum Tf {
    Raw,
    Log1p,
    Sqrt,
}

fn fwd(tf: Tf, y: f64, floor: f64) -> f64 {
    match tf {
        Tf::Raw => y,
        Tf::Log1p => (y - floor).max(0.0).ln_1p(),
        Tf::Sqrt => (y - floor).max(0.0).sqrt(),
    }
}
fn inv(tf: Tf, z: f64, floor: f64) -> f64 {
    match tf {
        Tf::Raw => z,
        Tf::Log1p => z.exp_m1().max(0.0) + floor,
        Tf::Sqrt => z.max(0.0).powi(2) + floor,
    }
}

#[tokio::test]
#[ignore]
async fn lab_variants() {
    let set = lab_set().await;
    let width = feature_names().len();
    for target in [Target::CompletionTime, Target::BudgetVariance] {
        let RegressionLab {
            s,
            rows,
            erows,
            x,
            ex,
            floor,
        } = regression_lab(&set, target);
        let med = {
            let mut v = s.ty.clone();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let p = vec![med; s.ey.len()];
        println!(
            "{target} median mae={:.4}{}",
            mae(&p, &s.ey),
            buckets(&s.eval, &p, &s.ey)
        );
        let (ols, _) = fit_linear(&rows, &s.ty, width).unwrap();
        let p: Vec<f64> = erows.iter().map(|r| ols.predict(r).max(floor)).collect();
        println!(
            "{target} OLS mae={:.4}{}",
            mae(&p, &s.ey),
            buckets(&s.eval, &p, &s.ey)
        );
        for tf in [Tf::Raw, Tf::Log1p, Tf::Sqrt] {
            let z: Vec<f64> = s.ty.iter().map(|y| fwd(tf, *y, floor)).collect();
            let (zz, zm, zs) = standardized(&z);
            let params = BoostParams {
                max_depth: 5,
                ..BoostParams::DEFAULT
            };
            let b = Booster::fit(&x, &zz, Objective::SquaredError, &params, 7).unwrap();
            let p: Vec<f64> = b
                .predict(&ex)
                .iter()
                .map(|v| inv(tf, v * zs + zm, floor))
                .collect();
            println!(
                "{target} boost {tf:?} mae={:.4}{}",
                mae(&p, &s.ey),
                buckets(&s.eval, &p, &s.ey)
            );
        }
    }
}

fn acc(p: &[[f64; 3]], y: &[f64]) -> (f64, [f64; 3], [f64; 3]) {
    let mut ok = 0;
    let mut freq = [0.0; 3];
    let mut mean = [0.0; 3];
    for (q, t) in p.iter().zip(y) {
        let mut best = 0;
        for c in 1..3 {
            if q[c] > q[best] {
                best = c;
            }
        }
        ok += usize::from(best == *t as usize);
        freq[best] += 1.0 / y.len() as f64;
        for c in 0..3 {
            mean[c] += q[c] / y.len() as f64;
        }
    }
    (ok as f64 / y.len() as f64, freq, mean)
}

fn sig(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

#[tokio::test]
#[ignore]
async fn lab_risk() {
    let set = lab_set().await;
    let width = feature_names().len();
    let s = lab_split(&set, Target::Risk);
    let rows: Vec<&[f64]> = s.train.iter().map(|r| r.values.as_slice()).collect();
    let erows: Vec<&[f64]> = s.eval.iter().map(|r| r.values.as_slice()).collect();
    let x = Columns::from_rows(&rows, width);
    let ex = Columns::from_rows(&erows, width);
    let mut obs = [0.0; 3];
    for y in &s.ey {
        obs[*y as usize] += 1.0 / s.ey.len() as f64;
    }
    println!(
        "risk: train {} eval {} observed {obs:.3?}",
        rows.len(),
        erows.len()
    );
    // Linear ordinal.
    let ge1: Vec<bool> = s.ty.iter().map(|y| *y >= 1.0).collect();
    let ge2: Vec<bool> = s.ty.iter().map(|y| *y >= 2.0).collect();
    let t = Instant::now();
    let l1 = super::linear::fit_logistic(&rows, &ge1, width).unwrap();
    let l2 = super::linear::fit_logistic(&rows, &ge2, width).unwrap();
    let p: Vec<[f64; 3]> = erows
        .iter()
        .map(|r| {
            let a = sig(l1.predict(r));
            let h = sig(l2.predict(r)).min(a);
            [1.0 - a, a - h, h]
        })
        .collect();
    println!(
        "  logistic ordinal {:?} fit={:.2}s",
        acc(&p, &s.ey),
        t.elapsed().as_secs_f64()
    );
    for mlw in [5.0, 20.0] {
        let params = BoostParams {
            min_leaf_weight: mlw,
            max_depth: 5,
            ..BoostParams::DEFAULT
        };
        let t = Instant::now();
        let f = |y: &[bool]| {
            let yy: Vec<f64> = y.iter().map(|b| f64::from(u8::from(*b))).collect();
            Booster::fit(&x, &yy, Objective::LogLoss, &params, 7).unwrap()
        };
        let b1 = f(&ge1);
        let b2 = f(&ge2);
        let fit = t.elapsed().as_secs_f64();
        let s1 = b1.predict(&ex);
        let s2 = b2.predict(&ex);
        let p: Vec<[f64; 3]> = s1
            .iter()
            .zip(&s2)
            .map(|(a, h)| {
                let a = sig(*a);
                let h = sig(*h).min(a);
                [1.0 - a, a - h, h]
            })
            .collect();
        println!(
            "  boost ordinal mlw={mlw} {:?} fit={fit:.2}s",
            acc(&p, &s.ey)
        );
        let t = Instant::now();
        let is: Vec<Vec<bool>> = (0..3)
            .map(|c| s.ty.iter().map(|y| *y as usize == c).collect())
            .collect();
        let bs: Vec<Booster> = is.iter().map(|y| f(y)).collect();
        let fit = t.elapsed().as_secs_f64();
        let sc: Vec<Vec<f64>> = bs.iter().map(|b| b.predict(&ex)).collect();
        let p: Vec<[f64; 3]> = (0..erows.len())
            .map(|i| {
                let q = [sig(sc[0][i]), sig(sc[1][i]), sig(sc[2][i])];
                let t: f64 = q.iter().sum();
                [q[0] / t, q[1] / t, q[2] / t]
            })
            .collect();
        println!("  boost ovr mlw={mlw} {:?} fit={fit:.2}s", acc(&p, &s.ey));
    }
}

/// The learner comparison on the demo backend: hold-out metric, fit
/// seconds and artifact size per learner and target.
#[tokio::test]
#[ignore]
async fn lab_compare() {
    use super::fit::{Fitted, default_params, fit_ordinal, fit_tree, split};
    use super::model::Params;
    let set = lab_set().await;
    let width = feature_names().len();
    let size = |m: &TrainedModel| serde_json::to_vec(m).unwrap().len() as f64 / 1024.0;
    let line = |t: Target, name: &str, metric: f64, fit: f64, kb: f64| {
        println!("| {t} | {name} | {metric:.4} | {fit:.2} | {kb:.0} |");
    };
    println!("| target | learner | hold-out | fit s | artifact KB |");
    for target in Target::ALL {
        let s = split(target, &set);
        let rows: Vec<&[f64]> = s.train.iter().map(|r| r.values.as_slice()).collect();
        let model_of = |p: Params| TrainedModel {
            target,
            feature_set_version: FEATURE_SET_VERSION.into(),
            feature_names: feature_names().into_iter().map(String::from).collect(),
            learner: String::new(),
            training_fingerprint: String::new(),
            params: p,
        };
        let score = |m: &TrainedModel| evaluate(m, &set).unwrap();
        if target == Target::Risk {
            let mut counts = [0usize; 3];
            for y in &s.train_y {
                counts[*y as usize] += 1;
            }
            let maj = (0..3).max_by_key(|c| counts[*c]).unwrap() as f64;
            let acc = s.eval_y.iter().filter(|y| **y == maj).count() as f64 / s.eval_y.len() as f64;
            line(target, "majority class", acc, 0.0, 0.0);
            let t = Instant::now();
            let tree = fit_tree(&s);
            let fit = t.elapsed().as_secs_f64();
            let m = model_of(Params::Tree(tree));
            line(target, "CART tree (depth 7, own)", score(&m), fit, size(&m));
            let t = Instant::now();
            let Fitted::Ordinal(o) =
                fit_ordinal(&rows, &s.train_y, &default_params(target), 7).unwrap()
            else {
                panic!()
            };
            let fit = t.elapsed().as_secs_f64();
            let m = model_of(Params::Ordinal(o));
            line(
                target,
                "forust ordinal pair (log-loss)",
                score(&m),
                fit,
                size(&m),
            );
        } else {
            let med = super::metrics::median(&s.train_y);
            line(
                target,
                "median",
                super::metrics::mae(&vec![med; s.eval_y.len()], &s.eval_y),
                0.0,
                0.0,
            );
            let t = Instant::now();
            let (ols, _) = fit_linear(&rows, &s.train_y, width).unwrap();
            let fit = t.elapsed().as_secs_f64();
            let m = model_of(Params::Linear(ols));
            line(
                target,
                "linfa-linear OLS, all features",
                score(&m),
                fit,
                size(&m),
            );
        }
        // The chosen learner as `train` fits it (with its calibration).
        let (m, r) = train(target, &set, &super::tests::opts(target)).unwrap();
        line(target, "chosen (train)", r.holdout, r.fit_seconds, size(&m));
    }
}

#[tokio::test]
#[ignore]
async fn lab_capacity() {
    let set = lab_set().await;
    let width = feature_names().len();
    for target in [Target::CompletionTime, Target::BudgetVariance] {
        let RegressionLab {
            s,
            rows,
            erows,
            x,
            ex,
            floor,
        } = regression_lab(&set, target);
        let z: Vec<f64> = s.ty.iter().map(|y| fwd(Tf::Log1p, *y, floor)).collect();
        let (zz, zm, zs) = standardized(&z);
        let (ols, _) = fit_linear(&rows, &s.ty, width).unwrap();
        let lin: Vec<f64> = erows.iter().map(|r| ols.predict(r).max(floor)).collect();
        println!("{target} OLS mae={:.4}", mae(&lin, &s.ey));
        let base = BoostParams {
            max_depth: 5,
            ..BoostParams::DEFAULT
        };
        let mut bag: Vec<Vec<f64>> = Vec::new();
        for (name, p, seeds) in [
            ("default", base, vec![7u64]),
            ("bag3", base, vec![7, 8, 9]),
            (
                "600 lr.04",
                BoostParams {
                    iterations: 600,
                    learning_rate: 0.04,
                    ..base
                },
                vec![7],
            ),
            (
                "1000 lr.03 d6 leaf20",
                BoostParams {
                    iterations: 1000,
                    learning_rate: 0.03,
                    max_depth: 6,
                    min_leaf_weight: 20.0,
                    ..base
                },
                vec![7],
            ),
            (
                "600 lr.05 d4",
                BoostParams {
                    iterations: 600,
                    learning_rate: 0.05,
                    max_depth: 4,
                    ..base
                },
                vec![7],
            ),
        ] {
            let t = Instant::now();
            let mut sum = vec![0.0; erows.len()];
            for sd in &seeds {
                let b = Booster::fit(&x, &zz, Objective::SquaredError, &p, *sd).unwrap();
                for (a, v) in sum.iter_mut().zip(b.predict(&ex)) {
                    *a += v / seeds.len() as f64;
                }
            }
            let pred: Vec<f64> = sum
                .iter()
                .map(|v| inv(Tf::Log1p, v * zs + zm, floor))
                .collect();
            println!(
                "{target} {name} mae={:.4} fit={:.1}s{}",
                mae(&pred, &s.ey),
                t.elapsed().as_secs_f64(),
                buckets(&s.eval, &pred, &s.ey)
            );
            bag.push(pred);
        }
        for w in [0.1, 0.2, 0.3] {
            let blend: Vec<f64> = bag[0]
                .iter()
                .zip(&lin)
                .map(|(b, l)| (1.0 - w) * b + w * l)
                .collect();
            println!("{target} blend ols {w} mae={:.4}", mae(&blend, &s.ey));
        }
    }
}
