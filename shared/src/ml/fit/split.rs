//! Stage 1, the split: which rows a target is fitted on (every cut-off of
//! the training projects) and which it is judged on (grid cut-offs of the
//! held-out projects), and the "most recently closed share" slicing that
//! calibration and the search's confirmation round take from the training
//! projects, in the hold-out's image.

use crate::ml::Target;
use crate::ml::training::{Snapshot, TrainingSet};

/// Rows of one target: fitting rows (all cut-offs of training projects) and
/// evaluation rows (grid cut-offs of held-out projects).
pub(crate) struct Split<'a> {
    pub train: Vec<&'a Snapshot>,
    pub train_y: Vec<f64>,
    /// Risk only: the overrun of completed projects (`None`: cancelled).
    pub train_overrun: Vec<Option<f64>>,
    pub eval: Vec<&'a Snapshot>,
    pub eval_y: Vec<f64>,
    pub train_projects: usize,
    pub eval_projects: usize,
}

pub(crate) fn split(target: Target, set: &TrainingSet) -> Split<'_> {
    let mut s = Split {
        train: Vec::new(),
        train_y: Vec::new(),
        train_overrun: Vec::new(),
        eval: Vec::new(),
        eval_y: Vec::new(),
        train_projects: 0,
        eval_projects: 0,
    };
    for p in &set.projects {
        if set.defined(target, p) {
            if p.holdout {
                s.eval_projects += 1;
            } else {
                s.train_projects += 1;
            }
        }
    }
    for r in &set.rows {
        let Some(y) = set.value(target, r) else {
            continue;
        };
        if set.projects[r.project].holdout {
            if r.on_grid {
                s.eval.push(r);
                s.eval_y.push(y);
            }
        } else {
            s.train.push(r);
            s.train_y.push(y);
            s.train_overrun.push(set.overrun(r));
        }
    }
    s
}

/// The distinct projects of `rows`, in index order.
pub(super) fn projects_of(rows: &[&Snapshot]) -> Vec<usize> {
    let mut p: Vec<usize> = rows.iter().map(|r| r.project).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// `projects` split into the older ones and the most recently closed
/// `share` of them (by end date, ties by id), like the hold-out; `None`
/// unless the newest part has at least `min` projects and two are left.
pub(super) fn newest_share(
    set: &TrainingSet,
    projects: &[usize],
    share: f64,
    min: usize,
) -> Option<(Vec<usize>, Vec<usize>)> {
    let mut by_end = projects.to_vec();
    by_end.sort_by_key(|&i| (set.projects[i].end, set.projects[i].id));
    let n = ((by_end.len() as f64) * share).round() as usize;
    if n < min || n + 2 > by_end.len() {
        return None;
    }
    let newest = by_end.split_off(by_end.len() - n);
    Some((by_end, newest))
}

pub(super) fn values<'a>(rows: &[&'a Snapshot]) -> Vec<&'a [f64]> {
    rows.iter().map(|r| r.values.as_slice()).collect()
}
