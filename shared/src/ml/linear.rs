//! Standardized linear models: OLS (linfa-linear, with a ridge fallback when
//! the design is singular) for the regressions, and L2-regularized logistic
//! regression (IRLS) for binary questions. They are the baselines and the
//! interpretable references beside the boosters; their contribution of a
//! feature is its weight times the feature's standardized value.

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// Ridge penalty per row on standardized features: small enough to change
/// nothing on a well-posed design, large enough to make a singular one solvable.
const RIDGE_LAMBDA: f64 = 1e-3;
/// Logistic penalty per row; keeps separable designs finite.
const LOGISTIC_LAMBDA: f64 = 1e-4;
const LOGISTIC_MAX_ITER: usize = 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LinearModel {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    /// Per feature on the standardized scale; 0 for constant features.
    pub weights: Vec<f64>,
    pub intercept: f64,
}

impl LinearModel {
    /// The linear score: the prediction for OLS, the log-odds for logistic.
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut y = self.intercept;
        for (i, v) in x.iter().enumerate().take(self.weights.len()) {
            if self.weights[i] != 0.0 {
                y += self.weights[i] * (v - self.means[i]) / self.scales[i];
            }
        }
        y
    }

    /// Each feature's term of the score (weight × standardized value).
    pub fn contributions(&self, x: &[f64]) -> Vec<f64> {
        (0..self.weights.len())
            .map(|i| {
                let v = x.get(i).copied().unwrap_or(self.means[i]);
                self.weights[i] * (v - self.means[i]) / self.scales[i]
            })
            .collect()
    }
}

/// Means and standard deviations of the first `width` columns, and the
/// columns that are not constant.
fn standardize(rows: &[&[f64]], width: usize) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let n = rows.len().max(1) as f64;
    let mut means = vec![0.0; width];
    let mut scales = vec![1.0; width];
    for j in 0..width {
        let m = rows.iter().map(|r| r[j]).sum::<f64>() / n;
        let var = rows.iter().map(|r| (r[j] - m).powi(2)).sum::<f64>() / n;
        means[j] = m;
        scales[j] = var.sqrt();
    }
    // Constant columns carry no information and make the design singular.
    let kept: Vec<usize> = (0..width).filter(|&j| scales[j] > 1e-9).collect();
    for s in &mut scales {
        if *s <= 1e-9 {
            *s = 1.0;
        }
    }
    (means, scales, kept)
}

fn design(rows: &[&[f64]], means: &[f64], scales: &[f64], kept: &[usize]) -> Array2<f64> {
    Array2::from_shape_fn((rows.len(), kept.len()), |(i, k)| {
        let j = kept[k];
        (rows[i][j] - means[j]) / scales[j]
    })
}

fn spread(kept: &[usize], w: &[f64], width: usize) -> Vec<f64> {
    let mut weights = vec![0.0; width];
    for (k, &j) in kept.iter().enumerate() {
        weights[j] = w[k];
    }
    weights
}

/// Fits y ≈ intercept + Σ w·(x - mean)/scale on the first `width` columns;
/// the flag says whether the ridge fallback was needed.
pub(crate) fn fit_linear(
    rows: &[&[f64]],
    y: &[f64],
    width: usize,
) -> Result<(LinearModel, bool), String> {
    let n = rows.len();
    if n == 0 {
        return Err("no rows to fit".into());
    }
    let (means, scales, kept) = standardize(rows, width);
    let z = design(rows, &means, &scales, &kept);
    let target = Array1::from_vec(y.to_vec());
    let y_mean = y.iter().sum::<f64>() / n as f64;
    let y_sd = (y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n as f64)
        .sqrt()
        .max(1e-9);

    let ols = LinearRegression::new()
        .fit(&Dataset::new(z.clone(), target.clone()))
        .ok()
        .map(|m| (m.params().to_vec(), m.intercept()))
        .filter(|(w, b)| usable_ols(w, *b, y_sd));
    let (w, intercept, ridge) = match ols {
        Some((w, b)) => (w, b, false),
        None => {
            let centered = target.mapv(|v| v - y_mean);
            let a = z.t().dot(&z);
            let b = z.t().dot(&centered);
            let w = solve_ridge(a, &b, RIDGE_LAMBDA * n as f64)?;
            (w, y_mean, true)
        }
    };
    Ok((
        LinearModel {
            weights: spread(&kept, &w, width),
            means,
            scales,
            intercept,
        },
        ridge,
    ))
}

/// L2-regularized logistic regression of `y` (0 or 1) by iteratively
/// reweighted least squares; deterministic, no learning rate to pick.
pub(crate) fn fit_logistic(
    rows: &[&[f64]],
    y: &[bool],
    width: usize,
) -> Result<LinearModel, String> {
    let n = rows.len();
    if n == 0 {
        return Err("no rows to fit".into());
    }
    let (means, scales, kept) = standardize(rows, width);
    let z = design(rows, &means, &scales, &kept);
    let p = kept.len();
    let positives = y.iter().filter(|v| **v).count() as f64;
    let prior = ((positives + 0.5) / (n as f64 + 1.0)).clamp(1e-6, 1.0 - 1e-6);
    let mut b0 = (prior / (1.0 - prior)).ln();
    let mut w = vec![0.0; p];
    let lambda = LOGISTIC_LAMBDA * n as f64;
    for _ in 0..LOGISTIC_MAX_ITER {
        // Newton step on (intercept, w) with the intercept unpenalized.
        let mut a = Array2::<f64>::zeros((p + 1, p + 1));
        let mut g = Array1::<f64>::zeros(p + 1);
        let mut zw = Array2::<f64>::zeros((n, p + 1));
        for i in 0..n {
            let row = z.row(i);
            let s = b0 + row.iter().zip(&w).map(|(x, c)| x * c).sum::<f64>();
            let q = 1.0 / (1.0 + (-s).exp());
            let h = (q * (1.0 - q)).max(1e-9);
            let r = f64::from(u8::from(y[i])) - q;
            g[0] += r;
            zw[(i, 0)] = h.sqrt();
            for k in 0..p {
                g[k + 1] += r * row[k];
                zw[(i, k + 1)] = row[k] * h.sqrt();
            }
        }
        a += &zw.t().dot(&zw);
        for k in 0..p {
            a[(k + 1, k + 1)] += lambda;
            g[k + 1] -= lambda * w[k];
        }
        let step = solve_ridge(a, &g, 0.0)?;
        let mut biggest: f64 = step[0].abs();
        b0 += step[0];
        for k in 0..p {
            w[k] += step[k + 1];
            biggest = biggest.max(step[k + 1].abs());
        }
        if !b0.is_finite() || w.iter().any(|v| !v.is_finite()) {
            return Err("logistic regression diverged".into());
        }
        if biggest < 1e-4 {
            break;
        }
    }
    Ok(LinearModel {
        weights: spread(&kept, &w, width),
        means,
        scales,
        intercept: b0,
    })
}

/// A nearly singular design can "succeed" with enormous, cancelling weights
/// that blow up on new rows; on standardized features sane weights stay
/// within a few target standard deviations.
pub(crate) fn usable_ols(weights: &[f64], intercept: f64, y_sd: f64) -> bool {
    intercept.is_finite()
        && weights
            .iter()
            .all(|w| w.is_finite() && w.abs() < 1e4 * y_sd)
}

/// Solves (A + λI) x = b by Cholesky.
pub(crate) fn solve_ridge(
    mut a: Array2<f64>,
    b: &Array1<f64>,
    lambda: f64,
) -> Result<Vec<f64>, String> {
    let p = a.ncols();
    for i in 0..p {
        a[(i, i)] += lambda.max(1e-9);
    }
    // Cholesky: a = L Lᵀ.
    let mut l = Array2::<f64>::zeros((p, p));
    for i in 0..p {
        for j in 0..=i {
            let mut s = a[(i, j)];
            for k in 0..j {
                s -= l[(i, k)] * l[(j, k)];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return Err("linear system is not positive definite".into());
                }
                l[(i, i)] = s.sqrt();
            } else {
                l[(i, j)] = s / l[(j, j)];
            }
        }
    }
    let mut t = vec![0.0; p];
    for i in 0..p {
        let mut s = b[i];
        for k in 0..i {
            s -= l[(i, k)] * t[k];
        }
        t[i] = s / l[(i, i)];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let mut s = t[i];
        for k in i + 1..p {
            s -= l[(k, i)] * x[k];
        }
        x[i] = s / l[(i, i)];
    }
    Ok(x)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_designs_still_fit() {
        // x1 duplicates x0 exactly; y = 3·x0 - 2·x2 + 5.
        let data: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let a = (i % 17) as f64;
                let c = ((i * 7) % 11) as f64;
                vec![a, a, c, 4.0]
            })
            .collect();
        let y: Vec<f64> = data.iter().map(|r| 3.0 * r[0] - 2.0 * r[2] + 5.0).collect();
        let rows: Vec<&[f64]> = data.iter().map(|r| r.as_slice()).collect();
        let (m, _) = fit_linear(&rows, &y, 4).unwrap();
        assert_eq!(m.weights[3], 0.0, "constant column is dropped");
        for (r, t) in rows.iter().zip(&y) {
            assert!((m.predict(r) - t).abs() < 1e-3, "{} vs {t}", m.predict(r));
            let sum: f64 = m.contributions(r).iter().sum::<f64>() + m.intercept;
            assert!((sum - m.predict(r)).abs() < 1e-9);
        }
        let z = Array2::from_shape_fn((200, 2), |(i, j)| data[i][j] - 8.0);
        let centered = Array1::from_vec(y.clone()).mapv(|v| v - y.iter().sum::<f64>() / 200.0);
        let direct = solve_ridge(z.t().dot(&z), &z.t().dot(&centered), 1.0).unwrap();
        assert!((direct[0] - direct[1]).abs() < 1e-6, "{direct:?}");

        // More features than rows: least squares has no unique answer.
        let wide: Vec<Vec<f64>> = (0..3)
            .map(|i| (0..6).map(|j| ((i * 5 + j * 3) % 7) as f64).collect())
            .collect();
        let rows: Vec<&[f64]> = wide.iter().map(|r| r.as_slice()).collect();
        let (m, _) = fit_linear(&rows, &[1.0, 2.0, 3.0], 6).unwrap();
        for (r, t) in rows.iter().zip([1.0, 2.0, 3.0]) {
            assert!((m.predict(r) - t).abs() < 1e-6, "{m:?}");
        }

        assert!(usable_ols(&[1.0, -2.0], 3.0, 1.0));
        assert!(!usable_ols(&[1.0, f64::NAN], 3.0, 1.0));
        assert!(!usable_ols(&[1e5, -1e5], 3.0, 1.0));
        assert!(!usable_ols(&[1.0], f64::INFINITY, 1.0));
    }

    #[test]
    fn logistic_separates_and_stays_finite() {
        let data: Vec<Vec<f64>> = (0..400)
            .map(|i| vec![(i % 40) as f64, ((i * 7) % 13) as f64, 1.0])
            .collect();
        let rows: Vec<&[f64]> = data.iter().map(|r| r.as_slice()).collect();
        // Noisy threshold at x0 = 20, and a perfectly separable copy.
        let noisy: Vec<bool> = data
            .iter()
            .enumerate()
            .map(|(i, r)| (r[0] > 20.0) != (i % 10 == 0))
            .collect();
        let m = fit_logistic(&rows, &noisy, 3).unwrap();
        assert!(m.weights[0] > 0.5, "{m:?}");
        assert_eq!(m.weights[2], 0.0);
        let correct = rows
            .iter()
            .zip(&noisy)
            .filter(|(r, y)| (m.predict(r) > 0.0) == **y)
            .count();
        assert!(correct >= 340, "{correct}");
        let clean: Vec<bool> = data.iter().map(|r| r[0] > 20.0).collect();
        let m = fit_logistic(&rows, &clean, 3).unwrap();
        assert!(m.weights.iter().all(|w| w.is_finite()));
    }
}
