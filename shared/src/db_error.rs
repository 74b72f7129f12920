//! Which sqlx errors may pass on their own. The ML store and the backend
//! database both ask this one question, so a database error means the same
//! thing to a job whichever of the two raised it.

use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// True when retrying later may succeed: the connection or the pool failed,
/// or the database refused for a passing reason (busy, locked, shutting
/// down, out of resources, a serialization conflict). Everything else (bad
/// SQL, a violated constraint, a row that does not decode) fails the same
/// way again.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => {
            // The codes are read per database: SQLite's numeric codes and
            // SQLSTATEs overlap ("42501", insufficient privilege, has 5 in
            // its low byte like SQLITE_BUSY).
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                is_transient_sqlstate(pg.code())
            } else if db.try_downcast_ref::<SqliteError>().is_some() {
                db.code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .is_some_and(is_transient_sqlite_code)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// SQLSTATE classes 08 (connection), 53 (insufficient resources) and 57P0x
/// (server shutting down or starting), plus serialization failures and
/// deadlocks (40001, 40P01), which succeed when run again.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P0")
        || code == "40001"
        || code == "40P01"
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6); extended codes keep the primary
/// code in their low byte (SQLITE_BUSY_SNAPSHOT is 517).
pub(crate) fn is_transient_sqlite_code(code: i64) -> bool {
    matches!(code & 0xff, 5 | 6)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::*;
    use crate::backend::BackendError;
    use crate::store::StoreError;

    #[test]
    fn sqlstates() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "40001", "40P01",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["42P01", "42501", "23505", "22012", "57014", "25006"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn sqlite_codes() {
        for code in [5, 6, 517, 262] {
            assert!(is_transient_sqlite_code(code), "{code}");
        }
        for code in [1, 8, 14, 19, 2067] {
            assert!(!is_transient_sqlite_code(code), "{code}");
        }
    }

    #[test]
    fn connection_trouble_is_transient_and_the_rest_is_not() {
        let refused = || sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(is_transient(&refused()));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::PoolClosed));
        assert!(is_transient(&sqlx::Error::Protocol(
            "unexpected message".into()
        )));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::ColumnNotFound("x".into())));
        // Both stores read the same answer.
        assert!(StoreError::from(refused()).is_transient());
        assert!(BackendError::from(refused()).is_transient());
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_transient());
        assert!(!BackendError::from(sqlx::Error::RowNotFound).is_transient());
    }

    /// Real SQLite errors: a write lock held elsewhere is transient, a
    /// missing table is not, through both error types.
    #[tokio::test]
    async fn sqlite_busy_is_transient_and_a_missing_table_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("lock.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&opts).await.unwrap();
        let mut other = SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();

        let e = begin_immediate(&mut other).await;
        assert!(is_transient(&e), "{e}");
        assert!(StoreError::from(e).is_transient());
        let e = begin_immediate(&mut other).await;
        assert!(BackendError::from(e).is_transient());

        let missing = sqlx::query("SELECT * FROM absent")
            .execute(&mut holder)
            .await
            .unwrap_err();
        assert!(!is_transient(&missing), "{missing}");
        assert!(!StoreError::from(missing).is_transient());
    }

    async fn begin_immediate(c: &mut SqliteConnection) -> sqlx::Error {
        sqlx::query("BEGIN IMMEDIATE").execute(c).await.unwrap_err()
    }
}
