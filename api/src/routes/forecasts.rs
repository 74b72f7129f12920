//! Reading the latest forecasts without a job: `GET
//! /api/v1/projects/{id}/predictions` (every target of one project) and
//! `GET /api/v1/predictions?target=&ids=` (one target, a page of
//! projects). Answered from `latest_predictions`, which scoring runs and
//! predict jobs keep; each answer says how old it is, which model made it
//! and whether it is stale (older than `SCORE_MAX_AGE`, or made by another
//! model than the target's production one).

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::LatestPrediction;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Most project ids one `GET /api/v1/predictions` names.
pub const MAX_IDS: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects/{id}/predictions", get(project))
        .route("/api/v1/predictions", get(page))
        .route("/api/v1/scoring", get(scoring))
}

/// For the ops page: the last scoring run and the last successful one
/// (coverage per target, age), and what the kept forecasts look like.
async fn scoring(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let age =
        |t: Option<DateTime<Utc>>| t.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    let run = |j: &rpa_ml_shared::store::JobRow| {
        let r = j.result.as_ref();
        json!({
            "job_id": j.id,
            "status": j.state,
            "reason": r.and_then(|r| r.get("reason")).cloned().or_else(|| match &j.payload {
                rpa_ml_shared::jobs::JobPayload::Score(s) => Some(json!(s.reason)),
                _ => None,
            }),
            "finished_at": j.finished_at,
            "age_seconds": age(j.finished_at),
            "error": j.error,
            "projects": r.and_then(|r| r["summary"].get("projects")).cloned(),
            "coverage": r.and_then(|r| r.get("coverage")).cloned(),
            "targets": r.and_then(|r| r.get("targets")).cloned(),
        })
    };
    let (last, good) = state
        .store
        .last_finished_of_kind(rpa_ml_shared::jobs::JobKind::Score)
        .await?;
    let active = state
        .store
        .active_jobs_of_kind(rpa_ml_shared::jobs::JobKind::Score)
        .await?;
    let summary = state.store.forecast_summary().await?;
    let production = state.store.production_versions().await?;
    let forecasts: Vec<Value> = Target::ALL
        .into_iter()
        .map(|t| {
            let f = summary.get(&t);
            json!({
                "target": t,
                "production_version": production.get(&t),
                "kept": f.map_or(0, |f| f.count),
                "oldest_age_seconds": age(f.and_then(|f| f.oldest_as_of)),
                "newest_age_seconds": age(f.and_then(|f| f.newest_as_of)),
            })
        })
        .collect();
    Ok(Json(json!({
        "score_cron": state.config.score_cron,
        "max_age_seconds": state.config.score_max_age.as_secs_f64(),
        "last_run": last.as_ref().map(run),
        "last_success": good.as_ref().map(run),
        "active": active.iter().map(|j| json!({"job_id": j.id, "status": j.state, "progress": j.progress, "stage": j.stage})).collect::<Vec<_>>(),
        "forecasts": forecasts,
    })))
}

/// Why a kept forecast should not be trusted as current.
fn stale_reasons(
    p: &LatestPrediction,
    production: Option<i32>,
    age_secs: f64,
    max_age_secs: f64,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    match production {
        None => out.push("no_production_model"),
        Some(v) if v != p.model_version => out.push("newer_model"),
        Some(_) => {}
    }
    if age_secs > max_age_secs {
        out.push("too_old");
    }
    out
}

/// One forecast as answered: the kept answer (value, class, intervals,
/// contributions...) with its provenance and staleness.
fn view(
    p: &LatestPrediction,
    production: &BTreeMap<Target, i32>,
    now: DateTime<Utc>,
    max_age_secs: f64,
) -> Value {
    let age = (now - p.as_of).num_milliseconds().max(0) as f64 / 1000.0;
    let current = production.get(&p.target).copied();
    let reasons = stale_reasons(p, current, age, max_age_secs);
    let mut v = json!({
        "project_id": p.project_id,
        "target": p.target,
        "model_version": p.model_version,
        "production_version": current,
        "as_of": p.as_of,
        "age_seconds": age,
        "stale": !reasons.is_empty(),
        "stale_reasons": reasons,
        "job_id": p.job_id,
    });
    if let (Value::Object(m), Some(Value::Object(o))) = (&mut v, &p.output) {
        for (k, x) in o {
            if !x.is_null() && !m.contains_key(k) {
                m.insert(k.clone(), x.clone());
            }
        }
    }
    v
}

fn project_id(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::validation(format!(
            "project id {raw:?} is not a positive integer"
        ))),
    }
}

async fn project(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = project_id(&raw)?;
    let latest = state.store.latest_for_project(id).await?;
    // A project with forecasts exists (or did when it was scored); only
    // one without any is looked up in the backend.
    if latest.is_empty()
        && state
            .known_projects
            .existing(&state.backend, &[id])
            .await?
            .is_empty()
    {
        return Err(ApiError::new(
            ErrorCode::ProjectNotFound,
            format!("unknown project {id}"),
        ));
    }
    let production = state.store.production_versions().await?;
    let now = Utc::now();
    let max_age = state.config.score_max_age.as_secs_f64();
    let predictions: Vec<Value> = latest
        .iter()
        .map(|p| view(p, &production, now, max_age))
        .collect();
    let have: HashSet<Target> = latest.iter().map(|p| p.target).collect();
    let missing: Vec<Value> = Target::ALL
        .into_iter()
        .filter(|t| !have.contains(t))
        .map(|t| {
            let reason = if production.contains_key(&t) {
                "not scored yet: the next scoring run (SCORE_CRON) or a predict job scores it"
            } else {
                "the target has no production model"
            };
            json!({"target": t, "reason": reason})
        })
        .collect();
    Ok(Json(json!({
        "project_id": id,
        "predictions": predictions,
        "missing": missing,
        "max_age_seconds": max_age,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    target: Option<String>,
    ids: Option<String>,
}

/// `ids=1,2,3`: positive integers, at most [`MAX_IDS`], repeats dropped.
fn parse_ids(raw: Option<&str>) -> Result<Vec<i64>, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::validation(
            "`ids` is required: comma-separated project ids, e.g. ids=1,2,3".to_string(),
        )
    })?;
    if raw.trim().is_empty() {
        return Err(ApiError::validation("`ids` must not be empty"));
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, part) in raw.split(',').enumerate() {
        let id = match part.trim().parse::<i64>() {
            Ok(id) if id > 0 => id,
            _ => {
                return Err(ApiError::validation(format!(
                    "`ids`: item {} ({part:?}) is not a positive integer",
                    i + 1
                )));
            }
        };
        if seen.insert(id) {
            out.push(id);
        }
    }
    if out.len() > MAX_IDS {
        return Err(ApiError::new(
            ErrorCode::TooManyIds,
            format!(
                "{} project ids in one read; the limit is {MAX_IDS}: ask for the rest in another page",
                out.len()
            ),
        ));
    }
    Ok(out)
}

fn parse_target(raw: Option<&str>) -> Result<Target, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::validation(format!(
            "`target` is required: one of {}",
            Target::names().join(", ")
        ))
    })?;
    Target::from_str(raw).map_err(|_| {
        ApiError::new(
            ErrorCode::UnknownTarget,
            format!(
                "unknown target {raw:?}; expected one of {}",
                Target::names().join(", ")
            ),
        )
    })
}

async fn page(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation(format!("bad query string: {e}")))?;
    let target = parse_target(q.target.as_deref())?;
    let ids = parse_ids(q.ids.as_deref())?;
    let latest = state.store.latest_for_projects(target, &ids).await?;
    let without: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !latest.contains_key(id))
        .collect();
    // Only ids without a forecast are looked up in the backend: unknown
    // ones are listed, known ones are not scored yet.
    let existing = if without.is_empty() {
        HashSet::new()
    } else {
        state
            .known_projects
            .existing(&state.backend, &without)
            .await?
    };
    let (not_scored, unknown): (Vec<i64>, Vec<i64>) =
        without.into_iter().partition(|id| existing.contains(id));
    let production = state.store.production_versions().await?;
    let now = Utc::now();
    let max_age = state.config.score_max_age.as_secs_f64();
    let predictions: Vec<Value> = ids
        .iter()
        .filter_map(|id| latest.get(id))
        .map(|p| view(p, &production, now, max_age))
        .collect();
    let stale = predictions.iter().filter(|p| p["stale"] == true).count();
    Ok(Json(json!({
        "target": target,
        "production_version": production.get(&target),
        "max_age_seconds": max_age,
        "summary": {
            "requested": ids.len(),
            "found": predictions.len(),
            "stale": stale,
            "not_scored": not_scored.len(),
            "unknown": unknown.len(),
        },
        "predictions": predictions,
        "not_scored_ids": not_scored,
        "unknown_ids": unknown,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_deduplicated_and_capped() {
        assert_eq!(parse_ids(Some("3,1,3")).expect("ok"), vec![3, 1]);
        let e = parse_ids(Some("1,x")).expect_err("bad");
        assert_eq!(e.code, ErrorCode::ValidationError);
        assert!(e.message.contains("item 2"), "{}", e.message);
        assert_eq!(
            parse_ids(Some("0")).expect_err("zero").code,
            ErrorCode::ValidationError
        );
        assert_eq!(
            parse_ids(None).expect_err("missing").code,
            ErrorCode::ValidationError
        );
        let many: Vec<String> = (1..=MAX_IDS + 1).map(|i| i.to_string()).collect();
        let e = parse_ids(Some(&many.join(","))).expect_err("too many");
        assert_eq!(e.code, ErrorCode::TooManyIds);
        assert_eq!(e.code.status().as_u16(), 422);
    }
}
