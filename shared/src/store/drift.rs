//! Drift reports: what the `drift` job found, kept for the monitoring API.

#[allow(unused_imports)]
use super::Store;
