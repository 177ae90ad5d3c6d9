//! A reader of a room's Server-Sent Events (`GET /rooms/{room}/events`), as a page's
//! `EventSource` reads them: one JSON object per `data:` block, keep-alive comments skipped.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::http;

/// Reads Server-Sent Events from `GET {base}/rooms/{room}/events`.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub async fn open(base: &str, room: &str) -> Result<EventStream> {
        Self::open_with(base, room, None).await
    }

    /// [`open`](Self::open) with an access token, in the query as a page's `EventSource`
    /// sends it.
    pub async fn open_with(base: &str, room: &str, token: Option<&str>) -> Result<EventStream> {
        let mut url = http::endpoint(base, &["rooms", room, "events"])?;
        if let Some(token) = token {
            url.query_pairs_mut().append_pair("access_token", token);
        }
        // A stream, not a request: no overall timeout (each read has its own deadline).
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(http::HTTP_TIMEOUT)
            .build()?;
        let response = client.get(url).send().await?;
        let status = response.status();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("events: HTTP {status}: {body}");
        }
        let ct = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        anyhow::ensure!(ct.starts_with("text/event-stream"), "content type {ct}");
        Ok(EventStream {
            response,
            buffer: String::new(),
        })
    }

    /// The next event's JSON, within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Result<Value> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return serde_json::from_str(&data).with_context(|| format!("event {data:?}"));
            }
            let left = end.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .context("no event in time")??
                .context("the event stream ended")?;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Skips events until one of type `kind`; returns it.
    pub async fn until(&mut self, kind: &str, deadline: Duration) -> Result<Value> {
        self.until_where(kind, |_| true, deadline).await
    }

    /// Skips events until one of type `kind` that `wanted` accepts: other sessions'
    /// updates (speaking, uplink limits) interleave with the one a test waits for.
    pub async fn until_where(
        &mut self,
        kind: &str,
        wanted: impl Fn(&Value) -> bool,
        deadline: Duration,
    ) -> Result<Value> {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let event = self
                .next(left)
                .await
                .with_context(|| format!("waiting for {kind}"))?;
            if event["type"] == kind && wanted(&event) {
                return Ok(event);
            }
        }
    }
}
