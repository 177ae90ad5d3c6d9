//! The server under test: a release `tessera` on loopback, in a process of its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::report::Results;

/// The server's live resource counts (`GET /debug/counts`), if it answers.
pub async fn debug_counts(http: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    get_json(http, &format!("{base}/debug/counts")).await
}

/// A room's state (`GET /rooms/{room}`), if the server answers.
pub async fn room_state(
    http: &reqwest::Client,
    base: &str,
    room: &str,
) -> Option<serde_json::Value> {
    get_json(http, &format!("{base}/rooms/{room}")).await
}

/// The JSON body of a GET, if the server answers with one.
async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits (bounded) until the server runs no room, so one step's leftovers never load the next.
pub async fn wait_idle(http: &reqwest::Client, base: &str, results: &mut Results) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = debug_counts(http, base).await.unwrap_or_default();
        let idle = ["rooms", "pipelines", "peers", "media_tasks"]
            .iter()
            .all(|k| counts[k].as_i64() == Some(0));
        if idle {
            eprintln!("server idle: {counts}");
            return;
        }
        if Instant::now() > until {
            results.notes.push(format!(
                "the server was not idle 20 s after a step ended: {counts}"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(bin: &Path) -> Result<Server> {
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--rtc-ip",
                "127.0.0.1",
                "--room-linger-secs",
                "1",
                // The benchmark drives the server to saturation from one address on purpose:
                // admission control would refuse exactly what it measures.
                "--max-load",
                "100",
                "--max-rooms",
                "10000",
                "--max-sessions",
                "100000",
                "--rate-per-sec",
                "10000",
                "--rate-burst",
                "10000",
                "--max-pending-per-addr",
                "10000",
            ])
            .env("TESSERA_LOG", "warn,rtc_dtls=error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .context("the server did not print its address")?;
        let base = line
            .strip_prefix("tessera listening on ")
            .context("unexpected first line from the server")?
            .to_owned();
        Ok(Server { child, base })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
