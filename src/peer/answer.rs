//! Making webrtc-rs's answer say what tessera does (pure, on the SDP text).
//!
//! webrtc-rs answers each codec with the offerer's own `a=fmtp` line. For the parameters that
//! describe the *offerer* that is wrong: an answer that repeats `sprop-parameter-sets` (the
//! offerer's H.264 parameter sets, RFC 6184 §8.1), `sprop-stereo` or `sprop-maxcapturerate`
//! (what the offerer sends, RFC 7587 §7) or an H.264 level tessera does not keep claims things
//! about tessera's stream that are not true. So each codec's parameters are rewritten to
//! tessera's own:
//! - H.264: `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=<offered profile,
//!   level of what tessera sends>`; never `sprop-*`;
//! - Opus: `minptime=10;useinbandfec=1`: what tessera wants to receive (RFC 7587 §7: FEC on,
//!   mono mixes need no `stereo`); tessera sends mono, the default, so no `sprop-stereo`;
//! - VP8: none (RFC 7741's `max-fr`/`max-fs` describe a decoder, and tessera's decodes anything
//!   a WebRTC sender sends).
//!
//! An accepted m-line never keeps `a=bundle-only` (RFC 8843 §6: an answer does not use it); its
//! port is the BUNDLE port webrtc-rs writes (RFC 9143 §7.3).
//!
//! Behind a 1:1 NAT (`--public-ip`), the host candidates carry the public address: webrtc-rs
//! 0.21.1 keeps the setting engine's `nat_1to1_ips` but never reads them, so its candidates
//! always name the address the socket is bound to, which nobody outside can reach.

use std::net::IpAddr;

use crate::sdp::h264::{Level, ProfileLevelId};

use super::offer::{OfferSummary, fmtp_parameter};

/// What tessera's parameters are for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerParameters {
    /// The highest H.264 level tessera may send to this receiver.
    pub h264_level: Level,
    /// The address the host candidates announce instead of the bound one (`--public-ip`).
    pub public_ip: Option<IpAddr>,
}

/// The Opus parameters of every answer.
pub const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// Rewrites `answer` (webrtc-rs's, to `offer`) so its codec parameters are tessera's.
pub fn rewrite(answer: &str, offer: &OfferSummary, params: AnswerParameters) -> String {
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::with_capacity(answer.len());
    // The codec of each payload type in the current m-section, from its rtpmap lines.
    let mut section: Vec<(u8, String)> = Vec::new();
    let mut mid: Option<String> = None;
    let lines: Vec<&str> = answer.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("m=") {
            // Read ahead: the section's rtpmaps and mid, before its fmtp lines come by.
            section.clear();
            mid = None;
            for l in lines[i + 1..].iter().take_while(|l| !l.starts_with("m=")) {
                if let Some(rest) = l.strip_prefix("a=rtpmap:")
                    && let Some((pt, codec)) = rest.split_once(' ')
                    && let Ok(pt) = pt.parse()
                {
                    let name = codec.split('/').next().unwrap_or(codec);
                    section.push((pt, name.to_ascii_lowercase()));
                }
                if let Some(m) = l.strip_prefix("a=mid:") {
                    mid = Some(m.trim().to_owned());
                }
            }
        }
        i += 1;
        if line == "a=bundle-only" {
            continue;
        }
        if let Some(public) = params.public_ip
            && let Some(candidate) = public_host_candidate(line, public)
        {
            out.push_str(&candidate);
            out.push_str(eol);
            continue;
        }
        let Some((pt, _)) = line
            .strip_prefix("a=fmtp:")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(pt, params)| Some((pt.parse::<u8>().ok()?, params)))
        else {
            out.push_str(line);
            out.push_str(eol);
            continue;
        };
        let codec = section
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, c)| c.as_str());
        let rewritten = match codec {
            Some("vp8") => None,
            Some("opus") => Some(OPUS_FMTP.to_owned()),
            Some("h264") => Some(h264_fmtp(offer, mid.as_deref(), pt, params.h264_level)),
            // Anything else (rtx's apt=, red) is about payload numbers: kept.
            _ => Some(
                line["a=fmtp:".len()..]
                    .split_once(' ')
                    .map_or("", |x| x.1)
                    .to_owned(),
            ),
        };
        if let Some(fmtp) = rewritten {
            out.push_str(&format!("a=fmtp:{pt} {fmtp}{eol}"));
        }
    }
    out
}

/// A host candidate line (RFC 8839 §5.1: foundation, component, transport, priority, address,
/// port, `typ host`, …) with `public` as its address; `None` for any other line.
fn public_host_candidate(line: &str, public: IpAddr) -> Option<String> {
    let fields: Vec<&str> = line.strip_prefix("a=candidate:")?.split(' ').collect();
    if fields.len() < 8 || fields[6] != "typ" || fields[7] != "host" {
        return None;
    }
    let public = public.to_string();
    let mut rewritten = fields;
    rewritten[4] = &public;
    Some(format!("a=candidate:{}", rewritten.join(" ")))
}

/// tessera's H.264 parameters for payload type `pt`: the profile the offer gave that payload
/// type (any profile whose decoders take constrained baseline), at `level`.
fn h264_fmtp(offer: &OfferSummary, mid: Option<&str>, pt: u8, level: Level) -> String {
    let offered = mid
        .and_then(|mid| offer.by_mid(mid))
        .and_then(|m| m.format(pt))
        .and_then(|f| fmtp_parameter(&f.fmtp, "profile-level-id"))
        .and_then(|p| p.parse::<ProfileLevelId>().ok())
        .filter(|p| p.decodes_constrained_baseline());
    let profile = offered.map_or_else(
        || ProfileLevelId::constrained_baseline(level),
        |p| p.with_level(level),
    );
    format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::offer::inspect_offer;

    fn captured(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/offers/{name}.sdp",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("captured SDP")
    }

    #[test]
    fn issue9_h264_answers_carry_our_level_and_no_sprop() {
        // webrtc-rs's answer to webrtcbin's H.264 participant, as it was before the rewrite.
        let offer = inspect_offer(&captured("webrtcbin-max-bundle-h264-participant")).unwrap();
        let answer = captured("answer-webrtc-rs-to-webrtcbin-h264");
        assert!(
            answer.contains("sprop-parameter-sets"),
            "the captured problem"
        );
        let fixed = rewrite(
            &answer,
            &offer,
            AnswerParameters {
                h264_level: Level::L3_1,
                public_ip: None,
            },
        );
        assert!(!fixed.contains("sprop"), "{fixed}");
        assert!(
            fixed.contains(
                "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c01f\r\n"
            ),
            "{fixed}"
        );
        assert!(
            fixed.contains(&format!("a=fmtp:111 {OPUS_FMTP}\r\n")),
            "{fixed}"
        );
        // Everything else is untouched, line for line.
        let other = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with("a=fmtp:"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(other(&answer), other(&fixed));
    }

    #[test]
    fn issue9_vp8_parameters_are_dropped_and_bundle_only_never_answered() {
        let offer = inspect_offer(&captured("webrtcbin-max-bundle-participant")).unwrap();
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\n\
                      a=rtpmap:96 VP8/90000\r\na=fmtp:96 max-fr=30;max-fs=3600\r\n\
                      m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio1\r\na=bundle-only\r\n\
                      a=rtpmap:111 opus/48000/2\r\na=fmtp:111 sprop-stereo=1;stereo=1\r\n\
                      a=rtpmap:112 rtx/48000\r\na=fmtp:112 apt=111\r\n";
        let fixed = rewrite(
            answer,
            &offer,
            AnswerParameters {
                h264_level: Level::L3_1,
                public_ip: None,
            },
        );
        assert!(!fixed.contains("max-fr"), "{fixed}");
        assert!(!fixed.contains("bundle-only"), "{fixed}");
        assert!(
            fixed.contains("a=fmtp:111 minptime=10;useinbandfec=1\r\n"),
            "{fixed}"
        );
        assert!(fixed.contains("a=fmtp:112 apt=111\r\n"), "{fixed}");
    }

    #[test]
    fn issue9_an_unknown_profile_answers_constrained_baseline() {
        let offer = inspect_offer(&captured("webrtcbin-max-bundle-h264")).unwrap();
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:video0\r\n\
                      a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n";
        // The offer's PT 102 is 42c0 (constrained baseline): kept. A PT the offer did not
        // describe gets 42e0.
        let fixed = rewrite(
            answer,
            &offer,
            AnswerParameters {
                h264_level: Level(30),
                public_ip: None,
            },
        );
        assert!(fixed.contains("profile-level-id=42c01e"), "{fixed}");
        let unknown = answer.replace("102", "104");
        let fixed = rewrite(
            &unknown,
            &offer,
            AnswerParameters {
                h264_level: Level(30),
                public_ip: None,
            },
        );
        assert!(fixed.contains("profile-level-id=42e01e"), "{fixed}");
    }

    #[test]
    fn issue16_behind_a_nat_host_candidates_name_the_public_address() {
        let offer = inspect_offer(&captured("webrtcbin-max-bundle-participant")).unwrap();
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\n\
                      a=candidate:1 1 udp 2130706431 10.0.2.2 40020 typ host\r\n\
                      a=candidate:2 1 udp 1694498815 198.51.100.9 40020 typ srflx raddr \
                      10.0.2.2 rport 40020\r\na=end-of-candidates\r\n";
        let params = |public_ip: Option<IpAddr>| AnswerParameters {
            h264_level: Level::L3_1,
            public_ip,
        };
        let fixed = rewrite(answer, &offer, params(Some([203, 0, 113, 7].into())));
        assert!(
            fixed.contains("a=candidate:1 1 udp 2130706431 203.0.113.7 40020 typ host\r\n"),
            "{fixed}"
        );
        // Only host candidates: a server-reflexive one already names what the world sees.
        assert!(
            fixed.contains(" 198.51.100.9 40020 typ srflx raddr 10.0.2.2"),
            "{fixed}"
        );
        assert_eq!(rewrite(answer, &offer, params(None)), answer);
    }
}
