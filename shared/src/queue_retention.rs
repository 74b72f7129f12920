//! Redis carries work, not history. apalis-redis keeps every finished
//! message for good: its payload in `{q}:data`, its status in
//! `{q}:meta:{id}` and its id in the `{q}:done` or `{q}:dead` set, one key
//! and two entries per job. The jobs table is the record of every job, so a
//! message that finished more than the retention ago is removed here, and
//! so is the bookkeeping apalis left for workers that are gone.
//!
//! Only messages apalis has itself filed as finished are touched: a message
//! in `done` or `dead` has left its worker's in-flight set in the same
//! script, and apalis never moves it back. One that is also scheduled (a
//! retry) is left alone.

use chrono::{DateTime, Utc};
use std::sync::LazyLock;
use std::time::Duration;

use crate::jobs::QueueName;
use crate::queue::{Queue, QueueError, redis_err};

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueTrim {
    /// Finished messages: payload, status and done/dead entry.
    pub finished: u64,
    /// Leftovers of apalis workers no longer registered.
    pub gone_workers: u64,
}

impl std::ops::AddAssign for QueueTrim {
    fn add_assign(&mut self, other: QueueTrim) {
        self.finished += other.finished;
        self.gone_workers += other.gone_workers;
    }
}

/// Sets `SSCAN` walks per round trip.
const SCAN_BATCH: usize = 500;

/// KEYS[1] the done or dead set, KEYS[2] the payload hash, KEYS[3] the
/// scheduled set; ARGV[1] the status key prefix, ARGV[2] the cutoff (unix
/// seconds, compared with apalis' `done_at`), ARGV[3..] message ids.
static TRIM_FINISHED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local removed = 0
local cutoff = tonumber(ARGV[2])
for i = 3, #ARGV do
  local id = ARGV[i]
  local meta = ARGV[1] .. ':' .. id
  local done_at = tonumber(redis.call('HGET', meta, 'done_at'))
  if redis.call('SISMEMBER', KEYS[1], id) == 1
     and not redis.call('ZSCORE', KEYS[3], id)
     and (done_at == nil or done_at <= cutoff) then
    redis.call('DEL', meta)
    redis.call('HDEL', KEYS[2], id)
    redis.call('SREM', KEYS[1], id)
    removed = removed + 1
  end
end
return removed
",
    )
});

/// KEYS[1] the registered workers (sorted set); ARGV[1] the metadata key
/// prefix (`{q}:workers:metadata:`), ARGV[2..] metadata keys. Deletes
/// those whose worker is no longer registered.
static TRIM_GONE_WORKERS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local removed = 0
local n = string.len(ARGV[1])
for i = 2, #ARGV do
  local key = ARGV[i]
  if string.sub(key, 1, n) == ARGV[1] then
    local worker = string.sub(key, n + 1)
    if not redis.call('ZSCORE', KEYS[1], worker) then
      redis.call('DEL', key)
      removed = removed + 1
    end
  end
end
return removed
",
    )
});

impl Queue {
    /// Removes the messages of `queue` that finished at or before `cutoff`,
    /// and what apalis keeps for its workers that are gone. Safe to run
    /// from many processes at once.
    pub async fn trim_finished(
        &self,
        queue: QueueName,
        cutoff: DateTime<Utc>,
    ) -> Result<QueueTrim, QueueError> {
        let name = self.apalis_queue_name(queue);
        let mut out = QueueTrim::default();
        match self {
            Queue::Redis(r) => {
                let mut conn = r.conn.clone();
                let cutoff = cutoff.timestamp();
                for set in ["done", "dead"] {
                    let key = format!("{name}:{set}");
                    let mut cursor = 0u64;
                    loop {
                        let (next, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
                            .arg(&key)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(SCAN_BATCH)
                            .query_async(&mut conn)
                            .await
                            .map_err(redis_err)?;
                        if !ids.is_empty() {
                            let n: u64 = TRIM_FINISHED
                                .key(&key)
                                .key(format!("{name}:data"))
                                .key(format!("{name}:scheduled"))
                                .arg(format!("{name}:meta"))
                                .arg(cutoff)
                                .arg(&ids)
                                .invoke_async(&mut conn)
                                .await
                                .map_err(redis_err)?;
                            out.finished += n;
                        }
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
                let prefix = format!("{name}:workers:metadata:");
                let pattern = format!("{}*", glob_escape(&prefix));
                let mut cursor = 0u64;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut conn)
                        .await
                        .map_err(redis_err)?;
                    if !keys.is_empty() {
                        let n: u64 = TRIM_GONE_WORKERS
                            .key(format!("{name}:workers"))
                            .arg(&prefix)
                            .arg(&keys)
                            .invoke_async(&mut conn)
                            .await
                            .map_err(redis_err)?;
                        out.gone_workers += n;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            Queue::Sqlite(s) => {
                let pool = s
                    .pool
                    .as_ref()
                    .ok_or_else(|| QueueError::Other("embedded queue has no database".into()))?;
                // `Failed` may still be waiting for apalis' own retry.
                let done = sqlx::query(
                    "DELETE FROM Jobs WHERE job_type = $1 AND status IN ('Done', 'Killed') \
                     AND done_at IS NOT NULL AND done_at <= $2",
                )
                .bind(&name)
                .bind(cutoff.timestamp())
                .execute(pool)
                .await
                .map_err(|e| QueueError::Unreachable(e.to_string()))?;
                out.finished = done.rows_affected();
            }
        }
        Ok(out)
    }

    /// Whether this caller takes this `period`'s turn at a fleet-wide chore
    /// called `chore`: the first to ask in a period gets it. Always yes on
    /// the embedded queue, which has one process.
    pub async fn take_turn(
        &self,
        chore: &str,
        holder: &str,
        period: Duration,
    ) -> Result<bool, QueueError> {
        match self {
            Queue::Redis(r) => {
                let mut conn = r.conn.clone();
                let won: Option<String> = redis::cmd("SET")
                    .arg(format!("{}:turn:{chore}", r.prefix))
                    .arg(holder)
                    .arg("NX")
                    .arg("PX")
                    .arg(period.as_millis().max(1) as u64)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                Ok(won.is_some())
            }
            Queue::Sqlite(_) => Ok(true),
        }
    }
}

/// `s` matched literally by a Redis `MATCH` pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_matched_literally() {
        assert_eq!(glob_escape("rpa-ml:predict:"), "rpa-ml:predict:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
