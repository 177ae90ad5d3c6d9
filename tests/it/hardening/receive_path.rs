//! The receive path under damaged media. Replayed: the fuzz seeds (RTP captured from real VP8,
//! H.264 and Opus encoders) decode through the server's own input branches, and thousands of
//! damaged variants of them finish without a hang. Live: a participant whose packets are
//! damaged costs only itself; the room's other pictures, sound and frame rate go on.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tessera::fuzzing::replay_codec;
use tessera::media::{replay_rtp, split_packets};
use tessera::types::MediaKind;

use crate::support::analysis::{Rect, average_colour, colours, is_close, min_fps, tone_level_db};
use crate::support::{Mangle, Role, SendMedia, TestClient, TestServer};

/// The seed of each codec, in the order of `tessera::fuzzing::REPLAY_CODECS` (the fuzz
/// target's first byte).
const SEEDS: [&str; 3] = ["vp8.rtp", "h264.rtp", "opus.rtp"];
/// Damaged variants replayed per codec.
const VARIANTS: usize = 150;
const DEADLINE: Duration = Duration::from_secs(5);

fn seed(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fuzz/seeds/rtp_decode/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    data[1..].to_vec()
}

/// Damages `packets` as the fuzzer's havoc stage would, in miniature: flipped bits, cut
/// payloads, noise, dropped, duplicated and swapped packets, headers included.
fn damage(rng: &mut rand::rngs::StdRng, packets: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = packets.iter().map(|p| p.to_vec()).collect();
    for _ in 0..rng.random_range(1..=6) {
        let i = rng.random_range(0..out.len());
        match rng.random_range(0..6) {
            0 => {
                let p = &mut out[i];
                for _ in 0..rng.random_range(1..=16) {
                    let b = rng.random_range(0..p.len());
                    p[b] ^= 1 << rng.random_range(0..8);
                }
            }
            1 => {
                let len = rng.random_range(0..out[i].len());
                out[i].truncate(len);
            }
            2 => {
                let from = rng.random_range(0..out[i].len());
                rng.fill(&mut out[i][from..]);
            }
            3 => {
                out.remove(i);
                if out.is_empty() {
                    out.push(vec![0x80; 12]);
                }
            }
            4 => out.insert(i, out[i].clone()),
            _ => {
                let j = rng.random_range(0..out.len());
                out.swap(i, j);
            }
        }
    }
    out
}

#[test]
fn issue16_the_captures_decode_through_the_servers_own_input_branches() {
    for (i, name) in SEEDS.into_iter().enumerate() {
        let data = seed(name);
        let packets = split_packets(&data);
        let codec = replay_codec(i);
        let replay = replay_rtp(&codec, &packets, DEADLINE).expect("replays");
        assert!(replay.finished, "{name}: {replay:?}");
        assert_eq!(replay.failure, None, "{name}");
        // 12 frames of video were captured (the first may wait for the jitter buffer's
        // first keyframe), 25 packets of 20 ms of Opus.
        let least = if codec.kind == MediaKind::Video {
            10
        } else {
            20
        };
        assert!(
            replay.decoded >= least,
            "{name}: only {} decoded",
            replay.decoded
        );
    }
}

#[test]
fn issue16_damaged_rtp_finishes_in_every_input_branch() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    for (i, name) in SEEDS.into_iter().enumerate() {
        let data = seed(name);
        let packets = split_packets(&data);
        let codec = replay_codec(i);
        let (mut failed, mut decoded) = (0, 0);
        for _ in 0..VARIANTS {
            let damaged = damage(&mut rng, &packets);
            let refs: Vec<&[u8]> = damaged.iter().map(Vec::as_slice).collect();
            let replay = replay_rtp(&codec, &refs, DEADLINE).expect("replays");
            assert!(replay.finished, "{name}: a damaged stream hung the branch");
            failed += usize::from(replay.failure.is_some());
            decoded += replay.decoded;
        }
        eprintln!(
            "{name}: {VARIANTS} damaged streams, {failed} ended their branch with an error \
             (in a room: that session is dropped), {decoded} frames or buffers decoded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_a_sender_of_damaged_media_costs_only_itself() {
    let server = TestServer::start(&[]).expect("server starts");
    let base = server.base_url();
    let room = "hostile";
    let green = TestClient::join(
        base,
        room,
        Role::Participant,
        Some(SendMedia::new(colours::GREEN, 620.0)),
        "green",
    )
    .await
    .expect("green joins");
    let viewer = TestClient::join(base, room, Role::Viewer, None, "viewer")
        .await
        .expect("the viewer joins");
    let hostile = TestClient::join(
        base,
        room,
        Role::Participant,
        Some(SendMedia {
            mangle: Some(Mangle {
                seed: 16,
                rate: 0.25,
            }),
            ..SendMedia::new(colours::RED, 1010.0)
        }),
        "hostile",
    )
    .await
    .expect("the hostile sender joins");
    // Green on the left of a side-by-side pair (first to join).
    let green_tile = Rect::new(280, 320, 80, 80);
    let shows_green = |f: &crate::support::analysis::Frame| {
        is_close(average_colour(f, green_tile), colours::GREEN, 48)
    };
    viewer
        .wait_for_frame(Duration::from_secs(10), shows_green)
        .await
        .expect("the viewer sees green");
    // Fifteen seconds of damaged media from one participant.
    let from = Instant::now();
    viewer
        .wait_for_new_frames(15 * 30 - 30, Duration::from_secs(25))
        .await
        .expect("the viewer keeps decoding");
    let to = Instant::now();
    let decoded: Vec<Instant> = viewer.video_state().decoded_at.into_iter().collect();
    let fps = min_fps(&decoded, from, to);
    assert!(fps >= 25.0, "the viewer's frame rate fell to {fps} fps");
    let frame = viewer.latest_frame().expect("a frame");
    assert!(shows_green(&frame), "green's tile changed colour");
    let audio = viewer
        .next_audio(Duration::from_secs(2), Duration::from_secs(10))
        .await
        .expect("audio");
    let level = tone_level_db(&audio, 48_000, 620.0);
    assert!(level > -40.0, "green's tone is lost ({level:.1} dBFS)");
    // The room is whole; the hostile sender is either still in it or dropped alone.
    let info = server.room(room).await.expect("the room answers");
    let names: Vec<String> = info["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert!(names.contains(&"green".to_owned()), "{info}");
    let stats = hostile.stats();
    eprintln!(
        "hostile sender: {} video and {} audio packets sent, a quarter damaged; still in the \
         room: {}; viewer's worst second {fps} fps",
        stats.video_packets_sent,
        stats.audio_packets_sent,
        names.contains(&"hostile".to_owned())
    );
    drop(green);
}
