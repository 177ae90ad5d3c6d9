//! Issue 14: what the composite shows besides the grid and the speaker: names on tiles (and a
//! layout change inside a recording), and a shared screen under `auto_presentation`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

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
    let (clients, viewer) = silent_room(&server, room, 2, Role::Contributor)
        .await
        .expect("joins");
    // Two side by side, each 16:9 picture letterboxed in its tall tile (y 180..540), its name
    // along the picture's bottom-left edge.
    let side_by_side = [((320, 360), colours::RED), ((960, 360), colours::GREEN)];
    let band = Rect::new(4, 490, 220, 48);
    let with_labels = viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            shows(f, &side_by_side) && white_pixels(f, band) > 40
        })
        .await
        .expect("red and green side by side, red's name on its picture");
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
    let (clients, viewer) = silent_room(&server, room, 2, Role::Participant)
        .await
        .expect("joins");
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
