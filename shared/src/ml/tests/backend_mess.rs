//! A messy backend: projects ended under a status that does not say how,
//! and numeric columns holding text on PostgreSQL.

use chrono::{TimeZone, Utc};

use super::*;

fn feature(row: &FeatureRow, name: &str) -> f64 {
    let i = feature_names()
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("no feature {name}"));
    row.values[i]
}

#[tokio::test]
async fn archived_projects_are_not_open_and_training_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = demo_sqlite(dir.path(), 200, 4).await;
    let db = BackendDb::connect(path.to_str().unwrap(), 2).await.unwrap();
    let before = build_training_set(&db).await.unwrap();
    let ended_before = before
        .skipped
        .get("ended_with_unknown_status")
        .copied()
        .unwrap_or(0);
    db.ping().await.unwrap();

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows = [
        // Ended under statuses that say neither completed nor cancelled.
        (9101, "archived", Some("2025-06-01")),
        (9102, " ARCHIVED ", Some("2025-07-15T10:00:00Z")),
        (9103, "closed-ish", Some("2025-05-01")),
        // No end date: still open, whatever the status.
        (9104, "paused", None),
        // A status that says it runs wins over a stray end date.
        (9105, "active", Some("2025-06-01")),
        // An end date nobody can read is no end date.
        (9106, "archived", Some("someday")),
    ];
    for (id, status, end) in rows {
        sqlx::query(
            "INSERT INTO projects (id, team_id, name, status, budget, start_date, planned_end_date, \
             actual_end_date, created_at, updated_at) \
             VALUES ($1, 1, 'mess', $2, 10000, '2025-01-01', '2025-05-01', $3, '2025-01-01', '2025-01-01')",
        )
        .bind(id)
        .bind(status)
        .bind(end)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let open = db.open_project_ids().await.unwrap();
    for id in [9101, 9102, 9103] {
        assert!(!open.contains(&id), "{id} ended but is scored as open");
    }
    for id in [9104, 9105, 9106] {
        assert!(open.contains(&id), "{id} has not ended but is not open");
    }

    let after = build_training_set(&db).await.unwrap();
    assert_eq!(
        after.skipped.get("ended_with_unknown_status").copied(),
        Some(ended_before + 3),
        "{:?}",
        after.skipped
    );
    assert!(after.projects.iter().all(|p| p.id < 9000));
    assert_eq!(after.fingerprint(), before.fingerprint());
}

#[tokio::test]
async fn text_in_numeric_postgres_columns_reads_as_missing() {
    let data = generate(&DemoConfig {
        projects: 120,
        seed: 5,
        as_of: as_of(),
        shift: None,
        long_projects: None,
    });
    let pg = ScratchPg::create().await;
    crate::demo::write_postgres(&pg.url, &data).await.unwrap();
    let db = BackendDb::connect(&pg.url, 2).await.unwrap();
    let rw = sqlx::PgPool::connect(&pg.url).await.unwrap();

    // Projects with time entries and expenses, so every kind of value is read.
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT p.id FROM projects p WHERE p.budget > 0 AND p.complexity IS NOT NULL \
         AND EXISTS (SELECT 1 FROM tasks t JOIN time_entries e ON e.task_id = t.id WHERE t.project_id = p.id) \
         AND EXISTS (SELECT 1 FROM expenses x WHERE x.project_id = p.id) ORDER BY p.id LIMIT 3",
    )
    .fetch_all(&rw)
    .await
    .unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let now = Utc
        .with_ymd_and_hms(AS_OF.0, AS_OF.1, AS_OF.2, 0, 0, 0)
        .unwrap();
    let typed = extract_features(&db, &ids, now).await.unwrap();
    let typed_set = build_training_set(&db).await.unwrap();

    // The same values, stored as text: read exactly as before.
    for sql in [
        "ALTER TABLE projects DROP CONSTRAINT IF EXISTS projects_team_id_fkey",
        "ALTER TABLE projects ALTER COLUMN team_id TYPE TEXT",
        "ALTER TABLE projects ALTER COLUMN complexity TYPE TEXT",
        "ALTER TABLE projects ALTER COLUMN budget TYPE TEXT",
        "ALTER TABLE time_entries ALTER COLUMN hours TYPE TEXT",
        "ALTER TABLE expenses ALTER COLUMN amount TYPE TEXT",
    ] {
        sqlx::query(sql).execute(&rw).await.unwrap();
    }
    let as_text = extract_features(&db, &ids, now).await.unwrap();
    assert_eq!(as_text.rows, typed.rows);
    assert_eq!(as_text.skipped, typed.skipped);
    assert_eq!(
        build_training_set(&db).await.unwrap().fingerprint(),
        typed_set.fingerprint()
    );

    // Text that is no number: a NULL in its row, not a failed query.
    let mess = [
        "UPDATE projects SET budget = 'n/a', complexity = 'high', team_id = 'team seven' WHERE id = $1",
        "UPDATE time_entries SET hours = 'lots' WHERE id = (SELECT e.id FROM time_entries e \
         JOIN tasks t ON t.id = e.task_id WHERE t.project_id = $1 ORDER BY e.id LIMIT 1)",
        "UPDATE expenses SET amount = '1e400' WHERE id = (SELECT id FROM expenses \
         WHERE project_id = $1 ORDER BY id LIMIT 1)",
        "UPDATE projects SET budget = ' 12500.5 ', complexity = '+3' WHERE id = $1",
    ];
    for (sql, id) in mess.iter().zip([ids[0], ids[1], ids[2], ids[2]]) {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .bind(id)
            .execute(&rw)
            .await
            .unwrap();
    }
    rw.close().await;

    let messy = extract_features(&db, &ids, now).await.unwrap();
    assert_eq!(messy.rows.len(), 3);
    let row = |id: i64| messy.rows.iter().find(|r| r.project_id == id).unwrap();
    assert_eq!(feature(row(ids[0]), "budget_missing"), 1.0);
    assert_eq!(feature(row(ids[0]), "complexity_missing"), 1.0);
    assert_eq!(feature(row(ids[2]), "budget_missing"), 0.0);
    assert_eq!(feature(row(ids[2]), "complexity"), 3.0);
    let count = |e: &Extraction, k: &str| e.skipped.get(k).copied().unwrap_or(0);
    assert_eq!(
        count(&messy, "time_entry_unusable"),
        count(&typed, "time_entry_unusable") + 1,
        "{:?}",
        messy.skipped
    );
    assert_eq!(
        count(&messy, "expense_without_amount"),
        count(&typed, "expense_without_amount") + 1,
        "{:?}",
        messy.skipped
    );
    let set = build_training_set(&db).await.unwrap();
    assert!(!set.projects.is_empty());
}
