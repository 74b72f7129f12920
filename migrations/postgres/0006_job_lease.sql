-- A running job's lease: the time until which its worker has confirmed it
-- is still running this attempt. The worker renews it while the job runs;
-- the reconciler takes back a running job whose lease has passed, whatever
-- the worker roster says. NULL on rows claimed before leases existed (the
-- reconciler judges those by their worker's heartbeat, as before) and on
-- rows that are not running.
ALTER TABLE jobs ADD COLUMN lease_until TIMESTAMPTZ;
