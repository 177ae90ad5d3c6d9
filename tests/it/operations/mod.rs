//! Issue 15: operating tessera. A drain on SIGTERM that cuts nobody off (`drain.rs`).

mod drain;
