//! `rpa-ml train`: the retrain job's training and evaluation, offline.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use rpa_ml_shared::backend::BackendDb;
use rpa_ml_shared::ml::{self, Target};

use crate::cli::TrainArgs;

pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let mut overrides = HashMap::new();
    // This command serves nothing, so it needs no API key.
    overrides.insert("DEBUG".to_string(), "true".to_string());
    if let Some(url) = &args.database_url {
        overrides.insert("DATABASE_URL".to_string(), url.clone());
    }
    let (config, warnings) = crate::setup::load_config(&overrides)?;
    if args.json {
        // stdout is the report: warnings go to stderr.
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    } else {
        crate::setup::init_telemetry(&config, &warnings)?;
    }
    let targets: Vec<Target> = if args.targets.is_empty() {
        Target::ALL.to_vec()
    } else {
        args.targets
            .iter()
            .map(|t| Target::from_str(t).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()
            .context("--targets")?
    };
    let db = BackendDb::connect(&config.database_url, 4)
        .await
        .with_context(|| {
            format!(
                "DATABASE_URL {}",
                rpa_ml_shared::config::redact_url(&config.database_url)
            )
        })?;
    let started = Instant::now();
    let set = std::sync::Arc::new(ml::build_training_set(&db).await?);
    let extract_seconds = started.elapsed().as_secs_f64();
    let mut reports: BTreeMap<String, Value> = BTreeMap::new();
    for target in targets {
        let opts = ml::train_options(&config, target);
        let set = set.clone();
        let fitted = tokio::task::spawn_blocking(move || ml::train(target, &set, &opts)).await?;
        match fitted {
            Ok((_, report)) => {
                reports.insert(target.to_string(), serde_json::to_value(&report)?);
            }
            Err(e) => {
                reports.insert(target.to_string(), json!({"error": e.to_string()}));
            }
        }
    }
    let out = json!({
        "targets": reports,
        "skipped": set.skipped,
        "data_fingerprint": set.fingerprint(),
        "feature_set_version": ml::FEATURE_SET_VERSION,
        "extract_seconds": extract_seconds,
        "total_seconds": started.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    println!(
        "{:<16} {:>8} {:>10} {:>10} {:>10} {:>7} {:>8} {:>8}  learner",
        "target", "metric", "holdout", "baseline", "threshold", "passed", "rows", "fit s"
    );
    for (t, r) in &reports {
        if let Some(e) = r.get("error") {
            println!("{t:<16} error: {}", e.as_str().unwrap_or(""));
            continue;
        }
        println!(
            "{:<16} {:>8} {:>10.4} {:>10.4} {:>10.4} {:>7} {:>8} {:>8.2}  {}",
            t,
            r["metric"].as_str().unwrap_or(""),
            r["holdout"].as_f64().unwrap_or(f64::NAN),
            r["baseline"].as_f64().unwrap_or(f64::NAN),
            r["threshold"].as_f64().unwrap_or(f64::NAN),
            r["passed"].as_bool().unwrap_or(false),
            r["rows"].as_u64().unwrap_or(0),
            r["fit_seconds"].as_f64().unwrap_or(f64::NAN),
            r["learner"].as_str().unwrap_or("")
        );
    }
    for (t, r) in &reports {
        let Some(c) = r.get("learner_choice").filter(|c| !c.is_null()) else {
            continue;
        };
        let figures: Vec<String> = c["validation"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{t:<16} chose {} on validation ({}): {}",
            c["chosen"].as_str().unwrap_or(""),
            figures.join(", "),
            c["reason"].as_str().unwrap_or("")
        );
    }
    println!("skipped rows: {}", serde_json::to_string(&set.skipped)?);
    Ok(())
}
