//! Migrations run from empty, and again, on both databases.

mod common;

use common::{Mode, TestEnv};
use rpa_ml_shared::store::Store;

#[tokio::test]
async fn migrations_run_from_empty_on_sqlite_and_postgres_and_are_idempotent() {
    for mode in [Mode::Embedded, Mode::Scale] {
        let env = TestEnv::new(mode).await;
        let store = Store::connect(&env.store_url, 2).await.expect("connect");
        store.migrate().await.expect("first migration");
        store.migrate().await.expect("second migration is a no-op");
        store.ping().await.expect("ping");
        let probe = env.store().await;
        for table in ["jobs", "predictions", "models", "workers"] {
            let sql: &'static str = match table {
                "jobs" => "SELECT COUNT(*) FROM jobs",
                "predictions" => "SELECT COUNT(*) FROM predictions",
                "models" => "SELECT COUNT(*) FROM models",
                _ => "SELECT COUNT(*) FROM workers",
            };
            assert_eq!(probe.count(sql).await, 0, "{mode:?} {table}");
        }
    }
}
