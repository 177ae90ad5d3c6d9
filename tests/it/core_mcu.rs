//! Issue 2, the core MCU, end to end: a real server on port 0 (`--rtc-ip 127.0.0.1`), real
//! webrtc-rs clients sending solid colours and sine tones, and checks on what they decode: the
//! colour at each tile's centre, the tones in the received audio, the frame rate.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::support::analysis::{
    Frame, Rect, Rgb, average_colour, colours, is_close, min_fps, tone_level_db,
};
use tessera::metrics::cpu_seconds;

use crate::support::{Role, SendMedia, TestClient, TestServer, eventually};

/// Tones far from each other and from each other's harmonics.
const TONES: [f32; 3] = [440.0, 620.0, 1010.0];
const COLOURS: [Rgb; 3] = [colours::RED, colours::GREEN, colours::BLUE];
const NAMES: [&str; 3] = ["red", "green", "blue"];
/// Canvas of the default mix.
const W: u32 = 1280;
const H: u32 = 720;
/// A colour counts as "that colour" within this distance per channel (VP8 at 2 Mbit/s on flat
/// colour lands within a few units; scaling edges are excluded by measuring tile centres).
const TOLERANCE: u8 = 48;
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// The centre area of tile `i` of a `cols` x `rows` grid on the default canvas.
fn tile_centre(i: u32, cols: u32, rows: u32) -> Rect {
    let (tw, th) = (W / cols, H / rows);
    let (cx, cy) = ((i % cols) * tw + tw / 2, (i / cols) * th + th / 2);
    Rect::new(cx - 40, cy - 40, 80, 80)
}

/// Whether every expected area of `frame` has its expected colour.
fn shows(frame: &Frame, expected: &[(Rect, Rgb)]) -> bool {
    frame.width == W
        && frame.height == H
        && expected
            .iter()
            .all(|(rect, colour)| is_close(average_colour(frame, *rect), *colour, TOLERANCE))
}

/// What the 2x2 grid of three senders looks like: red, green / blue, empty.
fn grid_of_three() -> Vec<(Rect, Rgb)> {
    let mut e: Vec<(Rect, Rgb)> = (0..3)
        .map(|i| (tile_centre(i, 2, 2), COLOURS[i as usize]))
        .collect();
    e.push((tile_centre(3, 2, 2), colours::BLACK));
    e
}

/// What participant `i` sends: red and green at 640x360 (16:9, the tile's shape), blue as a
/// 360x360 square, so its tile must keep the aspect ratio with black bars left and right.
fn media_of(i: usize) -> SendMedia {
    let mut m = SendMedia::new(COLOURS[i], TONES[i]);
    if i == 2 {
        (m.width, m.height) = (360, 360);
    }
    m
}

/// Joins red, green and blue (in that order) as participants of `room`.
async fn three_participants(server: &TestServer, room: &str) -> Result<Vec<TestClient>> {
    let mut clients = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let client = TestClient::join(
            server.base_url(),
            room,
            Role::Participant,
            Some(media_of(i)),
            name,
        )
        .await
        .with_context(|| format!("{name} joins"))?;
        clients.push(client);
    }
    Ok(clients)
}

/// Levels (dBFS) of the three tones in `samples`.
fn levels(samples: &[f32]) -> [f32; 3] {
    TONES.map(|hz| tone_level_db(samples, 48_000, hz))
}

/// Asserts `client` (index `own`, or `None` for a viewer) hears the right tones.
async fn assert_hears_mix_minus(client: &TestClient, own: Option<usize>) {
    let audio = client
        .next_audio(Duration::from_secs(2), Duration::from_secs(10))
        .await
        .expect("two seconds of audio");
    let l = levels(&audio);
    for (i, level) in l.iter().enumerate() {
        if Some(i) == own {
            continue;
        }
        assert!(
            *level > -40.0,
            "{}: tone {} Hz too weak ({level:.1} dBFS); levels {l:?}",
            client.name(),
            TONES[i]
        );
    }
    if let Some(own) = own {
        let loudest_other = (0..3)
            .filter(|&i| i != own)
            .map(|i| l[i])
            .fold(f32::MIN, f32::max);
        let weakest_other = (0..3)
            .filter(|&i| i != own)
            .map(|i| l[i])
            .fold(f32::MAX, f32::min);
        assert!(
            l[own] <= weakest_other - 20.0,
            "{} hears itself: own {} Hz at {:.1} dBFS, others {weakest_other:.1}..{loudest_other:.1}; levels {l:?}",
            client.name(),
            TONES[own],
            l[own]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue2_three_participants_see_the_grid_and_hear_everyone_but_themselves() {
    let server = TestServer::start(&[]).expect("server starts");
    let clients = three_participants(&server, "trio")
        .await
        .expect("three join");
    let expected = grid_of_three();
    for c in &clients {
        c.wait_for_frame(FRAME_DEADLINE, |f| shows(f, &expected))
            .await
            .expect("the 2x2 composite: red, green / blue, empty");
    }
    for (i, c) in clients.iter().enumerate() {
        assert_hears_mix_minus(c, Some(i)).await;
    }
    // Each sender was asked for a keyframe when its input was added (a PLI at join).
    for c in &clients {
        assert!(
            c.stats().keyframe_requests_received >= 1,
            "{}: {:?}",
            c.name(),
            c.stats()
        );
    }
    // For the record (not asserted): what a 3-person room costs the server, from /proc.
    let (cpu0, t0) = (cpu_seconds(Some(server.pid())), Instant::now());
    clients[0]
        .wait_for_new_frames(150, Duration::from_secs(10))
        .await
        .unwrap();
    let share = (cpu_seconds(Some(server.pid())) - cpu0) / t0.elapsed().as_secs_f64();
    eprintln!(
        "server CPU with 3 participants: {:.1}% of one core",
        share * 100.0
    );
    // The room's state agrees with the picture: three participants with 2x2 tiles, one encoder.
    let room = server.room("trio").await.expect("GET /rooms/trio");
    let participants = room["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 3);
    let names: Vec<&str> = participants
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, NAMES);
    assert_eq!(
        participants[1]["tile"],
        serde_json::json!({"x": 640, "y": 0, "width": 640, "height": 360})
    );
    assert_eq!(room["mixer"]["video_encoders"], 1);
    // A mix-minus per participant; the "everyone" mix idles, as nobody hears it.
    assert_eq!(room["mixer"]["audio_encoders"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue2_a_viewer_joining_later_sees_the_composite_within_a_second_and_hears_all() {
    let server = TestServer::start(&[]).expect("server starts");
    let clients = three_participants(&server, "watched")
        .await
        .expect("three join");
    clients[0]
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &grid_of_three()))
        .await
        .expect("the room is mixing");
    // "Ten seconds later": the viewer arrives long after the last periodic keyframe would help.
    clients[0]
        .wait_for_new_frames(270, Duration::from_secs(20))
        .await
        .expect("the room keeps running for ~9 s more");
    let viewer = TestClient::join(server.base_url(), "watched", Role::Viewer, None, "kiosk")
        .await
        .expect("the viewer joins over WHEP");
    let connected = Instant::now();
    viewer
        .wait_for_frame(Duration::from_secs(5), |_| true)
        .await
        .expect("a first frame");
    let first = viewer.first_frame_at().expect("first frame instant");
    let delay = first.saturating_duration_since(connected);
    assert!(
        delay <= Duration::from_secs(1),
        "first composite frame came {delay:?} after connecting"
    );
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &grid_of_three()))
        .await
        .expect("the viewer sees the grid");
    assert_hears_mix_minus(&viewer, None).await;
    let room = server.room("watched").await.unwrap();
    assert_eq!(room["viewers"].as_array().map(Vec::len), Some(1));
    // Now someone hears "everyone": three mix-minus encoders plus that one; still one video.
    assert_eq!(room["mixer"]["audio_encoders"], 4);
    assert_eq!(room["mixer"]["video_encoders"], 1);
    assert_eq!(room["viewers"][0]["kind"], "viewer");
}

/// The minimum frame rate over any 1 s window of decode instants between `from` and `to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue2_a_leaver_vanishes_within_two_seconds_without_a_frame_rate_dip() {
    let server = TestServer::start(&[]).expect("server starts");
    let mut clients = three_participants(&server, "leave")
        .await
        .expect("three join");
    for c in &clients {
        c.wait_for_frame(FRAME_DEADLINE, |f| shows(f, &grid_of_three()))
            .await
            .expect("the 2x2 composite");
    }
    // A steady second of video before the change, to measure against.
    clients[0]
        .wait_for_new_frames(45, Duration::from_secs(5))
        .await
        .unwrap();
    let before = Instant::now() - Duration::from_secs(1);
    let blue = clients.pop().expect("three clients");
    let left_at = Instant::now();
    blue.leave().await.expect("blue leaves with DELETE");
    // Side by side: each 640x360 source letterboxed into a 640x720 half (black above and below).
    let two_up = [
        (Rect::new(280, 320, 80, 80), colours::RED),
        (Rect::new(920, 320, 80, 80), colours::GREEN),
        (Rect::new(280, 40, 80, 80), colours::BLACK),
        (Rect::new(920, 640, 80, 40), colours::BLACK),
    ];
    for c in &clients {
        c.wait_for_frame(Duration::from_secs(2), |f| shows(f, &two_up))
            .await
            .expect("within 2 s the grid is 2-up and blue is gone");
    }
    let reflowed = left_at.elapsed();
    clients[0]
        .wait_for_new_frames(60, Duration::from_secs(5))
        .await
        .unwrap();
    let after = Instant::now();
    for c in &clients {
        let decoded: Vec<Instant> = c.video_state().decoded_at.into_iter().collect();
        let fps = min_fps(&decoded, before, after);
        assert!(
            fps >= 25.0,
            "{}: frame rate fell to {fps} fps around the leave",
            c.name()
        );
    }
    eprintln!("reflow seen {reflowed:?} after DELETE");
    let room = server.room("leave").await.unwrap();
    assert_eq!(room["participants"].as_array().map(Vec::len), Some(2));
}

/// A hand-written offer that is valid SDP but only offers `codec` for sending video.
fn offer_with_only(codec: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
a=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=rtcp-mux\r\n\
a=rtpmap:102 {codec}/90000\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
    )
}

async fn post(server: &TestServer, path: &str, content_type: &str, body: String) -> (u16, Value) {
    let response = crate::support::http::client()
        .unwrap()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// A WHIP join that completes (201 with an answer), then leaves: the server still serves.
async fn assert_join_works(server: &TestServer, room: &str) {
    let r = crate::support::client::post_offer(server.base_url(), room, Role::Participant, "probe")
        .await
        .expect("a join attempt");
    assert_eq!(r.status, 201, "a good join after bad input: {}", r.body);
    assert!(
        r.body.contains("a=candidate"),
        "the answer carries candidates"
    );
    let url = reqwest::Url::parse(server.base_url())
        .unwrap()
        .join(r.location.as_deref().expect("a Location"))
        .unwrap();
    let d = crate::support::http::delete(&url).await.unwrap();
    assert_eq!(d.status, 200);
}

fn assert_error(case: &str, (status, body): (u16, Value), want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{case}: {body}");
    assert_eq!(body["error"], want_code, "{case}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: a message: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue2_bad_input_gets_a_clear_error_and_disturbs_nothing() {
    let server = TestServer::start(&["--max-participants", "2"]).expect("server starts");
    // A room that must keep running throughout.
    let steady = TestClient::join(
        server.base_url(),
        "steady",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "steady",
    )
    .await
    .expect("steady joins");
    steady
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(f, &[(Rect::new(600, 320, 80, 80), colours::RED)])
        })
        .await
        .unwrap();

    let sdp = "application/sdp";
    assert_error(
        "malformed SDP",
        post(&server, "/rooms/bad/whip", sdp, "this is not sdp".into()).await,
        400,
        "bad_offer",
    );
    assert_join_works(&server, "bad").await;
    assert_error(
        "empty SDP",
        post(&server, "/rooms/bad/whip", sdp, String::new()).await,
        400,
        "bad_offer",
    );
    assert_join_works(&server, "bad").await;
    assert_error(
        "wrong content type",
        post(
            &server,
            "/rooms/bad/whip",
            "text/plain",
            offer_with_only("VP8"),
        )
        .await,
        415,
        "unsupported_media_type",
    );
    assert_join_works(&server, "bad").await;
    assert_error(
        "body over 64 KiB",
        post(&server, "/rooms/bad/whip", sdp, "v".repeat(65 * 1024)).await,
        413,
        "body_too_large",
    );
    assert_join_works(&server, "bad").await;
    assert_error(
        "invalid room name",
        post(&server, "/rooms/no.dots/whip", sdp, offer_with_only("VP8")).await,
        400,
        "invalid_room_name",
    );
    assert_error(
        "room name too long",
        post(
            &server,
            &format!("/rooms/{}/whip", "x".repeat(65)),
            sdp,
            offer_with_only("VP8"),
        )
        .await,
        400,
        "invalid_room_name",
    );
    assert_join_works(&server, "bad").await;
    let no_codec = post(&server, "/rooms/bad/whip", sdp, offer_with_only("AV1")).await;
    assert!(
        no_codec.1["message"].as_str().unwrap_or("").contains("AV1"),
        "names what was offered: {}",
        no_codec.1
    );
    assert_error("no decodable codec", no_codec, 400, "unsupported_codec");
    assert_join_works(&server, "bad").await;
    assert_error(
        "recvonly on WHIP",
        post(
            &server,
            "/rooms/bad/whip",
            sdp,
            offer_with_only("VP8").replace("sendonly", "recvonly"),
        )
        .await,
        400,
        "bad_offer",
    );
    assert_error(
        "sendonly on WHEP",
        post(&server, "/rooms/bad/whep", sdp, offer_with_only("VP8")).await,
        400,
        "bad_offer",
    );
    assert_join_works(&server, "bad").await;

    // Unknown sessions: a made-up id, a made-up room, a malformed id.
    for path in [
        "/rooms/bad/sessions/123abc",
        "/rooms/nowhere/sessions/1",
        "/rooms/bad/sessions/zz",
    ] {
        let url = reqwest::Url::parse(&server.url(path)).unwrap();
        let r = crate::support::http::delete(&url).await.unwrap();
        assert_eq!(r.status, 404, "DELETE {path}: {}", r.body);
        assert_eq!(r.json().unwrap()["error"], "unknown_session");
    }
    assert_join_works(&server, "bad").await;

    // Room full (max 2 senders here): two sessions in, the third is refused, a viewer is not.
    let mut held = Vec::new();
    for i in 0..2 {
        let r = crate::support::client::post_offer(
            server.base_url(),
            "full",
            Role::Participant,
            &format!("p{i}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201);
        held.push(r.location.unwrap());
    }
    let r =
        crate::support::client::post_offer(server.base_url(), "full", Role::Participant, "third")
            .await
            .unwrap();
    assert_eq!(r.status, 403, "room full: {}", r.body);
    assert_eq!(r.json().unwrap()["error"], "room_full");
    let r = crate::support::client::post_offer(server.base_url(), "full", Role::Viewer, "watcher")
        .await
        .unwrap();
    assert_eq!(r.status, 201, "a viewer still fits: {}", r.body);
    assert_join_works(&server, "bad").await;

    // Unknown route and unknown room are JSON 404s too.
    let r = crate::support::http::get(&reqwest::Url::parse(&server.url("/rooms/nowhere")).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json().unwrap()["error"], "unknown_room");

    // And the other room never noticed: it still decodes fresh red frames at full rate.
    steady
        .wait_for_new_frames(30, Duration::from_secs(3))
        .await
        .expect("steady keeps receiving");
    assert!(
        steady.fps_over(Duration::from_secs(1)) >= 25.0,
        "steady fps {}",
        steady.fps_over(Duration::from_secs(1))
    );
    let latest = steady.latest_frame().unwrap();
    assert!(shows(
        &latest,
        &[(Rect::new(600, 320, 80, 80), colours::RED)]
    ));
}

async fn counts(server: &TestServer) -> Value {
    crate::support::http::get_json(&reqwest::Url::parse(&server.url("/debug/counts")).unwrap())
        .await
        .expect("GET /debug/counts")
}

/// Polls the debug counts until `done` holds, with a deadline.
async fn wait_for_counts(
    server: &TestServer,
    deadline: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(deadline, "the counts settle", || async {
        let c = counts(server).await;
        anyhow::ensure!(done(&c), "{c}");
        Ok(Some(c))
    })
    .await
    .expect("the counts settle")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue2_an_empty_room_ends_and_leaves_nothing_behind() {
    let server = TestServer::start(&["--room-linger-secs", "1"]).expect("server starts");
    let baseline = counts(&server).await;
    assert_eq!(baseline["rooms"], 0);
    let a = TestClient::join(
        server.base_url(),
        "ephemeral",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "a",
    )
    .await
    .unwrap();
    let b = TestClient::join(
        server.base_url(),
        "ephemeral",
        Role::Participant,
        Some(SendMedia::new(colours::GREEN, 620.0)),
        "b",
    )
    .await
    .unwrap();
    a.wait_for_frame(FRAME_DEADLINE, |f| {
        shows(
            f,
            &[
                (Rect::new(280, 320, 80, 80), colours::RED),
                (Rect::new(920, 320, 80, 80), colours::GREEN),
            ],
        )
    })
    .await
    .unwrap();
    let busy = counts(&server).await;
    assert_eq!(
        (
            busy["rooms"].as_i64(),
            busy["pipelines"].as_i64(),
            busy["peers"].as_i64()
        ),
        (Some(1), Some(1), Some(2)),
        "{busy}"
    );
    assert!(
        busy["media_tasks"].as_i64().unwrap() >= 8,
        "readers and writers run: {busy}"
    );
    assert!(
        busy["sockets"].as_u64() > baseline["sockets"].as_u64(),
        "{busy} vs {baseline}"
    );

    // One leaves with DELETE, the other by closing its connection (DTLS close, no DELETE).
    a.leave().await.unwrap();
    b.disconnect().await;
    let done = wait_for_counts(&server, Duration::from_secs(20), |c| {
        c["rooms"] == 0
            && c["pipelines"] == 0
            && c["peers"] == 0
            && c["media_tasks"] == 0
            && c["sockets"].as_u64() <= baseline["sockets"].as_u64()
    })
    .await;
    let r =
        crate::support::http::get(&reqwest::Url::parse(&server.url("/rooms/ephemeral")).unwrap())
            .await
            .unwrap();
    assert_eq!(r.status, 404, "the room is gone");
    eprintln!("baseline {baseline}\nbusy {busy}\nafter {done}");
    // The name is free for a new room.
    let c = TestClient::join(
        server.base_url(),
        "ephemeral",
        Role::Participant,
        Some(SendMedia::new(colours::BLUE, 1010.0)),
        "c",
    )
    .await
    .unwrap();
    c.wait_for_frame(FRAME_DEADLINE, |f| {
        shows(f, &[(Rect::new(600, 320, 80, 80), colours::BLUE)])
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue2_a_pli_forces_a_keyframe_and_a_burst_is_coalesced() {
    let server = TestServer::start(&[]).expect("server starts");
    let c = TestClient::join(
        server.base_url(),
        "pli",
        Role::Participant,
        Some(SendMedia::new(colours::RED, 440.0)),
        "p",
    )
    .await
    .unwrap();
    c.wait_for_frame(FRAME_DEADLINE, |_| true).await.unwrap();
    // Let the join's keyframes pass (periodic ones come only every 10 s).
    c.wait_for_new_frames(30, Duration::from_secs(5))
        .await
        .unwrap();
    let k0 = c.stats().keyframes_received;
    c.send_pli().await.unwrap();
    c.wait_for_new_frames(20, Duration::from_secs(5))
        .await
        .unwrap();
    let k1 = c.stats().keyframes_received;
    assert!(
        k1 > k0,
        "a PLI brought a keyframe within ~0.7 s ({k0} -> {k1})"
    );

    // Ten PLIs at once from one receiver: at most one now and one deferred 500 ms later.
    c.wait_for_new_frames(20, Duration::from_secs(5))
        .await
        .unwrap();
    let k2 = c.stats().keyframes_received;
    for _ in 0..10 {
        c.send_pli().await.unwrap();
    }
    c.wait_for_new_frames(45, Duration::from_secs(5))
        .await
        .unwrap();
    let burst = c.stats().keyframes_received - k2;
    assert!(
        (1..=2).contains(&burst),
        "ten PLIs gave {burst} keyframes in ~1.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue2_a_contributor_gets_a_tile_and_receives_nothing() {
    let server = TestServer::start(&[]).expect("server starts");
    let camera = TestClient::join(
        server.base_url(),
        "cam",
        Role::Contributor,
        Some(SendMedia::new(colours::GREEN, 620.0)),
        "camera",
    )
    .await
    .expect("a sendonly WHIP client joins");
    // Nobody receives anything yet: no encoder runs.
    let room = server.room("cam").await.unwrap();
    let running = |r: &serde_json::Value| {
        (
            r["mixer"]["video_encoders"].as_u64(),
            r["mixer"]["audio_encoders"].as_u64(),
        )
    };
    assert_eq!(running(&room), (Some(0), Some(0)), "{room}");
    let viewer = TestClient::join(server.base_url(), "cam", Role::Viewer, None, "screen")
        .await
        .unwrap();
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(f, &[(Rect::new(600, 320, 80, 80), colours::GREEN)])
        })
        .await
        .expect("the viewer sees the camera full-canvas");
    let audio = viewer
        .next_audio(Duration::from_secs(2), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        tone_level_db(&audio, 48_000, 620.0) > -40.0,
        "the viewer hears the camera's tone"
    );
    let room = server.room("cam").await.unwrap();
    assert_eq!(room["participants"][0]["kind"], "contributor");
    assert_eq!(room["participants"][0]["tile"]["width"], 1280);
    let s = camera.stats();
    assert_eq!(
        (s.video_packets_received, s.audio_packets_received),
        (0, 0),
        "{s:?}"
    );
    // A contributor has no mix-minus: only the everyone mix runs (the viewer hears it).
    assert_eq!(room["mixer"]["audio_encoders"], 1);
    assert_eq!(room["mixer"]["video_encoders"], 1);
}
