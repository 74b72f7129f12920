//! The job view: the JSON `GET /api/v1/jobs/{id}` answers, the `end` event
//! of its event stream carries and a callback POSTs. Here, in `shared`, so
//! the api and the worker send the same document.

use serde_json::{Value, json};

use crate::store::{CallbackRow, JobRow};

/// A job and, when it was given one, its callback (`null` otherwise).
pub fn job_view(job: &JobRow, callback: Option<&CallbackRow>) -> Value {
    json!({
        "job_id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        // Kinds outside the prediction lanes have none: null.
        "priority": job.payload.priority(),
        "status": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "stage": job.stage,
        "error": job.error,
        "request": job.payload,
        "result": job.result,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        "callback": callback.map(callback_view),
    })
}

/// Where a job's callback stands.
pub fn callback_view(c: &CallbackRow) -> Value {
    json!({
        "url": c.url,
        "state": c.state,
        "attempts": c.attempts,
        "last_status": c.last_status,
        "last_error": c.last_error,
        "delivered_at": c.delivered_at,
    })
}
