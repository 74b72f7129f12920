//! Tests of the drift statistics on synthetic populations: binning, the
//! distances, no false alarms on stable windows, shifts caught, and the
//! reference's round trip.

use super::*;
use rand_distr::{Distribution as _, LogNormal, Normal, Poisson};

const NAMES: [&str; 8] = [
    "complexity",
    "log_budget",
    "processes",
    "flag",
    "elapsed",
    "share",
    "rate",
    "zeroish",
];

/// A training-like population: categorical scales, skewed and
/// zero-inflated numerics, a rare flag. `shift` moves the first three.
fn draw(rng: &mut ChaCha8Rng, shift: f64) -> Vec<f64> {
    let complexity = (rng.gen_range(1..=5) as f64 + shift.round()).clamp(1.0, 5.0);
    let budget = LogNormal::new(10.5 + shift * 0.8, 0.6).unwrap().sample(rng);
    let processes = 1.0 + Poisson::new(1.5 + 2.0 * shift).unwrap().sample(rng);
    let flag = f64::from(u8::from(rng.gen_bool(0.06)));
    let elapsed = rng.gen_range(0.0..200.0_f64).floor();
    let share = rng.gen_range(0.0..1.0_f64);
    let rate = Normal::new(60.0, 8.0).unwrap().sample(rng);
    let zeroish = if rng.gen_bool(0.7) {
        0.0
    } else {
        rng.gen_range(0.0..50.0)
    };
    vec![
        complexity,
        budget.ln_1p(),
        processes,
        flag,
        elapsed,
        share,
        rate,
        zeroish,
    ]
}

fn reference(rng: &mut ChaCha8Rng) -> Reference {
    let rows: Vec<Vec<f64>> = (0..3000).map(|_| draw(rng, 0.0)).collect();
    let preds: Vec<f64> = rows.iter().map(|r| r[1] * 3.0 + r[2]).collect();
    Reference::build("fs-test", &NAMES, &[], &rows, &preds, None)
}

#[test]
fn binning_is_categorical_for_few_values_and_quantile_otherwise() {
    let b = Binning::fit(&[1.0, 2.0, 2.0, 3.0]);
    assert_eq!(
        b,
        Binning::Categorical {
            values: vec![1.0, 2.0, 3.0]
        }
    );
    assert_eq!(b.bin(2.0), 1);
    assert_eq!(b.bin(7.0), 3, "unseen values go to the extra bin");
    let xs: Vec<f64> = (0..1000).map(f64::from).collect();
    let b = Binning::fit(&xs);
    assert_eq!(b.bins(), NUMERIC_BINS);
    let counts = b.counts(&xs);
    assert!(counts.iter().all(|c| *c == 100), "{counts:?}");
    // Values beyond the training range fall into the end bins.
    assert_eq!(b.bin(-5.0), 0);
    assert_eq!(b.bin(1e9), NUMERIC_BINS - 1);
    // A value holding most rows gets no empty bin below it.
    let mut zeros = vec![0.0; 700];
    zeros.extend((0..300).map(f64::from));
    let b = Binning::fit(&zeros);
    assert!(b.counts(&zeros).iter().all(|c| *c > 0), "{b:?}");
}

#[test]
fn distances_are_zero_for_equal_and_grow_with_separation() {
    let p = [0.25, 0.25, 0.25, 0.25];
    assert!(psi(&p, &p).abs() < 1e-12);
    assert!(js_distance(&p, &p).abs() < 1e-12);
    let q = [0.1, 0.2, 0.3, 0.4];
    let r = [0.01, 0.04, 0.15, 0.8];
    assert!(psi(&p, &q) > 0.0 && psi(&p, &r) > psi(&p, &q));
    assert!(js_distance(&p, &r) > js_distance(&p, &q));
    assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
}

/// Windows of a few dozen projects from the training population are
/// almost never called drift, whatever the seed.
#[test]
fn small_windows_from_the_training_population_are_not_drift() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let reference = reference(&mut rng);
    let settings = Settings::default();
    let (mut flagged_windows, mut flagged_features, mut over_threshold) = (0, 0, 0);
    let mut naive_psi_alarms = 0;
    let seeds = 200;
    for seed in 0..seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
        let n = rng.gen_range(25..60);
        let rows: Vec<Vec<f64>> = (0..n).map(|_| draw(&mut rng, 0.0)).collect();
        let preds: Vec<f64> = rows.iter().map(|r| r[1] * 3.0 + r[2]).collect();
        let w = compare_window(&reference, &rows, &preds, &settings);
        let k = w.features.iter().filter(|f| f.drifted).count();
        flagged_features += k;
        flagged_windows += usize::from(k > 0 || w.prediction.drifted);
        over_threshold += usize::from(w.score > 0.3);
        naive_psi_alarms += w
            .features
            .iter()
            .filter(|f| f.method == Method::Psi && f.score > 0.2)
            .count();
    }
    println!(
        "{seeds} stable windows: PSI>0.2 alone {naive_psi_alarms} times; flagged features {flagged_features}; windows with a flag {flagged_windows}; over 0.3 {over_threshold}"
    );
    // Distance alone would have alarmed often: the guard is doing work.
    assert!(naive_psi_alarms > 50, "{naive_psi_alarms}");
    assert!(
        over_threshold <= 1,
        "stable windows over the retrain threshold: {over_threshold}"
    );
    let rate = flagged_features as f64 / (seeds as f64 * NAMES.len() as f64);
    assert!(rate < 0.01, "false feature flags: {rate}");
    // Nine tests per window at alpha 0.01: at most about one in ten
    // windows names a feature, and none of those crosses the threshold.
    assert!(
        flagged_windows <= 20,
        "windows with any flag: {flagged_windows}"
    );
}

/// Shifting three features of a few dozen projects is caught on those
/// features, and the score crosses the default threshold.
#[test]
fn a_shift_of_a_few_features_is_flagged() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let reference = reference(&mut rng);
    let settings = Settings::default();
    let (mut caught, mut false_flags) = (0, 0);
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(5000 + seed);
        let rows: Vec<Vec<f64>> = (0..40).map(|_| draw(&mut rng, 1.0)).collect();
        let preds: Vec<f64> = rows.iter().map(|r| r[1] * 3.0 + r[2]).collect();
        let w = compare_window(&reference, &rows, &preds, &settings);
        let names: Vec<&str> = w
            .features
            .iter()
            .filter(|f| f.drifted)
            .map(|f| f.name.as_str())
            .collect();
        false_flags += NAMES[3..].iter().filter(|n| names.contains(n)).count();
        if NAMES[..3].iter().all(|n| names.contains(n)) && w.prediction.drifted && w.score > 0.3 {
            caught += 1;
        }
    }
    println!(
        "shifted windows caught {caught} of 20; unshifted features flagged {false_flags} times"
    );
    assert!(caught >= 18, "caught {caught} of 20");
    // Unshifted features are named at about the test's level (1%).
    assert!(
        false_flags <= 3,
        "unshifted features flagged {false_flags} times in 100"
    );
}

#[test]
fn too_small_a_window_flags_nothing_and_says_why() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let reference = reference(&mut rng);
    let rows: Vec<Vec<f64>> = (0..8).map(|_| draw(&mut rng, 3.0)).collect();
    let preds: Vec<f64> = rows.iter().map(|r| r[1] * 3.0 + r[2]).collect();
    let w = compare_window(&reference, &rows, &preds, &Settings::default());
    assert!(w.features.iter().all(|f| !f.drifted));
    assert_eq!(w.score, 0.0);
    assert!(w.insufficient.unwrap().contains("only 8 projects"));
}

#[test]
fn a_constant_feature_is_never_flagged_and_the_reference_round_trips() {
    let rows: Vec<Vec<f64>> = (0..100).map(|i| vec![0.0, f64::from(i)]).collect();
    let preds: Vec<f64> = (0..100).map(|i| f64::from(i % 2)).collect();
    let reference = Reference::build(
        "fs",
        &["c", "x"],
        &[],
        &rows,
        &preds,
        Some(vec![0.0, 1.0, 2.0]),
    );
    assert!(!reference.features[0].testable());
    let window: Vec<Vec<f64>> = (0..50).map(|i| vec![1.0, f64::from(i)]).collect();
    let w = compare_window(&reference, &window, &[2.0; 50], &Settings::default());
    assert!(!w.features[0].drifted);
    assert!(
        w.prediction.drifted,
        "all predictions moved to another class"
    );
    let json = serde_json::to_string(&reference).unwrap();
    let back: Reference = serde_json::from_str(&json).unwrap();
    assert_eq!(back, reference);
    assert_eq!(reference.summary()["constant_features"], 1);
}

#[test]
fn an_unmonitored_feature_is_compared_but_never_flagged() {
    let rows: Vec<Vec<f64>> = (0..500).map(|i| vec![f64::from(i % 50)]).collect();
    let preds = vec![0.0; 500];
    let reference = Reference::build("fs", &["team_prior"], &["team_prior"], &rows, &preds, None);
    let window: Vec<Vec<f64>> = (0..100).map(|_| vec![1000.0]).collect();
    let w = compare_window(&reference, &window, &[0.0; 100], &Settings::default());
    let f = &w.features[0];
    assert!(f.score > 1.0 && f.p_value < 0.01, "{f:?}");
    assert!(!f.drifted && !f.monitored);
    assert_eq!(w.score, 0.0);
}
