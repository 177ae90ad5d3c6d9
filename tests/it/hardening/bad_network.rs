//! Bad networks: 5%, 15% and 30% random loss, 100 ms jitter and a 2 s outage, first between a
//! sender and the server, then between the server and a receiver, in namespaces the test makes
//! (`support::turn_net`), with the impairments applied where the veth links meet
//! (`support::impair`: this kernel has no netem).
//!
//! The room: Sam sends a solid colour and a 440 Hz tone over the impaired path, Wes sends green
//! and 660 Hz over a clean one; Rita (impaired in the second half) and Quinn (never) watch the
//! mix over WHEP. Each impairment lasts a few seconds; as it ends, Sam changes colour, and the
//! recovery time is how long until Rita's decoded picture shows Sam's tile in the new colour
//! (a frozen or broken tile cannot pass). What must hold:
//! - NACK, PLI and RTX are negotiated in both directions (the SDP), and NACKs do bring packets
//!   back (the relay sees RTX packets: retransmissions);
//! - the picture recovers within 5 s of each impairment's end;
//! - audio keeps playing through loss and jitter (concealment, and the server's playout that
//!   follows a sender's jitter): Sam's tone is heard through his own impaired uplink, and
//!   through Rita's impaired downlink;
//! - nothing else stutters: whoever is not on the impaired path decodes at least 25 fps
//!   throughout and hears both tones.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::analysis::{
    Frame, Rect, Rgb, average_colour, colours, is_close, min_fps, tone_level_db,
};
use crate::support::impair::{Direction, Impairment, PathCounts, Relay};
use crate::support::netns::isolated;
use crate::support::turn_net::{self, Forwarder, NsRuntime, TurnNet};
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer};

const TEST: &str = "hardening::bad_network::issue16_media_recovers_from_loss_jitter_and_outages";

/// The server's media ports (and the relay's).
const PORTS: std::ops::RangeInclusive<u16> = 40000..=40031;
/// How long a lossy or jittery impairment lasts.
const IMPAIRED: Duration = Duration::from_secs(4);
/// How long an outage lasts.
const OUTAGE: Duration = Duration::from_secs(2);
/// The issue's bound on recovery.
const RECOVERY: Duration = Duration::from_secs(5);
const JOIN_DEADLINE: Duration = Duration::from_secs(20);
/// What "does not stutter" means: the frames decoded in any second, of 30.
const STEADY_FPS: f64 = 25.0;
/// A tone this loud in the decoded audio is plainly heard (each is sent at about -10 dBFS).
const HEARD_DB: f32 = -35.0;

const SAM_HZ: f32 = 440.0;
const WES_HZ: f32 = 660.0;
/// Sam's colours, one per impairment's end; Wes is green.
const SAM_COLOURS: [Rgb; 5] = [
    colours::BLUE,
    colours::YELLOW,
    colours::MAGENTA,
    colours::CYAN,
    colours::RED,
];

/// Sam's tile (left) and Wes's (right) on the 640x360 canvas.
fn shows(f: &Frame, sam: Rgb) -> bool {
    f.width == 640
        && is_close(average_colour(f, Rect::new(140, 160, 40, 40)), sam, 48)
        && is_close(
            average_colour(f, Rect::new(460, 160, 40, 40)),
            colours::GREEN,
            48,
        )
}

fn impairments() -> [(&'static str, Impairment, Duration); 5] {
    let loss = |loss| Impairment {
        loss,
        ..Impairment::default()
    };
    [
        ("5% loss", loss(0.05), IMPAIRED),
        ("15% loss", loss(0.15), IMPAIRED),
        ("30% loss", loss(0.30), IMPAIRED),
        (
            "100 ms jitter",
            Impairment {
                jitter: Some(Duration::from_millis(100)),
                ..Impairment::default()
            },
            IMPAIRED,
        ),
        (
            "2 s outage",
            Impairment {
                outage: true,
                ..Impairment::default()
            },
            OUTAGE,
        ),
    ]
}

/// Whether the video section of `sdp` asks for NACK and PLI feedback.
fn video_feedback(sdp: &str) -> (bool, bool) {
    let video = sdp
        .split("\nm=")
        .find(|m| m.starts_with("video"))
        .unwrap_or_default();
    let fb = |what: &str| {
        video
            .lines()
            .any(|l| l.starts_with("a=rtcp-fb:") && l.trim_end().ends_with(what))
    };
    (fb(" nack"), fb(" nack pli"))
}

/// A client in the client namespace (bound to its address), through the HTTP forwarder.
async fn join(
    ns: &NsRuntime,
    base: &str,
    role: Role,
    send: Option<SendMedia>,
    name: &'static str,
) -> Result<TestClient> {
    let base = base.to_owned();
    let options = JoinOptions {
        bind: Some(format!("{}:0", turn_net::CLIENT)),
        ..JoinOptions::default()
    };
    ns.run(async move { TestClient::join_with(&base, "rough", role, send, name, options).await })
        .await?
}

/// A sender that sends keyframes only when asked (a PLI): recovery must come from the
/// server's keyframe requests, not from a periodic keyframe that happens to arrive.
fn camera(colour: Rgb, hz: f32) -> SendMedia {
    SendMedia {
        width: 320,
        height: 180,
        keyframe_interval: 100_000,
        ..SendMedia::new(colour, hz)
    }
}

/// What one impairment did, for the table.
struct Outcome {
    what: String,
    recovered: Duration,
    /// The fewest frames a second the clean receiver(s) decoded meanwhile.
    others_fps: f64,
    /// Sam's tone as the impaired side hears it during a lossy or jittery impairment.
    sam_db: Option<f32>,
    /// Both tones as a clean receiver hears them.
    clean_db: (f32, f32),
    path: PathCounts,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_media_recovers_from_loss_jitter_and_outages() -> Result<()> {
    if !isolated(TEST)? {
        return Ok(());
    }
    let net = TurnNet::build().await?;
    let middle: IpAddr = turn_net::TURN_CLIENT_SIDE.parse()?;
    let ports = format!("{}-{}", PORTS.start(), PORTS.end());
    let server = TestServer::start_in(
        net.server.pid(),
        turn_net::SERVER,
        &[
            "--public-ip",
            turn_net::TURN_CLIENT_SIDE,
            "--udp-ports",
            &ports,
            "--width",
            "640",
            "--height",
            "360",
        ],
    )?;
    let relay = Relay::start(
        middle,
        PORTS,
        turn_net::TURN_SERVER_SIDE.parse()?,
        turn_net::SERVER.parse()?,
        16,
    )
    .await?;
    let forwarder = Forwarder::start(turn_net::TURN_CLIENT_SIDE, server.addr()?).await?;
    let base = forwarder.base_url();
    let ns = NsRuntime::enter(&net.client)?;

    let sam = join(
        &ns,
        &base,
        Role::Contributor,
        Some(camera(colours::RED, SAM_HZ)),
        "sam",
    )
    .await?;
    let wes = join(
        &ns,
        &base,
        Role::Contributor,
        Some(camera(colours::GREEN, WES_HZ)),
        "wes",
    )
    .await?;
    let rita = join(&ns, &base, Role::Viewer, None, "rita").await?;
    let quinn = join(&ns, &base, Role::Viewer, None, "quinn").await?;
    for viewer in [&rita, &quinn] {
        viewer
            .wait_for_frame(JOIN_DEADLINE, |f| shows(f, colours::RED))
            .await?;
    }
    // Every path goes through the relay: the server's address is the relay's.
    let sam_port = remote_port(&sam, middle).await?;
    let rita_port = remote_port(&rita, middle).await?;

    // Feedback, as negotiated: the server asks Sam for what it lost (NACK) and for keyframes
    // (PLI), and Rita asks the server; both sides of both offers and answers say so. RTX too:
    // Sam's retransmissions come on the stream his offer pairs with his camera's, the
    // server's to Rita on the one its answer pairs with the mix's.
    for (who, client) in [("sam", &sam), ("rita", &rita)] {
        let (offer, answer) = client.descriptions().await?;
        for (side, sdp) in [("offer", &offer), ("answer", &answer)] {
            let (nack, pli) = video_feedback(sdp);
            let rtx = sdp.contains(" rtx/90000");
            ensure!(
                nack && pli && rtx,
                "{who}'s {side}: nack {nack}, nack pli {pli}, rtx {rtx}\n{sdp}"
            );
        }
        let sends = if who == "sam" { &offer } else { &answer };
        ensure!(
            sends.contains("a=ssrc-group:FID "),
            "{who}: no RTX stream paired with the video\n{sends}"
        );
    }
    println!("nack, nack pli and rtx in both offers and answers; FID groups both ways");

    let mut outcomes = Vec::new();
    let mut colour = SAM_COLOURS.iter().cycle();
    for (direction, port) in [
        (Direction::ToServer, sam_port),
        (Direction::ToClient, rita_port),
    ] {
        for (name, impairment, hold) in impairments() {
            let before = relay.counts(port, direction);
            let start = Instant::now();
            relay.impair(port, direction, impairment);
            // The impairment's length (not a wait for anything).
            tokio::time::sleep(hold).await;
            relay.impair(port, direction, Impairment::default());
            let end = Instant::now();
            let next = *colour.next().expect("cycle");
            sam.set_colour(next)?;
            let what = match direction {
                Direction::ToServer => format!("sam -> server, {name}"),
                Direction::ToClient => format!("server -> rita, {name}"),
            };
            rita.wait_for_frame(RECOVERY, |f| shows(f, next))
                .await
                .with_context(|| {
                    format!("{what}: Rita's picture did not recover in {RECOVERY:?}")
                })?;
            let recovered = end.elapsed();

            // Whoever was not on the impaired path kept decoding and hearing.
            let clean: Vec<&TestClient> = match direction {
                Direction::ToServer => vec![&rita, &quinn],
                Direction::ToClient => vec![&quinn],
            };
            let mut others_fps = f64::MAX;
            for c in &clean {
                let decoded: Vec<Instant> = c.video_state().decoded_at.into_iter().collect();
                others_fps = others_fps.min(min_fps(&decoded, start, end));
            }
            ensure!(
                others_fps >= STEADY_FPS,
                "{what}: a clean receiver decoded {others_fps} frames in a second"
            );
            let heard = quinn.audio_window(hold.min(Duration::from_secs(3)));
            let clean_db = (
                tone_level_db(&heard, 48_000, SAM_HZ),
                tone_level_db(&heard, 48_000, WES_HZ),
            );
            ensure!(
                clean_db.1 > HEARD_DB,
                "{what}: Quinn did not hear Wes meanwhile ({clean_db:?} dB)"
            );
            // Sam is heard through loss and jitter (not through an outage: nothing arrives);
            // through jitter on his own uplink because the server holds his audio back as
            // much as the jitter needs (`rtp::playout`).
            let sam_db = if impairment.outage {
                None
            } else {
                ensure!(
                    clean_db.0 > HEARD_DB || direction == Direction::ToClient,
                    "{what}: Quinn did not hear Sam through his uplink ({clean_db:?} dB)"
                );
                let rita_heard = rita.audio_window(hold.min(Duration::from_secs(3)));
                let db = tone_level_db(&rita_heard, 48_000, SAM_HZ);
                ensure!(db > HEARD_DB, "{what}: Rita did not hear Sam ({db} dB)");
                Some(db)
            };
            let after = relay.counts(port, direction);
            let path = PathCounts {
                forwarded: after.forwarded - before.forwarded,
                dropped: after.dropped - before.dropped,
                retransmitted: after.retransmitted - before.retransmitted,
                rtx: after.rtx - before.rtx,
            };
            // The impairment was on the path the media took.
            ensure!(
                path.forwarded + path.dropped > 100
                    && (impairment.jitter.is_some() || path.dropped > 0),
                "{what}: the relay saw {path:?}"
            );
            outcomes.push(Outcome {
                what,
                recovered,
                others_fps,
                sam_db,
                clean_db,
                path,
            });
        }
    }

    println!(
        "{:<32} {:>10} {:>11} {:>9} {:>15} {:>22}",
        "impairment", "recovered", "others fps", "sam dB", "clean dB", "dropped/fwd/rtx"
    );
    for o in &outcomes {
        println!(
            "{:<32} {:>8}ms {:>11} {:>9} {:>15} {:>22}",
            o.what,
            o.recovered.as_millis(),
            o.others_fps,
            o.sam_db.map_or("-".into(), |d| format!("{d:.1}")),
            format!("{:.1}/{:.1}", o.clean_db.0, o.clean_db.1),
            format!("{}/{}/{}", o.path.dropped, o.path.forwarded, o.path.rtx),
        );
    }
    // NACKs bring lost packets back, both ways, as RTX: Sam resent what the server asked for,
    // the server resent what Rita asked for.
    for (direction, who) in [
        (Direction::ToServer, "sam"),
        (Direction::ToClient, "server"),
    ] {
        let rtx: u64 = outcomes
            .iter()
            .filter(|o| o.what.starts_with(who))
            .map(|o| o.path.rtx)
            .sum();
        ensure!(
            rtx > 0,
            "no RTX retransmission {direction:?} over lossy paths"
        );
    }
    for c in [sam, wes, rita, quinn] {
        ns.run(c.leave()).await??;
    }
    Ok(())
}

/// The port of the server's that `client` reaches, checked to be the relay's.
async fn remote_port(client: &TestClient, relay: IpAddr) -> Result<u16> {
    let remote = client.selected_remote_address().await?;
    ensure!(
        remote.ip() == relay,
        "{} reaches {remote}, not the relay",
        client.name()
    );
    Ok(remote.port())
}
