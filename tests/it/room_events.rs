//! Issue 4 at the HTTP level, with webrtc-rs clients: trickle ICE `PATCH` as RFC 9725 says,
//! the room's event stream (Server-Sent Events), and mute: the tile shows a placeholder and the
//! voice leaves the mix. The real browser is in `browser.rs`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::support::analysis::{Rect, Rgb, average_colour, colours, is_close, tone_level_db};
use crate::support::client::post_offer;
use crate::support::events::EventStream;
use crate::support::eventually_sync;
use crate::support::{Role, SendMedia, TestClient, TestServer, http};

/// The camera-off placeholder's background (`video-placeholder.pipeline`, 0x2b2f3a).
const PLACEHOLDER: Rgb = (0x2b, 0x2f, 0x3a);
const DEADLINE: Duration = Duration::from_secs(10);

fn session_url(base: &str, location: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(base)?
        .join(location)
        .context("joining the Location")
}

#[tokio::test]
async fn issue4_trickle_patch_follows_rfc9725() -> Result<()> {
    let server = TestServer::start(&[])?;
    let base = server.base_url();
    let answer = post_offer(base, "trickle", Role::Participant, "Tia").await?;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let etag = answer.etag.clone().context("a 201 carries an ETag")?;
    let url = session_url(base, answer.location.as_deref().context("a Location")?)?;
    const FRAG: &str = "application/trickle-ice-sdpfrag";
    // A loopback candidate on the discard port: checks to it go nowhere, and stay on `lo`.
    let candidate = "a=candidate:1 1 udp 2122260223 127.0.0.1 9 typ host\r\n";
    // Without credentials, a fragment continues the current ICE session; with another ufrag
    // than the offer's, it is a restart.
    let body = |ufrag: Option<&str>| {
        let credentials = ufrag
            .map(|u| format!("a=ice-ufrag:{u}\r\na=ice-pwd:x\r\n"))
            .unwrap_or_default();
        format!(
            "{credentials}m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{candidate}a=end-of-candidates\r\n"
        )
    };

    // The right tag and the offer's ufrag: accepted, nothing to say.
    let ok = http::patch(&url, FRAG, Some(&etag), body(None)).await?;
    assert_eq!(ok.status, 204, "{}", ok.body);
    // No If-Match is allowed too (RFC 9725 says SHOULD).
    let ok = http::patch(&url, FRAG, None, body(None)).await?;
    assert_eq!(ok.status, 204, "{}", ok.body);

    let cases: Vec<(&str, http::RawResponse, u16, &str)> = vec![
        (
            "another ICE session's tag",
            http::patch(&url, FRAG, Some("\"00\""), body(None)).await?,
            412,
            "etag_mismatch",
        ),
        (
            "an ICE restart (If-Match: *)",
            http::patch(&url, FRAG, Some("*"), body(Some("newufrag"))).await?,
            422,
            "ice_restart_unsupported",
        ),
        (
            "new credentials",
            http::patch(&url, FRAG, Some(&etag), body(Some("newufrag"))).await?,
            422,
            "ice_restart_unsupported",
        ),
        (
            "the wrong media type",
            http::patch(&url, "application/sdp", Some(&etag), body(None)).await?,
            415,
            "unsupported_media_type",
        ),
        (
            "a malformed fragment",
            http::patch(&url, FRAG, Some(&etag), "a=candidate:1 1 udp\r\n").await?,
            400,
            "bad_fragment",
        ),
        (
            "an unknown session",
            http::patch(
                &session_url(base, "/rooms/trickle/sessions/abc")?,
                FRAG,
                None,
                body(None),
            )
            .await?,
            404,
            "unknown_session",
        ),
    ];
    for (what, response, status, code) in cases {
        assert_eq!(response.status, status, "{what}: {}", response.body);
        assert_eq!(response.json()?["error"], code, "{what}: {}", response.body);
    }
    // OPTIONS says what the resources take (and answers a CORS preflight).
    let options = http::client()?
        .request(reqwest::Method::OPTIONS, url.clone())
        .send()
        .await?;
    assert_eq!(options.status(), 204);
    assert_eq!(
        options
            .headers()
            .get("accept-patch")
            .and_then(|v| v.to_str().ok()),
        Some(FRAG)
    );
    http::delete(&url).await?;
    Ok(())
}

#[tokio::test]
async fn issue4_room_events_tell_who_joins_mutes_and_leaves() -> Result<()> {
    let server = TestServer::start(&["--room-linger-secs", "1"])?;
    let base = server.base_url();
    let mut events = EventStream::open(base, "ev").await?;
    let first = events.next(DEADLINE).await?;
    assert_eq!(first["type"], "snapshot", "{first}");
    assert_eq!(first["live"], false, "no room yet: {first}");

    let robot = TestClient::join(
        base,
        "ev",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "Robot",
    )
    .await?;
    let joined = events.until("participant_joined", DEADLINE).await?;
    assert_eq!(joined["participant"]["name"], "Robot", "{joined}");
    assert_eq!(joined["participant"]["kind"], "participant", "{joined}");
    let id = joined["participant"]["id"]
        .as_str()
        .context("an id")?
        .to_owned();
    let layout = events.until("layout_changed", DEADLINE).await?;
    assert_eq!(layout["tiles"][0]["id"], id.as_str(), "{layout}");
    assert_eq!(layout["tiles"][0]["rect"]["width"], 1280, "{layout}");

    // A second stream starts from a snapshot that already has Robot.
    let mut late = EventStream::open(base, "ev").await?;
    let snapshot = late.next(DEADLINE).await?;
    assert_eq!(snapshot["live"], true, "{snapshot}");
    assert_eq!(snapshot["participants"][0]["name"], "Robot", "{snapshot}");

    let mute_url = reqwest::Url::parse(&format!("{}/mute", robot.session_url()))?;
    let muted = http::put_json(&mute_url, &json!({"video": true})).await?;
    assert_eq!(muted.status, 204, "{}", muted.body);
    // Earlier updates (its connection state) may come first.
    let updated = events
        .until_where(
            "participant_updated",
            |u| u["participant"]["video_muted"] == true,
            DEADLINE,
        )
        .await?;
    assert_eq!(updated["participant"]["audio_muted"], false, "{updated}");

    robot.leave().await?;
    let left = events.until("participant_left", DEADLINE).await?;
    assert_eq!(left["id"], id.as_str(), "{left}");
    assert_eq!(left["reason"], "left", "{left}");
    let ended = events.until("room_ended", DEADLINE).await?;
    assert_eq!(ended, json!({"type": "room_ended", "reason": "empty"}));

    let bad = http::put_json(&mute_url, &json!({"video": "yes"})).await?;
    assert!(matches!(bad.status, 400 | 404), "{}", bad.body);
    Ok(())
}

/// Waits until `viewer`'s latest frame has `colour` over `area`.
async fn wait_for_colour(
    viewer: &TestClient,
    area: Rect,
    colour: Rgb,
    what: &str,
) -> Result<Duration> {
    let start = Instant::now();
    eventually_sync(DEADLINE, what, || match viewer.latest_frame() {
        Some(frame)
            if frame.width == 1280 && is_close(average_colour(&frame, area), colour, 24) =>
        {
            Ok(start.elapsed())
        }
        seen => Err(format!(
            "expected {colour:?}, saw {:?}",
            seen.map(|f| average_colour(&f, area))
        )),
    })
    .await
}

#[tokio::test]
async fn issue4_muted_camera_shows_a_placeholder_and_muted_voice_leaves_the_mix() -> Result<()> {
    let server = TestServer::start(&[])?;
    let base = server.base_url();
    let robot = TestClient::join(
        base,
        "mute",
        Role::Contributor,
        Some(SendMedia::new(colours::RED, 440.0)),
        "Robot",
    )
    .await?;
    let viewer = TestClient::join(base, "mute", Role::Viewer, None, "wall").await?;
    // Left of the centre, clear of the name the placeholder writes there.
    let centre = Rect::new(160, 300, 120, 120);
    wait_for_colour(&viewer, centre, colours::RED, "the robot's video").await?;
    let audio = viewer.next_audio(Duration::from_secs(1), DEADLINE).await?;
    let on = tone_level_db(&audio, 48_000, 440.0);
    assert!(on > -40.0, "the viewer hears the robot: {on:.1} dBFS");

    // The robot keeps sending red and its tone: the server must hide both on its word.
    let mute_url = reqwest::Url::parse(&format!("{}/mute", robot.session_url()))?;
    let r = http::put_json(&mute_url, &json!({"audio": true, "video": true})).await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let took = wait_for_colour(&viewer, centre, PLACEHOLDER, "the camera-off placeholder").await?;
    println!("placeholder shown {} ms after the mute", took.as_millis());
    let room = server.room("mute").await?;
    assert_eq!(room["participants"][0]["video_muted"], true, "{room}");
    // Audio after the change: skip what was in flight, then listen.
    viewer
        .next_audio(Duration::from_millis(500), DEADLINE)
        .await?;
    let audio = viewer.next_audio(Duration::from_secs(1), DEADLINE).await?;
    let off = tone_level_db(&audio, 48_000, 440.0);
    assert!(
        off < on - 30.0,
        "muted voice still heard: {off:.1} dBFS (was {on:.1})"
    );

    let r = http::put_json(&mute_url, &json!({"audio": false, "video": false})).await?;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for_colour(&viewer, centre, colours::RED, "the video back after unmute").await?;
    viewer
        .next_audio(Duration::from_millis(500), DEADLINE)
        .await?;
    let audio = viewer.next_audio(Duration::from_secs(1), DEADLINE).await?;
    let back = tone_level_db(&audio, 48_000, 440.0);
    assert!(back > -40.0, "the voice is back: {back:.1} dBFS");
    Ok(())
}
