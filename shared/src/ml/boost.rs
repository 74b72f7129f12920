//! Gradient-boosted trees (forust-ml), wrapped so a booster can live inside
//! a `TrainedModel`: cheap to clone, comparable, serialized as forust's own
//! JSON (which round-trips exactly), scored from a flat copy of its trees
//! (`forest`).

use std::fmt;
use std::sync::Arc;

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::forest::Forest;

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

    /// The same values row after row, as the forest reads them.
    fn row_major(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.data.len()];
        for j in 0..self.cols {
            let col = &self.data[j * self.rows..(j + 1) * self.rows];
            for (i, v) in col.iter().enumerate() {
                out[i * self.cols + j] = *v;
            }
        }
        out
    }
}

/// A fitted or loaded booster. Scoring and contributions come from the
/// flat `Forest`; forust's own object is kept only by the process that
/// fitted it, to write the artifact (forust's JSON, which every earlier
/// artifact holds too). A booster read from an artifact keeps the forest
/// alone: about a twentieth of forust's in-memory form.
#[derive(Clone)]
pub(crate) struct Booster {
    forest: Arc<Forest>,
    fitted: Option<Arc<GradientBooster>>,
}

#[cfg(test)]
thread_local! {
    /// Tests score through forust itself, to compare with the forest.
    static THROUGH_FORUST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// Tests keep forust's object of boosters they load, to compare with.
    static KEEP_FORUST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with boosters read on this thread keeping forust's object.
#[cfg(test)]
pub(crate) fn keeping_forust<R>(f: impl FnOnce() -> R) -> R {
    KEEP_FORUST.with(|c| c.set(true));
    let r = f();
    KEEP_FORUST.with(|c| c.set(false));
    r
}

/// Runs `f` with every booster on this thread scoring through forust
/// (fitted boosters only).
#[cfg(test)]
pub(crate) fn through_forust<R>(f: impl FnOnce() -> R) -> R {
    THROUGH_FORUST.with(|c| c.set(true));
    let r = f();
    THROUGH_FORUST.with(|c| c.set(false));
    r
}

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
        let forest = Forest::from_forust(&b)?;
        Ok(Booster {
            forest: Arc::new(forest),
            fitted: Some(Arc::new(b)),
        })
    }

    #[cfg(test)]
    fn forust(&self) -> Option<&GradientBooster> {
        if THROUGH_FORUST.with(std::cell::Cell::get) {
            self.fitted.as_deref()
        } else {
            None
        }
    }

    /// Raw scores (the target scale for squared error, log-odds for log-loss).
    pub fn predict(&self, x: &Columns) -> Vec<f64> {
        if x.rows == 0 {
            return Vec::new();
        }
        #[cfg(test)]
        if let Some(b) = self.forust() {
            return b.predict(&x.matrix(), x.rows > 512);
        }
        self.forest.predict(&x.row_major(), x.cols)
    }

    /// Per row, `cols + 1` values: each feature's share of the raw score and
    /// the bias last; they sum to `predict` (forust's "Average" method, the
    /// path-based approximation of Shapley values that XGBoost calls
    /// approx_contribs: exact Shapley costs ~50× more per row).
    #[cfg(test)]
    pub fn contributions(&self, x: &Columns) -> Vec<Vec<f64>> {
        if x.rows == 0 {
            return Vec::new();
        }
        let (_, flat) = self.score_rows(&x.row_major(), x.cols);
        flat.chunks(x.cols + 1).map(<[f64]>::to_vec).collect()
    }

    /// Raw scores of the rows of a row-major matrix (`cols` values a row),
    /// and their contributions as one row-major matrix of `cols + 1`
    /// columns (see `contributions`). Empty for rows narrower than the
    /// trees read (`width`).
    pub fn score_rows(&self, x: &[f64], cols: usize) -> (Vec<f64>, Vec<f64>) {
        #[cfg(test)]
        if let Some(b) = self.forust()
            && cols > 0
            && !x.is_empty()
        {
            let rows: Vec<&[f64]> = x.chunks(cols).collect();
            let m = Columns::from_rows(&rows, cols);
            let parallel = m.rows > 512;
            return (
                b.predict(&m.matrix(), parallel),
                b.predict_contributions(
                    &m.matrix(),
                    forust_ml::gradientbooster::ContributionsMethod::Average,
                    parallel,
                ),
            );
        }
        self.forest.predict_with_contributions(x, cols)
    }

    pub fn trees(&self) -> usize {
        self.forest.trees()
    }

    /// Columns a row must have for this booster.
    pub fn width(&self) -> usize {
        self.forest.width()
    }

    /// Bytes of the scoring layout.
    pub fn heap_bytes(&self) -> usize {
        self.forest.heap_bytes()
    }
}

impl fmt::Debug for Booster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Booster({} trees, {} nodes)",
            self.trees(),
            self.forest.nodes()
        )
    }
}

/// Equal when they answer the same: the same trees, splits and values.
impl PartialEq for Booster {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.forest, &other.forest) || self.forest == other.forest
    }
}

impl Serialize for Booster {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.fitted {
            Some(b) => b.as_ref().serialize(s),
            None => Err(serde::ser::Error::custom(
                "a booster read from an artifact keeps only its scoring layout and is not \
                 written again; copy the artifact's bytes instead",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Booster {
    /// forust's JSON into the flat layout; forust's object lives only
    /// while one booster is converted.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = GradientBooster::deserialize(d)?;
        let forest = Forest::from_forust(&b).map_err(serde::de::Error::custom)?;
        #[cfg(test)]
        if KEEP_FORUST.with(std::cell::Cell::get) {
            return Ok(Booster {
                forest: Arc::new(forest),
                fitted: Some(Arc::new(b)),
            });
        }
        drop(b);
        Ok(Booster {
            forest: Arc::new(forest),
            fitted: None,
        })
    }
}
