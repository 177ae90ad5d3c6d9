//! Issue 4 in a real browser: Debian's chromium (headless, fake camera and microphone) driven
//! through chromedriver, inside a network namespace that has only `lo` (see
//! `support/browser.rs`). The pages are the ones the server serves at `/` and `/view.html`.
//! Screenshots land in `target/test-artifacts/`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use crate::support::analysis::{Rect, Rgb, average_colour, colours, is_close};
use crate::support::browser::{Browser, Chromedriver};
use crate::support::netns::isolated;
use crate::support::{Role, SendMedia, TestClient, TestServer, eventually, eventually_sync};

const DEADLINE: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// What a page's peer connection receives, from `getStats()`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inbound {
    frames: u64,
    audio_packets: u64,
}

/// The inbound stats of `pcExpr`'s connection, or null while there is none.
fn inbound_js(pc_expr: &str) -> String {
    format!(
        "const pc = {pc_expr}; if (!pc) return null;
         const stats = await pc.getStats(); let v = null, a = null;
         stats.forEach((s) => {{
           if (s.type === 'inbound-rtp' && s.kind === 'video') v = s;
           if (s.type === 'inbound-rtp' && s.kind === 'audio') a = s;
         }});
         return {{ frames: (v && v.framesDecoded) || 0, width: (v && v.frameWidth) || 0,
                   height: (v && v.frameHeight) || 0, audioPackets: (a && a.packetsReceived) || 0 }};"
    )
}

async fn inbound(browser: &Browser, pc_expr: &str) -> Result<Inbound> {
    browser.eval_async(&inbound_js(pc_expr)).await
}

/// Waits until `browser` decodes 1280x720 video with its frame count rising and audio arriving.
async fn assert_receiving(browser: &Browser, pc_expr: &str, who: &str) -> Result<()> {
    let body = format!(
        "const s = await (async () => {{ {} }})();
         return s && s.width === 1280 && s.height === 720 && s.frames > 0 && s.audioPackets > 0 ? s : null;",
        inbound_js(pc_expr)
    );
    browser
        .wait_for(&format!("{who} decodes the 1280x720 mix"), &body, DEADLINE)
        .await?;
    let first = inbound(browser, pc_expr).await?;
    let what = format!("{who}: frames and audio keep coming after {first:?}");
    eventually(Duration::from_secs(5), &what, || async {
        let now = inbound(browser, pc_expr).await?;
        // 1 s of a 30 fps stream, with room for a slow start.
        ensure!(
            now.frames >= first.frames + 20 && now.audio_packets > first.audio_packets,
            "then {now:?}"
        );
        Ok(Some(()))
    })
    .await
}

/// The average colour of `area` of the `<video id=mix>` as the page shows it.
async fn page_colour(browser: &Browser, area: Rect) -> Result<Option<Rgb>> {
    // `area` is on the 1280x720 canvas; a receiver on the low tier gets it scaled down.
    let body = format!(
        "const v = document.getElementById('mix');
         if (!v || !v.videoWidth) return null;
         const c = document.createElement('canvas'); c.width = 1280; c.height = 720;
         const g = c.getContext('2d'); g.drawImage(v, 0, 0, 1280, 720);
         const d = g.getImageData({}, {}, {}, {}).data; let r = 0, gr = 0, b = 0;
         for (let i = 0; i < d.length; i += 4) {{ r += d[i]; gr += d[i + 1]; b += d[i + 2]; }}
         const n = d.length / 4; return [Math.round(r / n), Math.round(gr / n), Math.round(b / n)];",
        area.x, area.y, area.width, area.height
    );
    let rgb: Option<(u8, u8, u8)> = browser.eval_async(&body).await?;
    Ok(rgb)
}

/// Chrome's fake camera: a green picture (a bright green disc on dark green).
fn looks_like_fake_camera(c: Rgb) -> bool {
    c.1 > 60 && c.1 as i32 > c.0 as i32 + 40 && c.1 as i32 > c.2 as i32 + 40
}

/// The tiles of `room` by participant name, from `GET /rooms/{room}`.
async fn tiles(server: &TestServer, room: &str) -> Result<Vec<(String, Rect)>> {
    let info = server.room(room).await?;
    let mut out = Vec::new();
    for p in info["participants"].as_array().context("participants")? {
        let t = &p["tile"];
        let n = |k: &str| t[k].as_u64().map(|v| v as u32).context("a tile rect");
        out.push((
            p["name"].as_str().unwrap_or("").to_owned(),
            Rect::new(n("x")?, n("y")?, n("width")?, n("height")?).inner(),
        ));
    }
    Ok(out)
}

/// The names in a participant page's list, "(you)" removed, sorted.
async fn listed_names(browser: &Browser) -> Result<Vec<String>> {
    let mut names: Vec<String> = browser
        .eval("return [...document.querySelectorAll('#people li .who')].map((e) => e.textContent);")
        .await?;
    for n in &mut names {
        *n = n.trim_end_matches(" (you)").to_owned();
    }
    names.sort();
    Ok(names)
}

async fn join_page(
    browser: &Browser,
    base: &str,
    room: &str,
    name: &str,
    extra: &str,
) -> Result<()> {
    browser
        .goto(&format!("{base}/?room={room}&name={name}{extra}"))
        .await?;
    browser
        .wait_for(
            &format!("{name}'s camera and microphone open"),
            "return !document.getElementById('join').disabled;",
            DEADLINE,
        )
        .await?;
    browser.click("#join").await
}

#[test]
fn issue4_two_browsers_and_a_client_share_one_room() -> Result<()> {
    if !isolated("browser::issue4_two_browsers_and_a_client_share_one_room")? {
        return Ok(());
    }
    runtime().block_on(async {
        let server = TestServer::start(&[])?;
        let base = server.base_url();
        let room = "browsers";
        let robot = TestClient::join(
            base,
            room,
            Role::Participant,
            Some(SendMedia::new(colours::RED, 440.0)),
            "Robot",
        )
        .await?;
        let driver = Chromedriver::start()?;
        let ann = Browser::open(&driver).await?;
        let bob = Browser::open(&driver).await?;
        join_page(&ann, base, room, "Ann", "").await?;
        join_page(&bob, base, room, "Bob", "").await?;

        for (b, who) in [(&ann, "Ann"), (&bob, "Bob")] {
            assert_receiving(b, "window.tessera.pc", who).await?;
            b.wait_for(
                &format!("{who}'s list shows three people"),
                "return document.querySelectorAll('#people li').length === 3;",
                DEADLINE,
            )
            .await?;
            assert_eq!(
                listed_names(b).await?,
                ["Ann", "Bob", "Robot"],
                "{who}'s list"
            );
        }

        // The test client's composite: its own red tile and two tiles of fake camera.
        let grid = tiles(&server, room).await?;
        ensure!(grid.len() == 3, "three tiles: {grid:?}");
        let seen = eventually_sync(DEADLINE, "the robot's composite", || {
            let frame = robot
                .latest_frame()
                .ok_or_else(|| "no frame decoded".to_owned())?;
            let seen: Vec<(String, Rgb)> = grid
                .iter()
                .map(|(n, r)| (n.clone(), average_colour(&frame, *r)))
                .collect();
            let ok = frame.width == 1280
                && seen.iter().all(|(n, c)| {
                    if n == "Robot" {
                        is_close(*c, colours::RED, 48)
                    } else {
                        looks_like_fake_camera(*c)
                    }
                });
            if ok { Ok(seen) } else { Err(format!("{seen:?}")) }
        })
        .await?;
        println!("robot sees {seen:?}");
        let shot = ann.screenshot("participant-page-three").await?;
        println!("screenshot: {}", shot.display());

        // Bob leaves: Ann's list and everyone's composite change within 2 s. Timed from the
        // moment Bob's page handles the click (WebDriver's own round trip is not the server's),
        // on the machine's wall clock, which the pages and this test share.
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        };
        bob.click("#leave").await?;
        let composite_at = eventually(
            Duration::from_secs(10),
            "the robot's composite shows the 2-up grid",
            || async {
                let grid = tiles(&server, room).await?;
                let robot_tile = grid.iter().find(|(n, _)| n == "Robot").map(|(_, r)| *r);
                let ann_tile = grid.iter().find(|(n, _)| n == "Ann").map(|(_, r)| *r);
                if grid.len() == 2
                    && let (Some(rt), Some(at), Some(frame)) =
                        (robot_tile, ann_tile, robot.latest_frame())
                    && is_close(average_colour(&frame, rt), colours::RED, 48)
                    && looks_like_fake_camera(average_colour(&frame, at))
                {
                    return Ok(Some(now_ms()));
                }
                Ok(None)
            },
        )
        .await?;
        ann.wait_for(
            "Ann's list shows two people",
            "return document.querySelectorAll('#people li').length === 2;",
            DEADLINE,
        )
        .await?;
        assert_eq!(listed_names(&ann).await?, ["Ann", "Robot"], "Ann's list");
        let left_at: u64 = bob.eval("return window.tessera.leftAt;").await?;
        let list_at: u64 = ann.eval("return window.tessera.peopleAt;").await?;
        let list_delay = list_at.saturating_sub(left_at);
        let composite_delay = composite_at.saturating_sub(left_at);
        println!(
            "after Bob left: Ann's list {list_delay} ms, the composite (robot's decoder) {composite_delay} ms"
        );
        ensure!(
            list_delay <= 2000 && composite_delay <= 2000,
            "after Bob left: list {list_delay} ms, composite {composite_delay} ms (want within 2 s)"
        );
        // Ann's own picture shows the same 2-up grid.
        let grid = tiles(&server, room).await?;
        for (name, rect) in &grid {
            let what = format!("Ann's picture at {name}'s tile");
            eventually(DEADLINE, &what, || async {
                let c = page_colour(&ann, *rect).await?;
                let ok = c.is_some_and(|c| {
                    if name == "Robot" {
                        is_close(c, colours::RED, 60)
                    } else {
                        looks_like_fake_camera(c)
                    }
                });
                ensure!(ok, "{c:?}");
                Ok(Some(()))
            })
            .await?;
        }
        let shot = ann.screenshot("participant-page-after-leave").await?;
        println!("screenshot: {}", shot.display());
        // Bob's page is back at the join form.
        let back: bool = bob
            .eval("return !document.getElementById('join-view').hidden;")
            .await?;
        ensure!(back, "Bob's page shows the join form again");
        ann.close().await?;
        bob.close().await?;
        robot.leave().await?;
        Ok(())
    })
}

#[test]
fn issue4_viewer_page_shows_the_room_and_survives_a_server_restart() -> Result<()> {
    if !isolated("browser::issue4_viewer_page_shows_the_room_and_survives_a_server_restart")? {
        return Ok(());
    }
    runtime().block_on(async {
        let mut server = TestServer::start(&[])?;
        let base = server.base_url().to_owned();
        let listen = base.trim_start_matches("http://").to_owned();
        let room = "wall";
        let driver = Chromedriver::start()?;
        let viewer = Browser::open(&driver).await?;
        viewer.goto(&format!("{base}/view.html?room={room}")).await?;
        viewer
            .wait_for(
                "the viewer says it waits for the room",
                "return document.getElementById('status').textContent.includes('Waiting for the room');",
                DEADLINE,
            )
            .await?;
        let shot = viewer.screenshot("viewer-page-waiting").await?;
        println!("screenshot: {}", shot.display());

        let red = TestClient::join(
            &base,
            room,
            Role::Contributor,
            Some(SendMedia::new(colours::RED, 440.0)),
            "Camera",
        )
        .await?;
        assert_receiving(&viewer, "window.tesseraView.pc", "the viewer").await?;
        let centre = Rect::new(560, 280, 160, 160);
        wait_page_colour(&viewer, centre, colours::RED, "the viewer shows the red camera").await?;
        let status: String = viewer
            .eval("return document.getElementById('status').textContent;")
            .await?;
        ensure!(status.is_empty(), "no status over a live room: {status:?}");
        let shot = viewer.screenshot("viewer-page").await?;
        println!("screenshot: {}", shot.display());

        // The server dies (SIGKILL: no goodbye to anyone) and comes back on the same port.
        drop(red);
        server.kill();
        let restarted = Instant::now();
        let server = TestServer::start_on(&listen, &[])?;
        let blue = TestClient::join(
            server.base_url(),
            room,
            Role::Contributor,
            Some(SendMedia::new(colours::BLUE, 620.0)),
            "Camera 2",
        )
        .await?;
        let deadline = Duration::from_secs(10);
        let shown = eventually(deadline, "the viewer shows the restarted room", || async {
            let connects: u64 = viewer.eval("return window.tesseraView.connects;").await?;
            let blue = page_colour(&viewer, centre)
                .await?
                .is_some_and(|c| is_close(c, colours::BLUE, 60));
            Ok((connects >= 2 && blue).then_some(()))
        })
        .await;
        if let Err(e) = shown {
            let state: Value = viewer
                .eval("const v = window.tesseraView; return { connects: v.connects, attempts: v.attempts, problem: v.lastProblem, frames: v.framesDecoded, width: v.width, status: document.getElementById('status').textContent };")
                .await?;
            let colour = page_colour(&viewer, centre).await?;
            viewer.screenshot("viewer-page-after-restart-failed").await?;
            bail!("{e}: {state}, colour at the centre {colour:?}");
        }
        println!(
            "the viewer showed the restarted room {} ms after the new server started",
            restarted.elapsed().as_millis()
        );
        viewer.close().await?;
        blue.leave().await?;
        Ok(())
    })
}

async fn wait_page_colour(browser: &Browser, area: Rect, colour: Rgb, what: &str) -> Result<()> {
    eventually(DEADLINE, what, || async {
        let seen = page_colour(browser, area).await?;
        ensure!(
            seen.is_some_and(|c| is_close(c, colour, 60)),
            "saw {seen:?}"
        );
        Ok(Some(()))
    })
    .await
}

/// Click-to-first-frame, in ms, of `n` joins of `browser` with `?trickle=0|1`.
async fn join_times(browser: &Browser, base: &str, room: &str, trickle: bool) -> Result<u64> {
    let extra = if trickle { "" } else { "&trickle=0" };
    join_page(browser, base, room, "Timer", extra).await?;
    let ms = browser
        .wait_for(
            "the first frame after Join",
            "return window.tessera && window.tessera.joinMs;",
            DEADLINE,
        )
        .await?;
    browser.click("#leave").await?;
    ms.as_u64().context("joinMs is a number")
}

#[test]
fn issue4_join_time_with_and_without_trickle_ice() -> Result<()> {
    if !isolated("browser::issue4_join_time_with_and_without_trickle_ice")? {
        return Ok(());
    }
    runtime().block_on(async {
        let server = TestServer::start(&[])?;
        let base = server.base_url();
        let room = "timing";
        // Someone is in the room, so every join finds a running mix (as in real life).
        let robot = TestClient::join(
            base,
            room,
            Role::Participant,
            Some(SendMedia::new(colours::RED, 440.0)),
            "Robot",
        )
        .await?;
        let driver = Chromedriver::start()?;
        let browser = Browser::open(&driver).await?;
        let (mut with, mut without) = (Vec::new(), Vec::new());
        // Alternating, so neither mode gets the warmer browser.
        for _ in 0..5 {
            with.push(join_times(&browser, base, room, true).await?);
            without.push(join_times(&browser, base, room, false).await?);
        }
        let median = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        println!(
            "join, click to first decoded frame: trickle ICE median {} ms {with:?}; \
             complete offer (waits for gathering) median {} ms {without:?}",
            median(&mut with),
            median(&mut without)
        );
        browser.close().await?;
        robot.leave().await?;
        Ok(())
    })
}

/// The page's error sentence (`#join-error`), once it shows one.
async fn join_error(browser: &Browser, what: &str) -> Result<String> {
    let text = browser
        .wait_for(
            what,
            "const e = document.getElementById('join-error'); return !e.hidden && e.textContent;",
            DEADLINE,
        )
        .await?;
    Ok(text.as_str().unwrap_or_default().to_owned())
}

#[test]
fn issue4_errors_reach_the_person() -> Result<()> {
    if !isolated("browser::issue4_errors_reach_the_person")? {
        return Ok(());
    }
    runtime().block_on(async {
        let server = TestServer::start(&["--max-participants", "1"])?;
        let base = server.base_url();
        let robot = TestClient::join(
            base,
            "full",
            Role::Participant,
            Some(SendMedia::new(colours::RED, 440.0)),
            "Robot",
        )
        .await?;
        let driver = Chromedriver::start()?;

        // A full room: the page says so, and stays on the form.
        let late = Browser::open(&driver).await?;
        join_page(&late, base, "full", "Late", "").await?;
        let sentence = join_error(&late, "the room-full sentence").await?;
        println!("room full: {sentence:?}");
        ensure!(sentence.contains("full"), "room full: {sentence:?}");
        let on_form: bool = late
            .eval("return !document.getElementById('join-view').hidden;")
            .await?;
        ensure!(on_form, "the page stays on the join form");
        late.screenshot("participant-page-room-full").await?;

        // A person who refuses the camera: no grant, every prompt denied.
        let refusing = Browser::open_with(
            &driver,
            &["--deny-permission-prompts"],
            &["--use-fake-ui-for-media-stream"],
        )
        .await?;
        refusing.goto(&format!("{base}/?room=other&name=Shy")).await?;
        let sentence = join_error(&refusing, "the refused-camera sentence").await?;
        println!("camera refused: {sentence:?}");
        ensure!(sentence.contains("refused"), "camera refused: {sentence:?}");
        let disabled: bool = refusing
            .eval("return document.getElementById('join').disabled;")
            .await?;
        ensure!(disabled, "Join stays disabled without devices");

        // A server that is gone: the viewer says it is reconnecting, not a blank page.
        let viewer = Browser::open(&driver).await?;
        viewer.goto(&format!("{base}/view.html?room=full")).await?;
        viewer
            .wait_for(
                "the viewer plays",
                "return window.tesseraView.connects >= 1;",
                DEADLINE,
            )
            .await?;
        drop(robot);
        drop(server);
        let status = viewer
            .wait_for(
                "the viewer's reconnecting sentence",
                "const t = document.getElementById('status').textContent; return t.includes('Reconnecting') && t;",
                DEADLINE,
            )
            .await?;
        println!("server gone: {status}");
        for b in [late, refusing, viewer] {
            b.close().await?;
        }
        Ok(())
    })
}

mod access;
mod relay;
mod share;
mod uplink;
