//! Seeded draws and small helpers shared by the teams and the projects of
//! the demo world.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::backend::time::day_start;
use crate::demo::{Stamp, StampStyle};

pub(super) fn days(d: f64) -> Duration {
    Duration::seconds((d * 86_400.0) as i64)
}

/// Mostly the project's usual spelling, sometimes the other one, rarely a bare date.
pub(super) fn stamp(rng: &mut ChaCha8Rng, at: DateTime<Utc>, usual: StampStyle) -> Stamp {
    let roll = unit(rng);
    let style = if roll < 0.003 {
        StampStyle::DateOnly
    } else if roll < 0.1 {
        match usual {
            StampStyle::IsoZ => StampStyle::Space,
            _ => StampStyle::IsoZ,
        }
    } else {
        usual
    };
    let at = if style == StampStyle::DateOnly {
        day_start(at.date_naive())
    } else {
        at
    };
    Stamp { at, style }
}

pub(super) fn maybe<T>(rng: &mut ChaCha8Rng, null_p: f64, value: T) -> Option<T> {
    if unit(rng) < null_p {
        None
    } else {
        Some(value)
    }
}

pub(super) fn lognormal(rng: &mut ChaCha8Rng, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    (sigma * z).exp()
}

/// Knuth's method; the rates used here are small.
pub(super) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> i64 {
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = unit(rng);
    while p > limit && k < 100 {
        k += 1;
        p *= unit(rng);
    }
    k
}

pub(super) fn pick_weighted(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = unit(rng) * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

pub(super) fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Uniform in [0, 1).
pub(super) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.r#gen::<f64>()
}
