//! Accepting a job: write the row, then push its message. Shared by the API,
//! the scheduler and the command line so every job enters the same way.

use crate::jobs::{JobMessage, JobPayload};
use crate::queue::Queue;
use crate::store::{IdempotencyKey, InsertOutcome, JobRow, KeyedJob, NewJob, Store, StoreError};

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
    submit_one(store, queue, payload, max_attempts, request_id, None).await
}

/// [`submit`] with a callback URL (already checked) to write with the job.
async fn submit_one(
    store: &Store,
    queue: &Queue,
    payload: JobPayload,
    max_attempts: i32,
    request_id: Option<String>,
    callback_url: Option<String>,
) -> Result<Submitted, StoreError> {
    // The row names the task id before the push, saving a second write on
    // the common path; a failed push is recorded on the row instead.
    let new = NewJob::fresh(payload, max_attempts, request_id, callback_url);
    let task_id = new.queue_task_id.clone();
    let outcome = store.insert_job(new).await?;
    Ok(push_new(store, queue, outcome, &task_id).await)
}

/// Like [`submit`], with the row (and its callback, if any) written under
/// an idempotency key in the same transaction; pushes only a job this call
/// created. `Err` (inside) when the key was taken: what it answers.
pub async fn submit_keyed(
    store: &Store,
    queue: &Queue,
    payload: JobPayload,
    max_attempts: i32,
    request_id: Option<String>,
    callback_url: Option<String>,
    key: &IdempotencyKey<'_>,
) -> Result<Result<Submitted, KeyedJob>, StoreError> {
    let new = NewJob::fresh(payload, max_attempts, request_id, callback_url);
    let task_id = new.queue_task_id.clone();
    Ok(match store.insert_job_keyed(new, key).await? {
        Ok(outcome) => Ok(push_new(store, queue, outcome, &task_id).await),
        Err(found) => Err(found),
    })
}

/// Pushes the message of a job just created (not of an active duplicate).
async fn push_new(
    store: &Store,
    queue: &Queue,
    outcome: InsertOutcome,
    task_id: &str,
) -> Submitted {
    let (job, created) = match outcome {
        InsertOutcome::Created(j) => (j, true),
        InsertOutcome::Existing(j) => (j, false),
    };
    let mut queue_error = None;
    if created {
        let msg = JobMessage {
            job_id: job.id.clone(),
            kind: job.kind,
            request_id: job.request_id.clone(),
        };
        match queue.push_as(job.queue, &msg, None, task_id).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(job.id = %job.id, error = %e, "push failed; the reconciler will push it");
                let _ = store.mark_push_failed(&job.id, &e.to_string()).await;
                queue_error = Some(e.to_string());
            }
        }
    }
    Submitted {
        job,
        created,
        queue_error,
    }
}

/// Batches concurrent submissions: while one batch is being written, new
/// requests queue up and go in the next one, so under load many jobs share
/// one INSERT (one commit) and one queue push, and an idle system pays no
/// added latency. Deduplicated jobs (retrains) take the single path.
#[derive(Clone)]
pub struct Submitter {
    tx: tokio::sync::mpsc::Sender<Pending>,
    store: Store,
    queue: Queue,
}

struct Pending {
    payload: JobPayload,
    max_attempts: i32,
    request_id: Option<String>,
    callback_url: Option<String>,
    reply: tokio::sync::oneshot::Sender<Result<Submitted, StoreError>>,
}

const MAX_BATCH: usize = 256;
const WRITERS: usize = 2;

impl Submitter {
    pub fn start(store: Store, queue: Queue) -> Submitter {
        let (tx, rx) = tokio::sync::mpsc::channel::<Pending>(4096);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            let (rx, store, queue) = (rx.clone(), store.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(p) => batch.push(p),
                            None => return,
                        }
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(p) => batch.push(p),
                                Err(_) => break,
                            }
                        }
                    }
                    write_batch(&store, &queue, batch).await;
                }
            });
        }
        Submitter { tx, store, queue }
    }

    /// Submits a job; `callback_url` (already checked) is written with it,
    /// in its transaction.
    pub async fn submit(
        &self,
        payload: JobPayload,
        max_attempts: i32,
        request_id: Option<String>,
        callback_url: Option<String>,
    ) -> Result<Submitted, StoreError> {
        if payload.dedup_key().is_some() {
            return submit_one(
                &self.store,
                &self.queue,
                payload,
                max_attempts,
                request_id,
                callback_url,
            )
            .await;
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let pending = Pending {
            payload,
            max_attempts,
            request_id,
            callback_url,
            reply,
        };
        if let Err(e) = self.tx.send(pending).await {
            // The writers are gone (shutting down): write this one directly.
            let p = e.0;
            return submit_one(
                &self.store,
                &self.queue,
                p.payload,
                p.max_attempts,
                p.request_id,
                p.callback_url,
            )
            .await;
        }
        rx.await
            .map_err(|_| StoreError::Query("job writer stopped before answering".into()))?
    }

    /// A submission with an `Idempotency-Key`: written alone, with its key
    /// ([`submit_keyed`]).
    pub async fn submit_keyed(
        &self,
        payload: JobPayload,
        max_attempts: i32,
        request_id: Option<String>,
        callback_url: Option<String>,
        key: &IdempotencyKey<'_>,
    ) -> Result<Result<Submitted, KeyedJob>, StoreError> {
        submit_keyed(
            &self.store,
            &self.queue,
            payload,
            max_attempts,
            request_id,
            callback_url,
            key,
        )
        .await
    }
}

async fn write_batch(store: &Store, queue: &Queue, batch: Vec<Pending>) {
    let news: Vec<NewJob> = batch
        .iter()
        .map(|p| {
            NewJob::fresh(
                p.payload.clone(),
                p.max_attempts,
                p.request_id.clone(),
                p.callback_url.clone(),
            )
        })
        .collect();
    let rows = match store.insert_jobs(&news).await {
        Ok(rows) => rows,
        Err(e) => {
            let msg = e.to_string();
            let transient = e.is_transient();
            for p in batch {
                let err = if transient {
                    StoreError::Unreachable(msg.clone())
                } else {
                    StoreError::Query(msg.clone())
                };
                let _ = p.reply.send(Err(err));
            }
            return;
        }
    };
    // Rows are durable now; push per queue.
    let mut by_queue: std::collections::BTreeMap<
        crate::jobs::QueueName,
        Vec<(JobMessage, String)>,
    > = Default::default();
    for (row, new) in rows.iter().zip(&news) {
        by_queue.entry(row.queue).or_default().push((
            JobMessage {
                job_id: row.id.clone(),
                kind: row.kind,
                request_id: row.request_id.clone(),
            },
            new.queue_task_id.clone(),
        ));
    }
    let mut failed: std::collections::HashMap<String, String> = Default::default();
    for (q, items) in by_queue {
        if let Err(e) = queue.push_many(q, &items).await {
            let msg = e.to_string();
            tracing::warn!(error = %msg, jobs = items.len(), "push failed; the reconciler will push these jobs");
            let ids: Vec<String> = items.iter().map(|(m, _)| m.job_id.clone()).collect();
            let _ = store.mark_push_failed_many(&ids, &msg).await;
            for id in ids {
                failed.insert(id, msg.clone());
            }
        }
    }
    for (p, job) in batch.into_iter().zip(rows) {
        let queue_error = failed.get(&job.id).cloned();
        let _ = p.reply.send(Ok(Submitted {
            job,
            created: true,
            queue_error,
        }));
    }
}
