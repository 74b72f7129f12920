//! What the transport itself holds per queue, for the ops view. The jobs
//! table is the truth; these figures show whether Redis (or the embedded
//! queue) agrees with it, e.g. messages waiting for rows already cancelled.

use std::collections::BTreeMap;

use crate::jobs::QueueName;
use crate::queue::{Queue, QueueError, redis_err};

impl Queue {
    /// Message counts on the transport for `queue`, by where apalis keeps
    /// them. Redis: `active` (list, due now), `scheduled` (sorted set, later),
    /// `inflight` (held by a worker, one set per worker), `done`, `failed`,
    /// `dead` (sorted sets). Embedded: apalis-sqlite's task statuses.
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
                let mut pipe = redis::pipe();
                pipe.llen(format!("{name}:active"))
                    .zcard(format!("{name}:scheduled"))
                    .zcard(format!("{name}:done"))
                    .zcard(format!("{name}:failed"))
                    .zcard(format!("{name}:dead"));
                for w in &workers {
                    pipe.scard(format!("{name}:inflight:{w}"));
                }
                let counts: Vec<i64> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
                for (key, n) in ["active", "scheduled", "done", "failed", "dead"]
                    .iter()
                    .zip(&counts)
                {
                    out.insert((*key).to_string(), *n);
                }
                out.insert("inflight".into(), counts.iter().skip(5).sum());
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
