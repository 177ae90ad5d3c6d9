//! The one way the tests wait for something to become true: poll it, with a deadline, and say
//! what was last seen when it never happened.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

/// How often [`eventually`] looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` every [`POLL`] until it gives `Ok(Some(value))`, then returns the value; after
/// `deadline`, fails naming `what` and the last thing `check` reported (an `Err` counts as "not
/// yet", and its message is kept for the failure). `check` returns `Ok(None)` while waiting.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let end = Instant::now() + deadline;
    let mut last = String::from("no answer yet");
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= end {
            return Err(anyhow!("{what}: not within {deadline:?} (last: {last})"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The same with a synchronous check that explains what it saw when it is not yet true:
/// `Ok(value)` when done, `Err(description)` while waiting.
pub async fn eventually_sync<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    eventually(deadline, what, || {
        let r = check();
        async move {
            match r {
                Ok(v) => Ok(Some(v)),
                Err(seen) => Err(anyhow!(seen)),
            }
        }
    })
    .await
}
