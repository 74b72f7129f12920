//! Gradient-boosted trees (forust-ml), wrapped so a booster can live inside
//! a `TrainedModel`: cheap to clone, comparable, serialized as forust's own
//! JSON (which round-trips exactly).

use std::fmt;
use std::sync::Arc;

use forust_ml::gradientbooster::ContributionsMethod;
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The knobs the search may turn; everything else is forust's default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoostParams {
    pub iterations: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    /// Minimum hessian sum in a leaf: rows for squared error (on the
    /// standardized target), about rows/4 for log-loss.
    pub min_leaf_weight: f64,
    pub l2: f64,
    /// Share of rows drawn (seeded) for each tree; 1.0 draws nothing.
    pub subsample: f64,
    /// Share of columns drawn (seeded) for each tree.
    pub colsample_bytree: f64,
}

impl BoostParams {
    /// The untuned default: a few hundred shallow-ish trees at a moderate
    /// rate, leaves of a few dozen rows so one project's snapshots cannot
    /// make a leaf alone.
    pub const DEFAULT: BoostParams = BoostParams {
        iterations: 300,
        learning_rate: 0.08,
        max_depth: 6,
        min_leaf_weight: 40.0,
        l2: 1.0,
        subsample: 0.8,
        colsample_bytree: 0.8,
    };
}

impl Default for BoostParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Objective {
    SquaredError,
    LogLoss,
}

/// Features in forust's column-major layout.
pub(crate) struct Columns {
    data: Vec<f64>,
    rows: usize,
    cols: usize,
}

impl Columns {
    pub fn from_rows(rows: &[&[f64]], cols: usize) -> Self {
        let n = rows.len();
        let mut data = vec![0.0; n * cols];
        for (i, r) in rows.iter().enumerate() {
            for (j, v) in r.iter().take(cols).enumerate() {
                data[j * n + i] = *v;
            }
        }
        Columns {
            data,
            rows: n,
            cols,
        }
    }

    fn matrix(&self) -> Matrix<'_, f64> {
        Matrix::new(&self.data, self.rows, self.cols)
    }
}

#[derive(Clone)]
pub(crate) struct Booster(Arc<GradientBooster>);

impl Booster {
    /// Fits one booster. `seed` drives row and column sampling only, so the
    /// same rows, params and seed give the same trees.
    pub fn fit(
        x: &Columns,
        y: &[f64],
        objective: Objective,
        params: &BoostParams,
        seed: u64,
    ) -> Result<Booster, String> {
        if x.rows == 0 || y.len() != x.rows {
            return Err(format!("booster: {} rows, {} targets", x.rows, y.len()));
        }
        let sampling = if params.subsample < 1.0 {
            forust_ml::sampler::SampleMethod::Random
        } else {
            forust_ml::sampler::SampleMethod::None
        };
        let mut b = GradientBooster::default()
            .set_objective_type(match objective {
                Objective::SquaredError => ObjectiveType::SquaredLoss,
                Objective::LogLoss => ObjectiveType::LogLoss,
            })
            .set_iterations(params.iterations.max(1))
            .set_learning_rate(params.learning_rate as f32)
            .set_max_depth(params.max_depth.max(1))
            .set_min_leaf_weight(params.min_leaf_weight as f32)
            .set_l2(params.l2 as f32)
            .set_subsample(params.subsample.clamp(0.05, 1.0) as f32)
            .set_sample_method(sampling)
            .set_colsample_bytree(params.colsample_bytree.clamp(0.05, 1.0))
            .set_seed(seed)
            .set_initialize_base_score(true)
            .set_nbins(128);
        b.fit_unweighted(&x.matrix(), y, None)
            .map_err(|e| format!("booster fit: {e}"))?;
        Ok(Booster(Arc::new(b)))
    }

    /// Raw scores (the target scale for squared error, log-odds for log-loss).
    pub fn predict(&self, x: &Columns) -> Vec<f64> {
        if x.rows == 0 {
            return Vec::new();
        }
        self.0.predict(&x.matrix(), x.rows > 512)
    }

    /// Per row, `cols + 1` values: each feature's share of the raw score and
    /// the bias last; they sum to `predict` (forust's "Average" method, the
    /// path-based approximation of Shapley values that XGBoost calls
    /// approx_contribs: exact Shapley costs ~50× more per row).
    pub fn contributions(&self, x: &Columns) -> Vec<Vec<f64>> {
        if x.rows == 0 {
            return Vec::new();
        }
        let flat =
            self.0
                .predict_contributions(&x.matrix(), ContributionsMethod::Average, x.rows > 512);
        flat.chunks(x.cols + 1).map(<[f64]>::to_vec).collect()
    }

    pub fn trees(&self) -> usize {
        self.0.trees.len()
    }
}

impl fmt::Debug for Booster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Booster({} trees)", self.trees())
    }
}

impl PartialEq for Booster {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || matches!(
                (self.0.json_dump(), other.0.json_dump()),
                (Ok(a), Ok(b)) if a == b
            )
    }
}

impl Serialize for Booster {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Booster {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        GradientBooster::deserialize(d).map(|b| Booster(Arc::new(b)))
    }
}
