//! The usual metrics, written out so their edge cases are ours to define.

/// First index of the largest value, so ties resolve the same way every time.
pub(crate) fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

pub(crate) fn mae(pred: &[f64], truth: &[f64]) -> f64 {
    if pred.is_empty() {
        return f64::NAN;
    }
    pred.iter()
        .zip(truth)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / pred.len() as f64
}

pub(crate) fn accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    if pred.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / pred.len() as f64
}

/// Mean F1 over the classes that occur in the truth or the predictions.
pub(crate) fn macro_f1(pred: &[usize], truth: &[usize], classes: usize) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for c in 0..classes {
        let mut tp = 0.0;
        let mut fp = 0.0;
        let mut fneg = 0.0;
        for (p, t) in pred.iter().zip(truth) {
            match (*p == c, *t == c) {
                (true, true) => tp += 1.0,
                (true, false) => fp += 1.0,
                (false, true) => fneg += 1.0,
                (false, false) => {}
            }
        }
        if tp + fp + fneg == 0.0 {
            continue;
        }
        sum += 2.0 * tp / (2.0 * tp + fp + fneg);
        n += 1;
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// The split-conformal quantile: the ⌈(n+1)·level⌉-th smallest score (the
/// largest when that rank exceeds n), or `None` without scores.
pub(crate) fn conformal_quantile(scores: &[f64], level: f64) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let mut v = scores.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() + 1) as f64 * level).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_the_usual_ones() {
        assert_eq!(mae(&[1.0, 3.0], &[2.0, 1.0]), 1.5);
        assert_eq!(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2]), 0.75);
        // Per class F1: 1, 2/3, 2/3.
        assert!((macro_f1(&[0, 1, 2, 2], &[0, 1, 1, 2], 3) - 7.0 / 9.0).abs() < 1e-12);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        let scores: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(conformal_quantile(&scores, 0.8), Some(8.0));
        assert_eq!(conformal_quantile(&scores, 0.9), Some(9.0));
        assert_eq!(conformal_quantile(&scores[..3], 0.9), Some(3.0));
        assert_eq!(conformal_quantile(&[], 0.9), None);
    }
}
