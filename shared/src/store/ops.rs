//! Operator queries over the jobs table: listing, retry, cancel, counts.

#[allow(unused_imports)]
use super::Store;
