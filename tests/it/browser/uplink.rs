//! Issue 13 in chromium: tile-sized uplinks. The server tells each video sender (REMB) the
//! bitrate its tile needs, and a browser lowers the resolution it sends when its tile shrinks.

use super::*;

/// What the page's peer connection sends, from `getStats()`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outbound {
    height: u64,
    width: u64,
    frames: u64,
    reason: String,
    /// What its encoder aims at, and what its congestion controller allows (bit/s).
    target: f64,
    available: f64,
    /// Video bytes sent so far.
    bytes: u64,
}

const OUTBOUND_JS: &str = "const pc = window.tessera.pc; if (!pc) return null;
    const stats = await pc.getStats(); let o = null, p = null;
    stats.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') o = s;
      if (s.type === 'candidate-pair' && s.nominated) p = s;
    });
    return o && { height: o.frameHeight || 0, width: o.frameWidth || 0,
                  frames: o.framesEncoded || 0, reason: o.qualityLimitationReason || '',
                  target: o.targetBitrate || 0, available: (p && p.availableOutgoingBitrate) || 0,
                  bytes: o.bytesSent || 0 };";

async fn outbound(browser: &Browser) -> Result<Outbound> {
    browser.eval_async(OUTBOUND_JS).await
}

/// The uplink limit the room's JSON shows for the participant called `name`.
async fn uplink_limit(server: &TestServer, room: &str, name: &str) -> Result<Option<u64>> {
    let info = server.room(room).await?;
    Ok(info["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["uplink_limit_bps"].as_u64()))
}

/// A camera's 640x360 with the detail of a real one (libwebrtc lowers its resolution when its
/// quantizer runs high, and chromium's built-in fake camera draws a picture so simple that it
/// stays sharp at 360p even at ~250 kbit/s): grain in 8x8 blocks that changes twice a second,
/// over a moving pattern. A y4m clip (I420, which chromium's file camera requires), looped.
fn camera_clip(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let path = dir.join("camera.y4m");
    let description = format!(
        "videotestsrc pattern=snow num-buffers=10 \
           ! video/x-raw,format=I420,width=80,height=45,framerate=2/1 \
           ! videoscale method=nearest-neighbour ! video/x-raw,width=640,height=360 \
           ! videorate ! video/x-raw,framerate=30/1 \
           ! compositor name=mix sink_1::alpha=0.5 \
           ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
           ! y4menc ! filesink location={} \
         videotestsrc pattern=ball motion=sweep num-buffers=150 \
           ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! mix.",
        path.display()
    );
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .status()
        .context("running gst-launch-1.0")?;
    ensure!(status.success(), "gst-launch-1.0 made no clip: {status}");
    Ok(path)
}

/// Issue 13: a chromium participant alone in a room sends its camera's 640x360 (its tile is the
/// whole canvas, a limit over 2 Mbit/s); when eight others join, its tile is a ninth of the
/// canvas (426x240), the server tells it so (REMB), its browser's congestion controller takes
/// the limit, what it sends stays under it, and the picture it sends falls to the tile's
/// height within 20 s.
#[test]
fn issue13_a_browser_sends_what_its_tile_needs() -> Result<()> {
    if !isolated("browser::uplink::issue13_a_browser_sends_what_its_tile_needs")? {
        return Ok(());
    }
    runtime().block_on(async {
        let server = TestServer::start(&[])?;
        let base = server.base_url();
        let room = "uplink";
        let driver = Chromedriver::start()?;
        let clips = tempfile::tempdir()?;
        let camera = camera_clip(clips.path())?;
        let flag = format!("--use-file-for-fake-video-capture={}", camera.display());
        let ann = Browser::open_with(&driver, &[flag.as_str()], &[]).await?;
        join_page(&ann, base, room, "Ann", "").await?;
        let alone = ann
            .wait_for(
                "Ann sends her camera's 640x360",
                &format!(
                    "const o = await (async () => {{ {OUTBOUND_JS} }})();
                     return o && o.height === 360 && o.frames > 30 ? o : null;"
                ),
                DEADLINE,
            )
            .await?;
        let whole = uplink_limit(&server, room, "Ann").await?;
        println!("alone: {alone} under a limit of {whole:?} bit/s");
        ensure!(
            whole.is_some_and(|bps| bps > 2_000_000),
            "alone, her tile is the canvas: {whole:?}"
        );
        // Her encoder aims far above what a ninth of the canvas will get.
        let alone: Outbound = serde_json::from_value(alone)?;
        ensure!(alone.target > 1_000_000.0, "alone: {alone:?}");

        // Eight small senders (they decode nothing, to leave the CPU to the browser).
        let mut others = Vec::new();
        for i in 0..8 {
            let send = SendMedia {
                width: 160,
                height: 96,
                ..SendMedia::new(colours::BLUE, 300.0 + 50.0 * f32::from(i as u8))
            };
            let name = format!("cam{i}");
            others.push(TestClient::join(base, room, Role::Contributor, Some(send), &name).await?);
        }
        let grid = Instant::now();
        let ninth = eventually(DEADLINE, "Ann's tile a ninth of the canvas", || async {
            let info = server.room(room).await?;
            let ann = info["participants"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "Ann")
                .context("Ann in the room")?
                .clone();
            ensure!(ann["tile"]["height"] == 240, "her tile: {}", ann["tile"]);
            let bps = ann["uplink_limit_bps"].as_u64();
            ensure!(bps.is_some_and(|b| b < 300_000), "her limit: {bps:?}");
            Ok(Some(bps))
        })
        .await?;
        let limit = ninth.context("a limit")? as f64;
        // Its congestion controller takes the limit, and what it sends follows.
        let started = Instant::now();
        let taken = ann
            .wait_for(
                "Ann's browser takes the limit",
                &format!(
                    "const o = await (async () => {{ {OUTBOUND_JS} }})();
                     return o && o.available > 0 && o.available <= {limit} * 1.05 ? o : null;"
                ),
                Duration::from_secs(20),
            )
            .await;
        let now = outbound(&ann).await?;
        let taken = taken.with_context(|| format!("sending {now:?}"))?;
        println!("with eight others: {taken} after {:?}", started.elapsed());
        // Three seconds of what it sends, once its encoder has settled on the new target.
        ann.wait_for(
            "Ann's encoder aims under the limit",
            &format!(
                "const o = await (async () => {{ {OUTBOUND_JS} }})();
                 return o && o.target > 0 && o.target <= {limit} ? o : null;"
            ),
            Duration::from_secs(10),
        )
        .await?;
        let before = outbound(&ann).await?;
        let from = Instant::now();
        let after = eventually(DEADLINE, "three seconds of sending", || async {
            let now = outbound(&ann).await?;
            Ok((from.elapsed() >= Duration::from_secs(3)).then_some(now))
        })
        .await?;
        let sent_bps = (after.bytes - before.bytes) as f64 * 8.0 / from.elapsed().as_secs_f64();
        println!(
            "then {:.0} bit/s of video for a limit of {limit:.0} (alone it may send {:.0}): \
             {}x{}, limited by {:?}, aiming at {:.0} of {:.0} allowed",
            sent_bps,
            whole.unwrap_or(0) as f64,
            after.width,
            after.height,
            after.reason,
            after.target,
            after.available
        );
        ensure!(sent_bps <= limit * 1.1, "{sent_bps:.0} bit/s sent");
        // It still sends (libwebrtc drops frames too at this bitrate: ~8 a second here).
        ensure!(
            after.frames >= before.frames + 10,
            "it still sends: {after:?}"
        );
        // And the picture it sends is no taller than its tile, 20 s after the grid came.
        let smaller = ann
            .wait_for(
                "Ann's browser sends her tile's height",
                &format!(
                    "const o = await (async () => {{ {OUTBOUND_JS} }})();
                     return o && o.height > 0 && o.height <= 240 ? o : null;"
                ),
                Duration::from_secs(20).saturating_sub(grid.elapsed()),
            )
            .await;
        let now = outbound(&ann).await?;
        let smaller = smaller.with_context(|| format!("20 s after the grid: {now:?}"))?;
        println!("{:?} after the grid: {smaller}", grid.elapsed());
        Ok(())
    })
}
