//! Issue 13, an audio path that scales: only speakers have a mix of their own, everyone silent
//! shares one, and a sender that states its levels (RFC 6464) is not decoded to know them.
//! Checked by content: the tones each participant decodes, 20 ms at a time around the moves
//! between mixes, and the room's count of Opus encoders.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::support::analysis::{colours, tone_level_db};
use crate::support::{JoinOptions, Role, SendMedia, TestClient, TestServer, eventually};

/// A tone counts as heard above this level (dBFS) in a 20 ms window; the senders' tones reach
/// a listener at about -10.5.
const HEARD_DB: f32 = -40.0;
/// Its own voice must be at least this far under the weakest voice it should hear.
const OWN_MARGIN_DB: f32 = 20.0;
const RATE: f64 = 48_000.0;
/// The windows the audio is checked in.
const STEP: Duration = Duration::from_millis(20);

/// A small picture (the room's video is not what is tested) and a tone, loud or silent.
fn media(tone_hz: f32, speaking: bool) -> SendMedia {
    SendMedia {
        width: 160,
        height: 96,
        tone_volume: if speaking { 0.3 } else { 0.0 },
        ..SendMedia::new(colours::GREEN, tone_hz)
    }
}

/// A server whose picture is small: eight clients decoding a 720p mix, and the server composing
/// and encoding it in a debug build, would take more CPU than this machine has, and a starved
/// mixer drops audio. What is tested here is where voices go; how much a room costs is the
/// benchmark's.
fn server() -> Result<TestServer> {
    TestServer::start(&["--width", "320", "--height", "180", "--fps", "15"])
}

/// Joins as a participant receiving the low tier (the smallest picture).
async fn join(server: &TestServer, room: &str, name: &str, send: SendMedia) -> Result<TestClient> {
    join_stating(server, room, name, send, None).await
}

/// [`join`], stating `level` in every audio packet (RFC 6464) if there is one.
async fn join_stating(
    server: &TestServer,
    room: &str,
    name: &str,
    send: SendMedia,
    stated_level: Option<u8>,
) -> Result<TestClient> {
    let options = JoinOptions {
        quality: Some("low"),
        stated_level,
        ..JoinOptions::default()
    };
    TestClient::join_with(
        server.base_url(),
        room,
        Role::Participant,
        Some(send),
        name,
        options,
    )
    .await
    .with_context(|| format!("{name} joins"))
}

/// The names of the room's participants the server counts as speaking, sorted.
fn speakers(room: &Value) -> Vec<String> {
    let mut names: Vec<String> = room["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["speaking"] == true)
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Waits until exactly `want` speak, and returns the room then.
async fn until_speaking(server: &TestServer, room: &str, want: &[&str]) -> Result<Value> {
    eventually(
        Duration::from_secs(10),
        &format!("{want:?} speaking"),
        || async {
            let info = server.room(room).await?;
            let now = speakers(&info);
            if now == want {
                Ok(Some(info))
            } else {
                bail!("speaking: {now:?}")
            }
        },
    )
    .await
}

/// Samples a client has decoded so far, as the time since its first.
fn received(client: &TestClient) -> Duration {
    Duration::from_secs_f64(client.audio_state().total_samples as f64 / RATE)
}

/// Checks `audio` 20 ms at a time, every 10 ms: its own voice (if any; or another tone it must
/// not hear) is at least [`OWN_MARGIN_DB`] under the loudest voice it should hear in every
/// window, and no voice of
/// `hears` is missing for over 40 ms (three windows in a row: a gap of 40 ms or more covers at
/// least three, one of under 40 at most two, such as a frame the decoder concealed).
fn check_windows(who: &str, audio: &[f32], hears: &[f32], own: Option<f32>) -> Result<()> {
    let n = (RATE * STEP.as_secs_f64()) as usize;
    let hop = n / 2;
    // For the record: the weakest voice heard and the closest its own came to the others.
    let (mut weakest_heard, mut closest_own) = (f32::MAX, f32::MAX);
    let mut missing_in_a_row = 0;
    let windows = audio.len().saturating_sub(n) / hop + 1;
    for i in 0..windows {
        let window = &audio[i * hop..i * hop + n];
        let levels: Vec<f32> = hears
            .iter()
            .map(|&hz| tone_level_db(window, 48_000, hz))
            .collect();
        let weakest = levels.iter().copied().fold(f32::MAX, f32::min);
        let loudest = levels.iter().copied().fold(f32::MIN, f32::max);
        let at = i * 10;
        weakest_heard = weakest_heard.min(weakest);
        missing_in_a_row = if weakest < HEARD_DB {
            missing_in_a_row + 1
        } else {
            0
        };
        if missing_in_a_row >= 3 {
            // The levels around it say which voice went and whether anything else did.
            let around: Vec<String> = (i.saturating_sub(6)..(i + 6).min(windows))
                .map(|j| {
                    let w = &audio[j * hop..j * hop + n];
                    let mut all: Vec<f32> = hears.to_vec();
                    all.extend(own);
                    let db: Vec<String> = all
                        .iter()
                        .map(|&hz| format!("{:.0}", tone_level_db(w, 48_000, hz)))
                        .collect();
                    format!("{} ms: {}", j * 10, db.join("/"))
                })
                .collect();
            bail!(
                "{who}: a gap of 40 ms or more at {at} ms: {hears:?} Hz at {levels:?} dBFS; \
                 around it ({hears:?} then its own, dBFS): {}",
                around.join(", ")
            );
        }
        if let Some(own) = own {
            let level = tone_level_db(window, 48_000, own);
            closest_own = closest_own.min(loudest - level);
            if level > loudest - OWN_MARGIN_DB {
                bail!(
                    "{who} hears what it must not at {at} ms: {own} Hz at {level:.1} dBFS, \
                     the others {levels:?}"
                );
            }
        }
    }
    let own = if own.is_some() {
        format!(", its own voice (or one it must not hear) at least {closest_own:.1} dB under")
    } else {
        String::new()
    };
    eprintln!("{who}: {windows} windows, weakest voice {weakest_heard:.1} dBFS{own}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_participant_who_starts_speaking_moves_to_its_own_mix_and_back() -> Result<()> {
    let server = server()?;
    let room = "moves";
    let (a_hz, b_hz, p_hz) = (400.0, 700.0, 1000.0);
    let _a = join(&server, room, "a", media(a_hz, true)).await?;
    let _b = join(&server, room, "b", media(b_hz, true)).await?;
    let p = join(&server, room, "p", media(p_hz, false)).await?;
    until_speaking(&server, room, &["a", "b"]).await?;
    // Silent, p hears the shared mix; both speakers have their own: three encoders.
    let info = server.room(room).await?;
    assert_eq!(info["mixer"]["audio_encoders"], 3, "{info}");
    p.next_audio(Duration::from_secs(1), Duration::from_secs(10))
        .await?;

    // p starts speaking: it moves to its own mix, then its voice joins the others'.
    let before = received(&p);
    p.set_tone_volume(0.3)?;
    let info = until_speaking(&server, room, &["a", "b", "p"]).await?;
    // Everyone hears a mix of their own now; nobody needs the shared one.
    assert_eq!(info["mixer"]["audio_encoders"], 3, "{info}");
    let from = before.saturating_sub(Duration::from_millis(300));
    let started = p
        .audio_between(
            from,
            from + Duration::from_millis(2800),
            Duration::from_secs(10),
        )
        .await?;
    check_windows("p starting to speak", &started, &[a_hz, b_hz], Some(p_hz))?;

    // p falls silent: after the hang its voice leaves the mixes, and it moves back.
    let before = received(&p);
    p.set_tone_volume(0.0)?;
    until_speaking(&server, room, &["a", "b"]).await?;
    let moved = received(&p);
    let to = moved + Duration::from_millis(500);
    let from = before
        .saturating_sub(Duration::from_millis(300))
        .max(to.saturating_sub(Duration::from_millis(2900)));
    let stopped = p.audio_between(from, to, Duration::from_secs(10)).await?;
    eprintln!(
        "p fell silent at {} ms and was seen moved by {} ms of the checked audio",
        (before.saturating_sub(from)).as_millis(),
        (moved.saturating_sub(from)).as_millis()
    );
    check_windows("p falling silent", &stopped, &[a_hz, b_hz], Some(p_hz))?;
    let info = server.room(room).await?;
    assert_eq!(info["mixer"]["audio_encoders"], 3, "{info}");
    // Moves keep the stream continuous: nothing was lost or concealed on the way.
    let s = p.audio_state();
    assert!(
        s.concealed_packets <= 2 && s.decode_errors == 0,
        "p's audio: {} concealed packets, {} decode errors",
        s.concealed_packets,
        s.decode_errors
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_room_of_eight_where_two_speak_runs_three_encoders() -> Result<()> {
    let server = server()?;
    let room = "eight";
    let (s1_hz, s2_hz) = (500.0, 900.0);
    let mut clients = vec![
        join(&server, room, "s1", media(s1_hz, true)).await?,
        join(&server, room, "s2", media(s2_hz, true)).await?,
    ];
    for i in 0..6 {
        let hz = 1300.0 + 150.0 * i as f32;
        clients.push(join(&server, room, &format!("l{i}"), media(hz, false)).await?);
    }
    let info = until_speaking(&server, room, &["s1", "s2"]).await?;
    // The shared mix (six listeners) and one mix each for the two speakers.
    assert_eq!(info["mixer"]["audio_encoders"], 3, "{info}");
    assert_eq!(info["participants"].as_array().map(Vec::len), Some(8));
    for c in &clients {
        let audio = c
            .next_audio(Duration::from_secs(1), Duration::from_secs(10))
            .await?;
        let (hears, own) = match c.name() {
            "s1" => (vec![s2_hz], Some(s1_hz)),
            "s2" => (vec![s1_hz], Some(s2_hz)),
            _ => (vec![s1_hz, s2_hz], None),
        };
        check_windows(c.name(), &audio, &hears, own)?;
    }
    // (Seconds later.) A listener's silent microphone stops before the pipeline (nothing decoded or mixed);
    // a speaker's goes on.
    let info = server.room(room).await?;
    let held = |name: &str| -> u64 {
        info["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["held_packets"].as_u64())
            .unwrap_or(0)
    };
    for i in 0..6 {
        let name = format!("l{i}");
        assert!(
            held(&name) >= 25,
            "{name} held {} packets: {info}",
            held(&name)
        );
    }
    assert_eq!((held("s1"), held("s2")), (0, 0), "{info}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_sender_that_states_its_levels_is_taken_at_its_word() -> Result<()> {
    let server = server()?;
    let room = "stated";
    let (a_hz, c_hz, l_hz) = (400.0, 1000.0, 1300.0);
    // a speaks and says so (RFC 6464, as browsers do); c sends a loud tone but states silence
    // in every packet; l, a listener, states nothing: its level is decoded.
    let _a = join_stating(&server, room, "a", media(a_hz, true), Some(10)).await?;
    let _c = join_stating(&server, room, "c", media(c_hz, true), Some(127)).await?;
    let l = join(&server, room, "l", media(l_hz, false)).await?;
    until_speaking(&server, room, &["a"]).await?;
    // l hears a, and nothing of c: a sender that states silence is neither decoded nor mixed.
    let audio = l
        .next_audio(Duration::from_secs(2), Duration::from_secs(10))
        .await?;
    check_windows("l", &audio, &[a_hz], Some(c_hz))?;
    let info = server.room(room).await?;
    assert_eq!(speakers(&info), ["a"], "{info}");
    let field = |name: &str, key: &str| -> u64 {
        info["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p[key].as_u64())
            .unwrap_or(0)
    };
    // Seconds of packets: every level a and c sent was read from its header, none of l's.
    for name in ["a", "c"] {
        assert!(field(name, "stated_levels") >= 50, "{name}: {info}");
    }
    assert_eq!(field("l", "stated_levels"), 0, "{info}");
    assert!(field("c", "held_packets") >= 50, "{info}");
    assert!(field("l", "held_packets") >= 50, "{info}");
    assert_eq!(field("a", "held_packets"), 0, "{info}");
    Ok(())
}
