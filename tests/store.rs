//! The writes a worker makes to the ML store, run against both databases:
//! each job outcome, the guard that drops the outcome of a worker (or an
//! attempt) that no longer holds its job, the lease the reconciler judges
//! by, and the documents kept beside a model version.

mod common;

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use common::{Mode, TestEnv};
use rpa_ml_shared::jobs::JobState;
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{
    Checkpoint, Claim, Holder, JobOutcome, JobRow, ModelDocument, NewModel, PredictionRow, Store,
    WorkerRow,
};
use serde_json::json;

const WORKER: &str = "w-holder";
/// A lease no test outlives.
const LEASE: Duration = Duration::from_secs(600);
/// A lease that has run out by the time the next statement runs.
const SPENT: Duration = Duration::from_millis(1);

/// `worker` as the holder of `job`'s current attempt.
fn by<'a>(worker: &'a str, job: &JobRow) -> Holder<'a> {
    Holder {
        worker,
        attempt: job.attempts,
    }
}

async fn open(env: &TestEnv) -> Store {
    let store = Store::connect(&env.store_url, 2).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// A new queued predict job's id.
async fn queued_job(store: &Store) -> String {
    let job = common::predict_job(None);
    let id = job.id.clone();
    store.insert_jobs(&[job]).await.expect("insert");
    id
}

/// `id` claimed by `worker` with a lease of `lease`.
async fn claim(store: &Store, id: &str, worker: &str, lease: Duration) -> JobRow {
    match store.claim_job(id, worker, lease).await.expect("claim") {
        Claim::Claimed(job) => *job,
        other => panic!("not claimed: {other:?}"),
    }
}

/// A new predict job, claimed by `WORKER`.
async fn running_job(store: &Store) -> JobRow {
    let id = queued_job(store).await;
    claim(store, &id, WORKER, LEASE).await
}

async fn reread(store: &Store, id: &str) -> JobRow {
    store.get_job(id).await.expect("get").expect("row")
}

fn predictions(job_id: &str, n: i64, version: i32) -> Vec<PredictionRow> {
    (1..=n)
        .map(|project_id| PredictionRow {
            job_id: job_id.to_string(),
            project_id,
            target: Target::Risk,
            model_version: Some(version),
            value: Some(project_id as f64 / 10.0),
            class: Some("low".into()),
            output: Some(json!({"p": 0.5})),
            error: None,
            as_of: None,
        })
        .collect()
}

async fn success_is_stored_with_its_predictions_once(store: &Store, mode: Mode) {
    let job = running_job(store).await;
    // More rows than one INSERT takes, so the chunks share the transaction.
    let rows = predictions(&job.id, 1_001, 41);
    let result = json!({"predicted": 1_001});
    let success = JobOutcome::Succeeded {
        result: &result,
        predictions: &rows,
    };

    let kept = store
        .set_outcome(&job.id, by("w-other", &job), success)
        .await
        .expect("write");
    assert!(!kept, "{mode:?}: another worker's outcome must be dropped");
    let row = reread(store, &job.id).await;
    assert_eq!(row.state, JobState::Running, "{mode:?}");
    let stored = store.predictions_of_version(Target::Risk, 41).await;
    assert_eq!(stored.expect("predictions").len(), 0, "{mode:?}");

    assert!(
        store
            .set_outcome(&job.id, by(WORKER, &job), success)
            .await
            .expect("write")
    );
    let row = reread(store, &job.id).await;
    assert_eq!(row.state, JobState::Succeeded, "{mode:?}");
    assert_eq!(row.stage.as_deref(), Some("succeeded"));
    assert_eq!(row.progress, 1.0);
    assert_eq!(row.result, Some(result.clone()));
    assert_eq!(row.error, None);
    assert_eq!(row.worker.as_deref(), Some(WORKER));
    assert!(row.finished_at.is_some());
    let stored = store.predictions_of_version(Target::Risk, 41).await;
    assert_eq!(stored.expect("predictions").len(), 1_001, "{mode:?}");

    // An outcome for a job that already ended changes nothing.
    let failed = JobOutcome::Failed { error: "late" };
    assert!(
        !store
            .set_outcome(&job.id, by(WORKER, &job), failed)
            .await
            .expect("write")
    );
    assert_eq!(reread(store, &job.id).await.state, JobState::Succeeded);

    // A job with no per-project answers (a retrain) succeeds the same way.
    let job = running_job(store).await;
    let plain = JobOutcome::Succeeded {
        result: &result,
        predictions: &[],
    };
    assert!(
        store
            .set_outcome(&job.id, by(WORKER, &job), plain)
            .await
            .expect("write")
    );
    assert_eq!(reread(store, &job.id).await.state, JobState::Succeeded);
}

async fn endings_keep_their_error_and_progress(store: &Store, mode: Mode) {
    for (outcome, state) in [
        (JobOutcome::Failed { error: "no model" }, JobState::Failed),
        (JobOutcome::Dead { error: "no model" }, JobState::Dead),
        (
            JobOutcome::Cancelled { error: "no model" },
            JobState::Cancelled,
        ),
    ] {
        let job = running_job(store).await;
        store
            .set_progress(&job.id, by(WORKER, &job), "scoring", 0.4)
            .await
            .expect("progress");
        assert!(
            store
                .set_outcome(&job.id, by(WORKER, &job), outcome)
                .await
                .expect("write")
        );
        let row = reread(store, &job.id).await;
        assert_eq!(row.state, state, "{mode:?}");
        assert_eq!(row.stage.as_deref(), Some(state.as_str()), "{mode:?}");
        assert_eq!(row.error.as_deref(), Some("no model"));
        assert_eq!(
            row.progress, 0.4,
            "{mode:?} {state:?}: progress reached is kept"
        );
        assert_eq!(row.result, None);
        assert_eq!(row.worker.as_deref(), Some(WORKER));
        assert!(row.finished_at.is_some());
    }
}

async fn a_retry_frees_the_row_until_it_is_due(store: &Store, mode: Mode) {
    let job = running_job(store).await;
    let run_at = Utc::now().trunc_subsecs(0) + chrono::Duration::hours(1);
    let retry = JobOutcome::Retry {
        error: "store away",
        run_at,
    };
    assert!(
        !store
            .set_outcome(&job.id, by("w-other", &job), retry)
            .await
            .expect("write")
    );
    assert!(
        store
            .set_outcome(&job.id, by(WORKER, &job), retry)
            .await
            .expect("write")
    );
    let row = reread(store, &job.id).await;
    assert_eq!(row.state, JobState::Queued, "{mode:?}");
    assert_eq!(row.stage.as_deref(), Some("retry scheduled"));
    assert_eq!(row.error.as_deref(), Some("store away"));
    assert_eq!(row.run_at, run_at, "{mode:?}");
    assert_eq!(row.worker, None);
    assert_eq!(row.finished_at, None);
    // Not due yet, and no longer running: nobody can claim or end it.
    assert!(matches!(
        store
            .claim_job(&job.id, WORKER, LEASE)
            .await
            .expect("claim"),
        Claim::NotClaimable(Some(JobState::Queued))
    ));
    assert!(
        !store
            .set_outcome(&job.id, by(WORKER, &job), retry)
            .await
            .expect("write")
    );
}

/// Attempt 1's lease runs out, the reconciler takes the job back and the
/// same worker process claims it again (attempt 2): whatever attempt 1
/// still writes is refused and changes no row; attempt 2's outcome stands.
async fn a_late_attempt_writes_nothing(store: &Store, mode: Mode) {
    let id = queued_job(store).await;
    let first = claim(store, &id, WORKER, SPENT).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = store.recover_orphans(Utc::now()).await.expect("recover");
    assert!(
        taken
            .iter()
            .any(|r| r.id == id && r.state == JobState::Queued),
        "{mode:?}: {taken:?}"
    );
    let second = claim(store, &id, WORKER, LEASE).await;
    assert_eq!(second.attempts, first.attempts + 1, "{mode:?}");

    let rows = predictions(&id, 3, 42);
    let result = json!({"predicted": 3});
    let success = JobOutcome::Succeeded {
        result: &result,
        predictions: &rows,
    };
    let late = by(WORKER, &first);
    assert!(
        !store.set_outcome(&id, late, success).await.expect("write"),
        "{mode:?}: the outcome of a taken-back attempt is refused"
    );
    assert!(
        !store
            .set_outcome(&id, late, JobOutcome::Failed { error: "late" })
            .await
            .expect("write")
    );
    assert!(!store.renew_lease(&id, late, LEASE).await.expect("renew"));
    let at = |h| store.checkpoint(&id, h);
    assert_eq!(at(late).await.expect("checkpoint"), Checkpoint::NotHeld);
    let now_held = by(WORKER, &second);
    assert_eq!(
        at(now_held).await.expect("checkpoint"),
        Checkpoint::Continue
    );
    store
        .set_progress(&id, late, "late stage", 0.9)
        .await
        .expect("progress");
    let row = reread(store, &id).await;
    assert_eq!(row.state, JobState::Running, "{mode:?}");
    assert_eq!(row.attempts, second.attempts);
    assert_eq!(row.progress, 0.0, "{mode:?}: no late progress");
    assert_ne!(row.stage.as_deref(), Some("late stage"));
    assert_eq!(row.error, None);
    let stored = store.predictions_of_version(Target::Risk, 42).await;
    assert_eq!(stored.expect("predictions").len(), 0, "{mode:?}");

    assert!(
        store
            .set_outcome(&id, by(WORKER, &second), success)
            .await
            .expect("write")
    );
    assert_eq!(reread(store, &id).await.state, JobState::Succeeded);
    let stored = store.predictions_of_version(Target::Risk, 42).await;
    assert_eq!(stored.expect("predictions").len(), 3, "{mode:?}");
}

/// The lease alone decides what the reconciler takes back: not whether the
/// worker heart-beats in the roster.
async fn only_expired_leases_are_taken_back(store: &Store, mode: Mode) {
    let now = Utc::now();
    let alive = WorkerRow {
        name: WORKER.into(),
        host: "h".into(),
        pid: 1,
        queues: "predict".into(),
        concurrency: 1,
        version: "t".into(),
        started_at: now,
        last_seen: now,
        stopped_at: None,
    };
    store.heartbeat_worker(&alive).await.expect("heartbeat");
    // The worker is alive, but it stopped confirming this job.
    let expired = claim(store, &queued_job(store).await, WORKER, SPENT).await;
    // Live leases: one under the live worker, one under a worker the roster
    // has never seen (as after a store outage that silenced its heartbeat).
    let live = claim(store, &queued_job(store).await, WORKER, LEASE).await;
    let silent = claim(store, &queued_job(store).await, "w-silent", LEASE).await;
    // A lease that ran out but was renewed before any reconciler acted.
    let renewed = claim(store, &queued_job(store).await, WORKER, SPENT).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        store
            .renew_lease(&renewed.id, by(WORKER, &renewed), LEASE)
            .await
            .expect("renew")
    );

    // Every worker's heartbeat counts as too old here.
    let dead_before = Utc::now() + chrono::Duration::hours(1);
    let taken = store.recover_orphans(dead_before).await.expect("recover");
    let ids: Vec<&str> = taken.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [expired.id.as_str()], "{mode:?}");
    let row = reread(store, &expired.id).await;
    assert_eq!(row.state, JobState::Queued, "{mode:?}");
    assert_eq!(row.worker, None);
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.contains("attempt 1 of 3")),
        "{mode:?}: {:?}",
        row.error
    );
    for job in [&live, &silent, &renewed] {
        let row = reread(store, &job.id).await;
        assert_eq!(row.state, JobState::Running, "{mode:?}: {}", job.id);
        assert_eq!(row.attempts, 1);
    }
    // The holder of a live lease still ends its job.
    assert!(
        store
            .set_outcome(
                &silent.id,
                by("w-silent", &silent),
                JobOutcome::Failed { error: "x" }
            )
            .await
            .expect("write")
    );
    for job in [&live, &renewed] {
        let failed = JobOutcome::Failed { error: "x" };
        assert!(
            store
                .set_outcome(&job.id, by(WORKER, job), failed)
                .await
                .expect("write")
        );
    }
}

async fn a_deferral_gives_its_attempt_back(store: &Store, mode: Mode) {
    let job = running_job(store).await;
    assert_eq!(job.attempts, 1);
    let run_at = Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(2);
    let wait = JobOutcome::Deferred {
        stage: "waiting for retrain X",
        run_at,
    };
    assert!(
        !store
            .set_outcome(&job.id, by("w-other", &job), wait)
            .await
            .expect("write")
    );
    assert!(
        store
            .set_outcome(&job.id, by(WORKER, &job), wait)
            .await
            .expect("write")
    );
    let row = reread(store, &job.id).await;
    assert_eq!(row.state, JobState::Queued, "{mode:?}");
    assert_eq!(row.attempts, 0, "{mode:?}");
    assert_eq!(row.stage.as_deref(), Some("waiting for retrain X"));
    assert_eq!(row.error, None);
    assert_eq!(row.worker, None);
    assert_eq!(row.run_at, run_at, "{mode:?}");
}

async fn model_documents_are_kept_apart(store: &Store, mode: Mode) {
    let model = store
        .insert_model(NewModel {
            target: Target::Risk,
            learner: "booster".into(),
            feature_set_version: "v1".into(),
            data_fingerprint: "f".into(),
            code_version: "c".into(),
            metrics: json!({}),
            artifact_path: "a".into(),
            artifact_sha256: "s".into(),
            job_id: None,
        })
        .await
        .expect("model");
    let (target, version) = (model.target, model.version);
    for doc in [ModelDocument::Mlflow, ModelDocument::DriftReference] {
        let got = store.model_document(target, version, doc).await;
        assert_eq!(got.expect("read"), None, "{mode:?} {doc:?}");
    }
    let mlflow = json!({"run_id": "r1"});
    let reference = json!({"features": [1, 2]});
    store
        .set_model_document(target, version, ModelDocument::Mlflow, &mlflow)
        .await
        .expect("mlflow");
    let got = store.model_document(target, version, ModelDocument::DriftReference);
    assert_eq!(got.await.expect("read"), None, "{mode:?}");
    store
        .set_model_document(target, version, ModelDocument::DriftReference, &reference)
        .await
        .expect("reference");
    let got = store.model_document(target, version, ModelDocument::Mlflow);
    assert_eq!(got.await.expect("read"), Some(mlflow), "{mode:?}");
    let got = store.model_document(target, version, ModelDocument::DriftReference);
    assert_eq!(got.await.expect("read"), Some(reference), "{mode:?}");
    let got = store.model_document(target, version + 1, ModelDocument::Mlflow);
    assert_eq!(got.await.expect("read"), None, "{mode:?}: unknown version");
}

/// Succeeds a new job with one answer for project 7 (risk) made as of `at`
/// (an error instead when `error`).
async fn answer_as_of(
    store: &Store,
    at: chrono::DateTime<Utc>,
    version: i32,
    error: bool,
) -> String {
    let job = running_job(store).await;
    let rows = [PredictionRow {
        job_id: job.id.clone(),
        project_id: 7,
        target: Target::Risk,
        model_version: Some(version),
        value: None,
        class: (!error).then(|| "high".into()),
        output: Some(json!({"class": "high", "contributions": []})),
        error: error.then(|| "no usable data".into()),
        as_of: Some(at),
    }];
    let result = json!({});
    let ok = JobOutcome::Succeeded {
        result: &result,
        predictions: &rows,
    };
    assert!(
        store
            .set_outcome(&job.id, by(WORKER, &job), ok)
            .await
            .expect("outcome")
    );
    job.id
}

async fn the_latest_forecast_is_the_newest_answer(store: &Store, mode: Mode) {
    let now = Utc::now().trunc_subsecs(3);
    let first = answer_as_of(store, now, 3, false).await;
    let kept = |v: &Vec<rpa_ml_shared::store::LatestPrediction>| {
        v.iter()
            .map(|p| (p.job_id.clone(), p.model_version, p.as_of))
            .collect::<Vec<_>>()
    };
    let got = store.latest_for_project(7).await.expect("read");
    assert_eq!(kept(&got), vec![(first.clone(), 3, now)], "{mode:?}");
    assert_eq!(got[0].class.as_deref(), Some("high"), "{mode:?}");
    // A job that started earlier but ended later does not replace it, nor
    // does an error.
    answer_as_of(store, now - chrono::Duration::seconds(5), 2, false).await;
    answer_as_of(store, now + chrono::Duration::seconds(5), 4, true).await;
    let got = store.latest_for_project(7).await.expect("read");
    assert_eq!(kept(&got), vec![(first, 3, now)], "{mode:?}");
    // A newer answer does.
    let later = now + chrono::Duration::seconds(10);
    let newer = answer_as_of(store, later, 4, false).await;
    let page = store
        .latest_for_projects(Target::Risk, &[7, 8])
        .await
        .expect("read");
    assert_eq!(page.len(), 1, "{mode:?}");
    assert_eq!(
        (
            page[&7].job_id.clone(),
            page[&7].model_version,
            page[&7].as_of
        ),
        (newer, 4, later),
        "{mode:?}"
    );
    let summary = store.forecast_summary().await.expect("summary");
    assert_eq!(summary[&Target::Risk].count, 1, "{mode:?}");
}

#[tokio::test]
async fn job_outcomes_and_model_documents_on_sqlite_and_postgres() {
    for mode in [Mode::Embedded, Mode::Scale] {
        let env = TestEnv::new(mode).await;
        let store = open(&env).await;
        success_is_stored_with_its_predictions_once(&store, mode).await;
        endings_keep_their_error_and_progress(&store, mode).await;
        a_retry_frees_the_row_until_it_is_due(&store, mode).await;
        a_late_attempt_writes_nothing(&store, mode).await;
        only_expired_leases_are_taken_back(&store, mode).await;
        a_deferral_gives_its_attempt_back(&store, mode).await;
        model_documents_are_kept_apart(&store, mode).await;
        the_latest_forecast_is_the_newest_answer(&store, mode).await;
        store.close().await;
    }
}
