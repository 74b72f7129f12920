//! The training snapshot as CSV, for a data scientist to open: one row per
//! (project, cut-off) with its split, features and targets.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Target;
use super::features::feature_names;
use super::training::{RiskClass, TrainingSet};

/// Writes `dir/snapshot-{fingerprint[..16]}.csv` (temp file, fsync, rename)
/// unless it exists already, and returns its path.
///
/// Columns: `project_id, cut_off, split` (train / holdout), every feature,
/// then the targets `completion_time` (total days), `budget_variance`,
/// `risk` (low / medium / high; empty where a target is undefined), and
/// `on_grid` (true for the contract's evaluation grid, false for the random
/// training-only cut-offs; the hold-out is scored on grid rows only).
pub fn write_snapshot(set: &TrainingSet, dir: &Path) -> Result<PathBuf, std::io::Error> {
    let fingerprint = set.fingerprint();
    let path = dir.join(format!("snapshot-{}.csv", &fingerprint[..16]));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let mut text = String::from("project_id,cut_off,split");
    for name in feature_names() {
        text.push(',');
        text.push_str(name);
    }
    text.push_str(",completion_time,budget_variance,risk,on_grid\n");
    for r in &set.rows {
        let p = &set.projects[r.project];
        let _ = write!(
            text,
            "{},{},{}",
            p.id,
            r.cutoff,
            if p.holdout { "holdout" } else { "train" }
        );
        for v in &r.values {
            let _ = write!(text, ",{v}");
        }
        let days = set
            .value(Target::CompletionTime, r)
            .map(|remaining| remaining + r.elapsed_days);
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        let risk = p.risk.map_or("", |c| RiskClass::NAMES[c as usize]);
        let _ = writeln!(
            text,
            ",{},{},{risk},{}",
            cell(days),
            cell(set.value(Target::BudgetVariance, r)),
            r.on_grid
        );
    }
    let tmp = dir.join(format!(
        ".snapshot-{}.csv.tmp-{}",
        &fingerprint[..16],
        std::process::id()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}
