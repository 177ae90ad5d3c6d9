//! The server under test: the real `tessera` binary, started on port 0 as a child process.
//!
//! [`TestServer`] owns the child and kills it on drop, so a failing test never leaves a server
//! behind. The server announces its address with exactly one stdout line,
//! `tessera listening on http://127.0.0.1:PORT`; we wait for that line with a deadline rather
//! than polling the port. Two background threads keep draining the child's stdout and stderr
//! into this process's stderr (prefixed with the pid) so neither pipe can fill and stall the
//! server; libtest captures that output with the test's own and shows it when the test fails.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::http;

/// How long the server may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a signalled server may take to exit before [`TestServer::terminate`] gives up.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long drop waits for the output threads after the child is dead (they end at EOF, which
/// comes at once unless the child left a grandchild holding the pipes).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

const LISTENING_PREFIX: &str = "tessera listening on ";
/// The server binary Cargo built for this test run.
const BINARY: &str = env!("CARGO_BIN_EXE_tessera");

/// A running `tessera serve`, killed and reaped on drop.
pub struct TestServer {
    child: Child,
    base_url: String,
    /// The stdout and stderr pumps. Each sends on `drained` when its pipe reaches EOF.
    pumps: Vec<JoinHandle<()>>,
    drained: mpsc::Receiver<()>,
    /// Every line the server printed (stdout and stderr), for tests of what it says.
    log: Log,
}

/// The lines a server printed, shared with its pumps.
type Log = Arc<Mutex<Vec<String>>>;

impl TestServer {
    /// Start `tessera serve --listen 127.0.0.1:0 --rtc-ip 127.0.0.1 <extra_args>` and wait (up to
    /// [`STARTUP_TIMEOUT`]) for its listening line.
    ///
    /// Blocks the calling thread while waiting; startup takes milliseconds, and being synchronous
    /// lets both plain and async tests use it.
    pub fn start(extra_args: &[&str]) -> Result<TestServer> {
        Self::start_with_env(extra_args, &[])
    }

    /// [`start`](Self::start) with extra environment variables for the child (e.g. `RUST_LOG`,
    /// `GST_DEBUG`). The rest of the environment is inherited.
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Result<TestServer> {
        Self::spawn(
            Command::new(BINARY),
            "127.0.0.1:0",
            "127.0.0.1",
            extra_args,
            env,
        )
    }

    /// [`start`](Self::start) on a given address: a restarted server on its old port.
    pub fn start_on(listen: &str, extra_args: &[&str]) -> Result<TestServer> {
        Self::spawn(Command::new(BINARY), listen, "127.0.0.1", extra_args, &[])
    }

    /// [`start`](Self::start) inside the network namespace of process `netns_pid` (a test
    /// network's), listening and gathering on `ip`, its address there.
    pub fn start_in(netns_pid: u32, ip: &str, extra_args: &[&str]) -> Result<TestServer> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/proc/{netns_pid}/ns/net"))
            .args(["--", BINARY]);
        Self::spawn(command, &format!("{ip}:0"), ip, extra_args, &[])
    }

    /// `command` is the binary, or a wrapper that `exec`s it (so its pid is the server's).
    fn spawn(
        mut command: Command,
        listen: &str,
        rtc_ip: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<TestServer> {
        let binary = BINARY;
        command
            .args(["serve", "--listen", listen, "--rtc-ip", rtc_ip])
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {binary} serve {extra_args:?}"))?;
        let pid = child.id();

        // Capacity 1 each: the stdout pump sends the address once; each pump signals EOF once.
        let (address_tx, address_rx) = mpsc::sync_channel::<String>(1);
        let (drained_tx, drained) = mpsc::sync_channel::<()>(2);

        let stdout = child.stdout.take().expect("stdout was piped above");
        let stderr = child.stderr.take().expect("stderr was piped above");
        let log = Log::default();
        let mut pumps = Vec::with_capacity(2);
        let stdout_drained = drained_tx.clone();
        let stdout_log = log.clone();
        pumps.push(
            std::thread::Builder::new()
                .name(format!("tessera-{pid}-stdout"))
                .spawn(move || {
                    pump_stdout(pid, stdout, address_tx, &stdout_log);
                    let _ = stdout_drained.try_send(());
                })
                .context("spawning the stdout pump")?,
        );
        let stderr_log = log.clone();
        pumps.push(
            std::thread::Builder::new()
                .name(format!("tessera-{pid}-stderr"))
                .spawn(move || {
                    pump_lines(pid, stderr, &stderr_log);
                    let _ = drained_tx.try_send(());
                })
                .context("spawning the stderr pump")?,
        );

        // From here on, drop kills the child whatever happens.
        let mut server = TestServer {
            child,
            base_url: String::new(),
            pumps,
            drained,
            log,
        };
        match address_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(url) => {
                server.base_url = url;
                Ok(server)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "tessera (pid {pid}) printed no '{LISTENING_PREFIX}…' line within \
                 {STARTUP_TIMEOUT:?}; its stderr is above"
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed before the line: the server exited (or closed stdout) early.
                let status = server.wait_for_exit(DRAIN_TIMEOUT);
                bail!(
                    "tessera (pid {pid}) closed stdout before listening (exit: {status:?}); \
                     its stderr is above"
                )
            }
        }
    }

    /// The address it listens on (a test network's forwarder connects there).
    pub fn addr(&self) -> Result<std::net::SocketAddr> {
        reqwest::Url::parse(&self.base_url)?
            .socket_addrs(|| None)?
            .into_iter()
            .next()
            .context("the server's address")
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line the server has printed so far (stdout and stderr, in arrival order per pipe).
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first line the server printed that contains `needle`, waiting up to `deadline`.
    pub async fn wait_for_line(&self, needle: &str, deadline: Duration) -> Result<String> {
        let what = format!("a server line with {needle:?}");
        super::eventually_sync(deadline, &what, || {
            let log = self.log();
            log.iter()
                .find(|line| line.contains(needle))
                .cloned()
                .ok_or_else(|| format!("{} lines, none with it", log.len()))
        })
        .await
    }

    /// `GET /rooms/{room}` as JSON (its shape is the server's business).
    pub async fn room(&self, room: &str) -> Result<Value> {
        http::get_json(&http::room_url(&self.base_url, room)?).await
    }

    /// Whether the child has exited, without waiting.
    pub fn has_exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().context("checking the tessera child")
    }

    /// Send `signal` (a name `kill -s` understands: `INT`, `TERM`, …) and wait up to
    /// [`SHUTDOWN_TIMEOUT`] for the server to exit, returning how it exited. For graceful
    /// shutdown tests; a server that does not exit in time is killed and this returns an error.
    pub fn terminate(&mut self, signal: &str) -> Result<ExitStatus> {
        let pid = self.pid();
        self.signal(signal)?;
        match self.wait_for_exit(SHUTDOWN_TIMEOUT) {
            Some(status) => Ok(status),
            None => {
                self.kill();
                bail!("tessera (pid {pid}) did not exit within {SHUTDOWN_TIMEOUT:?} of SIG{signal}")
            }
        }
    }

    /// Send `signal` (a name `kill -s` understands) and return at once.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid();
        // std has no kill(2) with a chosen signal; kill(1) is.
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .context("running kill(1)")?;
        anyhow::ensure!(status.success(), "kill -s {signal} {pid} failed: {status}");
        Ok(())
    }

    /// Waits (up to `deadline`, without blocking the test's runtime) for the server to exit on
    /// its own, and says how it exited.
    pub async fn exited(&mut self, deadline: Duration) -> Result<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.has_exited()? {
                return Ok(status);
            }
            if Instant::now() >= until {
                bail!(
                    "tessera (pid {}) did not exit within {deadline:?}",
                    self.pid()
                );
            }
            // The one poll of an async test: a child's exit has no async wait in std.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kill the server now (SIGKILL) and reap it. Idempotent.
    pub fn kill(&mut self) {
        // An error here means it already exited and was reaped, which is what we want anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Poll for the child's exit until `timeout`. std offers no wait-with-timeout on a child, so
    /// this is the one place that polls; the interval is short and the total is bounded.
    fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        // The pipes close with the child, so the pumps end promptly; join only those that said
        // so, and leave any stuck one (a grandchild holding the pipe) rather than hang the test.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let mut finished = 0;
        while finished < self.pumps.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.drained.recv_timeout(left).is_err() {
                break;
            }
            finished += 1;
        }
        for pump in std::mem::take(&mut self.pumps) {
            if pump.is_finished() {
                let _ = pump.join();
            }
        }
    }
}

/// Read stdout until EOF: hand the listening URL over once, echo and keep every line.
fn pump_stdout(pid: u32, stdout: impl Read, address_tx: mpsc::SyncSender<String>, log: &Log) {
    let mut address_tx = Some(address_tx);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line.clone());
        if let Some(url) = line.strip_prefix(LISTENING_PREFIX)
            && let Some(tx) = address_tx.take()
        {
            // The receiver may have timed out and gone; then nobody wants the address.
            let _ = tx.try_send(url.trim().trim_end_matches('/').to_owned());
            continue;
        }
        eprintln!("[tessera {pid} stdout] {line}");
    }
}

/// Copy lines to our stderr, and keep them, until EOF.
fn pump_lines(pid: u32, stream: impl Read, log: &Log) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        eprintln!("[tessera {pid}] {line}");
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}
