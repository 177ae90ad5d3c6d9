//! Issue 10: the structure holds. The mixer's GStreamer work never stalls the server (the
//! health check answers at once while a participant leaves), each room's events reach its own
//! readers whatever other rooms do, and the HTTP edge tells a missing resource (404) from a
//! wrong method (405 with `Allow`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::support::events::EventStream;
use crate::support::http;
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer};

const DEADLINE: Duration = Duration::from_secs(10);

/// GETs `/healthz` one request after another until `stop` says so; returns when each was sent
/// and how long it took. On
/// a thread and runtime of its own, so the test's own busy runtime (every client's media tasks)
/// does not delay the probe: what is measured is the server.
fn probe_health(
    base: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::thread::JoinHandle<Result<Vec<(Instant, Duration)>>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let url = http::endpoint(&base, &["healthz"])?;
            let client = http::client()?;
            let mut latencies = Vec::new();
            while !*stop.borrow() {
                let t0 = Instant::now();
                let status = client.get(url.clone()).send().await?.status();
                latencies.push((t0, t0.elapsed()));
                ensure!(status == 200, "healthz answered {status}");
            }
            Ok(latencies)
        })
    })
}

/// `n` participants and a viewer in `room`, once the viewer hears the room. Kept light for the
/// test process, which runs every client's encoder and decoder on the same two cores as the
/// server (what is measured is the server's runtime, not CPU contention): small pictures out,
/// the low tier in. Participants, so each has a mix-minus the others' audio is linked into.
async fn busy_room(base: &str, room: &str, n: usize) -> Result<(Vec<TestClient>, TestClient)> {
    let low = JoinOptions {
        quality: Some("low"),
        ..JoinOptions::default()
    };
    let mut senders = Vec::new();
    for i in 0..n {
        let colour = crate::support::analysis::colours::PALETTE[i % 6].1;
        let mut media = SendMedia::new(colour, 300.0 + 110.0 * i as f32);
        (media.width, media.height) = (160, 90);
        let name = format!("p{i}");
        let role = Role::Participant;
        senders
            .push(TestClient::join_with(base, room, role, Some(media), &name, low.clone()).await?);
    }
    let viewer = TestClient::join_with(base, room, Role::Viewer, None, "wall", low).await?;
    // Media flows through all the branches the leaves will take out.
    viewer
        .next_audio(Duration::from_secs(1), DEADLINE)
        .await
        .context("the room's audio")?;
    Ok((senders, viewer))
}

/// Two rooms each lose three of their four senders (audio and video) at the same moment, on a
/// runtime of two workers: before the mixer had its own thread, each room's actor waited on a
/// worker for every pad of every branch to go idle, and two rooms could hold both workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue10_the_health_check_answers_at_once_while_participants_leave() -> Result<()> {
    let server = TestServer::start(&[])?;
    let base = server.base_url().to_owned();
    let (mut room_a, viewer_a) = busy_room(&base, "leave-a", 4).await?;
    let (mut room_b, viewer_b) = busy_room(&base, "leave-b", 4).await?;
    let leavers: Vec<TestClient> = room_a
        .split_off(1)
        .into_iter()
        .chain(room_b.split_off(1))
        .collect();

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let probe = probe_health(base.clone(), stop);
    // A steady moment first, then the leaves, then two seconds more: the branches come out
    // after DELETE has answered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leaves_at = Instant::now();
    for left in futures::future::join_all(leavers.into_iter().map(TestClient::leave)).await {
        left?;
    }
    for room in ["leave-a", "leave-b"] {
        let info = server.room(room).await?;
        ensure!(
            info["participants"].as_array().map(Vec::len) == Some(1),
            "{info}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let latencies = tokio::task::spawn_blocking(move || probe.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
    let worst_of = |during: bool| {
        latencies
            .iter()
            .filter(|(t0, _)| (*t0 >= leaves_at) == during)
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    };
    let (steady, worst) = (worst_of(false), worst_of(true));
    eprintln!(
        "healthz: {} requests, worst {steady:?} in the steady second before, {worst:?} during the leaves",
        latencies.len()
    );
    ensure!(
        latencies.len() >= 20,
        "too few requests: {}",
        latencies.len()
    );
    // Against the same room's steady second, in the same run: the test process's own encoders
    // share the two cores, so the absolute figure depends on the machine. A blocked worker
    // (what this guards against) stalls for the 2 s a pad may take to go idle.
    let bound = (steady * 3).max(Duration::from_millis(50));
    ensure!(
        worst < bound,
        "the health check waited {worst:?} during the leaves (steady: {steady:?})"
    );
    drop((room_a, viewer_a, room_b, viewer_b));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue10_a_quiet_rooms_events_arrive_in_order_while_another_room_is_busy() -> Result<()> {
    let server = TestServer::start(&[])?;
    let base = server.base_url();
    let busy = TestClient::join(base, "busy", Role::Participant, None, "busy").await?;
    let quiet = TestClient::join(base, "quiet", Role::Participant, None, "quiet").await?;
    let mut reader = EventStream::open(base, "quiet").await?;
    let first = reader.next(DEADLINE).await?;
    ensure!(first["type"] == "snapshot", "{first}");

    // Thousands of events in the busy room, and ten in the quiet one, at the same time; the
    // quiet room's reader reads nothing until both are done.
    let mute_url = |client: &TestClient| -> Result<reqwest::Url> {
        Ok(reqwest::Url::parse(&format!(
            "{}/mute",
            client.session_url()
        ))?)
    };
    let (busy_url, quiet_url) = (mute_url(&busy)?, mute_url(&quiet)?);
    let storm = tokio::spawn(async move {
        for i in 0..2000 {
            let r = http::put_json(&busy_url, &json!({"audio": i % 2 == 0})).await?;
            ensure!(r.status == 204, "busy mute: {}", r.status);
        }
        Ok::<_, anyhow::Error>(())
    });
    for i in 0..10 {
        let r = http::put_json(&quiet_url, &json!({"audio": i % 2 == 0})).await?;
        ensure!(r.status == 204, "quiet mute: {}", r.status);
    }
    storm.await??;
    for i in 0..10 {
        let event = reader.next(DEADLINE).await?;
        ensure!(
            event["type"] == "participant_updated",
            "event {i} of the quiet room is {event} (a reader that fell behind gets a snapshot)"
        );
        ensure!(
            event["participant"]["audio_muted"] == json!(i % 2 == 0),
            "event {i} out of order: {event}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn issue10_unknown_paths_are_404_and_wrong_methods_405_with_allow() -> Result<()> {
    let server = TestServer::start(&[])?;
    let client = http::client()?;
    let url = |path: &str| reqwest::Url::parse(&format!("{}{path}", server.base_url()));
    for (method, path, status, allow) in [
        ("DELETE", "/sessions/x", 404, None),
        ("GET", "/no/such/page", 404, None),
        ("POST", "/rooms/a/foo", 404, None),
        ("PUT", "/rooms/a/recordings/1/file/x", 404, None),
        (
            "GET",
            "/rooms/a/sessions/1f",
            405,
            Some("PATCH, DELETE, OPTIONS"),
        ),
        ("PUT", "/healthz", 405, Some("GET, OPTIONS")),
        ("DELETE", "/rooms/a/whip", 405, Some("POST, OPTIONS")),
        (
            "PATCH",
            "/rooms/a/recordings",
            405,
            Some("GET, POST, OPTIONS"),
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let response = client.request(method.clone(), url(path)?).send().await?;
        let got_allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let got = response.status().as_u16();
        let body: serde_json::Value = response.json().await?;
        ensure!(got == status, "{method} {path}: {got} {body}");
        ensure!(
            got_allow.as_deref() == allow,
            "{method} {path}: Allow {got_allow:?}"
        );
        let code = if status == 404 {
            "not_found"
        } else {
            "method_not_allowed"
        };
        ensure!(body["error"] == code, "{method} {path}: {body}");
    }
    // The routes that exist still answer as before.
    let ok = client.get(url("/healthz")?).send().await?;
    ensure!(ok.status() == 200);
    let page = client.get(url("/view.html")?).send().await?;
    ensure!(page.status() == 200);
    Ok(())
}
