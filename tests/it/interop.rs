//! Issue 9: clients we did not write, beyond the browser. GStreamer's own WebRTC stack
//! (webrtcbin, configured as GStreamer's WHIP/WHEP clients are: max-bundle, no trickle), and
//! offers whose streams carry no `a=ssrc`. Checked by what the clients decode: the colour in
//! each tile, the tones in the audio; and by the SDP the server answers.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::support::analysis::{
    Frame, Rect, Rgb, average_colour, colours, is_close, tone_level_db,
};
use crate::support::webrtcbin::{GstJoin, GstVideo, WebrtcbinClient};
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer};

const FRAME_DEADLINE: Duration = Duration::from_secs(15);
const AUDIO_DEADLINE: Duration = Duration::from_secs(10);
const TOLERANCE: u8 = 48;

/// Whether `frame` shows the 2-up grid: `left` in the left half, `right` in the right half
/// (measured at the centres, whatever the frame's size).
fn two_up(frame: &Frame, left: Rgb, right: Rgb) -> bool {
    let (w, h) = (frame.width, frame.height);
    let centre = |x: u32| Rect::new(x - w / 32, h / 2 - h / 18, w / 16, h / 9);
    is_close(average_colour(frame, centre(w / 4)), left, TOLERANCE)
        && is_close(average_colour(frame, centre(3 * w / 4)), right, TOLERANCE)
}

/// The lines of the m-section of `kind` (`audio` or `video`) in `sdp`, its `m=` line first.
fn section<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    let mut lines = sdp
        .lines()
        .skip_while(|l| !l.starts_with(&format!("m={kind} ")));
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| !l.starts_with("m=")));
    out
}

/// Asserts the audio m-line of an answer is accepted in the BUNDLE group, in `direction`.
fn assert_audio_answered(who: &str, answer: &str, direction: &str) {
    let audio = section(answer, "audio");
    let m_line = audio.first().copied().unwrap_or_default();
    assert!(
        !m_line.starts_with("m=audio 0 "),
        "{who}: the audio line is rejected: {m_line}\n{answer}"
    );
    assert!(
        !audio.contains(&"a=bundle-only"),
        "{who}: an answer never carries bundle-only\n{answer}"
    );
    assert!(
        audio.contains(&direction),
        "{who}: expected {direction} for audio\n{answer}"
    );
    if direction != "a=recvonly" {
        assert!(
            audio.iter().any(|l| l.starts_with("a=ssrc:")),
            "{who}: tessera sends audio, so the answer must name its SSRC\n{answer}"
        );
    }
    let opus: Vec<&&str> = audio.iter().filter(|l| l.starts_with("a=fmtp:")).collect();
    assert!(
        opus.iter()
            .all(|l| l.ends_with(" minptime=10;useinbandfec=1")),
        "{who}: Opus parameters must be tessera's own, not the offer's sprop-*: {opus:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_webrtcbin_max_bundle_clients_see_and_hear_the_room() {
    let server = TestServer::start(&[]).expect("server starts");
    let camera = WebrtcbinClient::join(
        server.base_url(),
        "gst",
        "camera",
        GstJoin::new(Role::Contributor, colours::RED, 440.0),
    )
    .await
    .expect("a max-bundle sendonly VP8+Opus contributor joins");
    let mut h264 = GstJoin::new(Role::Participant, colours::GREEN, 620.0);
    h264.video = GstVideo::H264;
    let participant = WebrtcbinClient::join(server.base_url(), "gst", "phone", h264)
        .await
        .expect("a max-bundle sendrecv H.264+Opus participant joins");
    let viewer = WebrtcbinClient::join(
        server.base_url(),
        "gst",
        "screen",
        GstJoin::new(Role::Viewer, colours::BLACK, 0.0),
    )
    .await
    .expect("a max-bundle WHEP viewer joins");

    // The offers really are what issue 9 is about: every m-line but the first bundle-only.
    for c in [&camera, &participant, &viewer] {
        assert!(
            section(&c.offer, "audio")[0].starts_with("m=audio 0 ")
                && c.offer.contains("a=bundle-only"),
            "{}: {}",
            c.name(),
            c.offer
        );
    }

    // The viewer decodes the 2-up composite and hears both tones.
    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            f.width == 1280 && two_up(f, colours::RED, colours::GREEN)
        })
        .await
        .expect("the viewer sees red | green");
    let audio = viewer
        .next_audio(Duration::from_secs(2), AUDIO_DEADLINE)
        .await
        .expect("the viewer hears the room");
    let (camera_db, phone_db) = (
        tone_level_db(&audio, 48_000, 440.0),
        tone_level_db(&audio, 48_000, 620.0),
    );
    assert!(
        camera_db > -40.0 && phone_db > -40.0,
        "viewer: 440 Hz at {camera_db:.1} dBFS, 620 Hz at {phone_db:.1} dBFS"
    );

    // The H.264 participant decodes the same picture and hears the camera, not itself.
    participant
        .wait_for_frame(FRAME_DEADLINE, |f| two_up(f, colours::RED, colours::GREEN))
        .await
        .expect("the participant sees red | green in H.264");
    let audio = participant
        .next_audio(Duration::from_secs(2), AUDIO_DEADLINE)
        .await
        .expect("the participant hears its mix-minus");
    let (camera_db, own_db) = (
        tone_level_db(&audio, 48_000, 440.0),
        tone_level_db(&audio, 48_000, 620.0),
    );
    assert!(
        camera_db > -40.0,
        "the camera's tone at {camera_db:.1} dBFS"
    );
    assert!(
        own_db < camera_db - 20.0,
        "its own tone at {own_db:.1} dBFS, not >= 20 dB below the camera's {camera_db:.1}"
    );

    // What the answers say (RFC 8843, RFC 7587, RFC 6184).
    assert_audio_answered("contributor", &camera.answer, "a=recvonly");
    assert_audio_answered("participant", &participant.answer, "a=sendrecv");
    assert_audio_answered("viewer", &viewer.answer, "a=sendonly");
    let video = section(&participant.answer, "video");
    let fmtp = video
        .iter()
        .find(|l| l.starts_with("a=fmtp:"))
        .expect("an H.264 fmtp line");
    assert!(
        !fmtp.contains("sprop"),
        "never the offerer's sprop-*: {fmtp}"
    );
    // webrtcbin declared what its 640x360 encoder makes (42c01e, level 3.0): the participant
    // gets the 640x360 tier (level 3.0), and the answer says so, in its own profile.
    assert!(
        fmtp.ends_with(" level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c01e"),
        "{fmtp}"
    );
    let room = server.room("gst").await.expect("GET /rooms/gst");
    let phone = room["participants"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "phone"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        phone["output"],
        serde_json::json!({"codec": "h264", "tier": "low"}),
        "{room}"
    );
    assert_eq!(room["viewers"][0]["output"]["codec"], "vp8", "{room}");
    for c in [camera, participant, viewer] {
        c.leave().await.expect("leaves politely");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_streams_announced_without_ssrcs_are_routed_by_mid_or_payload_type() {
    let server = TestServer::start(&[]).expect("server starts");
    // webrtcbin sends no MID header extension: its streams go by payload type.
    let mut blue = GstJoin::new(Role::Participant, colours::BLUE, 1010.0);
    blue.strip_ssrcs = true;
    let gst = WebrtcbinClient::join(server.base_url(), "nossrc", "gst", blue)
        .await
        .expect("a webrtcbin participant without a=ssrc joins");
    assert!(!gst.offer.contains("a=ssrc"), "{}", gst.offer);
    // webrtc-rs sends the MID extension on its video: that stream goes by MID.
    let rs = TestClient::join_with(
        server.base_url(),
        "nossrc",
        Role::Participant,
        Some(SendMedia::new(colours::YELLOW, 440.0)),
        "rs",
        JoinOptions {
            strip_ssrcs: true,
            ..JoinOptions::default()
        },
    )
    .await
    .expect("a webrtc-rs participant without a=ssrc joins");
    let viewer = TestClient::join(server.base_url(), "nossrc", Role::Viewer, None, "wall")
        .await
        .expect("a viewer joins");

    viewer
        .wait_for_frame(FRAME_DEADLINE, |f| {
            two_up(f, colours::BLUE, colours::YELLOW)
        })
        .await
        .expect("both tiles show: blue | yellow");
    let audio = viewer
        .next_audio(Duration::from_secs(2), AUDIO_DEADLINE)
        .await
        .expect("the viewer hears the room");
    let levels = (
        tone_level_db(&audio, 48_000, 1010.0),
        tone_level_db(&audio, 48_000, 440.0),
    );
    assert!(levels.0 > -40.0 && levels.1 > -40.0, "{levels:?}");
    // Each hears the other and not itself: their audio was routed too.
    let heard = gst
        .next_audio(Duration::from_secs(2), AUDIO_DEADLINE)
        .await
        .expect("the webrtcbin participant hears its mix-minus");
    let (other, own) = (
        tone_level_db(&heard, 48_000, 440.0),
        tone_level_db(&heard, 48_000, 1010.0),
    );
    assert!(other > -40.0 && own < other - 20.0, "{other:.1} / {own:.1}");
    // Keyframe requests reach a routed stream's sender too (one is sent when its input starts).
    assert!(
        rs.stats().keyframe_requests_received >= 1,
        "{:?}",
        rs.stats()
    );
    let room = server.room("nossrc").await.expect("room state");
    assert_eq!(room["mixer"]["inputs"], 4, "two videos, two audios: {room}");
}

/// Before issue 9, a participant joining a room where someone spoke heard ~1-2 s of silence
/// after its audio started: the new mix-minus stalled the speaker's input (an audiomixer pad
/// blocks its pusher), that input's audio then reached every mix late and was dropped until
/// the mixers resynced. Measured at its start, the new participant now hears the speaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_a_new_participant_hears_the_room_from_its_first_second() -> Result<()> {
    let server = TestServer::start(&[])?;
    for round in 0..3 {
        let room = format!("late-{round}");
        let speaker = WebrtcbinClient::join(
            server.base_url(),
            &room,
            "speaker",
            GstJoin::new(Role::Participant, colours::RED, 440.0),
        )
        .await?;
        let viewer = WebrtcbinClient::join(
            server.base_url(),
            &room,
            "viewer",
            GstJoin::new(Role::Viewer, colours::BLACK, 0.0),
        )
        .await?;
        let newcomer = WebrtcbinClient::join(
            server.base_url(),
            &room,
            "newcomer",
            GstJoin::new(Role::Participant, colours::GREEN, 620.0),
        )
        .await?;
        let early = newcomer
            .audio_since_start(
                Duration::from_millis(500),
                Duration::from_millis(1000),
                AUDIO_DEADLINE,
            )
            .await
            .context("the newcomer's first second")?;
        let level = tone_level_db(&early, 48_000, 440.0);
        assert!(
            level > -40.0,
            "round {round}: 0.5-1.0 s into its audio the newcomer hears the speaker at \
             {level:.1} dBFS"
        );
        for c in [speaker, viewer, newcomer] {
            c.leave().await?;
        }
    }
    Ok(())
}
