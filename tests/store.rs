//! The writes a worker makes to the ML store, run against both databases:
//! each job outcome, the guard that drops the outcome of a worker that no
//! longer holds its job, and the documents kept beside a model version.

mod common;

use chrono::{SubsecRound, Utc};
use common::{Mode, TestEnv};
use rpa_ml_shared::jobs::{JobPayload, JobState, PredictJob, ProjectSelection};
use rpa_ml_shared::ml::Target;
use rpa_ml_shared::store::{
    Claim, JobOutcome, JobRow, ModelDocument, NewJob, NewModel, PredictionRow, Store,
};
use serde_json::json;

const WORKER: &str = "w-holder";

async fn open(env: &TestEnv) -> Store {
    let store = Store::connect(&env.store_url, 2).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// A new predict job, claimed by `WORKER`.
async fn running_job(store: &Store) -> JobRow {
    let id = ulid::Ulid::new().to_string();
    let job = NewJob {
        id: id.clone(),
        queue_task_id: format!("task-{id}"),
        payload: JobPayload::Predict(PredictJob {
            targets: [Target::Risk].into_iter().collect(),
            projects: ProjectSelection::Ids(vec![1]),
        }),
        max_attempts: 3,
        request_id: None,
    };
    store.insert_jobs(&[job]).await.expect("insert");
    match store.claim_job(&id, WORKER).await.expect("claim") {
        Claim::Claimed(job) => *job,
        other => panic!("not claimed: {other:?}"),
    }
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
        .set_outcome(&job.id, "w-other", success)
        .await
        .expect("write");
    assert!(!kept, "{mode:?}: another worker's outcome must be dropped");
    let row = reread(store, &job.id).await;
    assert_eq!(row.state, JobState::Running, "{mode:?}");
    let stored = store.predictions_of_version(Target::Risk, 41).await;
    assert_eq!(stored.expect("predictions").len(), 0, "{mode:?}");

    assert!(
        store
            .set_outcome(&job.id, WORKER, success)
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
            .set_outcome(&job.id, WORKER, failed)
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
            .set_outcome(&job.id, WORKER, plain)
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
            .set_progress(&job.id, WORKER, "scoring", 0.4)
            .await
            .expect("progress");
        assert!(
            store
                .set_outcome(&job.id, WORKER, outcome)
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
            .set_outcome(&job.id, "w-other", retry)
            .await
            .expect("write")
    );
    assert!(
        store
            .set_outcome(&job.id, WORKER, retry)
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
        store.claim_job(&job.id, WORKER).await.expect("claim"),
        Claim::NotClaimable(Some(JobState::Queued))
    ));
    assert!(
        !store
            .set_outcome(&job.id, WORKER, retry)
            .await
            .expect("write")
    );
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
            .set_outcome(&job.id, "w-other", wait)
            .await
            .expect("write")
    );
    assert!(
        store
            .set_outcome(&job.id, WORKER, wait)
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

#[tokio::test]
async fn job_outcomes_and_model_documents_on_sqlite_and_postgres() {
    for mode in [Mode::Embedded, Mode::Scale] {
        let env = TestEnv::new(mode).await;
        let store = open(&env).await;
        success_is_stored_with_its_predictions_once(&store, mode).await;
        endings_keep_their_error_and_progress(&store, mode).await;
        a_retry_frees_the_row_until_it_is_due(&store, mode).await;
        a_deferral_gives_its_attempt_back(&store, mode).await;
        model_documents_are_kept_apart(&store, mode).await;
        store.close().await;
    }
}
