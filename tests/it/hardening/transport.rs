//! Strangers at a session's UDP port: a DTLS ClientHello out of nowhere, STUN binding requests
//! with a username that is not the session's, and RTP before (or without) DTLS, sent from
//! another address to a connected participant's port, to a viewer's port and to a session that
//! has not connected yet. The connected sessions must go on as if nothing happened (the viewer
//! decodes the participant's colour at full rate), the unconnected one must still be there,
//! and the log must not grow by a line per packet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rand::Rng;
use reqwest::Url;
use tokio::net::UdpSocket;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::support::analysis::{Rect, average_colour, colours, is_close, min_fps};
use crate::support::client::make_offer;
use crate::support::http;
use crate::support::{Role, SendMedia, TestClient, TestServer};

/// How long the strangers send.
const ATTACK: Duration = Duration::from_secs(6);
/// Packets of each kind per target per second.
const RATE: u32 = 50;

/// CRC-32 (IEEE), for STUN's FINGERPRINT.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A STUN Binding request (RFC 8489) whose USERNAME is not the session's, with a
/// MESSAGE-INTEGRITY that cannot be right and a correct FINGERPRINT (so it is taken for STUN).
fn stun_with_wrong_username(rng: &mut impl Rng) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    m.extend((0..12).map(|_| rng.random::<u8>()));
    let username = b"wrongufrag:stranger";
    m.extend_from_slice(&[0x00, 0x06, 0, username.len() as u8]);
    m.extend_from_slice(username);
    m.resize(m.len().next_multiple_of(4), 0);
    m.extend_from_slice(&[0x00, 0x08, 0, 20]);
    m.extend((0..20).map(|_| rng.random::<u8>()));
    // The length counts the fingerprint that follows.
    let length = (m.len() - 20 + 8) as u16;
    m[2..4].copy_from_slice(&length.to_be_bytes());
    let fingerprint = crc32(&m) ^ 0x5354_554e;
    m.extend_from_slice(&[0x80, 0x28, 0, 4]);
    m.extend_from_slice(&fingerprint.to_be_bytes());
    m
}

/// A DTLS 1.2 ClientHello record (RFC 6347), well formed, from nobody the session knows.
fn client_hello(rng: &mut impl Rng) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend((0..32).map(|_| rng.random::<u8>()));
    body.push(0); // session id
    body.push(0); // cookie
    body.extend_from_slice(&[0, 4, 0xc0, 0x2b, 0xc0, 0x2f]); // ECDHE-ECDSA/RSA-AES128-GCM
    body.extend_from_slice(&[1, 0]); // no compression
    let extensions = [0x00, 0x0e, 0x00, 0x05, 0x00, 0x02, 0x00, 0x01, 0x00]; // use_srtp
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let len = body.len() as u32;
    let mut handshake = vec![1];
    handshake.extend_from_slice(&len.to_be_bytes()[1..]);
    handshake.extend_from_slice(&[0, 0]); // message_seq
    handshake.extend_from_slice(&[0, 0, 0]); // fragment_offset
    handshake.extend_from_slice(&len.to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0xfe, 0xfd, 0, 0];
    record.extend((0..6).map(|_| rng.random::<u8>()));
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// An RTP packet (VP8's payload type in the tests' offers) that is not SRTP.
fn plain_rtp(rng: &mut impl Rng, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..8).map(|_| rng.random::<u8>()));
    p.extend((0..200).map(|_| rng.random::<u8>()));
    p
}

/// The port of the first host candidate in an answer.
fn answer_address(answer: &str) -> Result<SocketAddr> {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .find_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
        })
        .context("a candidate in the answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_dtls_and_ice_strangers_leave_every_session_unharmed() -> Result<()> {
    let server = TestServer::start(&[])?;
    let base = server.base_url().to_owned();
    let room = "strangers";
    let green = TestClient::join(
        &base,
        room,
        Role::Participant,
        Some(SendMedia::new(colours::GREEN, 620.0)),
        "green",
    )
    .await?;
    let viewer = TestClient::join(&base, room, Role::Viewer, None, "viewer").await?;
    let centre = Rect::new(600, 320, 80, 80);
    let shows_green = |f: &crate::support::analysis::Frame| {
        is_close(average_colour(f, centre), colours::GREEN, 48)
    };
    viewer
        .wait_for_frame(Duration::from_secs(10), shows_green)
        .await?;
    // A session that never connects: its offer is answered, nobody completes ICE.
    let url = Url::parse(&format!("{base}/rooms/{room}/whep"))?;
    let pending = http::post(
        &url,
        "application/sdp",
        make_offer(Role::Viewer, "pending").await?,
    )
    .await?;
    ensure!(
        pending.status == 201,
        "the pending session: {}",
        pending.status
    );
    let targets = [
        ("green", green.selected_remote_address().await?),
        ("viewer", viewer.selected_remote_address().await?),
        ("pending", answer_address(&pending.body)?),
    ];
    println!("strangers send to {targets:?}");

    let stranger = UdpSocket::bind("127.0.0.1:0").await?;
    let mut rng = rand::rng();
    let started = Instant::now();
    let (mut sent, mut seq) = (0u64, 0u16);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    while started.elapsed() < ATTACK {
        tick.tick().await;
        for (_, addr) in targets {
            seq = seq.wrapping_add(1);
            for packet in [
                client_hello(&mut rng),
                stun_with_wrong_username(&mut rng),
                plain_rtp(&mut rng, seq),
            ] {
                stranger.send_to(&packet, addr).await?;
                sent += 1;
            }
        }
    }
    let ended = Instant::now();
    viewer
        .wait_for_new_frames(30, Duration::from_secs(5))
        .await?;
    let decoded: Vec<Instant> = viewer.video_state().decoded_at.into_iter().collect();
    let fps = min_fps(&decoded, started, ended);
    let frame = viewer.latest_frame().context("a frame")?;
    println!(
        "{sent} stranger packets in {:?} (ClientHello, STUN with a wrong username, plain RTP); \
         the viewer's worst second {fps} fps",
        ended - started
    );
    ensure!(fps >= 25.0, "the viewer fell to {fps} fps");
    ensure!(shows_green(&frame), "the viewer no longer sees green");
    for client in [&green, &viewer] {
        ensure!(
            client.connection_state() == RTCPeerConnectionState::Connected,
            "{} is {:?}",
            client.name(),
            client.connection_state()
        );
    }
    // Nothing a stranger sends is worth a log line each (the disk is not theirs to fill).
    let warnings = server.log().iter().filter(|l| l.contains("WARN")).count();
    println!("server warnings logged: {warnings}");
    ensure!(
        warnings < 20,
        "{warnings} warnings for {sent} stranger packets"
    );
    let info = server.room(room).await?;
    let viewers = info["viewers"].as_array().map_or(0, Vec::len);
    ensure!(viewers == 2, "the viewer and the pending session: {info}");
    green.disconnect().await;
    viewer.disconnect().await;
    Ok(())
}
