//! Risk scores: a fitted risk model's raw outputs on some rows (the
//! overrun's centre, the cancellation log-odds, the known residuals), kept
//! apart from the class probabilities so the search and the calibration
//! can pair them with residuals from other rows.

use crate::ml::boost::Columns;
use crate::ml::features::feature_names;
use crate::ml::model::{OverrunRisk, calibration_group, overrun_probabilities};
use crate::ml::training::Snapshot;

use super::learners::centres;
use super::split::values;

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// A risk model's raw scores on some rows.
pub(super) struct RiskScores {
    /// Calibration group per row.
    group: Vec<usize>,
    /// Predicted log overrun and cancellation log-odds per row.
    z: Vec<f64>,
    cancel: Vec<f64>,
    /// (calibration group, signed log residual) of the rows whose overrun
    /// is known (completed projects).
    pub(super) residuals: Vec<(usize, f64)>,
}

impl RiskScores {
    pub(super) fn new(r: &OverrunRisk, rows: &[&Snapshot], overrun: &[Option<f64>]) -> Self {
        let x = Columns::from_rows(&values(rows), feature_names().len());
        let z = centres(&r.overrun, &x);
        let group: Vec<usize> = rows
            .iter()
            .map(|row| calibration_group(row.elapsed_days, &row.values))
            .collect();
        let residuals = overrun
            .iter()
            .zip(&z)
            .zip(&group)
            .filter_map(|((o, z), g)| o.map(|o| (*g, r.overrun.transform.forward(o) - z)))
            .collect();
        RiskScores {
            cancel: r.cancel.predict(&x),
            group,
            z,
            residuals,
        }
    }

    /// Class probabilities per row, with `groups` (sorted residuals per
    /// calibration group) as the overrun's spread.
    pub(super) fn probabilities(&self, groups: &[Vec<f64>]) -> Vec<[f64; 3]> {
        (0..self.z.len())
            .map(|i| {
                overrun_probabilities(self.z[i], sigmoid(self.cancel[i]), &groups[self.group[i]])
            })
            .collect()
    }
}
