//! The fuzz targets' bodies: one function per parser tessera owns, taking the fuzzer's bytes.
//! `fuzz/src/bin/<target>.rs` hands AFL++'s inputs to them, and the regression test replays
//! every committed seed and every input a fuzzer ever crashed (`fuzz/regressions/<target>/`)
//! through the same functions, so a fixed crash stays fixed. A panic here is a finding.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::auth::{ApiKey, Auth, Caller};
use crate::peer::RouteTable;
use crate::room::layout::{LayoutSpec, Source, Stage, compose, decor};
use crate::rtp::{keyframe, packet};
use crate::types::{InputCodec, MediaKind, SessionId, SessionKind};

/// A fuzz target: takes any bytes, panics only on a finding.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name.
pub const TARGETS: [(&str, Target); 7] = [
    ("sdp_offer", sdp_offer),
    ("trickle", trickle),
    ("token", token),
    ("layout", layout),
    ("config", config),
    ("rtp", rtp),
    ("rtp_decode", rtp_decode),
];

/// An offer as `POST /whip` reads it: parsed and summarised, bundle checked, rewritten for
/// webrtc-rs, and routed when it leaves sending lines undeclared.
pub fn sdp_offer(data: &[u8]) {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(offer) = crate::peer::inspect_offer(sdp) {
        let _ = crate::peer::for_webrtc_rs(sdp, &offer);
        let _ = RouteTable::for_offer(&offer);
        for m in &offer.media {
            for f in &m.formats {
                let _ = f.parameter("profile-level-id");
            }
        }
    }
}

/// A `PATCH` body (application/trickle-ice-sdpfrag) and the offer's ICE username fragment.
pub fn trickle(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::sdp::trickle::parse_fragment(text);
    let _ = crate::sdp::trickle::ice_ufrag(text);
}

/// The API key the `token` target's tokens are checked against (its seeds are signed by it).
pub const TOKEN_KEY: &str = "fuzz-key";
/// Its secret.
pub const TOKEN_SECRET: &str = "fuzz-secret-that-is-long-enough-0123456789";

/// A bearer token as every route checks it: its issuer read unverified, then its signature,
/// expiry and claims; a verified token's claims asked what it may do.
pub fn token(data: &[u8]) {
    thread_local! {
        static AUTH: Auth = Auth::new(vec![ApiKey {
            key: TOKEN_KEY.into(),
            secret: TOKEN_SECRET.into(),
        }]);
    }
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    AUTH.with(|auth| {
        if let Ok(caller @ Caller::Token(_)) = auth.caller(Some(token)) {
            let _ = caller.may_join("room", SessionKind::Participant);
            let _ = caller.may_administer_server();
        }
    });
}

/// A layout as `PUT /rooms/{room}/layout` reads it, then composed and decorated for a room of
/// five sessions (one sharing a screen, one pinned, one muted), as the room would.
pub fn layout(data: &[u8]) {
    let Ok(spec) = LayoutSpec::parse(data) else {
        return;
    };
    let sources: Vec<Source> = (1..=5)
        .map(|i| Source {
            id: SessionId(i),
            identity: Some(format!("user{i}")),
            screen: i == 3,
            pinned: i == 4,
        })
        .collect();
    let stage = Stage {
        speaker: Some(SessionId(2)),
        previous: Some(SessionId(1)),
    };
    let tiles = compose(&spec.regions(), &sources, stage, 1280, 720);
    let named = |id: SessionId| decor::Named {
        name: Some(format!("Participant {id}")),
        muted: id.0 == 5,
    };
    let _ = decor::decorate(&spec, &tiles, named, stage.speaker, 720);
    let _ = spec.background_rgb();
}

/// A configuration file (`--config`, TOML) read and checked as the server reads it at start.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_toml(text);
    }
}

/// A real offer (webrtcbin's) with its `a=ssrc` lines taken out, as webrtcbin sends it when
/// its encoders' caps come late: routing by MID extension, SSRC and payload type all run.
fn undeclared_offer() -> String {
    include_str!("../tests/offers/webrtcbin-max-bundle-participant.sdp")
        .lines()
        .filter(|l| !l.starts_with("a=ssrc"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// One RTP packet as the receive path reads it before any GStreamer element: its header
/// fields and extensions (MID, audio level), keyframe detection for VP8 and H.264, the route
/// an undeclared stream takes, the renumbering of a gated audio packet.
pub fn rtp(data: &[u8]) {
    thread_local! {
        static TABLE: RefCell<(RouteTable, Instant)> = RefCell::new((
            crate::peer::inspect_offer(&undeclared_offer())
                .ok()
                .and_then(|o| RouteTable::for_offer(&o))
                .expect("the offer leaves lines undeclared"),
            Instant::now(),
        ));
    }
    let _ = packet::sequence(data);
    let _ = packet::audio_level(data, 1);
    if let Some(payload) = packet::payload(data) {
        let _ = keyframe::is_vp8_keyframe_start(payload);
        let _ = keyframe::is_h264_keyframe_start(payload);
    }
    TABLE.with(|table| {
        let (table, start) = &mut *table.borrow_mut();
        let mid = packet::extension(data, table.mid_extension().unwrap_or(1));
        if data.len() >= 12 {
            let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            let _ = table.route(*start, ssrc, data[1] & 0x7f, mid);
        }
    });
    let mut copy = data.to_vec();
    packet::set_sequence(&mut copy, 7);
}

/// The codecs `rtp_decode` replays, in the order of its first byte (and of the seeds
/// `fuzz/seeds/rtp_decode/{vp8,h264,opus}.rtp`).
pub const REPLAY_CODECS: [(&str, MediaKind, u32); 3] = [
    ("video/VP8", MediaKind::Video, 90_000),
    ("video/H264", MediaKind::Video, 90_000),
    ("audio/opus", MediaKind::Audio, 48_000),
];

/// The input codec `which` picks among [`REPLAY_CODECS`] (modulo their number).
pub fn replay_codec(which: usize) -> InputCodec {
    let (mime, kind, clock_rate) = REPLAY_CODECS[which % REPLAY_CODECS.len()];
    InputCodec {
        kind,
        mime_type: mime.into(),
        clock_rate,
        level_extension: None,
    }
}

/// The GStreamer receive path: the first byte picks the codec (VP8, H.264, Opus), the rest is
/// RTP packets, each a 2-byte length and its bytes ([`crate::media::split_packets`]), pushed
/// through the server's own input branch for that codec ([`crate::media::replay_rtp`]). A
/// branch that does not finish within 5 s is a hang, and panics.
pub fn rtp_decode(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let codec = replay_codec(usize::from(which));
    let mime = codec.mime_type.clone();
    let packets = crate::media::split_packets(rest);
    let replay = crate::media::replay_rtp(&codec, &packets, Duration::from_secs(5))
        .expect("the branch builds");
    assert!(replay.finished, "the {mime} branch hung: {replay:?}");
}
