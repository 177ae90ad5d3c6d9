//! Issue 15: `GET /metrics`, read back with a Prometheus text parser (`prometheus-parse`), says
//! what is true: two rooms are two rooms, a 30 fps room composes every 33 ms, a sender that
//! stopped grows stale, RTP and encoders count; with tokens it needs an administrator's, and
//! `--metrics-listen` serves it alone.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use prometheus_parse::{Scrape, Value};

use crate::auth::mint;
use crate::support::analysis::colours;
use crate::support::{Role, SendMedia, TestClient, TestServer, http};

const DEADLINE: Duration = Duration::from_secs(15);

/// Scrapes `url` (with `token`) and parses it as Prometheus does.
async fn scrape(url: &str, token: Option<&str>) -> Result<(Scrape, String)> {
    let mut request = http::client()?.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await?;
    ensure!(status == 200, "GET {url}: {status} {text}");
    ensure!(
        content_type.starts_with("application/openmetrics-text"),
        "content type {content_type}"
    );
    let scrape =
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).context("parsing the exposition")?;
    Ok((scrape, text))
}

/// The value of `metric` with (at least) `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

fn must(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Result<f64> {
    value(scrape, metric, labels).with_context(|| format!("no {metric} {labels:?}"))
}

#[tokio::test]
async fn issue15_metrics_follow_reality_two_rooms_33_ms_frames_and_a_stale_sender() -> Result<()> {
    let server = TestServer::start(&[])?;
    let base = server.base_url().to_owned();
    let url = format!("{base}/metrics");
    let red = TestClient::join(
        &base,
        "alpha",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "red",
    )
    .await?;
    let blue = TestClient::join(
        &base,
        "beta",
        Role::Contributor,
        Some(SendMedia::new(colours::BLUE, 620.0)),
        "blue",
    )
    .await?;
    red.wait_for_new_frames(30, DEADLINE).await?;

    let (first, _) = scrape(&url, None).await?;
    let t_first = Instant::now();
    ensure!(must(&first, "tessera_rooms", &[])? == 2.0, "two rooms");
    let room = [("room", "alpha")];
    let interval_sum = "tessera_mixer_frame_interval_seconds_sum";
    let interval_count = "tessera_mixer_frame_interval_seconds_count";
    let (sum0, count0) = (
        must(&first, interval_sum, &room)?,
        must(&first, interval_count, &room)?,
    );

    // The second sender stops (its connection stays up): its room's freshness grows.
    blue.stop_media();
    let (stopped, _) = scrape(&url, None).await?;
    let stale0 = must(
        &stopped,
        "tessera_source_freshness_seconds",
        &[("room", "beta")],
    )?;
    red.wait_for_new_frames(90, DEADLINE).await?;
    let (second, text) = scrape(&url, None).await?;
    let window = t_first.elapsed().as_secs_f64();
    let stale1 = must(
        &second,
        "tessera_source_freshness_seconds",
        &[("room", "beta")],
    )?;
    let fresh = must(&second, "tessera_source_freshness_seconds", &room)?;

    // The frame interval over the window between the two scrapes.
    let frames = must(&second, interval_count, &room)? - count0;
    let mean = (must(&second, interval_sum, &room)? - sum0) / frames;
    println!(
        "alpha: {frames} frames in {window:.2} s, mean interval {:.1} ms; beta's freshness \
         {stale0:.2} s -> {stale1:.2} s after its sender stopped; alpha's {fresh:.3} s",
        mean * 1000.0
    );
    ensure!(
        (0.030..=0.037).contains(&mean),
        "a 30 fps room's frame interval averaged {:.1} ms",
        mean * 1000.0
    );
    ensure!(
        stale1 >= stale0 + window * 0.8,
        "beta's freshness went {stale0:.2} -> {stale1:.2} s over {window:.2} s"
    );
    ensure!(fresh < 0.5, "alpha's sender is fresh: {fresh:.3} s");

    // Counters that move with the media.
    let rtp_in = |s: &Scrape| {
        must(
            s,
            "tessera_rtp_packets_total",
            &[("direction", "in"), ("kind", "video")],
        )
    };
    ensure!(rtp_in(&second)? > rtp_in(&first)?, "video RTP in grows");
    let out = [("direction", "out"), ("kind", "audio")];
    ensure!(
        must(&second, "tessera_rtp_packets_total", &out)? > 0.0,
        "audio RTP out"
    );
    let encode = [("room", "alpha"), ("output", "vp8/high")];
    let encoded = must(&second, "tessera_encode_seconds_count", &encode)?;
    let encode_mean = must(&second, "tessera_encode_seconds_sum", &encode)? / encoded;
    ensure!(encoded > 30.0, "{encoded} frames encoded");
    ensure!(
        must(&second, "tessera_receivers", &[("output", "vp8/high")])? == 1.0,
        "one receiver of vp8/high"
    );
    ensure!(must(&second, "tessera_joins_total", &[("kind", "participant")])? == 1.0);
    ensure!(must(&second, "tessera_sessions", &[("kind", "contributor")])? == 1.0);
    ensure!(
        must(
            &second,
            "tessera_http_requests_total",
            &[("route", "whip"), ("status", "201")]
        )? == 2.0
    );
    ensure!(must(&second, "tessera_process_resident_memory_bytes", &[])? > 10e6);
    ensure!(must(&second, "tessera_process_cpu_seconds_total", &[])? > 0.0);
    ensure!(must(&second, "tessera_pipeline_latency_seconds", &room)? > 0.0);
    println!(
        "alpha's vp8/high encoder: {encoded} frames, {:.2} ms each",
        encode_mean * 1000.0
    );
    let mixer: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("room=\"alpha\"") && !l.contains("_bucket"))
        .collect();
    println!(
        "a scrape of a running room (its mixer):\n{}",
        mixer.join("\n")
    );

    // A participant who leaves is counted, with its reason.
    red.leave().await?;
    drop(blue);
    let (third, _) = scrape(&url, None).await?;
    ensure!(
        must(
            &third,
            "tessera_leaves_total",
            &[("kind", "participant"), ("reason", "left")]
        )? == 1.0
    );
    Ok(())
}

#[tokio::test]
async fn issue15_metrics_need_an_admin_token_or_their_own_port() -> Result<()> {
    let server =
        TestServer::start_with_env(&["--metrics-listen", "127.0.0.1:0"], &crate::auth::ENV)?;
    let line = server
        .wait_for_line("tessera metrics on ", DEADLINE)
        .await?;
    let own = line
        .split("tessera metrics on ")
        .nth(1)
        .context("the metrics address")?
        .trim()
        .to_owned();
    let main = format!("{}/metrics", server.base_url());
    let anonymous = http::get(&reqwest::Url::parse(&main)?).await?;
    ensure!(
        anonymous.status == 401,
        "without a token: {}",
        anonymous.status
    );
    let join = mint(&["--room", "a", "--identity", "ann", "--grant", "join"])?;
    let status = http::client()?
        .get(&main)
        .bearer_auth(&join)
        .send()
        .await?
        .status();
    ensure!(status == 403, "with a join token: {status}");
    let admin = mint(&["--admin"])?;
    let (scrape_main, _) = scrape(&main, Some(&admin)).await?;
    ensure!(must(&scrape_main, "tessera_rooms", &[])? == 0.0);
    let (scrape_own, _) = scrape(&own, None).await?;
    ensure!(must(&scrape_own, "tessera_rooms", &[])? == 0.0);
    let status = http::client()?
        .get(own.replace("/metrics", "/rooms"))
        .send()
        .await?
        .status();
    ensure!(
        status == 404,
        "the metrics port serves nothing else: {status}"
    );
    Ok(())
}
