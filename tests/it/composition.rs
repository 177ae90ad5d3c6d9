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

/// Red, green and blue join silent (their microphones send Opus silence), then a viewer.
async fn room_of_three(server: &TestServer, room: &str) -> Result<(Vec<TestClient>, TestClient)> {
    let mut clients = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let media = SendMedia {
            tone_volume: 0.0,
            ..SendMedia::new(COLOURS[i], TONES[i])
        };
        clients.push(
            TestClient::join(
                server.base_url(),
                room,
                Role::Participant,
                Some(media),
                name,
            )
            .await
            .with_context(|| format!("{name} joins"))?,
        );
    }
    let viewer = TestClient::join(server.base_url(), room, Role::Viewer, None, "kiosk").await?;
    Ok((clients, viewer))
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

/// Sets `talker`'s tone on and waits until the viewer shows its colour in the large region;
/// returns how long that took. Every frame until then must show one of the participants
/// there: never black (a layout change shows no empty frame).
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
    Ok(took)
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

/// Near-white pixels (text) in `rect` of `frame`.
fn white_pixels(frame: &Frame, rect: Rect) -> usize {
    let mut n = 0;
    for y in rect.y..rect.y + rect.height {
        for x in rect.x..rect.x + rect.width {
            let i = ((y * frame.width + x) * 3) as usize;
            if frame.data[i..i + 3].iter().all(|&v| v > 200) {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_labels_are_drawn_in_contrast_and_a_layout_change_shows_in_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("rec");
    let server = TestServer::start(&["--recordings-dir", recordings.to_str().unwrap()])
        .expect("server starts");
    let room = "labels";
    let mut clients = Vec::new();
    for i in 0..2 {
        let media = SendMedia {
            tone_volume: 0.0,
            ..SendMedia::new(COLOURS[i], TONES[i])
        };
        clients.push(
            TestClient::join(
                server.base_url(),
                room,
                Role::Contributor,
                Some(media),
                NAMES[i],
            )
            .await
            .unwrap(),
        );
    }
    let viewer = TestClient::join(server.base_url(), room, Role::Viewer, None, "kiosk")
        .await
        .unwrap();
    // Two side by side; each tile's label band along its bottom edge, the name at its left.
    let side_by_side = [((320, 360), colours::RED), ((960, 360), colours::GREEN)];
    let band = Rect::new(8, 676, 200, 40);
    let with_labels = viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(f, &side_by_side) && white_pixels(f, band) > 40
        })
        .await
        .expect("red and green side by side, red's name in its band");
    eprintln!("label on: {} text pixels", white_pixels(&with_labels, band));
    let (status, _) = put_layout(&server, room, &json!({"preset": "grid", "labels": false}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(f, &side_by_side) && white_pixels(f, band) == 0
        })
        .await
        .expect("labels off: no text in the band");

    // A recording sees the layout change: the grid, then `single` (red, the first to join).
    let url = endpoint(server.base_url(), &["rooms", room, "recordings"]).unwrap();
    let started = http::post(
        &url,
        "application/json",
        json!({"format": "webm"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(started.status, 201, "{}", started.body);
    let info = started.json().unwrap();
    let t0 = Instant::now();
    tokio::time::sleep_until((t0 + Duration::from_secs(3)).into()).await; // the scenario's pace
    put_layout(&server, room, &json!({"preset": "single"}))
        .await
        .unwrap();
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(f, &[((320, 360), colours::RED), ((960, 360), colours::RED)])
        })
        .await
        .expect("single: red alone");
    tokio::time::sleep_until((t0 + Duration::from_secs(6)).into()).await;
    let id = info["id"].as_str().unwrap();
    let stop = endpoint(server.base_url(), &["rooms", room, "recordings", id]).unwrap();
    let stopped = http::delete(&stop).await.unwrap();
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    let file_url = endpoint(
        server.base_url(),
        &["rooms", room, "recordings", id, "file"],
    )
    .unwrap();
    let path = dir.path().join("layout.webm");
    let body = http::client()
        .unwrap()
        .get(file_url)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .expect("the file")
        .bytes()
        .await
        .unwrap();
    std::fs::write(&path, &body).unwrap();
    let file = crate::support::media::decode_file(&path, 0.25, Duration::from_secs(60)).unwrap();
    let last = file.frames.last().map(|(t, _)| *t).unwrap_or(0.0);
    let at = |secs: f64| file.frame_at(secs).expect("a frame");
    assert!(shows(at(1.0), &side_by_side), "the grid at 1 s");
    assert!(
        shows(
            at(last - 0.5),
            &[((320, 360), colours::RED), ((960, 360), colours::RED)]
        ),
        "single at the end ({last:.1} s)"
    );
    for c in clients {
        c.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_a_shared_screen_goes_large_under_auto_presentation_and_the_layout_returns() {
    let server = TestServer::start(&[]).expect("server starts");
    let room = "share";
    let mut clients = Vec::new();
    for i in 0..2 {
        let media = SendMedia {
            tone_volume: 0.0,
            ..SendMedia::new(COLOURS[i], TONES[i])
        };
        clients.push(
            TestClient::join(
                server.base_url(),
                room,
                Role::Participant,
                Some(media),
                NAMES[i],
            )
            .await
            .unwrap(),
        );
    }
    let viewer = TestClient::join(server.base_url(), room, Role::Viewer, None, "kiosk")
        .await
        .unwrap();
    let side_by_side = [((320, 360), colours::RED), ((960, 360), colours::GREEN)];
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &side_by_side))
        .await
        .expect("the grid of two");
    let ids = ids(&server, room).await.unwrap();

    // Red shares a yellow 800x600 "screen": smaller than the large region (960x720), so it is
    // shown at its own size, centred, with the room's background around it.
    let share = |owner: String| {
        let media = SendMedia {
            width: 800,
            height: 600,
            tone_volume: 0.0,
            ..SendMedia::new(colours::YELLOW, 300.0)
        };
        let options = crate::support::JoinOptions {
            query: vec![("source", "screen".into()), ("owner", owner)],
            ..Default::default()
        };
        TestClient::join_with(
            server.base_url(),
            room,
            Role::Contributor,
            Some(media),
            "red-screen",
            options,
        )
    };
    let screen = share(ids["red"].clone()).await.expect("the screen joins");
    let presenting = [
        ((480, 360), colours::YELLOW),
        ((140, 360), colours::YELLOW),
        // Not scaled up: the region's edge beyond the picture is background.
        ((40, 360), colours::BLACK),
        ((920, 360), colours::BLACK),
        (STRIP[0], colours::RED),
        (STRIP[1], colours::GREEN),
    ];
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &presenting))
        .await
        .expect("presentation: the screen large and unscaled, the cameras in the column");
    let state = server.room(room).await.unwrap();
    let shared = state["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "red-screen")
        .cloned()
        .expect("the screen is a participant of the room");
    assert_eq!(shared["screen"], true, "{shared}");

    // It stops sharing: the grid comes back.
    screen.leave().await.unwrap();
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &side_by_side))
        .await
        .expect("the grid again");

    // A screen ends with its owner.
    let _screen = share(ids["red"].clone()).await.expect("shares again");
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| shows(f, &presenting))
        .await
        .expect("presentation again");
    let mut clients = clients.into_iter();
    clients.next().unwrap().leave().await.unwrap();
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(f, &[((640, 360), colours::GREEN)])
        })
        .await
        .expect("green alone: red's screen left with red");
    let state = server.room(room).await.unwrap();
    assert_eq!(
        state["participants"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );
    // A screen must be a sendonly offer with video, of a session of the room.
    let bad = share("1234".into()).await;
    assert!(bad.is_err(), "an owner that is no session of the room");
}
