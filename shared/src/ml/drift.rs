//! Distribution shift between a model's training reference and a window of
//! recent projects: the pure statistics behind the `drift` job.
//!
//! Each feature's training values are binned once, at fit time, and only the
//! bin counts are kept with the model version. A feature with few distinct
//! values (flags, small counts, the 1–5 complexity scale, the risk class) is
//! categorical and compared with the Jensen–Shannon distance; any other
//! feature gets quantile bins and the population stability index (PSI).
//! Both sides are Laplace-smoothed, so an empty bin never divides by zero.
//!
//! A distance alone cries wolf on small windows: forty projects drawn from
//! the training population itself give a PSI around 0.2 over ten bins by
//! chance. So a feature is drifted only when its distance is above the
//! threshold *and* a Monte Carlo test says a window of that size drawn from
//! the reference would rarely be that far (p below `alpha`), and only when
//! the window holds at least `min_window` projects.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Bumped when the reference format, the binning or the population changes.
/// 2: drawn from every project started (open or closed) as of its start;
/// 1 was the closed training projects only, a biased sample (see
/// `ml::training_reference`), which a drift check no longer uses.
pub const REFERENCE_VERSION: u32 = 2;
/// Quantile bins for a numeric feature (fewer when values repeat).
const NUMERIC_BINS: usize = 10;
/// At most this many distinct training values make a feature categorical.
const MAX_CATEGORIES: usize = 12;
/// Pseudo-count added to every bin on both sides.
const SMOOTHING: f64 = 0.5;
/// Simulated windows per Monte Carlo test (p-value resolution 1/2000).
const SIMULATIONS: usize = 1999;

/// How a feature's values are put into bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binning {
    /// Interior cut points, increasing: bin i holds `edges[i-1] <= x < edges[i]`.
    Numeric { edges: Vec<f64> },
    /// The training values; a last extra bin holds any value not among them.
    Categorical { values: Vec<f64> },
}

impl Binning {
    pub fn bins(&self) -> usize {
        match self {
            Binning::Numeric { edges } => edges.len() + 1,
            Binning::Categorical { values } => values.len() + 1,
        }
    }

    pub fn bin(&self, x: f64) -> usize {
        match self {
            Binning::Numeric { edges } => edges.partition_point(|e| *e <= x),
            Binning::Categorical { values } => values
                .iter()
                .position(|v| (v - x).abs() < 1e-9)
                .unwrap_or(values.len()),
        }
    }

    pub fn method(&self) -> Method {
        match self {
            Binning::Numeric { .. } => Method::Psi,
            Binning::Categorical { .. } => Method::JensenShannon,
        }
    }

    /// Quantile edges of numeric data, or the distinct values of data with
    /// few of them.
    pub fn fit(values: &[f64]) -> Binning {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let mut distinct = sorted.clone();
        distinct.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        if distinct.len() <= MAX_CATEGORIES {
            return Binning::Categorical { values: distinct };
        }
        let mut edges: Vec<f64> = (1..NUMERIC_BINS)
            .map(|i| sorted[(i * sorted.len() / NUMERIC_BINS).min(sorted.len() - 1)])
            .collect();
        edges.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        // A cut at the minimum (a value holding over a tenth of the rows)
        // would leave the bottom bin empty by construction.
        if edges.first().is_some_and(|e| *e <= sorted[0]) {
            edges.remove(0);
        }
        Binning::Numeric { edges }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Psi,
    JensenShannon,
}

impl Method {
    /// The distance above which a (significant) shift counts as drift: PSI
    /// 0.2 is the usual "significant shift"; a JS distance of 0.1 is about
    /// the same separation for a few categories.
    pub fn threshold(self) -> f64 {
        match self {
            Method::Psi => 0.2,
            Method::JensenShannon => 0.1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Psi => "psi",
            Method::JensenShannon => "jensen_shannon",
        }
    }

    pub fn distance(self, reference: &[f64], window: &[f64]) -> f64 {
        match self {
            Method::Psi => psi(reference, window),
            Method::JensenShannon => js_distance(reference, window),
        }
    }
}

/// One feature's (or the predictions') binned training distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub name: String,
    pub binning: Binning,
    pub counts: Vec<u64>,
    /// False for a feature that changes with the calendar rather than with
    /// the population (a team's track record grows with time): it is
    /// compared and reported, never called drift.
    #[serde(default = "yes")]
    pub monitored: bool,
}

fn yes() -> bool {
    true
}

impl Distribution {
    pub fn fit(name: &str, values: &[f64]) -> Distribution {
        let binning = Binning::fit(values);
        let counts = binning.counts(values);
        Distribution {
            name: name.to_string(),
            binning,
            counts,
            monitored: true,
        }
    }

    /// Over categorical bins with known values (the risk classes), so that
    /// a class never predicted in training still has its bin.
    pub fn categorical(name: &str, categories: Vec<f64>, values: &[f64]) -> Distribution {
        let binning = Binning::Categorical { values: categories };
        let counts = binning.counts(values);
        Distribution {
            name: name.to_string(),
            binning,
            counts,
            monitored: true,
        }
    }

    pub fn rows(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Smoothed bin proportions.
    pub fn proportions(&self) -> Vec<f64> {
        smoothed(&self.counts)
    }

    /// Whether the training rows spread over more than one bin; a constant
    /// feature cannot be tested (a new value would show only as "other").
    pub fn testable(&self) -> bool {
        self.monitored && self.counts.iter().filter(|c| **c > 0).count() > 1
    }
}

impl Binning {
    pub fn counts(&self, values: &[f64]) -> Vec<u64> {
        let mut counts = vec![0u64; self.bins()];
        for v in values {
            counts[self.bin(*v)] += 1;
        }
        counts
    }
}

fn smoothed(counts: &[u64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    let total = n as f64 + SMOOTHING * counts.len() as f64;
    counts
        .iter()
        .map(|c| (*c as f64 + SMOOTHING) / total)
        .collect()
}

/// Population stability index of `window` against `reference` (both
/// proportions over the same bins, no zeros).
pub fn psi(reference: &[f64], window: &[f64]) -> f64 {
    reference
        .iter()
        .zip(window)
        .map(|(p, q)| (q - p) * (q / p).ln())
        .sum()
}

/// Jensen–Shannon distance (square root of the divergence, base 2): 0 for
/// equal distributions, 1 for disjoint ones.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum::<f64>()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).max(0.0).sqrt()
}

/// Thresholds of the check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    /// Fewer window rows than this: nothing is flagged, the report says so.
    pub min_window: usize,
    /// Significance level of the per-feature test.
    pub alpha: f64,
    /// Stricter level for the prediction shift to count in the score: it
    /// alone can cross the retraining threshold, so its false alarms cost
    /// a retrain each.
    pub prediction_alpha: f64,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_window: 20,
            alpha: 0.01,
            prediction_alpha: 0.002,
            seed: 0x0d71_f7ed,
        }
    }
}

/// The comparison of one feature (or the predictions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub name: String,
    pub method: Method,
    /// PSI or JS distance of the window against the reference.
    pub score: f64,
    pub threshold: f64,
    /// Share of windows of this size drawn from the reference at least as
    /// far away (Monte Carlo).
    pub p_value: f64,
    pub drifted: bool,
    pub monitored: bool,
    /// Bin proportions (smoothed), for a chart.
    pub reference: Vec<f64>,
    pub window: Vec<f64>,
}

/// Compares the `window` values of one feature with its reference.
pub fn compare(reference: &Distribution, window: &[f64], settings: &Settings) -> FeatureDrift {
    let method = reference.binning.method();
    let ref_p = reference.proportions();
    let counts = reference.binning.counts(window);
    let win_p = smoothed(&counts);
    let score = method.distance(&ref_p, &win_p);
    let p_value = if window.is_empty() || reference.counts.iter().filter(|c| **c > 0).count() < 2 {
        1.0
    } else {
        monte_carlo_p(&ref_p, window.len(), method, score, settings.seed)
    };
    let drifted = window.len() >= settings.min_window
        && reference.testable()
        && score > method.threshold()
        && p_value < settings.alpha;
    FeatureDrift {
        name: reference.name.clone(),
        method,
        score,
        threshold: method.threshold(),
        p_value,
        drifted,
        monitored: reference.monitored,
        reference: ref_p,
        window: win_p,
    }
}

/// P(distance of a size-`n` sample from `reference` >= `observed`),
/// estimated from `SIMULATIONS` samples; never below 1/(SIMULATIONS+1).
fn monte_carlo_p(reference: &[f64], n: usize, method: Method, observed: f64, seed: u64) -> f64 {
    let mut cdf = Vec::with_capacity(reference.len());
    let mut acc = 0.0;
    for p in reference {
        acc += p;
        cdf.push(acc);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (n as u64).rotate_left(17));
    let mut counts = vec![0u64; reference.len()];
    let mut at_least = 0usize;
    for _ in 0..SIMULATIONS {
        counts.iter_mut().for_each(|c| *c = 0);
        for _ in 0..n {
            let u: f64 = rng.r#gen::<f64>() * acc;
            let i = cdf.partition_point(|c| *c < u).min(counts.len() - 1);
            counts[i] += 1;
        }
        if method.distance(reference, &smoothed(&counts)) >= observed - 1e-12 {
            at_least += 1;
        }
    }
    (at_least + 1) as f64 / (SIMULATIONS + 1) as f64
}

/// A model version's training reference: every feature's distribution and
/// the distribution of the model's own predictions on its training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub version: u32,
    pub feature_set_version: String,
    pub rows: u64,
    pub features: Vec<Distribution>,
    pub predictions: Distribution,
}

impl Reference {
    /// `rows` are feature vectors in `names` order; `predictions` the
    /// model's outputs on them (class index for risk, see `categories`);
    /// features named in `unmonitored` are reported but never flagged.
    pub fn build(
        feature_set_version: &str,
        names: &[&str],
        unmonitored: &[&str],
        rows: &[Vec<f64>],
        predictions: &[f64],
        categories: Option<Vec<f64>>,
    ) -> Reference {
        let features = names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
                let mut d = Distribution::fit(name, &col);
                d.monitored = !unmonitored.contains(name);
                d
            })
            .collect();
        let predictions = match categories {
            Some(c) => Distribution::categorical("prediction", c, predictions),
            None => Distribution::fit("prediction", predictions),
        };
        Reference {
            version: REFERENCE_VERSION,
            feature_set_version: feature_set_version.to_string(),
            rows: rows.len() as u64,
            features,
            predictions,
        }
    }

    /// A short description for the registry API.
    pub fn summary(&self) -> serde_json::Value {
        let numeric = self
            .features
            .iter()
            .filter(|f| f.binning.method() == Method::Psi)
            .count();
        serde_json::json!({
            "version": self.version,
            "feature_set_version": self.feature_set_version,
            "rows": self.rows,
            "features": self.features.len(),
            "numeric_features": numeric,
            "categorical_features": self.features.len() - numeric,
            "unmonitored_features": self.features.iter().filter(|f| !f.monitored).map(|f| f.name.as_str()).collect::<Vec<_>>(),
            "constant_features": self.features.iter().filter(|f| f.monitored && !f.testable()).count(),
            "prediction_bins": self.predictions.binning.bins(),
            "prediction_counts": self.predictions.counts,
        })
    }
}

/// The comparison of a whole window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowDrift {
    pub window_rows: usize,
    pub features: Vec<FeatureDrift>,
    pub prediction: FeatureDrift,
    /// Drifted features over testable (monitored, not constant) ones.
    pub drifted_share: f64,
    /// max(drifted share, the predictions' PSI when significant at
    /// `prediction_alpha`), in 0..=1.
    pub score: f64,
    /// Set when the window is too small to say anything.
    pub insufficient: Option<String>,
}

/// Compares a window (`rows` in the reference's feature order, and the
/// production model's `predictions` on them) with the reference.
///
/// The score is the larger of the share of drifted features and the
/// predictions' PSI when the prediction shift is significant: both read on
/// the same scale, where 0.25 and up is a major shift (a quarter of the
/// inputs moved, or the output distribution moved that much).
pub fn compare_window(
    reference: &Reference,
    rows: &[Vec<f64>],
    predictions: &[f64],
    settings: &Settings,
) -> WindowDrift {
    let features: Vec<FeatureDrift> = reference
        .features
        .iter()
        .enumerate()
        .map(|(j, d)| {
            let col: Vec<f64> = rows.iter().filter_map(|r| r.get(j).copied()).collect();
            compare(d, &col, settings)
        })
        .collect();
    let prediction = compare(&reference.predictions, predictions, settings);
    let testable = reference.features.iter().filter(|d| d.testable()).count();
    let drifted = features.iter().filter(|f| f.drifted).count();
    let drifted_share = if testable > 0 {
        drifted as f64 / testable as f64
    } else {
        0.0
    };
    let prediction_part = if prediction.drifted && prediction.p_value < settings.prediction_alpha {
        let p = reference.predictions.proportions();
        psi(&p, &prediction.window).min(1.0)
    } else {
        0.0
    };
    let insufficient = (rows.len() < settings.min_window).then(|| {
        format!(
            "only {} projects in the window; at least {} are needed to call drift",
            rows.len(),
            settings.min_window
        )
    });
    WindowDrift {
        window_rows: rows.len(),
        features,
        prediction,
        drifted_share,
        score: drifted_share.max(prediction_part),
        insufficient,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
