//! The routes, one file per resource. [`served`] lists every method and
//! path the router answers, built from the same tables (targets) as the
//! router, and the OpenAPI document is checked against it.

pub mod events;
pub mod forecasts;
pub mod jobs;
pub mod models;
pub mod monitoring;
pub mod ops;
pub mod predict;
pub mod system;

use axum::Router;
use axum::routing::get;

use rpa_ml_shared::ml::Target;

use crate::state::AppState;

/// Routes that need no API key (the page asks for it itself).
pub fn public() -> Router<AppState> {
    system::routes()
        .merge(ops::public())
        .route("/api/v1/openapi.json", get(crate::openapi::serve))
}

/// Routes behind the API key.
pub fn protected() -> Router<AppState> {
    predict::routes()
        .merge(forecasts::routes())
        .merge(jobs::routes())
        .merge(models::routes())
        .merge(ops::protected())
        .merge(monitoring::protected())
}

/// The POSTs that create a job: they take an `Idempotency-Key`
/// (`crate::idempotency`).
pub fn job_creating() -> Vec<String> {
    let mut out: Vec<String> = [
        "/api/v1/predict",
        "/api/v1/models/retrain",
        "/api/v1/monitoring/drift",
    ]
    .map(String::from)
    .to_vec();
    for t in Target::ALL {
        out.push(format!("/api/v1/predict/{}", t.route_slug()));
    }
    out
}

/// Every (method, path) served.
pub fn served() -> Vec<(&'static str, String)> {
    let fixed = [
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/predict"),
        ("get", "/api/v1/jobs/{id}"),
        ("get", "/api/v1/jobs/{id}/events"),
        ("get", "/api/v1/models"),
        ("post", "/api/v1/models/retrain"),
        ("get", "/api/v1/models/{target}/versions/{version}"),
        ("post", "/api/v1/models/{target}/promote"),
        ("post", "/api/v1/models/{target}/rollback"),
        ("get", "/"),
        ("get", "/ops"),
        ("get", "/ops/page.js"),
        ("get", "/ops/page.css"),
        ("get", "/api/v1/queues"),
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs/{id}/retry"),
        ("post", "/api/v1/jobs/{id}/cancel"),
        ("get", "/api/v1/workers"),
        ("get", "/api/v1/monitoring/drift"),
        ("post", "/api/v1/monitoring/drift"),
        ("get", "/api/v1/monitoring/metrics"),
        ("get", "/api/v1/projects/{id}/predictions"),
        ("get", "/api/v1/predictions"),
        ("get", "/api/v1/scoring"),
    ];
    let mut out: Vec<(&'static str, String)> =
        fixed.iter().map(|(m, p)| (*m, p.to_string())).collect();
    for t in Target::ALL {
        out.push(("post", format!("/api/v1/predict/{}", t.route_slug())));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_matches_routes() {
        let doc = crate::openapi::document(10);
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
        let mut served: Vec<(String, String)> = super::served()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn job_creating_routes_are_served_posts() {
        let served = super::served();
        for path in super::job_creating() {
            assert!(
                served.iter().any(|(m, p)| *m == "post" && *p == path),
                "{path} is not a served POST"
            );
        }
    }
}
