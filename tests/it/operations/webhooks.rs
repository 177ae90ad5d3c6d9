//! Issue 15: webhooks. A small receiver (warp, on loopback) gets a room's life in order: the
//! room starts, a participant joins, a recording starts and finishes (its path, bytes and
//! duration), the participant leaves, the room ends; each signed with HMAC-SHA256 of the body
//! under the API secret (checked here the way the README tells a receiver to), and a receiver
//! that answers 500 twice gets the event on the third try, without the events after it
//! overtaking it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;
use warp::Filter;

use crate::auth::mint;
use crate::support::analysis::colours;
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer, http};

const DEADLINE: Duration = Duration::from_secs(20);

/// What the receiver got: the event, its headers' signature, and which try of that event it
/// was.
struct Received {
    body: Vec<u8>,
    signature: String,
    attempt: usize,
}

/// A receiver on 127.0.0.1 that answers 500 to the first `fail_first` tries of `flaky` events
/// and 200 to the rest; every request goes to the channel.
async fn receiver(
    flaky: &'static str,
    fail_first: usize,
) -> Result<(
    String,
    mpsc::UnboundedReceiver<Received>,
    tokio_util::task::AbortOnDropHandle<()>,
)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let tries: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let route = warp::post()
        .and(warp::path("hook"))
        .and(warp::header::optional::<String>("tessera-signature"))
        .and(warp::body::bytes())
        .map(move |signature: Option<String>, body: bytes::Bytes| {
            let json: Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = json["id"].as_str().unwrap_or("").to_owned();
            let attempt = {
                let mut tries = tries.lock().expect("the test's own lock");
                let n = tries.entry(id).or_default();
                *n += 1;
                *n
            };
            let _ = tx.send(Received {
                body: body.to_vec(),
                signature: signature.unwrap_or_default(),
                attempt,
            });
            if json["event"] == flaky && attempt <= fail_first {
                warp::http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                warp::http::StatusCode::OK
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let at = listener.local_addr()?;
    // Stops with the test (the handle aborts the server when dropped).
    let server = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        warp::serve(route).incoming(listener).run(),
    ));
    Ok((format!("http://{at}/hook"), rx, server))
}

/// A receiver's check of a webhook, in five lines.
fn verified(secret: &str, body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    header == format!("sha256={expected}")
}

#[tokio::test]
async fn issue15_webhooks_tell_a_rooms_life_in_order_signed_and_retried() -> Result<()> {
    let (url, mut received, _receiver) = receiver("participant_joined", 2).await?;
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_env(
        &[
            "--webhook-url",
            &url,
            "--room-linger-secs",
            "0",
            "--recordings-dir",
            dir.path().to_str().context("utf-8")?,
        ],
        &crate::auth::ENV,
    )?;
    let base = server.base_url().to_owned();
    let join = mint(&["--room", "hooks", "--identity", "ann", "--grant", "join"])?;
    let record = mint(&["--room", "hooks", "--identity", "desk", "--grant", "record"])?;
    let ann = TestClient::join_with(
        &base,
        "hooks",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "Ann",
        JoinOptions {
            token: Some(join.clone()),
            ..JoinOptions::default()
        },
    )
    .await?;
    let recordings = reqwest::Url::parse(&format!("{base}/rooms/hooks/recordings"))?;
    let started = http::send(
        Method::POST,
        &recordings,
        Some(&record),
        Some(("application/json", "{}".to_owned())),
    )
    .await?;
    ensure!(started.status == 201, "{}", started.body);
    let id = started.json()?["id"].as_str().context("an id")?.to_owned();
    ann.wait_for_new_frames(60, DEADLINE).await?;
    let stop = reqwest::Url::parse(&format!("{base}/rooms/hooks/recordings/{id}"))?;
    let stopped = http::send(Method::DELETE, &stop, Some(&record), None).await?;
    ensure!(stopped.status == 200, "{}", stopped.body);
    ann.leave().await?;

    // Every request, in arrival order, until the room's end was delivered.
    let mut requests = Vec::new();
    let mut delivered = Vec::new();
    while !delivered.iter().any(|e: &Value| e["event"] == "room_ended") {
        let got = tokio::time::timeout(DEADLINE, received.recv())
            .await
            .context("the next webhook")?
            .context("the receiver stopped")?;
        let json: Value = serde_json::from_slice(&got.body)?;
        ensure!(
            verified(crate::auth::SECRET, &got.body, &got.signature),
            "a bad signature on {json}"
        );
        requests.push((json["event"].as_str().unwrap_or("").to_owned(), got.attempt));
        // The receiver refused the first two tries of the join: those are not deliveries.
        let refused = json["event"] == "participant_joined" && got.attempt <= 2;
        if !refused {
            delivered.push(json);
        }
    }
    let order: Vec<&str> = delivered
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    println!("requests (event, try): {requests:?}");
    ensure!(
        order
            == [
                "room_started",
                "participant_joined",
                "recording_started",
                "recording_finished",
                "participant_left",
                "room_ended"
            ],
        "delivered in this order: {order:?}"
    );
    let joins: Vec<usize> = requests
        .iter()
        .filter(|(e, _)| e == "participant_joined")
        .map(|(_, n)| *n)
        .collect();
    ensure!(joins == [1, 2, 3], "the join was tried {joins:?}");
    for event in &delivered {
        ensure!(
            event["id"].as_str().is_some_and(|i| i.len() == 16)
                && event["timestamp"].as_str().is_some()
                && event["room"] == "hooks",
            "{event}"
        );
    }
    let finished = &delivered[3];
    let path = finished["path"].as_str().context("a path")?;
    let bytes = finished["recording"]["bytes"].as_u64().unwrap_or(0);
    let on_disk = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    ensure!(
        bytes > 10_000 && bytes == on_disk,
        "{bytes} bytes said, {on_disk} on disk"
    );
    ensure!(
        finished["recording"]["duration_secs"]
            .as_f64()
            .unwrap_or(0.0)
            > 1.0
    );
    ensure!(delivered[4]["reason"] == "left" && delivered[4]["participant"]["name"] == "Ann");
    ensure!(delivered[5]["reason"] == "empty");
    println!("recording_finished: {finished}");
    Ok(())
}
