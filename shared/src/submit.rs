//! Accepting a job: write the row, then push its message. Shared by the API,
//! the scheduler and the command line so every job enters the same way.

use crate::jobs::{JobMessage, JobPayload};
use crate::queue::Queue;
use crate::store::{InsertOutcome, JobRow, NewJob, Store, StoreError};

#[derive(Debug)]
pub struct Submitted {
    pub job: JobRow,
    /// False when an identical active job was found and returned instead.
    pub created: bool,
    /// Set when the row was written but the push failed; the reconciler
    /// pushes the job once the queue answers again.
    pub queue_error: Option<String>,
}

/// Writes the row (the promise), then pushes. Only a store failure is an
/// error: once the row exists the job is accepted, whatever the queue does.
pub async fn submit(
    store: &Store,
    queue: &Queue,
    payload: JobPayload,
    max_attempts: i32,
    request_id: Option<String>,
) -> Result<Submitted, StoreError> {
    let kind = payload.kind();
    // The row names the task id before the push, saving a second write on
    // the common path; a failed push is recorded on the row instead.
    let task_id = crate::queue::new_task_id();
    let outcome = store
        .insert_job(NewJob {
            id: ulid::Ulid::new().to_string(),
            queue_task_id: task_id.clone(),
            payload,
            max_attempts,
            request_id,
        })
        .await?;
    let (job, created) = match outcome {
        InsertOutcome::Created(j) => (j, true),
        InsertOutcome::Existing(j) => (j, false),
    };
    let mut queue_error = None;
    if created {
        let msg = JobMessage {
            job_id: job.id.clone(),
            kind,
            request_id: job.request_id.clone(),
        };
        match queue.push_as(kind.queue(), &msg, None, &task_id).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(job.id = %job.id, error = %e, "push failed; the reconciler will push it");
                let _ = store.mark_push_failed(&job.id, &e.to_string()).await;
                queue_error = Some(e.to_string());
            }
        }
    }
    Ok(Submitted {
        job,
        created,
        queue_error,
    })
}
