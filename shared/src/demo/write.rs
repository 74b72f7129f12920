//! Writing a demo world into a SQLite file or a PostgreSQL database.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::query_builder::Separated;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::{DemoData, SOURCE_SCHEMA_SQLITE, Stamp};

/// SQLite allows 32,766 bound parameters per statement since 3.32 (the
/// bundled library is newer); stay under it.
const SQLITE_MAX_PARAMS: usize = 30_000;
/// Rows per UNNEST insert: bounded so one statement's arrays stay a few MB.
const PG_ROWS_PER_INSERT: usize = 20_000;

const TABLES: [&str; 7] = [
    "teams",
    "team_members",
    "projects",
    "project_members",
    "tasks",
    "time_entries",
    "expenses",
];

/// The same tables as `source-schema.sql` (beside this file) with
/// PostgreSQL's natural types.
const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE teams (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE team_members (
    id                BIGINT PRIMARY KEY,
    team_id           BIGINT NOT NULL REFERENCES teams(id),
    name              TEXT NOT NULL,
    role              TEXT NOT NULL,
    experience_years  DOUBLE PRECISION,
    hourly_rate       DOUBLE PRECISION,
    active            INTEGER NOT NULL DEFAULT 1,
    joined_at         TIMESTAMPTZ NOT NULL
);
CREATE TABLE projects (
    id                  BIGINT PRIMARY KEY,
    team_id             BIGINT REFERENCES teams(id),
    name                TEXT NOT NULL,
    status              TEXT NOT NULL,
    priority            TEXT,
    complexity          INTEGER,
    process_count       INTEGER,
    bot_count           INTEGER,
    systems_integrated  INTEGER,
    budget              DOUBLE PRECISION,
    start_date          DATE,
    planned_end_date    DATE,
    actual_end_date     DATE,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE TABLE project_members (
    project_id  BIGINT NOT NULL REFERENCES projects(id),
    member_id   BIGINT NOT NULL REFERENCES team_members(id),
    allocation  DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    PRIMARY KEY (project_id, member_id)
);
CREATE TABLE tasks (
    id               BIGINT PRIMARY KEY,
    project_id       BIGINT NOT NULL REFERENCES projects(id),
    assignee_id      BIGINT REFERENCES team_members(id),
    title            TEXT NOT NULL,
    status           TEXT NOT NULL,
    estimated_hours  DOUBLE PRECISION,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ
);
CREATE TABLE time_entries (
    id         BIGINT PRIMARY KEY,
    task_id    BIGINT NOT NULL REFERENCES tasks(id),
    member_id  BIGINT REFERENCES team_members(id),
    hours      DOUBLE PRECISION NOT NULL,
    logged_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE expenses (
    id           BIGINT PRIMARY KEY,
    project_id   BIGINT NOT NULL REFERENCES projects(id),
    category     TEXT NOT NULL,
    amount       DOUBLE PRECISION NOT NULL,
    incurred_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_tasks_project ON tasks(project_id);
CREATE INDEX idx_time_entries_task ON time_entries(task_id);
CREATE INDEX idx_expenses_project ON expenses(project_id);
"#;

fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn stamp_text(s: &Stamp) -> String {
    s.sqlite_text()
}

/// Creates `path` with the exact tables of `source-schema.sql` and the demo
/// rows. Fails if the file exists. The file appears only once complete
/// (written beside it, then linked into place), so an interrupted run never
/// leaves a half-filled backend behind.
pub async fn write_sqlite(path: &Path, data: &DemoData) -> anyhow::Result<()> {
    if tokio::fs::try_exists(path).await.unwrap_or(false) {
        bail!("refusing to overwrite existing file {}", path.display());
    }
    let file_name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp: PathBuf = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = tokio::fs::remove_file(&tmp).await;

    let result = write_sqlite_file(&tmp, data).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    // A hard link fails if the target appeared meanwhile, unlike rename.
    let linked = tokio::fs::hard_link(&tmp, path).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    linked.with_context(|| format!("creating {}", path.display()))?;
    Ok(())
}

async fn write_sqlite_file(tmp: &Path, data: &DemoData) -> anyhow::Result<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(tmp)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        // The file is fsynced once at the end instead of on every commit.
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await
        .with_context(|| format!("creating SQLite file {}", tmp.display()))?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(SOURCE_SCHEMA_SQLITE)
        .execute(&mut *tx)
        .await
        .context("creating backend tables")?;

    insert_sqlite(
        &mut tx,
        "teams (id, name, created_at)",
        3,
        &data.teams,
        |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.name.clone())
                .push_bind(stamp_text(&r.created_at));
        },
    )
    .await?;
    insert_sqlite(
        &mut tx,
        "team_members (id, team_id, name, role, experience_years, hourly_rate, active, joined_at)",
        8,
        &data.team_members,
        |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.team_id)
                .push_bind(r.name.clone())
                .push_bind(r.role.clone())
                .push_bind(r.experience_years)
                .push_bind(r.hourly_rate)
                .push_bind(i64::from(r.active))
                .push_bind(stamp_text(&r.joined_at));
        },
    )
    .await?;
    insert_sqlite(
        &mut tx,
        "projects (id, team_id, name, status, priority, complexity, process_count, bot_count, \
         systems_integrated, budget, start_date, planned_end_date, actual_end_date, created_at, \
         updated_at)",
        15,
        &data.projects,
        |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.team_id)
                .push_bind(r.name.clone())
                .push_bind(r.status.clone())
                .push_bind(r.priority.clone())
                .push_bind(r.complexity)
                .push_bind(r.process_count)
                .push_bind(r.bot_count)
                .push_bind(r.systems_integrated)
                .push_bind(r.budget)
                .push_bind(r.start_date.map(date_text))
                .push_bind(r.planned_end_date.map(date_text))
                .push_bind(r.actual_end_date.map(date_text))
                .push_bind(stamp_text(&r.created_at))
                .push_bind(stamp_text(&r.updated_at));
        },
    )
    .await?;
    insert_sqlite(
        &mut tx,
        "project_members (project_id, member_id, allocation)",
        3,
        &data.project_members,
        |mut b, r| {
            b.push_bind(r.project_id)
                .push_bind(r.member_id)
                .push_bind(r.allocation);
        },
    )
    .await?;
    insert_sqlite(
        &mut tx,
        "tasks (id, project_id, assignee_id, title, status, estimated_hours, created_at, \
         started_at, completed_at)",
        9,
        &data.tasks,
        |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.project_id)
                .push_bind(r.assignee_id)
                .push_bind(r.title.clone())
                .push_bind(r.status.clone())
                .push_bind(r.estimated_hours)
                .push_bind(stamp_text(&r.created_at))
                .push_bind(r.started_at.as_ref().map(stamp_text))
                .push_bind(r.completed_at.as_ref().map(stamp_text));
        },
    )
    .await?;
    insert_sqlite(
        &mut tx,
        "time_entries (id, task_id, member_id, hours, logged_at)",
        5,
        &data.time_entries,
        |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.task_id)
                .push_bind(r.member_id)
                .push_bind(r.hours)
                .push_bind(stamp_text(&r.logged_at));
        },
    )
    .await?;
    insert_sqlite(
        &mut tx,
        "expenses (id, project_id, category, amount, incurred_at)",
        5,
        &data.expenses,
        |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.project_id)
                .push_bind(r.category.clone())
                .push_bind(r.amount)
                .push_bind(stamp_text(&r.incurred_at));
        },
    )
    .await?;
    tx.commit().await.context("committing demo data")?;
    conn.close().await?;
    let file = tokio::fs::File::open(tmp).await?;
    file.sync_all().await?;
    Ok(())
}

async fn insert_sqlite<T>(
    conn: &mut SqliteConnection,
    table_and_columns: &str,
    n_columns: usize,
    rows: &[T],
    push: impl Fn(Separated<'_, Sqlite, &'static str>, &T),
) -> anyhow::Result<()> {
    let per_statement = (SQLITE_MAX_PARAMS / n_columns).max(1);
    for chunk in rows.chunks(per_statement) {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {table_and_columns} "));
        qb.push_values(chunk, &push);
        qb.build()
            .execute(&mut *conn)
            .await
            .with_context(|| format!("inserting into {table_and_columns}"))?;
    }
    Ok(())
}

/// Creates the backend tables (natural PostgreSQL types) in the URL's
/// current schema and fills them. Refuses to touch a database that already
/// has any of these tables.
pub async fn write_postgres(url: &str, data: &DemoData) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connecting to PostgreSQL to write demo data")?;
    let existing: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = ANY($1) ORDER BY 1",
    )
    .bind(TABLES.map(String::from).to_vec())
    .fetch_all(&pool)
    .await
    .context("checking for existing backend tables")?;
    if !existing.is_empty() {
        let names: Vec<String> = existing.into_iter().map(|(n,)| n).collect();
        bail!(
            "backend tables already exist in this database ({}); refusing to write demo data over them",
            names.join(", ")
        );
    }

    let mut tx = pool.begin().await?;
    sqlx::raw_sql(POSTGRES_SCHEMA)
        .execute(&mut *tx)
        .await
        .context("creating backend tables")?;

    for chunk in data.teams.chunks(PG_ROWS_PER_INSERT) {
        sqlx::query(
            "INSERT INTO teams (id, name, created_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[])",
        )
        .bind(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.created_at.at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .context("inserting teams")?;
    }
    for chunk in data.team_members.chunks(PG_ROWS_PER_INSERT) {
        sqlx::query(
            "INSERT INTO team_members (id, team_id, name, role, experience_years, hourly_rate, \
             active, joined_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
             $5::float8[], $6::float8[], $7::int4[], $8::timestamptz[])",
        )
        .bind(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.team_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.role.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.experience_years).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.hourly_rate).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|r| i32::from(r.active))
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|r| r.joined_at.at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .context("inserting team_members")?;
    }
    for chunk in data.projects.chunks(PG_ROWS_PER_INSERT) {
        let int = |f: fn(&super::ProjectRow) -> Option<i64>| {
            chunk
                .iter()
                .map(|r| f(r).and_then(|v| i32::try_from(v).ok()))
                .collect::<Vec<_>>()
        };
        sqlx::query(
            "INSERT INTO projects (id, team_id, name, status, priority, complexity, process_count, \
             bot_count, systems_integrated, budget, start_date, planned_end_date, actual_end_date, \
             created_at, updated_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
             $6::int4[], $7::int4[], $8::int4[], $9::int4[], $10::float8[], $11::date[], \
             $12::date[], $13::date[], $14::timestamptz[], $15::timestamptz[])",
        )
        .bind(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.team_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.priority.clone()).collect::<Vec<_>>())
        .bind(int(|r| r.complexity))
        .bind(int(|r| r.process_count))
        .bind(int(|r| r.bot_count))
        .bind(int(|r| r.systems_integrated))
        .bind(chunk.iter().map(|r| r.budget).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.start_date).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.planned_end_date).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.actual_end_date).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.created_at.at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.updated_at.at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .context("inserting projects")?;
    }
    for chunk in data.project_members.chunks(PG_ROWS_PER_INSERT) {
        sqlx::query(
            "INSERT INTO project_members (project_id, member_id, allocation) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[])",
        )
        .bind(chunk.iter().map(|r| r.project_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.member_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.allocation).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .context("inserting project_members")?;
    }
    for chunk in data.tasks.chunks(PG_ROWS_PER_INSERT) {
        let opt_at = |f: fn(&super::TaskRow) -> Option<Stamp>| {
            chunk
                .iter()
                .map(|r| f(r).map(|s| s.at))
                .collect::<Vec<Option<DateTime<Utc>>>>()
        };
        sqlx::query(
            "INSERT INTO tasks (id, project_id, assignee_id, title, status, estimated_hours, \
             created_at, started_at, completed_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], \
             $6::float8[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])",
        )
        .bind(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.project_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.assignee_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.title.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.estimated_hours).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.created_at.at).collect::<Vec<_>>())
        .bind(opt_at(|r| r.started_at))
        .bind(opt_at(|r| r.completed_at))
        .execute(&mut *tx)
        .await
        .context("inserting tasks")?;
    }
    for chunk in data.time_entries.chunks(PG_ROWS_PER_INSERT) {
        sqlx::query(
            "INSERT INTO time_entries (id, task_id, member_id, hours, logged_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], \
             $5::timestamptz[])",
        )
        .bind(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.task_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.member_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.hours).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.logged_at.at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .context("inserting time_entries")?;
    }
    for chunk in data.expenses.chunks(PG_ROWS_PER_INSERT) {
        sqlx::query(
            "INSERT INTO expenses (id, project_id, category, amount, incurred_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::float8[], \
             $5::timestamptz[])",
        )
        .bind(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.project_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.category.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.amount).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.incurred_at.at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .context("inserting expenses")?;
    }
    tx.commit().await.context("committing demo data")?;
    pool.close().await;
    Ok(())
}
