//! How rows look in responses: one view per kind of row, shared by every
//! route that shows it.

use serde_json::{Value, json};

pub use rpa_ml_shared::job_view::job_view;
use rpa_ml_shared::store::{ModelRow, OpsJob};

pub fn model_view(m: &ModelRow) -> Value {
    json!({
        "target": m.target,
        "version": m.version,
        "stage": m.stage.as_str(),
        "stage_reason": m.stage_reason,
        "learner": m.learner,
        "metrics": m.metrics,
        "feature_set_version": m.feature_set_version,
        "data_fingerprint": m.data_fingerprint,
        "code_version": m.code_version,
        "artifact_path": m.artifact_path,
        "artifact_sha256": m.artifact_sha256,
        "job_id": m.job_id,
        "created_at": m.created_at,
        "promoted_at": m.promoted_at,
    })
}

/// A job in ops listings: the status view (without the result, which can be
/// large, and the callback; `GET /api/v1/jobs/{id}` has both) plus what ops
/// actions left.
pub fn ops_view(j: &OpsJob) -> Value {
    let mut v = job_view(&j.job, None);
    if let Value::Object(m) = &mut v {
        m.remove("result");
        m.remove("callback");
        m.insert("has_result".into(), json!(j.job.result.is_some()));
        m.insert("retries".into(), json!(j.retries));
        m.insert("previous_error".into(), json!(j.previous_error));
        m.insert("cancel_requested_at".into(), json!(j.cancel_requested_at));
        m.insert("run_at".into(), json!(j.job.run_at));
        m.insert("worker".into(), json!(j.job.worker));
    }
    v
}
