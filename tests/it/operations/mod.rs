//! Issue 15: operating tessera. A drain on SIGTERM that cuts nobody off (`drain.rs`), metrics
//! that follow reality (`metrics.rs`).

mod drain;
mod metrics;
