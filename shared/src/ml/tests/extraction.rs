//! The streaming extraction (rusqlite on SQLite, sqlx streams decoded in
//! place on PostgreSQL, the fast timestamp path) against the loading as it
//! was (`extract_features_reference`, `history::reference`): the same
//! feature rows to the bit, the same `skipped` counts and `unknown` ids, on
//! demo backends and on messy ones, SQLite and PostgreSQL. Also the
//! `extract_bench` figure (ignored; run by hand, see README).

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::backend::Scope;
use crate::demo::DemoData;
use crate::ml::features::{extract_features, extract_features_reference};
use crate::ml::history;

/// The backend tests/messy_backend.rs shares: `demo-data --projects 400
/// --seed 7 --as-of 2026-11-01`.
fn messy_backend_data() -> DemoData {
    generate(&DemoConfig {
        projects: 400,
        seed: 7,
        as_of: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        shift: None,
        long_projects: None,
    })
}

/// Rows no generator writes: every spelling and kind of damage the
/// readers must treat as before. Plain SQL both databases take.
const MESS: [&str; 10] = [
    "INSERT INTO projects (id, team_id, name, status, budget, start_date, planned_end_date, created_at, updated_at)
     VALUES (9001, NULL, 'mess 1', 'Paused ', NULL, 'soon', 'never', '2025-01-01', 'garbage')",
    "INSERT INTO projects (id, name, status, created_at, updated_at)
     VALUES (9002, 'mess 2', 'COMPLETED', '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z')",
    "INSERT INTO projects (id, team_id, name, status, complexity, process_count, budget, start_date, planned_end_date, actual_end_date, created_at, updated_at)
     VALUES (9003, 1, 'mess 3', ' Completed', 'high', '-4', '-100', '20250101', '2025-03-01', '2025-02-01', '2025-01-01', '2025-01-01')",
    "INSERT INTO projects (id, team_id, name, status, complexity, budget, start_date, planned_end_date, actual_end_date, created_at, updated_at)
     VALUES (9004, 1, 'mess 4', 'cancelled', '9', '0', '2025-02-01 13:00:00+05:30', '2025-01-01T00:00', '2025-02-30', '2025-01-01', '2025-01-01')",
    "INSERT INTO tasks (id, project_id, title, status, estimated_hours, created_at, started_at, completed_at)
     VALUES (990001, 9003, 't1', 'DONE ', NULL, '31/02/2025', 'later', NULL),
            (990002, 9003, 't2', 'done', '-5', '2025-01-05', NULL, NULL),
            (990003, 9003, 't3', 'weird', '1e308', '2025-01-05 10:00', '2025-01-06', '2025-01-04'),
            (990004, 9004, 't4', 'done', '3.5', '2025-01-05T10:00:00.123456789Z', '2025-01-06 08:00:00-08', '2025-01-06T23:59:60Z'),
            (990005, 9004, 't5', 'in_progress', 'n/a', '2025-01-05 10:00:00.1234567891', '2025-01-05t10:00:00z', '2025-01-07 24:00:00')",
    "INSERT INTO time_entries (id, task_id, hours, logged_at)
     VALUES (9900001, 990001, '3.0', 'yesterday'), (9900002, 990002, '-8.0', '2025-01-07T08:00:00Z'),
            (9900003, 990003, 'lots', '2025-01-07 08:00:00'), (9900004, 990004, ' 2.5 ', '2025-01-08 09:00:00+01'),
            (9900005, 990005, '1.25', '2025-01-08 09:00:00.5+01:00'), (9900006, 990004, '4', '2025-01-09')",
    "INSERT INTO expenses (id, project_id, category, amount, incurred_at)
     VALUES (9900001, 9003, 'other', '100.0', 'Q1'), (9900002, 9003, 'refund', '-50.0', '2025-01-08'),
            (9900003, 9004, 'x', '1e400', '2025-01-08'), (9900004, 9004, 'y', '12', '  '),
            (9900005, 9004, 'z', '7.5', '2025-01-08 00:00:00+14')",
    "INSERT INTO project_members (project_id, member_id, allocation) VALUES (9003, 1, '7.5'), (9004, 2, '-1')",
    "UPDATE tasks SET created_at = '2024-06-01T09:15:00+02:00', started_at = '2024-06-02 09:15:00.25'
     WHERE id < 990000 AND id IN (SELECT MIN(id) FROM tasks GROUP BY project_id)",
    "UPDATE projects SET status = UPPER(status), priority = ' ' || priority || ' ' WHERE id % 7 = 0",
];

/// On PostgreSQL the mess above needs text columns; the demo's are typed.
const PG_TEXT_COLUMNS: [&str; 17] = [
    "ALTER TABLE projects DROP CONSTRAINT IF EXISTS projects_team_id_fkey",
    "ALTER TABLE projects ALTER COLUMN updated_at TYPE TEXT",
    "ALTER TABLE projects ALTER COLUMN team_id TYPE TEXT",
    "ALTER TABLE projects ALTER COLUMN complexity TYPE TEXT",
    "ALTER TABLE projects ALTER COLUMN process_count TYPE TEXT",
    "ALTER TABLE projects ALTER COLUMN budget TYPE TEXT",
    "ALTER TABLE projects ALTER COLUMN start_date TYPE TEXT",
    "ALTER TABLE projects ALTER COLUMN planned_end_date TYPE TEXT",
    "ALTER TABLE projects ALTER COLUMN actual_end_date TYPE TEXT",
    "ALTER TABLE tasks ALTER COLUMN estimated_hours TYPE TEXT",
    "ALTER TABLE tasks ALTER COLUMN created_at TYPE TEXT",
    "ALTER TABLE tasks ALTER COLUMN started_at TYPE TEXT",
    "ALTER TABLE tasks ALTER COLUMN completed_at TYPE TEXT",
    "ALTER TABLE time_entries ALTER COLUMN hours TYPE TEXT",
    "ALTER TABLE time_entries ALTER COLUMN logged_at TYPE TEXT",
    "ALTER TABLE expenses ALTER COLUMN amount TYPE TEXT, ALTER COLUMN incurred_at TYPE TEXT",
    "ALTER TABLE project_members ALTER COLUMN allocation TYPE TEXT",
];

fn assert_same(new: &Extraction, old: &Extraction) {
    assert_eq!(new.unknown, old.unknown);
    assert_eq!(new.skipped, old.skipped);
    assert_eq!(new.rows.len(), old.rows.len());
    for (x, y) in new.rows.iter().zip(&old.rows) {
        let bits = |r: &FeatureRow| r.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y), "project {}", x.project_id);
        assert_eq!(x, y);
    }
}

/// Every project of the backend plus unknown and repeated ids, at cut-offs
/// before, inside and after the data.
async fn compare(db: &BackendDb, label: &str) {
    let mut ids: Vec<i64> = (1..=400).rev().collect();
    ids.extend([9001, 9002, 9003, 9004, 424_242, 7, 9003]);
    let cutoffs: [DateTime<Utc>; 4] = [
        Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 1, 6, 12, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
    ];
    let mut rows = 0;
    for cutoff in cutoffs {
        let new = extract_features(db, &ids, cutoff).await.unwrap();
        let old = extract_features_reference(db, &ids, cutoff).await.unwrap();
        assert_same(&new, &old);
        assert_eq!(new.unknown, vec![424_242], "{label}");
        rows += new.rows.len();
    }
    // The mess is really in there: every kind of count shows up.
    let last = extract_features(db, &ids, cutoffs[3]).await.unwrap();
    for k in [
        "unparseable_timestamp",
        "task_without_created_at",
        "task_done_without_completed_at",
        "task_completed_before_started",
        "time_entry_unusable",
        "expense_without_amount",
        "expense_without_timestamp",
        "missing_start_date",
    ] {
        assert!(
            last.skipped.contains_key(k),
            "{label}: no {k} in {:?}",
            last.skipped
        );
    }
    assert!(rows > 1500, "{label}: {rows}");

    // Training's load of everything, and the empty request.
    let new = history::load(db, Scope::All).await.unwrap();
    let old = history::reference::load(db, Scope::All).await.unwrap();
    assert_eq!(new.skips, old.skips, "{label}");
    assert_eq!(
        format!("{:?}", new.projects),
        format!("{:?}", old.projects),
        "{label}"
    );
    let none = extract_features(db, &[], cutoffs[0]).await.unwrap();
    assert!(none.rows.is_empty() && none.unknown.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_extraction_matches_the_old_loading_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messy.db");
    write_sqlite(&path, &messy_backend_data()).await.unwrap();
    let url = path.to_str().unwrap();

    let db = BackendDb::connect(url, 2).await.unwrap();
    // Untouched demo first: the spellings the generator writes.
    let ids: Vec<i64> = (1..=400).collect();
    let cutoff = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    assert_same(
        &extract_features(&db, &ids, cutoff).await.unwrap(),
        &extract_features_reference(&db, &ids, cutoff).await.unwrap(),
    );

    let rw = sqlx::SqlitePool::connect(&format!("sqlite://{url}"))
        .await
        .unwrap();
    for sql in MESS {
        sqlx::query(sql).execute(&rw).await.unwrap();
    }
    // SQLite keeps what it is given: a date as a number, a blob of text.
    sqlx::query("UPDATE projects SET start_date = 20240101, budget = 'lots' WHERE id = 11")
        .execute(&rw)
        .await
        .unwrap();
    rw.close().await;
    compare(&db, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_extraction_matches_the_old_loading_on_postgres() {
    let pg = ScratchPg::create().await;
    crate::demo::write_postgres(&pg.url, &messy_backend_data())
        .await
        .unwrap();
    let db = BackendDb::connect(&pg.url, 2).await.unwrap();
    let ids: Vec<i64> = (1..=400).collect();
    let cutoff = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    // Typed columns first: the binary numbers and the session's own
    // timestamp rendering.
    assert_same(
        &extract_features(&db, &ids, cutoff).await.unwrap(),
        &extract_features_reference(&db, &ids, cutoff).await.unwrap(),
    );

    let rw = sqlx::PgPool::connect(&pg.url).await.unwrap();
    for sql in PG_TEXT_COLUMNS.iter().chain(&MESS) {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&rw)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    rw.close().await;
    compare(&db, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_a_query_error_and_a_vanished_server_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.db");
    write_sqlite(&path, &messy_backend_data()).await.unwrap();
    let rw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE expenses")
        .execute(&rw)
        .await
        .unwrap();
    rw.close().await;
    let db = BackendDb::connect(path.to_str().unwrap(), 1).await.unwrap();
    let now = Utc::now();
    let err = extract_features(&db, &[1, 2], now).await.unwrap_err();
    let old = extract_features_reference(&db, &[1, 2], now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::backend::BackendError::Query(_)),
        "{err}"
    );
    assert!(
        matches!(old, crate::backend::BackendError::Query(_)),
        "{old}"
    );
    assert!(err.to_string().contains("expenses"), "{err}");

    let pg = ScratchPg::create().await;
    crate::demo::write_postgres(&pg.url, &messy_backend_data())
        .await
        .unwrap();
    let db = BackendDb::connect(&pg.url, 1).await.unwrap();
    let BackendDb::Postgres(pool) = &db else {
        panic!("expected PostgreSQL")
    };
    pool.close().await;
    let err = extract_features(&db, &[1, 2], now).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// CPU time of this whole process (every thread, sqlx's SQLite workers and
/// the blocking pool included), from /proc: user + system clock ticks.
fn process_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on every Linux this runs on.
    ticks * 10.0
}

/// `cargo test --release -p rpa-ml-shared --lib extract_bench -- --ignored --nocapture`:
/// worker CPU per extraction of 1,000 distinct projects (open first, then
/// closed) from a 5,000-project demo backend, old loading and new, SQLite
/// and PostgreSQL, in one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn extract_bench() {
    let data = generate(&DemoConfig {
        projects: 5000,
        seed: 42,
        as_of: as_of(),
        shift: None,
        long_projects: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    write_sqlite(&path, &data).await.unwrap();
    let pg = ScratchPg::create().await;
    crate::demo::write_postgres(&pg.url, &data).await.unwrap();
    let lite = BackendDb::connect(path.to_str().unwrap(), 4).await.unwrap();
    let post = BackendDb::connect(&pg.url, 4).await.unwrap();

    let open = lite.open_project_ids().await.unwrap();
    let mut ids = open.clone();
    ids.extend((1..=5000).filter(|id| !open.contains(id)));
    ids.truncate(1000);
    let now = Utc::now();
    let iterations = std::env::var("EXTRACT_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    println!(
        "extract_bench: {} distinct projects ({} open), {iterations} extractions each",
        ids.len(),
        open.len().min(1000)
    );
    for (name, db) in [("sqlite", &lite), ("postgres", &post)] {
        let want = extract_features_reference(db, &ids, now).await.unwrap();
        for reference in [true, false] {
            let t0 = process_cpu_ms();
            let wall = std::time::Instant::now();
            for _ in 0..iterations {
                let got = if reference {
                    extract_features_reference(db, &ids, now).await.unwrap()
                } else {
                    extract_features(db, &ids, now).await.unwrap()
                };
                assert_eq!(got.rows.len(), want.rows.len());
            }
            let cpu = (process_cpu_ms() - t0) / f64::from(iterations);
            println!(
                "extract_bench {name:<8} {:<4} {cpu:6.1} ms CPU per 1,000-project extraction \
                 ({:.1} ms wall)",
                if reference { "old" } else { "new" },
                wall.elapsed().as_secs_f64() * 1e3 / f64::from(iterations)
            );
        }
        assert_same(&extract_features(db, &ids, now).await.unwrap(), &want);
    }
}
