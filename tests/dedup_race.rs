//! A deduplicated job submitted while its active duplicate ends: the insert
//! loses to the duplicate, which finishes before it can be read. That
//! answered 500 ("could not be inserted and has no active duplicate"),
//! found by schemathesis on `POST /api/v1/monitoring/drift`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Mode, TestEnv};
use rpa_ml_shared::jobs::{DriftJob, JobKind, JobPayload};
use rpa_ml_shared::store::{Claim, Holder, JobOutcome, NewJob, Store};
use serde_json::json;

fn drift_job() -> NewJob {
    let id = ulid::Ulid::new().to_string();
    NewJob {
        queue_task_id: format!("task-{id}"),
        id,
        payload: JobPayload::Drift(DriftJob {
            reason: "test".into(),
        }),
        max_attempts: 3,
        request_id: None,
        callback_url: None,
    }
}

/// Claims and finishes every active drift job, over and over, until told to
/// stop.
async fn finish_drift_jobs(store: Store, stop: Arc<AtomicBool>) -> usize {
    let mut finished = 0;
    let result = json!({});
    while !stop.load(Ordering::Relaxed) {
        let active = store
            .active_jobs_of_kind(JobKind::Drift)
            .await
            .expect("active");
        for job in active {
            if let Ok(Claim::Claimed(row)) =
                store.claim_job(&job.id, "w", Duration::from_secs(60)).await
            {
                let done = JobOutcome::Succeeded {
                    result: &result,
                    predictions: &[],
                };
                if store
                    .set_outcome(
                        &job.id,
                        Holder {
                            worker: "w",
                            attempt: row.attempts,
                        },
                        done,
                    )
                    .await
                    .expect("outcome")
                {
                    finished += 1;
                }
            }
        }
    }
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_that_ends_during_the_insert_never_fails_the_submission() {
    let env = TestEnv::new(Mode::Scale).await;
    let store = Store::connect(&env.store_url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    let stop = Arc::new(AtomicBool::new(false));
    let finisher = tokio::spawn(finish_drift_jobs(store.clone(), stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut submitted = 0;
    let mut failure = None;
    while submitted < 1_500 && Instant::now() < deadline {
        if let Err(e) = store.insert_job(drift_job()).await {
            failure = Some(e);
            break;
        }
        submitted += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let finished = finisher.await.expect("finisher");
    assert!(
        failure.is_none(),
        "after {submitted} submissions: {failure:?}"
    );
    assert!(finished > 0, "the race was never set up");
    store.close().await;
}
