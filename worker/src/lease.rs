//! The lease on a running job. Its worker renews it every third of
//! `JOB_LEASE_SECS` for as long as it runs the job, including while it
//! retries a failed outcome write; the reconciler takes back a job whose
//! lease ran out. The renewal is per job, not per process: a job whose task
//! is gone stops being confirmed even while its process heart-beats.

use std::sync::Arc;
use std::time::Duration;

use rpa_ml_shared::store::{Holder, JobRow};

use crate::state::WorkerState;

/// Renews a job's lease until dropped.
pub struct Lease {
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Pause between renewals after a failed one: short, so that a lease that
/// ran out during a store outage is renewed as soon as the store is back.
const RETRY_RENEWAL: Duration = Duration::from_secs(1);

impl Lease {
    /// Starts renewing the lease `job`'s claim took.
    pub fn hold(state: Arc<WorkerState>, job: &JobRow) -> Lease {
        let id = job.id.clone();
        let attempt = job.attempts;
        let lease = state.config.job_lease;
        let every = lease / 3;
        let renewal = tokio::spawn(async move {
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                let holder = Holder {
                    worker: &state.name,
                    attempt,
                };
                match state.store.renew_lease(&id, holder, lease).await {
                    Ok(true) => wait = every,
                    Ok(false) => {
                        tracing::warn!(
                            job.id = %id,
                            attempt,
                            "job lease lost: the job was taken back or ended elsewhere; \
                             this attempt's outcome will be refused"
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(job.id = %id, error = %e, "job lease renewal failed; trying again");
                        wait = RETRY_RENEWAL.min(every);
                    }
                }
            }
        });
        Lease { renewal }
    }
}
