//! The OpenAPI 3.1 document. Written by hand (the API is small); the lists
//! in it (targets, per-target routes, job kinds and states, error codes)
//! come from the same tables the code uses, and a test checks its paths
//! against `routes::served`, so the two cannot drift apart. It says what
//! the code enforces: bounds, enums, which of `project_ids` / `all_open`,
//! and every error status a route can answer (`schemathesis.sh` checks
//! both directions).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use rpa_ml_shared::jobs::{JobKind, JobState, Priority};
use rpa_ml_shared::ml::Target;

use crate::error::ErrorCode;
use crate::input::{MAX_TEXT_CHARS, PLAIN_TEXT_PATTERN};
use crate::routes::{forecasts, ops};
use crate::state::AppState;

/// `GET /api/v1/openapi.json`.
pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    let mut doc = document(state.config.max_projects_per_request);
    if state.config.callback_allowed_hosts.is_empty() {
        without_callbacks(&mut doc);
    }
    Json(doc)
}

/// A deployment that allows no callback host refuses every `callback_url`:
/// its document does not offer the field (sending it is then an unknown
/// field, still refused).
fn without_callbacks(doc: &mut Value) {
    for name in ["PredictRequest", "PredictOneRequest"] {
        let schema = &mut doc["components"]["schemas"][name];
        if let Some(props) = schema["properties"].as_object_mut() {
            props.remove("callback_url");
        }
        if let Some(branches) = schema["oneOf"].as_array_mut() {
            branches.retain(|b| {
                !b["required"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|f| f == "callback_url"))
            });
        }
    }
}

/// A job id (a ULID) in a path.
const ULID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$";

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn accepted() -> Value {
    json!({
        "202": {"description": "Accepted: the job is durably queued",
                 "headers": {"Location": {"schema": {"type": "string"}, "description": "status URL"}},
                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
        "400": error_response("Malformed JSON, unknown target, or invalid fields"),
        "404": error_response("None of the requested projects exist"),
        "413": error_response("Body larger than MAX_BODY_BYTES or batch larger than MAX_PROJECTS_PER_REQUEST"),
        "422": error_response("The callback_url is refused: not http(s), malformed, with credentials, or its host is not in CALLBACK_ALLOWED_HOSTS (callback_not_allowed)"),
    })
}

/// `callback_url` on a job-creating body.
fn callback_url_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": rpa_ml_shared::callback::MAX_URL_LEN,
           "pattern": "^https?://[^\\u0000-\\u001f\\u007f-\\u009f]*$",
           "description": "Where to POST the job view when the job ends (succeeded, failed, dead or cancelled): http or https, its host in CALLBACK_ALLOWED_HOSTS. Signed: X-RPA-ML-Signature is sha256=<hex HMAC-SHA256 of \"<X-RPA-ML-Timestamp>.<body>\" under CALLBACK_SECRET>; X-RPA-ML-Delivery is the same on every retry (drop duplicates); refuse timestamps more than 300 s from your clock. Retried with back-off until a 2xx or CALLBACK_MAX_ATTEMPTS; the job view's `callback` shows how it stands."})
}

fn callback_schema() -> Value {
    json!({"type": ["object", "null"], "description": "the job's callback, if it was given a callback_url",
        "properties": {
            "url": {"type": "string"},
            "state": {"type": "string", "enum": rpa_ml_shared::store::CallbackState::ALL.map(|s| s.as_str())},
            "attempts": {"type": "integer"},
            "last_status": {"type": ["integer", "null"], "description": "HTTP status of the last attempt, if it got an answer"},
            "last_error": {"type": ["string", "null"]},
            "delivered_at": {"type": ["string", "null"]}}})
}

fn job_events() -> Value {
    json!({"get": {
        "summary": "The job as Server-Sent Events: `progress` (status, stage, progress) when the stream opens and at each change, then `end` with the job view, and the stream closes; `timeout` after EVENTS_MAX_SECS; `error` if the store fails or the job is removed",
        "security": [{"bearer": []}, {"apiKey": []}],
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": ULID_PATTERN}}],
        "responses": {
            "200": {"description": "an event stream; each event's data is one JSON object (`end`: a Job)",
                    "content": {"text/event-stream": {"schema": {"type": "object", "required": ["event", "data"], "properties": {
                        "event": {"type": "string", "enum": ["progress", "end", "timeout", "error"]},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer"}}}}}},
            "404": error_response("No such job"),
            "503": error_response("EVENTS_MAX_STREAMS streams are open (too_many_streams), or the ML store does not answer"),
        }
    }})
}

/// `project_ids`: whole positive int64s, at most `max_ids` of them.
fn project_ids(max_ids: usize) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": max_ids,
           "description": "duplicates are predicted once",
           "items": {"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX}})
}

/// Either `project_ids` (with `all_open` absent or false) or `all_open: true`
/// without `project_ids`; `fixed` names the body's other required fields.
/// `maxProperties` keeps `project_ids` out of the second branch (a `not`
/// would say the same, but test generators handle it poorly).
/// The `all_open` branch comes twice, with and without the optional
/// `callback_url`, so that `maxProperties` stays exact in each.
fn one_selection(fixed: &[&str]) -> Value {
    let mut all_open: Vec<&str> = fixed.to_vec();
    all_open.push("all_open");
    let mut with_callback = all_open.clone();
    with_callback.push("callback_url");
    json!([
        {"required": ["project_ids"], "properties": {"all_open": {"const": false}}},
        {"required": all_open, "maxProperties": all_open.len(), "properties": {"all_open": {"const": true}}},
        {"required": with_callback, "maxProperties": with_callback.len(), "properties": {"all_open": {"const": true}}}
    ])
}

/// A model version: a positive int32.
fn version_schema() -> Value {
    json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": i32::MAX})
}

/// Adds what every operation can answer to each one that does not say it
/// already: 400 for a Host outside ALLOWED_HOSTS, and for those behind the
/// key 401 and 503 (each reads the ML store).
fn add_common_responses(paths: &mut Map<String, Value>) {
    for ops in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in ops.values_mut().filter_map(Value::as_object_mut) {
            let protected = op.contains_key("security");
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            responses
                .entry("400")
                .or_insert_with(|| error_response("The Host header is not in ALLOWED_HOSTS"));
            if protected {
                responses
                    .entry("401")
                    .or_insert_with(|| error_response("Missing or wrong API key"));
                responses.entry("503").or_insert_with(|| {
                    error_response(
                        "The ML store, the queue or the backend database does not answer",
                    )
                });
            }
        }
    }
}

fn predict_one(target: &str) -> Value {
    json!({"post": {
        "summary": format!("Predict {target} for projects"),
        "security": [{"bearer": []}, {"apiKey": []}],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictOneRequest"}}}},
        "responses": accepted(),
    }})
}

fn monitoring_drift() -> Value {
    json!({
        "get": {
            "summary": "Latest drift report per target (or the last `history` of each)",
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [
                {"name": "target", "in": "query", "required": false, "schema": {"$ref": "#/components/schemas/Target"}},
                {"name": "history", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1}}
            ],
            "responses": {
                "200": {"description": "reports, newest first within a target",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DriftReports"}}}},
                "400": error_response("Unknown target, or `history` not an integer from 1 to 100"),
            }
        },
        "post": {
            "summary": "Run a drift check now (deduplicated with one already waiting)",
            "security": [{"bearer": []}, {"apiKey": []}],
            "responses": {
                "202": {"description": "new drift job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                "200": {"description": "a drift check is already queued or running; its id is returned",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
            }
        }
    })
}

fn monitoring_metrics() -> Value {
    json!({"get": {
        "summary": "Per production model: hold-out metrics, realised metrics, thresholds, prediction counts, latest drift",
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": {"200": {"description": "one entry per target"}}
    }})
}

/// A kept forecast as the read routes answer it.
fn latest_prediction_schema() -> Value {
    json!({"type": "object",
    "required": ["project_id", "target", "model_version", "production_version", "as_of", "age_seconds", "stale", "stale_reasons", "job_id"],
    "properties": {
        "project_id": {"type": "integer"},
        "target": {"$ref": "#/components/schemas/Target"},
        "model_version": {"type": "integer", "description": "the version that made it"},
        "production_version": {"type": ["integer", "null"], "description": "the target's production version now"},
        "as_of": {"type": "string", "format": "date-time", "description": "the cut-off its features were computed as of"},
        "age_seconds": {"type": "number"},
        "stale": {"type": "boolean"},
        "stale_reasons": {"type": "array", "items": {"type": "string", "enum": ["newer_model", "too_old", "no_production_model"]},
            "description": "newer_model: made by another version than the production one; too_old: older than SCORE_MAX_AGE; no_production_model: the target has none now"},
        "job_id": {"type": "string", "description": "the predict or score job that made it"},
        "value": {"type": "number"}, "class": {"type": "string"},
        "probabilities": {"type": "object"}, "interval_80": {"type": "array"}, "interval_90": {"type": "array"},
        "contributions": {"type": "array"}, "days_remaining": {"type": "number"}, "predicted_end_date": {"type": "string"}
    }})
}

fn project_forecasts() -> Value {
    json!({"get": {
        "summary": "The latest forecast of one project for every target, without a job (kept by scoring runs and predict jobs)",
        "security": [{"bearer": []}, {"apiKey": []}],
        "parameters": [{"name": "id", "in": "path", "required": true,
            "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX}}],
        "responses": {
            "200": {"description": "forecasts per target, and the targets without one (`missing`, with why)",
                "content": {"application/json": {"schema": {"type": "object", "required": ["project_id", "predictions", "missing", "max_age_seconds"], "properties": {
                    "project_id": {"type": "integer"},
                    "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/LatestPrediction"}},
                    "missing": {"type": "array", "items": {"type": "object", "required": ["target", "reason"], "properties": {
                        "target": {"$ref": "#/components/schemas/Target"}, "reason": {"type": "string"}}}},
                    "max_age_seconds": {"type": "number", "description": "SCORE_MAX_AGE"}}}}}},
            "400": error_response("The project id is not a positive integer"),
            "404": error_response("No such project (project_not_found)"),
        }
    }})
}

fn forecast_page() -> Value {
    json!({"get": {
        "summary": "The latest forecasts of one target for a page of projects, without a job",
        "security": [{"bearer": []}, {"apiKey": []}],
        "parameters": [
            {"name": "target", "in": "query", "required": true, "schema": {"$ref": "#/components/schemas/Target"}},
            {"name": "ids", "in": "query", "required": true,
             "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17})*$"},
             "description": format!("comma-separated project ids, at most {} distinct (repeats are answered once)", forecasts::MAX_IDS)}
        ],
        "responses": {
            "200": {"description": "the forecasts found, in the order asked, and the ids without one: not scored yet, or unknown to the backend",
                "content": {"application/json": {"schema": {"type": "object",
                    "required": ["target", "production_version", "max_age_seconds", "summary", "predictions", "not_scored_ids", "unknown_ids"],
                    "properties": {
                        "target": {"$ref": "#/components/schemas/Target"},
                        "production_version": {"type": ["integer", "null"]},
                        "max_age_seconds": {"type": "number"},
                        "summary": {"type": "object", "properties": {
                            "requested": {"type": "integer"}, "found": {"type": "integer"}, "stale": {"type": "integer"},
                            "not_scored": {"type": "integer"}, "unknown": {"type": "integer"}}},
                        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/LatestPrediction"}},
                        "not_scored_ids": {"type": "array", "items": {"type": "integer"}},
                        "unknown_ids": {"type": "array", "items": {"type": "integer"}}}}}}},
            "400": error_response("`target` missing or unknown (unknown_target), `ids` missing, empty or not positive integers (validation_error)"),
            "422": error_response("More project ids than the read takes (too_many_ids)"),
        }
    }})
}

fn drift_reports_schema() -> Value {
    json!({"type": "object", "required": ["reports"], "properties": {"reports": {"type": "array", "items": {
    "type": "object",
    "required": ["target", "checked_at", "drift_score", "drift_detected", "features", "realised", "retrain_job_id"],
    "properties": {
        "target": {"$ref": "#/components/schemas/Target"},
        "checked_at": {"type": "string"},
        "model_version": {"type": ["integer", "null"]},
        "status": {"type": "string", "enum": ["checked", "insufficient_data", "no_production_model", "no_reference", "model_unavailable"]},
        "message": {"type": ["string", "null"]},
        "drift_score": {"type": ["number", "null"]},
        "drift_detected": {"type": "boolean"},
        "features": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "method": {"type": "string", "enum": ["psi", "jensen_shannon"]},
            "score": {"type": "number"}, "threshold": {"type": "number"}, "p_value": {"type": "number"},
            "drifted": {"type": "boolean"}}}},
        "drifted_features": {"type": "array", "items": {"type": "string"}},
        "prediction_drift": {"type": ["object", "null"]},
        "realised": {"type": ["object", "null"], "properties": {
            "projects": {"type": "integer"}, "metric": {"type": "string", "enum": ["mae", "accuracy"]},
            "value": {"type": ["number", "null"]}, "holdout": {"type": ["number", "null"]},
            "pairs": {"type": "array", "maxItems": 500, "items": {"type": "object", "properties": {
                "project_id": {"type": "integer"}, "predicted": {}, "actual": {}}}}}},
        "retrain_job_id": {"type": ["string", "null"]}
    }}}}})
}

/// The document; `max_ids` is MAX_PROJECTS_PER_REQUEST, the bound on
/// `project_ids`.
pub fn document(max_ids: usize) -> Value {
    let mut doc = base_document(max_ids);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for target in Target::ALL {
            paths.insert(
                format!("/api/v1/predict/{}", target.route_slug()),
                predict_one(target.as_str()),
            );
        }
        if let Value::Object(ops) = ops_paths() {
            paths.extend(ops);
        }
        add_common_responses(paths);
        document_idempotency(paths);
    }
    doc
}

/// Adds the `Idempotency-Key` header and the answers it brings to every
/// POST that creates a job (`routes::job_creating`).
fn document_idempotency(paths: &mut Map<String, Value>) {
    let header = json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "schema": {"type": "string", "minLength": 1, "maxLength": crate::idempotency::MAX_KEY_LEN, "pattern": "^[ -~]+$"},
        "description": "Makes a retry safe: the same key with the same method, path and body within IDEMPOTENCY_RETENTION_HOURS (default 24) answers the job the first request created (200, `Idempotent-Replayed: true`) instead of creating another; the same key with another request is refused (422 idempotency_key_reused)."
    });
    let replayed = json!({
        "description": "Replayed: this Idempotency-Key came with the same request before; the job it created (or, without a key, an identical active job)",
        "headers": {
            "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}, "description": "present when the answer is a replay"},
            "Location": {"schema": {"type": "string"}, "description": "status URL"}
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}
    });
    for path in crate::routes::job_creating() {
        let Some(op) = paths.get_mut(&path).and_then(|p| p.get_mut("post")) else {
            continue;
        };
        match op.get_mut("parameters").and_then(Value::as_array_mut) {
            Some(params) => params.push(header.clone()),
            None => op["parameters"] = json!([header.clone()]),
        }
        let responses = &mut op["responses"];
        responses["200"] = replayed.clone();
        let bad = responses
            .get("400")
            .and_then(|r| r["description"].as_str())
            .map_or_else(String::new, |d| format!("{d}; "));
        responses["400"] = error_response(&format!(
            "{bad}invalid Idempotency-Key (empty, sent twice, over 255 characters, not printable ASCII)"
        ));
        let unusable = responses
            .get("422")
            .and_then(|r| r["description"].as_str())
            .map_or_else(String::new, |d| format!("{d}; or: "));
        responses["422"] = error_response(&format!(
            "{unusable}the Idempotency-Key was used within IDEMPOTENCY_RETENTION_HOURS for another request (method, path or body)"
        ));
    }
}

/// Every error code with its status and meaning (`error.rs`'s table).
fn error_codes() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let table: Map<String, Value> = ErrorCode::ALL
        .iter()
        .map(|c| {
            let spec = c.spec();
            (
                spec.code.to_string(),
                json!({"status": spec.status.as_u16(), "meaning": spec.meaning}),
            )
        })
        .collect();
    json!({"type": "string", "enum": codes, "x-codes": table})
}

fn base_document(max_ids: usize) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rpa-ml",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Predictions for RPA projects (completion time, budget variance, risk) served as durable jobs."
        },
        "paths": {
            "/health": {"get": {"summary": "Process is alive", "responses": {"200": {"description": "alive"}}}},
            "/ready": {"get": {"summary": "Ready to answer predictions: ML store, queue and backend database reachable, and every target has a production model",
                "parameters": [{"name": "models", "in": "query", "required": false, "schema": {"type": "boolean", "default": true},
                    "description": "false: check the dependencies only (for a load balancer, so a new deployment can be sent its first retrain)"}],
                "responses": {"200": {"description": "ready; `checks` lists each dependency and each target's production version"},
                    "400": error_response("`models` is not true or false"),
                    "503": error_response("not ready: the body names each dependency that is down and each target still without a production model (`waiting_for`), with the retrain that will give it one, if any")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (OpenMetrics text): HTTP, jobs, queues, models, drift",
                "responses": {"200": {"description": "metrics", "content": {"application/openmetrics-text": {}}}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI document"}}}},
            "/api/v1/predict": {"post": {
                "summary": "Predict any targets for projects or for all open projects",
                "security": [{"bearer": []}, {"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": accepted(),
            }},
            "/api/v1/jobs/{id}": {"get": {
                "summary": "Job status and result",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": ULID_PATTERN}},
                    {"name": "wait", "in": "query", "required": false, "schema": {"type": "number", "minimum": 0},
                     "description": "seconds to hold the request until the job ends (any larger wait is cut to MAX_WAIT_SECS)"}
                ],
                "responses": {
                    "200": {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "400": error_response("`wait` is not a non-negative number"),
                    "404": error_response("No such job"),
                }
            }},
            "/api/v1/jobs/{id}/events": job_events(),
            "/api/v1/models": {"get": {
                "summary": "Model versions per target with metrics and stage",
                "security": [{"bearer": []}, {"apiKey": []}],
                "responses": {"200": {"description": "registry"}}
            }},
            "/api/v1/models/retrain": {"post": {
                "summary": "Retrain targets (deduplicated)",
                "security": [{"bearer": []}, {"apiKey": []}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RetrainRequest"}}}},
                "responses": {
                    "202": {"description": "new retrain job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "200": {"description": "a retrain of the same targets is already queued or running; its id is returned",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "400": error_response("Malformed JSON or an unknown target"),
                    "409": error_response("Another retrain of an overlapping target set is active"),
                    "413": error_response("Body larger than MAX_BODY_BYTES"),
                }
            }},
            "/api/v1/models/{target}/versions/{version}": {"get": {
                "summary": "One model version: parameters, metrics, feature set, fingerprint, artifact checksum, stage",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [
                    {"name": "target", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/Target"}},
                    {"name": "version", "in": "path", "required": true, "schema": version_schema()}
                ],
                "responses": {"200": {"description": "the version"}, "404": error_response("Unknown target or version")}
            }},
            "/api/v1/models/{target}/promote": {"post": {
                "summary": "Promote a version to production by hand (the reason is recorded)",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [{"name": "target", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/Target"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["version"],
                    "additionalProperties": false,
                    "properties": {"version": version_schema(),
                        "reason": {"type": "string", "maxLength": MAX_TEXT_CHARS, "pattern": PLAIN_TEXT_PATTERN,
                                   "description": "kept beside the stage; no control characters"}}}}}},
                "responses": {"200": {"description": "promoted"},
                    "400": error_response("Malformed JSON, a version that is not a positive int32, or a reason with control characters or too long"),
                    "404": error_response("Unknown target or version"), "409": error_response("Already in production"),
                    "413": error_response("Body larger than MAX_BODY_BYTES")}
            }},
            "/api/v1/models/{target}/rollback": {"post": {
                "summary": "Put the previous production version back",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [{"name": "target", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/Target"}}],
                "responses": {"200": {"description": "rolled back"},
                    "404": error_response("Unknown target"), "409": error_response("No production model, or nothing to roll back to")}
            }},
            "/api/v1/monitoring/drift": monitoring_drift(),
            "/api/v1/projects/{id}/predictions": project_forecasts(),
            "/api/v1/predictions": forecast_page(),
            "/api/v1/scoring": {"get": {
                "summary": "Scoring runs for the ops page: the last one and the last successful one (coverage per target, age), the active one, and per target how many forecasts are kept and how old the oldest is",
                "security": [{"bearer": []}, {"apiKey": []}],
                "responses": {"200": {"description": "scoring status"}}
            }},
            "/api/v1/monitoring/metrics": monitoring_metrics(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            },
            "schemas": {
                "Target": {"type": "string", "enum": Target::names()},
                "ErrorCode": error_codes(),
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["code", "message"], "properties": {"code": {"$ref": "#/components/schemas/ErrorCode"}, "message": {"type": "string"}}}}},
                "PredictRequest": {"type": "object", "required": ["targets"], "additionalProperties": false, "properties": {
                    "targets": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Target"}},
                    "project_ids": project_ids(max_ids),
                    "all_open": {"type": "boolean"},
                    "priority": {"$ref": "#/components/schemas/Priority"},
                    "callback_url": callback_url_schema()},
                    "oneOf": one_selection(&["targets"])},
                "PredictOneRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "project_ids": project_ids(max_ids),
                    "all_open": {"type": "boolean"},
                    "priority": {"$ref": "#/components/schemas/Priority"},
                    "callback_url": callback_url_schema()},
                    "oneOf": one_selection(&[])},
                "Priority": {"type": "string", "enum": Priority::names(), "default": "normal",
                    "description": "the lane the job waits in: high is served first under a backlog, low (where scheduled scoring runs) still progresses"},
                "LatestPrediction": latest_prediction_schema(),
                "RetrainRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "targets": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Target"}}}},
                "Accepted": {"type": "object", "required": ["job_id", "status", "status_url"], "properties": {
                    "job_id": {"type": "string"}, "status": {"type": "string"}, "kind": {"type": "string"},
                    "status_url": {"type": "string"}, "deduplicated": {"type": "boolean"}, "queue_error": {"type": "string"}}},
                "DriftReports": drift_reports_schema(),
                "Job": {"type": "object", "properties": {
                    "job_id": {"type": "string"}, "kind": {"type": "string", "enum": JobKind::names(),
                        "description": JobKind::ALL.map(|k| format!("{}: {}", k.as_str(), k.spec().summary)).join("; ")},
                    "status": {"type": "string", "enum": JobState::ALL.map(|s| s.as_str())},
                    "queue": {"type": "string"},
                    "priority": {"type": ["string", "null"], "enum": [Value::Null, "high", "normal", "low"],
                        "description": "predict jobs' priority (score jobs: low); null for kinds outside the prediction lanes"},
                    "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"}, "progress": {"type": "number"},
                    "stage": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
                    "result": {"type": ["object", "null"]}, "created_at": {"type": "string"},
                    "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]},
                    "callback": callback_schema()}}
            }
        }
    })
}

/// The operator routes (`routes/ops.rs`).
fn ops_paths() -> Value {
    let security = json!([{"bearer": []}, {"apiKey": []}]);
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": ULID_PATTERN}});
    let names = |all: Vec<&str>| json!({"type": "array", "minItems": 1, "items": {"type": "string", "enum": all}});
    let html = |summary: &str, ty: &str| json!({"get": {"summary": summary, "responses": {"200": {"description": ty}}}});
    let job_list = json!({"type": "object", "required": ["jobs", "next_cursor"], "properties": {
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "next_cursor": {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last"}}});
    json!({
        "/": {"get": {"summary": "Redirects to the ops page", "responses": {"307": {"description": "to /ops"}}}},
        "/ops": html("Ops page: queues, jobs, workers, models, drift (static; its data calls need the API key)", "HTML"),
        "/ops/page.js": html("Ops page script", "JavaScript"),
        "/ops/page.css": html("Ops page style sheet", "CSS"),
        "/api/v1/queues": {"get": {
            "summary": "Per queue: waiting, scheduled, running, failed, dead, cancelled, oldest waiting age, throughput (jobs table) and the transport's own counts; and the callback outbox by state (`callbacks`: pending, delivered, failed)",
            "security": security,
            "responses": {"200": {"description": "one entry per queue"}}
        }},
        "/api/v1/jobs": {"get": {
            "summary": "Jobs, newest first, filtered and paged by cursor (without results; GET /api/v1/jobs/{id} has them)",
            "security": security,
            "parameters": [
                {"name": "state", "in": "query", "style": "form", "explode": false, "schema": names(JobState::ALL.map(|s| s.as_str()).to_vec()),
                 "description": "comma-separated states; any of them"},
                {"name": "kind", "in": "query", "style": "form", "explode": false, "schema": names(JobKind::names()),
                 "description": "comma-separated kinds; any of them"},
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "only jobs created at or after this RFC 3339 time"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": ops::MAX_LIMIT, "default": ops::DEFAULT_LIMIT}},
                {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^([0-7][0-9A-HJKMNP-TV-Z]{25})?$"}, "description": "next_cursor of the previous page"}
            ],
            "responses": {"200": {"description": "a page of jobs", "content": {"application/json": {"schema": job_list}}},
                "400": error_response("Unknown state or kind, bad since, limit or cursor")}
        }},
        "/api/v1/jobs/{id}/retry": {"post": {
            "summary": "Put a failed or dead job back in the queue: same id, fresh attempt budget, last error kept as previous_error, retries counted",
            "security": security,
            "parameters": [id.clone()],
            "responses": {"202": {"description": "queued again", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                "404": error_response("No such job"),
                "409": error_response("The job is not failed or dead (the message names its state), or an identical job is active")}
        }},
        "/api/v1/jobs/{id}/cancel": {"post": {
            "summary": "Cancel a job: a queued one never runs; a running predict or retrain stops at its next checkpoint and ends cancelled",
            "security": security,
            "parameters": [id],
            "responses": {"200": {"description": "was queued; now cancelled", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                "202": {"description": "running; will stop at its next checkpoint", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                "404": error_response("No such job"),
                "409": error_response("Already finished, or a running job without checkpoints (drift, maintenance)")}
        }},
        "/api/v1/workers": {"get": {
            "summary": "Worker processes: name, host, pid, queues, concurrency, version, started_at, last heartbeat, alive",
            "security": security,
            "responses": {"200": {"description": "the roster, most recently seen first"}}
        }},
    })
}
