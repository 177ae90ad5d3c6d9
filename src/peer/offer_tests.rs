//! Tests of the offer reader, on hand-written SDP and on real offers (`tests/offers/`).

use super::*;

/// Offers captured from real clients (see tests/offers/README.md for how).
fn captured(name: &str) -> OfferSummary {
    let path = format!("{}/tests/offers/{name}.sdp", env!("CARGO_MANIFEST_DIR"));
    let sdp = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    inspect_offer(&sdp).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn line(offer: &OfferSummary, kind: MediaKind) -> &MediaOffer {
    offer
        .media
        .iter()
        .find(|m| m.kind == kind)
        .expect("an m-line of that kind")
}

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 00:11\r\na=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n";

#[test]
fn summarises_directions_and_codecs() {
    let s = inspect_offer(OFFER).unwrap();
    let audio = s.first(MediaKind::Audio).unwrap();
    assert_eq!(audio.direction, Direction::SendRecv);
    assert_eq!(audio.codecs, vec!["opus", "PCMU"]);
    let video = s.first(MediaKind::Video).unwrap();
    assert_eq!(video.direction, Direction::RecvOnly);
    assert_eq!(video.codecs, vec!["VP8", "H264"]);
    assert!(s.sends() && s.receives());
    assert_eq!(s.bundle_groups, vec![vec!["0".to_owned(), "1".to_owned()]]);
}

#[test]
fn issue16_an_offer_bigger_than_any_client_needs_is_refused() {
    let refused = |sdp: &str| match inspect_offer(sdp) {
        Err(PeerError::BadOffer(why)) => why,
        other => panic!("accepted: {other:?}"),
    };
    let lines: String = (3..=MAX_MEDIA_LINES)
        .map(|i| format!("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{i}\r\na=rtpmap:0 PCMU/8000\r\n"))
        .collect();
    let sixteen = inspect_offer(&format!("{OFFER}{lines}"));
    assert!(sixteen.is_ok(), "16 m-lines are fine: {sixteen:?}");
    let why = refused(&format!(
        "{OFFER}{lines}m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:x\r\n"
    ));
    assert!(why.contains("17 m-lines"), "{why}");
    let candidates: String = (0..=MAX_OFFER_CANDIDATES)
        .map(|i| {
            format!(
                "a=candidate:{i} 1 udp 1 127.0.0.1 {} typ host\r\n",
                1000 + i
            )
        })
        .collect();
    assert!(refused(&format!("{OFFER}{candidates}")).contains("65 candidates"));
    let long = format!("{OFFER}a=x-junk:{}\r\n", "A".repeat(MAX_LINE_BYTES));
    assert!(refused(&long).contains("bytes long"));
}

#[test]
fn garbage_and_empty_are_bad_offers() {
    assert!(inspect_offer("").is_err());
    assert!(inspect_offer("hello world").is_err());
    assert!(inspect_offer("v=0\r\n").is_err());
}

#[test]
fn issue9_bundle_only_port_zero_is_carried_not_rejected() {
    // webrtcbin, max-bundle: audio is `m=audio 0 ... a=bundle-only` inside the group.
    for name in [
        "webrtcbin-max-bundle-participant",
        "webrtcbin-max-bundle-viewer",
        "webrtcbin-max-bundle-contributor",
        "webrtcbin-max-bundle-h264",
    ] {
        let s = captured(name);
        let audio = line(&s, MediaKind::Audio);
        assert_eq!(
            audio.transport,
            Transport::Bundled { bundle_only: true },
            "{name}"
        );
        assert_ne!(audio.direction, Direction::Inactive, "{name}");
        let video = line(&s, MediaKind::Video);
        assert_eq!(
            video.transport,
            Transport::Bundled { bundle_only: false },
            "{name}"
        );
    }
    let viewer = captured("webrtcbin-max-bundle-viewer");
    assert!(
        viewer
            .media
            .iter()
            .all(|m| m.direction == Direction::RecvOnly)
    );
    let participant = captured("webrtcbin-max-bundle-participant");
    assert!(
        participant
            .media
            .iter()
            .all(|m| m.direction == Direction::SendRecv)
    );
    let contributor = captured("webrtcbin-max-bundle-contributor");
    assert!(
        contributor
            .media
            .iter()
            .all(|m| m.direction == Direction::SendOnly)
    );
}

#[test]
fn issue9_port_zero_without_bundle_only_is_rejected() {
    let sdp = std::fs::read_to_string(format!(
        "{}/tests/offers/webrtcbin-max-bundle-participant.sdp",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("captured offer");
    // The same offer with the audio line disabled the RFC 3264 way.
    let disabled = sdp.replace("a=bundle-only\r\n", "");
    let s = inspect_offer(&disabled).unwrap();
    let audio = line(&s, MediaKind::Audio);
    assert!(audio.rejected());
    assert_eq!(audio.direction, Direction::Inactive);
    assert!(s.first(MediaKind::Audio).is_none());
    // Bundle-only outside any group is rejected too.
    let ungrouped = sdp.replace("a=group:BUNDLE video0 audio1\r\n", "");
    let s = inspect_offer(&ungrouped).unwrap();
    assert!(line(&s, MediaKind::Audio).rejected());
    assert_eq!(line(&s, MediaKind::Video).transport, Transport::Own);
}

#[test]
fn issue9_a_bundle_only_offerer_tag_is_a_bad_offer() {
    let sdp = std::fs::read_to_string(format!(
        "{}/tests/offers/webrtcbin-max-bundle-participant.sdp",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("captured offer");
    let swapped = sdp.replace(
        "a=group:BUNDLE video0 audio1",
        "a=group:BUNDLE audio1 video0",
    );
    let err = inspect_offer(&swapped).unwrap_err().to_string();
    assert!(err.contains("bundle-only"), "{err}");
}

#[test]
fn issue9_balanced_webrtcbin_has_no_group_and_a_transport_per_line() {
    for name in [
        "webrtcbin-balanced-participant",
        "webrtcbin-balanced-viewer",
        "webrtcbin-balanced-contributor",
        "webrtcbin-balanced-h264",
    ] {
        let s = captured(name);
        assert!(s.bundle_groups.is_empty(), "{name}");
        assert!(
            s.media.iter().all(|m| m.transport == Transport::Own),
            "{name}"
        );
        assert_eq!(s.media.len(), 2, "{name}");
    }
}

#[test]
fn issue9_every_captured_client_reads_as_it_was_made() {
    // (file, video direction, audio direction, whether every sending line declares SSRCs)
    let cases = [
        ("chromium-max-bundle-participant", Direction::SendRecv),
        ("chromium-balanced-participant", Direction::SendRecv),
        ("chromium-max-bundle-viewer", Direction::RecvOnly),
        ("chromium-balanced-contributor", Direction::SendOnly),
        ("aiortc-participant", Direction::SendRecv),
        ("aiortc-viewer", Direction::RecvOnly),
        ("aiortc-contributor", Direction::SendOnly),
        ("webrtc-rs-participant", Direction::SendRecv),
        ("webrtc-rs-viewer", Direction::RecvOnly),
        ("webrtc-rs-contributor", Direction::SendOnly),
    ];
    for (name, direction) in cases {
        let s = captured(name);
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let m = s.first(kind).unwrap_or_else(|| panic!("{name}: no {kind}"));
            assert_eq!(m.direction, direction, "{name} {kind}");
            assert!(
                matches!(m.transport, Transport::Bundled { .. }),
                "{name} {kind}"
            );
            assert!(m.mid.is_some(), "{name} {kind}");
            assert!(!m.sends_undeclared(), "{name} {kind} declares its SSRCs");
            let wanted = match kind {
                MediaKind::Audio => "opus",
                MediaKind::Video => "VP8",
            };
            assert!(
                m.codecs.iter().any(|c| c.eq_ignore_ascii_case(wanted)),
                "{name} {kind}: {:?}",
                m.codecs
            );
        }
        assert_eq!(s.bundle_groups.len(), 1, "{name}");
    }
    // Chromium and aiortc announce the MID header extension; RTX flows are declared.
    let chrome = captured("chromium-max-bundle-participant");
    let video = line(&chrome, MediaKind::Video);
    assert!(video.mid_extension.is_some());
    assert_eq!(video.ssrcs.len(), 2, "media + RTX");
    assert!(
        line(&captured("aiortc-participant"), MediaKind::Audio)
            .mid_extension
            .is_some()
    );
}

#[test]
fn issue9_h264_parameters_are_read_per_payload_type() {
    let s = captured("webrtcbin-max-bundle-h264");
    let video = line(&s, MediaKind::Video);
    let h264 = video
        .formats
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case("H264"))
        .expect("an H.264 format");
    assert_eq!(h264.clock_rate, 90000);
    assert_eq!(h264.parameter("packetization-mode"), Some("1"));
    assert!(h264.parameter("profile-level-id").is_some());
    assert!(h264.parameter("sprop-parameter-sets").is_some());
    assert_eq!(fmtp_parameter("a=1; B = 2", "b"), Some("2"));
}

#[test]
fn issue9_webrtc_rs_is_not_handed_msids_it_cannot_bind() {
    let sdp = std::fs::read_to_string(format!(
        "{}/tests/offers/webrtc-rs-participant.sdp",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("captured offer");
    let untouched = inspect_offer(&sdp).unwrap();
    assert_eq!(
        for_webrtc_rs(&sdp, &untouched),
        sdp,
        "declared: nothing to do"
    );
    let stripped: String = sdp
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=ssrc"))
        .collect();
    assert!(stripped.contains("a=msid:"));
    let summary = inspect_offer(&stripped).unwrap();
    let fixed = for_webrtc_rs(&stripped, &summary);
    assert!(!fixed.contains("a=msid:"), "{fixed}");
    assert_eq!(
        fixed.lines().count() + stripped.matches("a=msid:").count(),
        stripped.lines().count(),
        "only the msid lines go"
    );
}

#[test]
fn issue9_undeclared_ssrcs_are_noticed() {
    let sdp = std::fs::read_to_string(format!(
        "{}/tests/offers/webrtcbin-max-bundle-participant.sdp",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("captured offer");
    let stripped: String = sdp
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=ssrc"))
        .collect();
    let s = inspect_offer(&stripped).unwrap();
    assert!(s.media.iter().all(MediaOffer::sends_undeclared));
    assert!(
        captured("webrtcbin-max-bundle-viewer")
            .media
            .iter()
            .all(|m| !m.sends_undeclared())
    );
}
