//! Issue 14, composition: the active speaker takes the large region by voice alone, layouts are
//! set live (presets and regions), checked before they apply, and dry runs say exactly what
//! will be applied. Checked by content: the colour at the centre of each region of the
//! composite a WHEP viewer decodes, while webrtc-rs clients send solid colours and tones.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::support::analysis::{Frame, Rect, Rgb, average_colour, colours, is_close};
use crate::support::events::EventStream;
use crate::support::http::{self, endpoint, get_json, put_json};
use crate::support::{Role, SendMedia, TestClient, TestServer};

const COLOURS: [Rgb; 3] = [colours::RED, colours::GREEN, colours::BLUE];
const NAMES: [&str; 3] = ["red", "green", "blue"];
const TONES: [f32; 3] = [440.0, 620.0, 1010.0];
const TOLERANCE: u8 = 48;
const FRAME_DEADLINE: Duration = Duration::from_secs(10);
/// The issue's bound on a new speaker taking the floor.
const SWITCH_BOUND: Duration = Duration::from_millis(1500);
/// The speaker's border, #f2c200 (`src/media/border.rs`).
const BORDER: Rgb = (0xf2, 0xc2, 0x00);
/// How long a picture that must not change is watched.
const STEADY: Duration = Duration::from_millis(2500);

/// An 80x80 square centred on (x, y) of the 1280x720 canvas.
fn at(x: u32, y: u32) -> Rect {
    Rect::new(x - 40, y - 40, 80, 80)
}

/// The speaker preset's large region (0..960 x 0..720) and its column's first two tiles.
const MAIN: (u32, u32) = (480, 360);
const STRIP: [(u32, u32); 2] = [(1120, 90), (1120, 270)];

fn colour_at(frame: &Frame, (x, y): (u32, u32)) -> Rgb {
    average_colour(frame, at(x, y))
}

fn shows(frame: &Frame, expected: &[((u32, u32), Rgb)]) -> bool {
    frame.width == 1280
        && frame.height == 720
        && expected
            .iter()
            .all(|(p, c)| is_close(colour_at(frame, *p), *c, TOLERANCE))
}

/// The first `count` of red, green and blue join silent as `role` (their microphones send Opus
/// silence), then a viewer.
async fn silent_room(
    server: &TestServer,
    room: &str,
    count: usize,
    role: Role,
) -> Result<(Vec<TestClient>, TestClient)> {
    let mut clients = Vec::new();
    for (i, name) in NAMES.iter().enumerate().take(count) {
        let media = SendMedia {
            tone_volume: 0.0,
            ..SendMedia::new(COLOURS[i], TONES[i])
        };
        clients.push(
            TestClient::join(server.base_url(), room, role, Some(media), name)
                .await
                .with_context(|| format!("{name} joins"))?,
        );
    }
    let viewer = TestClient::join(server.base_url(), room, Role::Viewer, None, "kiosk").await?;
    Ok((clients, viewer))
}

/// Red, green and blue join silent as participants, then a viewer.
async fn room_of_three(server: &TestServer, room: &str) -> Result<(Vec<TestClient>, TestClient)> {
    silent_room(server, room, 3, Role::Participant).await
}

/// The public session id of each participant, by name.
async fn ids(server: &TestServer, room: &str) -> Result<HashMap<String, String>> {
    let state = server.room(room).await?;
    Ok(state["participants"]
        .as_array()
        .context("participants")?
        .iter()
        .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["id"].as_str()?.to_owned())))
        .collect())
}

async fn put_layout(server: &TestServer, room: &str, layout: &Value) -> Result<(u16, Value)> {
    let response = put_json(
        &endpoint(server.base_url(), &["rooms", room, "layout"])?,
        layout,
    )
    .await?;
    Ok((response.status, response.json()?))
}

async fn dry_run(server: &TestServer, room: &str, layout: &Value) -> Result<(u16, Value)> {
    let mut url = endpoint(server.base_url(), &["rooms", room, "layout"])?;
    url.set_query(Some("dry_run=true"));
    let response = http::post(&url, "application/json", layout.to_string()).await?;
    Ok((response.status, response.json()?))
}

/// The longest a viewer may go without a decoded frame across a switch: under eight frame
/// times at 30 fps, room for the test's own decoder under load. A layout change that froze
/// the picture, or that waited for a keyframe (a PLI's round trip, then the keyframe), would
/// show as a longer gap.
const LONGEST_GAP: Duration = Duration::from_millis(250);

/// Sets `talker`'s tone on and waits until the viewer shows its colour in the large region;
/// returns how long that took. Every frame until then must show one of the participants
/// there: never black (a layout change shows no empty frame); and the picture keeps moving
/// through the switch and the second after it: never frozen.
async fn talk_and_wait(
    viewer: &TestClient,
    talker: &TestClient,
    colour: Rgb,
    centre: (u32, u32),
) -> Result<Duration> {
    talker.set_tone_volume(0.3)?;
    let start = Instant::now();
    let mut blank = 0;
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            let c = colour_at(f, centre);
            if !COLOURS.iter().any(|k| is_close(c, *k, TOLERANCE)) {
                blank += 1;
            }
            is_close(c, colour, TOLERANCE)
        })
        .await
        .with_context(|| format!("{} takes the large region", talker.name()))?;
    let took = start.elapsed();
    anyhow::ensure!(
        blank == 0,
        "{blank} frames showed no participant in the large region"
    );
    viewer.wait_for_new_frames(30, FRAME_DEADLINE).await?;
    let state = viewer.video_state();
    let decoded: Vec<Instant> = state
        .decoded_at
        .iter()
        .copied()
        .filter(|t| *t >= start)
        .collect();
    let gap = decoded
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(Duration::MAX);
    eprintln!(
        "{}: longest wait between two decoded frames through the switch {gap:?}",
        talker.name()
    );
    anyhow::ensure!(
        gap <= LONGEST_GAP,
        "the viewer's picture stopped for {gap:?} around {}'s switch",
        talker.name()
    );
    Ok(took)
}

/// The counts of [`keyframe_counts`] once the joins' keyframes are done: none forced for
/// longer than the server's coalescing interval (500 ms, `room/keyframe.rs`), so a deferred
/// one is not counted as the switches'.
async fn keyframes_settled(server: &TestServer) -> Result<(f64, f64)> {
    let deadline = Instant::now() + FRAME_DEADLINE;
    let mut last = keyframe_counts(server).await?;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(700) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "keyframes still forced: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling the metrics
        let now = keyframe_counts(server).await?;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(last)
}

/// The server's counts of forced keyframes and of the keyframe requests (PLI, FIR) receivers
/// sent it, from `GET /metrics`.
async fn keyframe_counts(server: &TestServer) -> Result<(f64, f64)> {
    let text = http::client()?
        .get(server.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let read = |prefix: &str| -> Result<f64> {
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().parse())
            .transpose()?
            .unwrap_or(0.0))
    };
    Ok((
        read("tessera_keyframes_forced_total ")?,
        read("tessera_plis_total{direction=\"received\"} ")?,
    ))
}

/// Watches the viewer for `STEADY`: every frame must keep `expected`.
async fn stays(viewer: &TestClient, expected: &[((u32, u32), Rgb)], what: &str) -> Result<()> {
    let mut broken: Option<Vec<Rgb>> = None;
    let result = viewer
        .wait_for_frame(STEADY, |f| {
            if broken.is_none() && !shows(f, expected) {
                broken = Some(expected.iter().map(|(p, _)| colour_at(f, *p)).collect());
            }
            false
        })
        .await;
    anyhow::ensure!(result.is_err(), "the wait cannot end early");
    match broken {
        None => Ok(()),
        Some(seen) => anyhow::bail!("{what}: a frame showed {seen:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_the_active_speaker_takes_the_floor_in_speaker_single_and_pip() {
    let server = TestServer::start(&[]).expect("server starts");
    let room = "floor";
    let (clients, viewer) = room_of_three(&server, room).await.expect("joins");
    let [red, green, blue] = [&clients[0], &clients[1], &clients[2]];
    let ids = ids(&server, room).await.expect("ids");
    let mut events = EventStream::open(server.base_url(), room)
        .await
        .expect("events");

    let (status, view) = put_layout(&server, room, &json!({"preset": "speaker"}))
        .await
        .expect("PUT layout");
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["layout"]["preset"], "speaker");
    // Nobody spoke yet: the first to join is large, the others in the column.
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(
                f,
                &[
                    (MAIN, colours::RED),
                    (STRIP[0], colours::GREEN),
                    (STRIP[1], colours::BLUE),
                ],
            )
        })
        .await
        .expect("speaker layout: red large, green and blue in the column");

    // Green talks: it takes the large region.
    let before = keyframes_settled(&server).await.expect("metrics");
    let green_took = talk_and_wait(&viewer, green, colours::GREEN, MAIN)
        .await
        .expect("green takes the floor");
    let event = events
        .until_where(
            "active_speaker",
            |e| e["id"] == ids["green"],
            Duration::from_secs(5),
        )
        .await
        .expect("an active_speaker event names green");
    assert_eq!(event["name"], "green");
    let state = server.room(room).await.unwrap();
    assert_eq!(state["active_speaker"], ids["green"]);
    // Silence keeps the last speaker.
    green.set_tone_volume(0.0).unwrap();
    stays(&viewer, &[(MAIN, colours::GREEN)], "silence keeps green")
        .await
        .unwrap();

    // Only blue talks: blue takes it; green goes back to the column, in join order.
    let blue_took = talk_and_wait(&viewer, blue, colours::BLUE, MAIN)
        .await
        .expect("blue takes the floor");
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(
                f,
                &[
                    (MAIN, colours::BLUE),
                    (STRIP[0], colours::RED),
                    (STRIP[1], colours::GREEN),
                ],
            )
        })
        .await
        .expect("red and green in the column");
    blue.set_tone_volume(0.0).unwrap();

    // A 200 ms burst from red does not move the floor.
    red.set_tone_volume(0.3).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the burst's length, not a wait
    red.set_tone_volume(0.0).unwrap();
    stays(&viewer, &[(MAIN, colours::BLUE)], "a 200 ms burst from red")
        .await
        .unwrap();
    eprintln!("switch times: green {green_took:?}, blue {blue_took:?} (bound {SWITCH_BOUND:?})");
    assert!(
        green_took <= SWITCH_BOUND && blue_took <= SWITCH_BOUND,
        "a new speaker took the floor in {green_took:?} and {blue_took:?}"
    );
    // Moving tiles is the compositor's work: no receiver is sent a keyframe for it.
    let after = keyframe_counts(&server).await.expect("metrics");
    let (forced, asked) = (after.0 - before.0, after.1 - before.1);
    eprintln!("keyframes forced during the switches: {forced}, PLIs received: {asked}");
    assert_eq!(
        forced, 0.0,
        "the speaker switches forced {forced} keyframes ({asked} asked for)"
    );

    // The speaker's border (on by default): a thin yellow line along the large region's top
    // edge, over the letterbox; off, the letterbox is black there again.
    let border = Rect::new(300, 0, 360, 4);
    let yellow = viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            is_close(average_colour(f, border), BORDER, 60)
        })
        .await
        .expect("the speaker's border along the large region");
    eprintln!("border: {:?}", average_colour(&yellow, border));
    let (status, _) = put_layout(
        &server,
        room,
        &json!({"preset": "speaker", "speaker_highlight": false}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            is_close(average_colour(f, border), colours::BLACK, 24)
                && shows(f, &[(MAIN, colours::BLUE)])
        })
        .await
        .expect("no border with speaker_highlight off");

    // single: only the speaker, on the whole canvas.
    let (status, _) = put_layout(&server, room, &json!({"preset": "single"}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let whole = [
        ((640, 360), colours::BLUE),
        ((200, 150), colours::BLUE),
        ((1100, 600), colours::BLUE),
    ];
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &whole))
        .await
        .expect("single: blue alone");
    stays(&viewer, &whole, "single shows nobody else")
        .await
        .unwrap();

    // pip: the speaker full, the previous speaker (green) in the lower right corner.
    let (status, _) = put_layout(&server, room, &json!({"preset": "pip"}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(
                f,
                &[((640, 360), colours::BLUE), ((1094, 600), colours::GREEN)],
            )
        })
        .await
        .expect("pip: blue full, green in the corner");
    for c in clients {
        c.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_regions_put_each_colour_where_they_say_and_a_dry_run_is_what_applies() {
    let server = TestServer::start(&[]).expect("server starts");
    let room = "regions";
    let (clients, viewer) = room_of_three(&server, room).await.expect("joins");
    let ids = ids(&server, room).await.expect("ids");
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(
                f,
                &[((320, 180), colours::RED), ((960, 180), colours::GREEN)],
            )
        })
        .await
        .expect("the default grid");
    let layout_url = endpoint(server.base_url(), &["rooms", room, "layout"]).unwrap();
    let before = get_json(&layout_url).await.expect("GET layout");
    assert_eq!(before["layout"]["preset"], "grid");

    // Blue on the left half (cropped to fill it), red top right, green bottom right.
    let custom = json!({"regions": [
        {"id": "left", "x": 0, "y": 0, "width": 0.5, "height": 1,
         "sources": [format!("identity:{}", ids["blue"])], "fit": "cover"},
        {"id": "top", "x": 0.5, "y": 0, "width": 0.5, "height": 0.5,
         "sources": [format!("identity:{}", ids["red"])]},
        {"id": "bottom", "x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5, "z": 2,
         "sources": ["others"]}
    ], "labels": false});
    let (status, planned) = dry_run(&server, room, &custom).await.expect("dry run");
    assert_eq!(status, 200, "{planned}");
    // A dry run changes nothing.
    assert_eq!(
        get_json(&layout_url).await.unwrap()["layout"],
        before["layout"]
    );
    let region_of = |view: &Value, id: &str| -> Option<String> {
        view["tiles"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == id)
            .and_then(|t| t["region"].as_str().map(str::to_owned))
    };
    assert_eq!(region_of(&planned, &ids["blue"]).as_deref(), Some("left"));
    assert_eq!(
        region_of(&planned, &ids["green"]).as_deref(),
        Some("bottom")
    );

    let (status, applied) = put_layout(&server, room, &custom).await.expect("PUT");
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        applied["tiles"], planned["tiles"],
        "the dry run is what applied"
    );
    assert_eq!(
        get_json(&layout_url).await.unwrap()["tiles"],
        planned["tiles"]
    );
    let expected = [
        ((320, 360), colours::BLUE),
        // Cover: blue's 16:9 picture is cropped to fill its 640x720 region to the edges.
        ((60, 100), colours::BLUE),
        ((960, 180), colours::RED),
        ((960, 540), colours::GREEN),
    ];
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &expected))
        .await
        .expect("each colour in its region");

    // Bad layouts: 400 bad_layout naming the fault, and nothing changes.
    let bad = [
        json!({"preset": "mosaic"}),
        json!({"preset": "grid", "colour": "red"}),
        json!({"regions": [{"id": "a", "x": 0.6, "y": 0, "width": 0.6, "height": 1, "sources": ["others"]}]}),
        json!({"regions": (0..33).map(|i| json!({"id": format!("r{i}"), "x": 0, "y": 0, "width": 1, "height": 1, "sources": ["others"]})).collect::<Vec<_>>()}),
    ];
    for layout in bad {
        let (status, body) = put_layout(&server, room, &layout).await.unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_layout")),
            "{layout}: {body}"
        );
        assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{body}");
    }
    let raw = http::send(
        reqwest::Method::PUT,
        &layout_url,
        None,
        Some(("application/json", "{\"preset\": ".into())),
    )
    .await
    .unwrap();
    assert_eq!(raw.status, 400);
    assert_eq!(
        get_json(&layout_url).await.unwrap()["tiles"],
        planned["tiles"]
    );
    stays(&viewer, &expected, "bad layouts change nothing")
        .await
        .unwrap();

    // A pinned session takes the speaker preset's large region.
    let pin = endpoint(
        server.base_url(),
        &["rooms", room, "sessions", &ids["green"], "pin"],
    )
    .unwrap();
    let response = put_json(&pin, &json!({"pinned": true})).await.unwrap();
    assert_eq!(response.status, 204, "{}", response.body);
    put_layout(&server, room, &json!({"preset": "speaker"}))
        .await
        .unwrap();
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &[(MAIN, colours::GREEN)]))
        .await
        .expect("the pinned session is large");
    for c in clients {
        c.leave().await.unwrap();
    }
}

mod decorations;
