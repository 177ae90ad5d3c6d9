//! Tests of the test support itself, needing no tessera: if these fail, an integration test's
//! failure says nothing about the server.
//!
//! They wire the client's sender pipelines straight into its receiver pipelines (no network),
//! push an Opus tone through libopus, and check the server harness's failure path. What they
//! prove: the solid-colour VP8 path decodes to the colour sent, a decoder's keyframe request
//! reaches the encoder, the Opus path keeps a tone's frequency and level, and a server that
//! dies at startup is an error rather than a hang.

use std::time::Duration;

use anyhow::{Context, Result};
use rtc::shared::marshal::Unmarshal;
use tokio::task::JoinSet;

use super::analysis::{self, COLOUR_TOLERANCE, colours, tone_level_db};
use super::client::{self, Role, SendMedia, TestClient};
use super::http;
use super::media::{AUDIO_RATE, AudioReceiver, RtpSource, VideoReceiver, VideoSourceSpec};
use super::reflector::Reflector;
use super::server::TestServer;

/// Generous: the first frame needs the encoder, jitter buffer (50 ms) and decoder to start.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

fn red_640x360(keyframe_interval: u32) -> VideoSourceSpec {
    VideoSourceSpec {
        snow: false,
        colour: colours::RED,
        width: 640,
        height: 360,
        keyframe_interval,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn video_sender_and_receiver_pipelines_round_trip_a_red_picture() -> Result<()> {
    let mut source = RtpSource::video(red_640x360(30))?;
    let mut packets = source.take_packets().context("fresh source")?;
    let receiver = VideoReceiver::new(Some(96))?;
    let input = receiver.input();
    // The network stand-in; the set aborts it when the test returns, however it returns.
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while let Some(packet) = packets.recv().await {
            input.push(&packet);
        }
    });
    source.start()?;

    let frame = receiver
        .wait_for_frame(FRAME_DEADLINE, |f| {
            analysis::is_close(f.centre(), colours::RED, COLOUR_TOLERANCE)
        })
        .await?;

    assert_eq!((frame.width, frame.height), (640, 360));
    let whole = analysis::average_colour(&frame, frame.full());
    assert_eq!(analysis::classify_colour(whole), Some("red"), "{whole:?}");
    assert_eq!(analysis::classify_colour(frame.centre()), Some("red"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn receiver_keyframe_request_reaches_the_encoder() -> Result<()> {
    // One keyframe every 20 s: a picture within a few seconds proves the request got through.
    let mut source = RtpSource::video(red_640x360(600))?;
    let trigger = source
        .keyframe_trigger()
        .context("a video source has a trigger")?;
    let mut packets = source.take_packets().context("fresh source")?;
    let mut receiver = VideoReceiver::new(Some(96))?;
    let mut requests = receiver
        .take_keyframe_requests()
        .context("fresh receiver")?;
    let input = receiver.input();

    // Join mid-GOP: throw away the first 0.3 s of stream (judged by RTP time, not wall time),
    // so the first packets the receiver sees are not a keyframe.
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut first_timestamp = None;
        while let Some(packet) = packets.recv().await {
            let mut buf = &packet[..];
            let Ok(rtp) = rtc::rtp::Packet::unmarshal(&mut buf) else {
                continue;
            };
            let first = *first_timestamp.get_or_insert(rtp.header.timestamp);
            if rtp.header.timestamp.wrapping_sub(first) >= 90_000 * 3 / 10 {
                input.push(&packet);
            }
        }
    });
    // The PLI stand-in: the receiver's request goes straight to the encoder.
    let answering = trigger.clone();
    tasks.spawn(async move {
        while requests.recv().await.is_some() {
            answering.request();
        }
    });
    source.start()?;

    receiver
        .wait_for_frame(Duration::from_secs(5), |f| {
            analysis::is_close(f.centre(), colours::RED, COLOUR_TOLERANCE)
        })
        .await?;
    assert!(receiver.keyframe_requests() >= 1);
    assert!(trigger.requests() >= 1);
    Ok(())
}

#[test]
fn opus_round_trip_keeps_a_440_hz_tone() -> Result<()> {
    let mut encoder =
        opus::Encoder::new(AUDIO_RATE, opus::Channels::Stereo, opus::Application::Audio)
            .context("creating an Opus encoder")?;
    let (receiver, mut input) = AudioReceiver::new()?;
    let tone = analysis::sine(440.0, 0.3, AUDIO_RATE, AUDIO_RATE as usize);
    let mut packet = vec![0u8; 4000];
    let mut sequence = 1000u16;
    for frame in tone.chunks_exact(960) {
        let stereo: Vec<f32> = frame.iter().flat_map(|&s| [s, s]).collect();
        let len = encoder
            .encode_float(&stereo, &mut packet)
            .context("encoding 20 ms")?;
        // Lose packet 1020 to exercise concealment.
        if sequence != 1020 {
            input.push(sequence, &packet[..len]);
        }
        sequence = sequence.wrapping_add(1);
    }

    let state = receiver.state().borrow().clone();
    assert_eq!(state.packets, 49);
    assert_eq!(state.concealed_packets, 1);
    assert_eq!(state.decode_errors, 0);
    assert_eq!(state.total_samples, AUDIO_RATE as u64);

    // The last half second: well past the encoder's start-up and the concealed packet.
    let window = receiver.window(Duration::from_millis(500));
    assert_eq!(window.len(), AUDIO_RATE as usize / 2);
    let level = tone_level_db(&window, AUDIO_RATE, 440.0);
    let expected = 20.0 * 0.3f32.log10(); // -10.46 dB
    assert!(
        (level - expected).abs() < 1.5,
        "440 Hz at {level} dB, expected {expected}"
    );
    let elsewhere = tone_level_db(&window, AUDIO_RATE, 1000.0);
    assert!(
        elsewhere < -40.0,
        "1 kHz at {elsewhere} dB in a 440 Hz tone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn audio_sender_pipeline_produces_the_tone_it_was_asked_for() -> Result<()> {
    let mut source = RtpSource::audio(660.0)?;
    let mut packets = source.take_packets().context("fresh source")?;
    let (receiver, mut input) = AudioReceiver::new()?;
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while let Some(packet) = packets.recv().await {
            let mut buf = &packet[..];
            if let Ok(rtp) = rtc::rtp::Packet::unmarshal(&mut buf) {
                input.push(rtp.header.sequence_number, &rtp.payload);
            }
        }
    });
    source.start()?;

    // The first window after start-up, then a fresh one to measure.
    receiver
        .next_window(Duration::from_millis(200), Duration::from_secs(10))
        .await?;
    let window = receiver
        .next_window(Duration::from_millis(500), Duration::from_secs(10))
        .await?;

    let level = tone_level_db(&window, AUDIO_RATE, 660.0);
    assert!((level - (-10.46)).abs() < 2.0, "660 Hz at {level} dB");
    let other = tone_level_db(&window, AUDIO_RATE, 440.0);
    assert!(other < -40.0, "440 Hz at {other} dB in a 660 Hz tone");
    Ok(())
}

#[test]
fn server_that_exits_at_startup_is_an_error_not_a_hang() {
    // An argument no version of tessera accepts: it must exit before listening.
    let started = std::time::Instant::now();
    let error = match TestServer::start(&["--no-such-flag-for-the-support-selftest"]) {
        Ok(server) => panic!("tessera accepted a bogus flag (pid {})", server.pid()),
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?} to notice: {error:#}",
        started.elapsed()
    );
    assert!(
        format!("{error:#}").contains("before listening"),
        "{error:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_client_sees_and_hears_itself_through_a_reflector() -> Result<()> {
    let reflector = Reflector::start().await?;
    let send = SendMedia {
        colour: colours::GREEN,
        tone_hz: 440.0,
        // One keyframe every 20 s, and the reflector withholds the first 0.3 s: a green
        // picture within seconds means PLIs went client -> reflector -> client's encoder.
        keyframe_interval: 600,
        ..SendMedia::default()
    };
    let client = TestClient::join(
        reflector.base_url(),
        "selftest",
        Role::Participant,
        Some(send),
        "alice",
    )
    .await?;
    assert!(
        client
            .session_url()
            .path()
            .starts_with("/rooms/selftest/sessions/")
    );

    let frame = client
        .wait_for_frame(Duration::from_secs(8), |f| {
            analysis::is_close(f.centre(), colours::GREEN, COLOUR_TOLERANCE)
        })
        .await?;
    assert_eq!((frame.width, frame.height), (640, 360));
    let stats = client.stats();
    assert!(stats.plis_sent >= 1, "{stats:?}");
    assert!(stats.keyframe_requests_received >= 1, "{stats:?}");

    let audio = client
        .next_audio(Duration::from_millis(500), Duration::from_secs(10))
        .await?;
    let level = tone_level_db(&audio, AUDIO_RATE, 440.0);
    assert!(
        (level - (-10.46)).abs() < 2.5,
        "440 Hz came back at {level} dB"
    );

    client
        .wait_for_new_frames(30, Duration::from_secs(5))
        .await?;
    // Over a whole second: a 300 ms window on a loaded machine counts 3 frames as "10 fps".
    let fps = client.fps_over(Duration::from_secs(1));
    assert!(fps > 10.0, "{fps} fps");

    client.leave().await?;
    assert_eq!(reflector.session_count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn post_offer_returns_the_raw_answer() -> Result<()> {
    let reflector = Reflector::start().await?;
    let created = client::post_offer(reflector.base_url(), "raw", Role::Contributor, "bob").await?;
    assert_eq!(created.status, 201, "{created:?}");
    assert!(created.body.starts_with("v=0"), "{created:?}");
    let location = created.location.context("201 has a Location")?;
    let session = reqwest::Url::parse(reflector.base_url())?.join(&location)?;
    assert_eq!(http::delete(&session).await?.status, 204);

    // The reflector has no WHEP endpoint: a viewer gets the 404 back, not an error.
    let refused = client::post_offer(reflector.base_url(), "raw", Role::Viewer, "carol").await?;
    assert_eq!(refused.status, 404);
    Ok(())
}
