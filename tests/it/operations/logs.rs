//! Issue 15: `--log-format json` writes one JSON object per line; the lines of a room's work
//! carry its `room` (and a session's work its `session`) from spans; no token, secret or SDP
//! body appears at the info level.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::auth::mint;
use crate::support::analysis::colours;
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer};

const DEADLINE: Duration = Duration::from_secs(15);

/// The value of `key` in the line's own fields or in any of its spans.
fn field<'a>(line: &'a Value, key: &str) -> Option<&'a Value> {
    line["fields"].get(key).or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .find_map(|span| span.get(key))
    })
}

#[tokio::test]
async fn issue15_json_logs_carry_room_and_session_and_no_secrets() -> Result<()> {
    let server = TestServer::start_with_env(
        &["--log-format", "json", "--room-linger-secs", "0"],
        &crate::auth::ENV,
    )?;
    let token = mint(&["--room", "logs", "--identity", "ann", "--grant", "join"])?;
    let ann = TestClient::join_with(
        server.base_url(),
        "logs",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "ann",
        JoinOptions {
            token: Some(token.clone()),
            ..JoinOptions::default()
        },
    )
    .await?;
    ann.wait_for_new_frames(30, DEADLINE).await?;
    let offer_sdp_marker = "a=fingerprint";
    ann.leave().await?;
    server.wait_for_line("room ended", DEADLINE).await?;

    let mut parsed = Vec::new();
    for raw in server.log() {
        // stdout says where it listens, for scripts; stderr is the log.
        if raw.starts_with("tessera listening on") {
            continue;
        }
        let line: Value = serde_json::from_str(&raw)
            .with_context(|| format!("a log line that is not JSON: {raw}"))?;
        ensure!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "no timestamp or level: {raw}"
        );
        for secret in [
            token.as_str(),
            crate::auth::SECRET,
            offer_sdp_marker,
            "v=0\r\n",
        ] {
            ensure!(!raw.contains(secret), "a secret or SDP in the log: {raw}");
        }
        parsed.push(line);
    }
    let room_work: Vec<&Value> = parsed
        .iter()
        .filter(|l| {
            let target = l["target"].as_str().unwrap_or("");
            target.starts_with("tessera::room") || target.starts_with("tessera::media")
        })
        .collect();
    ensure!(
        room_work.len() >= 4,
        "{} lines of room work",
        room_work.len()
    );
    for line in &room_work {
        ensure!(
            field(line, "room").and_then(Value::as_str) == Some("logs"),
            "a line of the room's work without its room: {line}"
        );
    }
    let joined = room_work
        .iter()
        .find(|l| l["fields"]["message"] == "session joined")
        .context("the join is logged")?;
    ensure!(field(joined, "session").is_some(), "{joined}");
    println!(
        "{} JSON lines, {} of the room's work, each with room=\"logs\"; e.g. {joined}",
        parsed.len(),
        room_work.len()
    );
    Ok(())
}
