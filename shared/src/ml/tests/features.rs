//! Feature extraction: nothing dated after the cut-off leaks in, messy rows
//! are counted rather than fatal, and SQLite and PostgreSQL backends give
//! the same features.

use chrono::{TimeZone, Utc};

use super::*;

async fn open_rw(path: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

fn assert_same_rows(a: &Extraction, b: &Extraction) {
    assert_eq!(a.rows.len(), b.rows.len());
    assert_eq!(a.unknown, b.unknown);
    for (x, y) in a.rows.iter().zip(&b.rows) {
        assert_eq!(x.project_id, y.project_id);
        for (i, name) in feature_names().iter().enumerate() {
            assert_eq!(
                x.values[i].to_bits(),
                y.values[i].to_bits(),
                "project {} feature {name}: {} vs {}",
                x.project_id,
                x.values[i],
                y.values[i]
            );
        }
        assert_eq!(x, y);
    }
}

#[tokio::test]
async fn features_ignore_everything_dated_after_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let path = demo_sqlite(dir.path(), 400, 9).await;
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();

    // Mid-afternoon, so same-day events on both sides of the cut-off exist.
    let cutoff = Utc.with_ymd_and_hms(2025, 6, 10, 15, 0, 0).unwrap();
    let later = "2025-06-10T15:00:00Z"; // exactly at the cut-off: not "strictly earlier"
    let much_later = "2025-09-01 10:00:00";

    // Projects running at the cut-off, with tasks still open at the cut-off.
    let pool = open_rw(&copy).await;
    let running: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT p.id, COALESCE(p.team_id, 0) FROM projects p
         WHERE p.start_date < '2025-06-10' AND (p.actual_end_date IS NULL OR p.actual_end_date > '2025-06-10')
         ORDER BY p.id LIMIT 25",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(running.len() >= 10, "{running:?}");
    let ids: Vec<i64> = running.iter().map(|r| r.0).collect();

    let db = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();
    let before = extract_features(&db, &ids, cutoff).await.unwrap();

    for &(id, team) in &running {
        let (task_id,): (i64,) = sqlx::query_as(
            "INSERT INTO tasks (project_id, title, status, estimated_hours, created_at, started_at, completed_at)
             VALUES (?, 'later task', 'done', 12.0, ?, ?, ?) RETURNING id",
        )
        .bind(id)
        .bind(later)
        .bind(much_later)
        .bind(much_later)
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO time_entries (task_id, hours, logged_at) VALUES (?, 7.5, ?), (?, -2.0, ?)",
        )
        .bind(task_id)
        .bind(later)
        .bind(task_id)
        .bind(much_later)
        .execute(&pool)
        .await
        .unwrap();
        // Hours logged later on a task that existed before the cut-off.
        sqlx::query(
            "INSERT INTO time_entries (task_id, hours, logged_at)
             SELECT id, 5.0, ? FROM tasks WHERE project_id = ? AND created_at < '2025-06-10' LIMIT 1",
        )
        .bind(much_later)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO expenses (project_id, category, amount, incurred_at) VALUES (?, 'license', 999.0, ?)")
            .bind(id)
            .bind(later)
            .execute(&pool)
            .await
            .unwrap();
        // Tasks open at the cut-off complete later.
        sqlx::query(
            "UPDATE tasks SET status = 'done', started_at = COALESCE(started_at, ?), completed_at = ?
             WHERE project_id = ? AND completed_at IS NULL AND status <> 'done'",
        )
        .bind(much_later)
        .bind(much_later)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        // The project itself, and a teammate's project, close later.
        sqlx::query("UPDATE projects SET status = 'completed', actual_end_date = '2025-10-01', updated_at = ? WHERE id = ?")
            .bind(much_later)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE projects SET status = 'cancelled', actual_end_date = '2025-07-01'
             WHERE id = (SELECT id FROM projects WHERE team_id = ? AND id <> ? AND actual_end_date IS NULL LIMIT 1)",
        )
        .bind(team)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let db_copy = BackendDb::connect(copy.to_str().unwrap(), 2).await.unwrap();
    let after = extract_features(&db_copy, &ids, cutoff).await.unwrap();
    assert_same_rows(&before, &after);

    // The inserted rows do count once the cut-off passes them.
    let next_year = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let a = extract_features(&db, &ids, next_year).await.unwrap();
    let b = extract_features(&db_copy, &ids, next_year).await.unwrap();
    assert_ne!(a.rows, b.rows);
}

#[tokio::test]
async fn messy_rows_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = demo_sqlite(dir.path(), 200, 4).await;
    let pool = open_rw(&path).await;
    let mess = [
        // NULL budget, unknown status, unparseable start, no tasks.
        "INSERT INTO projects (id, team_id, name, status, budget, start_date, planned_end_date, created_at, updated_at)
         VALUES (9001, NULL, 'mess 1', 'Paused ', NULL, 'soon', 'never', '2025-01-01', 'garbage')",
        // Everything NULL that may be; a completed project without dates.
        "INSERT INTO projects (id, name, status, created_at, updated_at)
         VALUES (9002, 'mess 2', 'COMPLETED', '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z')",
        // Numbers stored as text, dates stored as numbers, a negative budget.
        "INSERT INTO projects (id, team_id, name, status, complexity, process_count, budget, start_date, planned_end_date, actual_end_date, created_at, updated_at)
         VALUES (9003, 1, 'mess 3', 'completed', 'high', -4, -100, 20250101, '2025-03-01', '2025-02-01', '2025-01-01', '2025-01-01')",
        "INSERT INTO projects (id, team_id, name, status, complexity, budget, start_date, planned_end_date, actual_end_date, created_at, updated_at)
         VALUES (9004, 1, 'mess 4', 'cancelled', 9, 0, '2025-02-01', '2025-01-01', '2025-02-01', '2025-01-01', '2025-01-01')",
        "INSERT INTO tasks (project_id, title, status, estimated_hours, created_at, started_at, completed_at)
         VALUES (9003, 't1', 'done', NULL, '31/02/2025', 'later', NULL),
                (9003, 't2', 'done', -5, '2025-01-05', NULL, NULL),
                (9003, 't3', 'weird', 1e308, '2025-01-05 10:00', '2025-01-06', '2025-01-04')",
        "INSERT INTO time_entries (task_id, hours, logged_at)
         SELECT id, 3.0, 'yesterday' FROM tasks WHERE project_id = 9003",
        "INSERT INTO time_entries (task_id, hours, logged_at)
         SELECT id, -8.0, '2025-01-07T08:00:00Z' FROM tasks WHERE project_id = 9003",
        "INSERT INTO expenses (project_id, category, amount, incurred_at)
         VALUES (9003, 'other', 100.0, 'Q1'), (9003, 'refund', -50.0, '2025-01-08')",
        "INSERT INTO project_members (project_id, member_id, allocation) VALUES (9003, 1, 7.5)",
    ];
    for sql in mess {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let db = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();
    let ids = [9001, 9002, 9003, 9004, 424242, 1];
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let ex = extract_features(&db, &ids, now).await.unwrap();
    assert_eq!(ex.unknown, vec![424242]);
    assert_eq!(ex.rows.len(), 5);
    for r in &ex.rows {
        assert_eq!(r.values.len(), feature_names().len());
        assert!(r.values.iter().all(|v| v.is_finite()), "{r:?}");
    }
    let count = |k: &str| ex.skipped.get(k).copied().unwrap_or(0);
    assert!(count("unparseable_timestamp") >= 6, "{:?}", ex.skipped);
    assert_eq!(count("missing_start_date"), 3, "{:?}", ex.skipped);
    assert_eq!(count("task_without_created_at"), 1, "{:?}", ex.skipped);
    assert!(count("time_entry_unusable") >= 3, "{:?}", ex.skipped);
    assert_eq!(count("expense_without_timestamp"), 1, "{:?}", ex.skipped);
    assert_eq!(
        count("task_done_without_completed_at"),
        1,
        "{:?}",
        ex.skipped
    );
    assert_eq!(
        count("task_completed_before_started"),
        1,
        "{:?}",
        ex.skipped
    );
    assert!(db.open_project_ids().await.unwrap().contains(&9001));
    assert!(!db.open_project_ids().await.unwrap().contains(&9002));

    let set = build_training_set(&db).await.unwrap();
    let count = |k: &str| set.skipped.get(k).copied().unwrap_or(0);
    assert!(count("closed_without_start_date") >= 2, "{:?}", set.skipped);
    assert!(
        count("closed_without_actual_end_date") >= 1,
        "{:?}",
        set.skipped
    );
    assert!(count("closed_zero_duration") >= 1, "{:?}", set.skipped);
    assert!(set.projects.iter().all(|p| p.id < 9000));
}

#[tokio::test]
async fn postgres_and_sqlite_backends_give_the_same_features() {
    let data = generate(&DemoConfig {
        projects: 250,
        seed: 21,
        as_of: as_of(),
        shift: None,
        long_projects: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.db");
    write_sqlite(&path, &data).await.unwrap();
    let pg = ScratchPg::create().await;
    crate::demo::write_postgres(&pg.url, &data).await.unwrap();
    let again = crate::demo::write_postgres(&pg.url, &data)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already exist"), "{again}");

    let lite = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();
    let post = BackendDb::connect(&pg.url, 2).await.unwrap();
    post.ping().await.unwrap();
    let BackendDb::Postgres(pool) = &post else {
        panic!("expected PostgreSQL")
    };
    let err = sqlx::query("DELETE FROM expenses")
        .execute(pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");

    assert_eq!(
        lite.open_project_ids().await.unwrap(),
        post.open_project_ids().await.unwrap()
    );
    let ids: Vec<i64> = (1..=40).chain([99_999]).collect();
    assert_eq!(
        lite.existing_projects(&ids).await.unwrap(),
        post.existing_projects(&ids).await.unwrap()
    );
    for cutoff in [
        Utc.with_ymd_and_hms(2024, 11, 5, 12, 30, 0).unwrap(),
        Utc.with_ymd_and_hms(AS_OF.0, AS_OF.1, AS_OF.2, 0, 0, 0)
            .unwrap(),
    ] {
        let a = extract_features(&lite, &ids, cutoff).await.unwrap();
        let b = extract_features(&post, &ids, cutoff).await.unwrap();
        assert_eq!(a.unknown, vec![99_999]);
        assert_eq!(a.skipped, b.skipped);
        assert_same_rows(&a, &b);
    }
    let a = build_training_set(&lite).await.unwrap();
    let b = build_training_set(&post).await.unwrap();
    assert_eq!(a.rows(Target::Risk), b.rows(Target::Risk));
    assert_eq!(a.fingerprint(), b.fingerprint());
}
