//! What the transport itself holds per queue, for the ops view. The jobs
//! table is the truth; these figures show whether Redis (or the embedded
//! queue) agrees with it, e.g. messages waiting for rows already cancelled.

use std::collections::BTreeMap;

use crate::jobs::QueueName;
use crate::queue::{Queue, QueueError, redis_err};

/// The per-queue keys counted on Redis, in the order `COUNT_ANY` answers.
const REDIS_KEYS: [&str; 6] = ["active", "scheduled", "done", "failed", "dead", "data"];

/// Counts each key's entries whatever its type. apalis-redis 1.0 keeps
/// `done` and `dead` as plain sets although its own statistics read them as
/// sorted sets, so a command chosen by name fails with WRONGTYPE; asking the
/// key its type keeps the counts right whichever way apalis files them. A
/// missing key counts 0.
static COUNT_ANY: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local out = {}
for i, key in ipairs(KEYS) do
  local t = redis.call('TYPE', key)['ok']
  if t == 'list' then out[i] = redis.call('LLEN', key)
  elseif t == 'set' then out[i] = redis.call('SCARD', key)
  elseif t == 'zset' then out[i] = redis.call('ZCARD', key)
  elseif t == 'hash' then out[i] = redis.call('HLEN', key)
  else out[i] = 0 end
end
return out
",
    )
});

impl Queue {
    /// Message counts on the transport for `queue`, by where apalis keeps
    /// them. Redis: `active` (due now), `scheduled` (later), `inflight`
    /// (held by a worker, one set per worker), `done`, `failed`, `dead`, and
    /// `data` (messages whose payload Redis still holds, finished ones
    /// until the retention sweep removes them). Embedded: apalis-sqlite's
    /// task statuses.
    pub async fn transport_counts(
        &self,
        queue: QueueName,
    ) -> Result<BTreeMap<String, i64>, QueueError> {
        let name = self.apalis_queue_name(queue);
        let mut out = BTreeMap::new();
        match self {
            Queue::Redis(r) => {
                let mut conn = r.conn.clone();
                let workers = crate::queue::queue_workers(&mut conn, &name).await?;
                let mut script = COUNT_ANY.prepare_invoke();
                for key in REDIS_KEYS {
                    script.key(format!("{name}:{key}"));
                }
                for w in &workers {
                    script.key(format!("{name}:inflight:{w}"));
                }
                let counts: Vec<i64> = script.invoke_async(&mut conn).await.map_err(redis_err)?;
                for (key, n) in REDIS_KEYS.iter().zip(&counts) {
                    out.insert((*key).to_string(), *n);
                }
                out.insert(
                    "inflight".into(),
                    counts.iter().skip(REDIS_KEYS.len()).sum(),
                );
                out.insert("workers".into(), workers.len() as i64);
            }
            Queue::Sqlite(s) => {
                let pool = s
                    .pool
                    .as_ref()
                    .ok_or_else(|| QueueError::Other("embedded queue has no database".into()))?;
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT status, COUNT(*) FROM Jobs WHERE job_type = $1 GROUP BY status",
                )
                .bind(&name)
                .fetch_all(pool)
                .await
                .map_err(|e| QueueError::Unreachable(e.to_string()))?;
                for (status, n) in rows {
                    out.insert(status.to_lowercase(), n);
                }
            }
        }
        Ok(out)
    }
}
