//! Issue 15: operating tessera. A drain on SIGTERM that cuts nobody off (`drain.rs`), metrics
//! that follow reality (`metrics.rs`), JSON logs that say which room and session (`logs.rs`),
//! signed webhooks (`webhooks.rs`).

mod drain;
mod logs;
mod metrics;
mod webhooks;
