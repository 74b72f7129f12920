//! The OpenAPI 3.1 document. Written by hand (the API is small) and checked
//! against `routes::ROUTES` by a test, so the two cannot drift apart.

use serde_json::{Value, json};

pub(crate) fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn accepted() -> Value {
    json!({
        "202": {"description": "Accepted: the job is durably queued",
                 "headers": {"Location": {"schema": {"type": "string"}, "description": "status URL"}},
                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
        "400": error_response("Malformed JSON, unknown target, or invalid fields"),
        "401": error_response("Missing or wrong API key"),
        "404": error_response("None of the requested projects exist"),
        "413": error_response("Body larger than MAX_BODY_BYTES or batch larger than MAX_PROJECTS_PER_REQUEST"),
        "503": error_response("The ML store is unavailable"),
    })
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
                "401": error_response("Missing or wrong API key"),
            }
        },
        "post": {
            "summary": "Run a drift check now (deduplicated with one already waiting)",
            "security": [{"bearer": []}, {"apiKey": []}],
            "responses": {
                "202": {"description": "new drift job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                "200": {"description": "a drift check is already queued or running; its id is returned",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                "401": error_response("Missing or wrong API key"),
                "503": error_response("The ML store is unavailable"),
            }
        }
    })
}

fn monitoring_metrics() -> Value {
    json!({"get": {
        "summary": "Per production model: hold-out metrics, realised metrics, thresholds, prediction counts, latest drift",
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": {"200": {"description": "one entry per target"}, "401": error_response("Missing or wrong API key")}
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

pub fn document() -> Value {
    let mut doc = base_document();
    if let (Some(paths), Value::Object(ops)) = (
        doc.get_mut("paths").and_then(Value::as_object_mut),
        crate::ops::openapi_paths(),
    ) {
        paths.extend(ops);
    }
    doc
}

fn base_document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rpa-ml",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Predictions for RPA projects (completion time, budget variance, risk) served as durable jobs."
        },
        "paths": {
            "/health": {"get": {"summary": "Process is alive", "responses": {"200": {"description": "alive"}}}},
            "/ready": {"get": {"summary": "ML store, queue and backend database reachable",
                "responses": {"200": {"description": "ready"}, "503": error_response("a dependency is down; the body names it")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (OpenMetrics text): HTTP, jobs, queues, models, drift",
                "responses": {"200": {"description": "metrics", "content": {"application/openmetrics-text": {}}}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI document"}}}},
            "/api/v1/predict": {"post": {
                "summary": "Predict any targets for projects or for all open projects",
                "security": [{"bearer": []}, {"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": accepted(),
            }},
            "/api/v1/predict/completion-time": predict_one("completion_time"),
            "/api/v1/predict/budget-variance": predict_one("budget_variance"),
            "/api/v1/predict/risk-score": predict_one("risk"),
            "/api/v1/jobs/{id}": {"get": {
                "summary": "Job status and result",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "wait", "in": "query", "required": false, "schema": {"type": "number", "minimum": 0},
                     "description": "seconds to hold the request until the job ends (bounded by MAX_WAIT_SECS)"}
                ],
                "responses": {
                    "200": {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "401": error_response("Missing or wrong API key"),
                    "404": error_response("No such job"),
                }
            }},
            "/api/v1/models": {"get": {
                "summary": "Model versions per target with metrics and stage",
                "security": [{"bearer": []}, {"apiKey": []}],
                "responses": {"200": {"description": "registry"}, "401": error_response("Missing or wrong API key")}
            }},
            "/api/v1/models/retrain": {"post": {
                "summary": "Retrain targets (deduplicated)",
                "security": [{"bearer": []}, {"apiKey": []}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RetrainRequest"}}}},
                "responses": {
                    "202": {"description": "new retrain job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "200": {"description": "a retrain of the same targets is already queued or running; its id is returned",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "400": error_response("Unknown target"),
                    "401": error_response("Missing or wrong API key"),
                    "409": error_response("Another retrain of an overlapping target set is active"),
                }
            }},
            "/api/v1/models/{target}/versions/{version}": {"get": {
                "summary": "One model version: parameters, metrics, feature set, fingerprint, artifact checksum, stage",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [
                    {"name": "target", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/Target"}},
                    {"name": "version", "in": "path", "required": true, "schema": {"type": "integer"}}
                ],
                "responses": {"200": {"description": "the version"}, "401": error_response("Missing or wrong API key"),
                    "404": error_response("Unknown target or version")}
            }},
            "/api/v1/models/{target}/promote": {"post": {
                "summary": "Promote a version to production by hand (the reason is recorded)",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [{"name": "target", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/Target"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["version"],
                    "properties": {"version": {"type": "integer"}, "reason": {"type": "string"}}}}}},
                "responses": {"200": {"description": "promoted"}, "401": error_response("Missing or wrong API key"),
                    "404": error_response("Unknown target or version"), "409": error_response("Already in production")}
            }},
            "/api/v1/models/{target}/rollback": {"post": {
                "summary": "Put the previous production version back",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [{"name": "target", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/Target"}}],
                "responses": {"200": {"description": "rolled back"}, "401": error_response("Missing or wrong API key"),
                    "404": error_response("Unknown target"), "409": error_response("Nothing to roll back to")}
            }},
            "/api/v1/monitoring/drift": monitoring_drift(),
            "/api/v1/monitoring/metrics": monitoring_metrics(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            },
            "schemas": {
                "Target": {"type": "string", "enum": ["completion_time", "budget_variance", "risk"]},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "PredictRequest": {"type": "object", "required": ["targets"], "additionalProperties": false, "properties": {
                    "targets": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Target"}},
                    "project_ids": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
                    "all_open": {"type": "boolean"}}},
                "PredictOneRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "project_ids": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
                    "all_open": {"type": "boolean"}}},
                "RetrainRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "targets": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Target"}}}},
                "Accepted": {"type": "object", "required": ["job_id", "status", "status_url"], "properties": {
                    "job_id": {"type": "string"}, "status": {"type": "string"}, "kind": {"type": "string"},
                    "status_url": {"type": "string"}, "deduplicated": {"type": "boolean"}, "queue_error": {"type": "string"}}},
                "DriftReports": drift_reports_schema(),
                "Job": {"type": "object", "properties": {
                    "job_id": {"type": "string"}, "kind": {"type": "string", "enum": ["predict", "retrain", "drift", "maintenance"]},
                    "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "dead", "cancelled"]},
                    "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"}, "progress": {"type": "number"},
                    "stage": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
                    "result": {"type": ["object", "null"]}, "created_at": {"type": "string"},
                    "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]}}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;

    #[test]
    fn document_matches_routes() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                    .map(move |m| (m.clone(), p.clone()))
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}
