//! Tests that need fixed ports or that must never reach beyond this machine (browsers, an ACME
//! server and its DNS) run in a network namespace of their own with nothing but `lo`:
//! [`isolated`] re-runs the calling test in a child of this same test binary under
//! `unshare --net`; the outer test only waits for that child, with a deadline, and passes or
//! fails with it. Inside, ports are the test's own: nothing else can hold them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Set in the child that runs inside the namespace.
const INSIDE: &str = "TESSERA_TEST_NETNS";
/// A whole test, inside its namespace, must end within this.
const CHILD_DEADLINE: Duration = Duration::from_secs(300);

/// True when the caller is inside its namespace and should run the test body; false when the
/// body already ran (and passed) in the namespaced child. `test` is the test's path as libtest
/// names it, e.g. `browser::issue4_viewer_page_reconnects`.
pub fn isolated(test: &str) -> Result<bool> {
    if std::env::var_os(INSIDE).is_some() {
        // /proc/self/net/dev is per network namespace (/sys/class/net is the mounter's).
        let interfaces: Vec<String> = std::fs::read_to_string("/proc/self/net/dev")
            .context("listing network interfaces")?
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|i| i.trim().to_owned()))
            .collect();
        ensure!(
            interfaces == ["lo"],
            "the test must run with only lo, found {interfaces:?}"
        );
        return Ok(true);
    }
    let exe = std::env::current_exe().context("finding the test binary")?;
    let mut command = Command::new("unshare");
    if !is_root() {
        // Unprivileged: a user namespace makes the network namespace possible.
        command.arg("--map-root-user");
    }
    command
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$0" "$@""#,
        ])
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .stdin(Stdio::null());
    let mut child = command
        .spawn()
        .context("starting the test in a network namespace (unshare from util-linux)")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .context("waiting for the namespaced test")?
        {
            ensure!(
                status.success(),
                "{test} failed inside its network namespace ({status}); its output is above"
            );
            return Ok(false);
        }
        if started.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{test} did not finish within {CHILD_DEADLINE:?} in its network namespace");
        }
        // std has no wait-with-timeout on a child process: poll, bounded by the deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}
