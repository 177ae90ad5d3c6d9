//! Reading an SDP offer before anything is built: which media it sends and receives, in which
//! codecs, over which transport, so the room can classify the session (participant,
//! contributor, viewer) and refuse an offer it cannot serve with a precise 400 instead of a
//! half-connected peer.
//!
//! The transport rules are RFC 8843 / RFC 9143 (BUNDLE) and RFC 8829 (JSEP):
//! - an m-line with port 0 is rejected, **unless** it carries `a=bundle-only` and its mid is in
//!   a BUNDLE group: then it is carried on the group's transport (what a max-bundle offerer such
//!   as GStreamer's webrtcbin writes for every m-line but the first);
//! - the offerer-tagged m-line (the first mid of a group) must carry a port, or nothing does.
//!
//! It also notes what the receiving side needs to route packets (RFC 8843 §9.2): the SSRCs each
//! m-line declares, whether it uses RID-based simulcast, and the id of the MID header extension.

use std::io::Cursor;

use rtc::sdp::SessionDescription;
use rtc::sdp::description::media::MediaDescription;

use super::PeerError;
use crate::types::MediaKind;

/// The header extension that names a packet's m-line (RFC 8843 §15.2).
pub const MID_EXTENSION_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// The header extension in which a sender states each audio packet's level (RFC 6464).
pub const AUDIO_LEVEL_EXTENSION_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Most m-lines an offer may have. A participant sends a camera and a microphone (a browser
/// may add a data channel); the real offers of tests/offers have two. Each m-line costs a
/// transceiver, so a thousand would be a thousand for one request.
pub const MAX_MEDIA_LINES: usize = 16;
/// Most candidates an offer may carry (as a trickle fragment, `sdp::trickle`): each is an
/// address the server's ICE agent will send to, so a long list would turn the server into a
/// reflector.
pub const MAX_OFFER_CANDIDATES: usize = 64;
/// Longest line an offer may have, in bytes. The longest lines of real offers (fingerprints,
/// fmtp, candidates) are under 200.
pub const MAX_LINE_BYTES: usize = 4096;

/// Direction of an m-line, from the offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives.
    SendRecv,
    /// Only sends.
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither (or a rejected m-line).
    Inactive,
}

impl Direction {
    /// The offerer sends on this m-line.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// The offerer receives on this m-line.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// How an m-line's media would travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// On its BUNDLE group's transport. `bundle_only`: the offer gave it port 0 and
    /// `a=bundle-only` (RFC 8843 §6), so it exists only inside the group.
    Bundled {
        /// Written with `a=bundle-only`.
        bundle_only: bool,
    },
    /// On a transport of its own (no BUNDLE group names it).
    Own,
    /// Port 0 without `a=bundle-only` in a group: the offerer disables it (RFC 3264 §8.2).
    Rejected,
}

/// One payload type an m-line offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormat {
    /// The RTP payload type.
    pub payload_type: u8,
    /// The encoding name (`VP8`, `H264`, `opus`, `rtx`, ...), as the offer spells it.
    pub name: String,
    /// The RTP clock rate (0 when the offer has no `a=rtpmap` for a dynamic type).
    pub clock_rate: u32,
    /// Its `a=fmtp` parameters, verbatim (empty if none).
    pub fmtp: String,
}

impl OfferedFormat {
    /// The value of one `a=fmtp` parameter (`key=value;...`), if present.
    pub fn parameter(&self, key: &str) -> Option<&str> {
        fmtp_parameter(&self.fmtp, key)
    }
}

/// The value of `key` in an `a=fmtp` parameter list (`k=v;k2=v2`), keys compared without case.
pub fn fmtp_parameter<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// One audio or video m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOffer {
    /// Audio or video.
    pub kind: MediaKind,
    /// Its `a=mid`, if any.
    pub mid: Option<String>,
    /// Its direction; [`Direction::Inactive`] when the line is rejected.
    pub direction: Direction,
    /// The codec names offered (`VP8`, `opus`, ...), in the offerer's order, once each.
    pub codecs: Vec<String>,
    /// Every payload type, in the offerer's order.
    pub formats: Vec<OfferedFormat>,
    /// How its media travels.
    pub transport: Transport,
    /// The SSRCs it declares (`a=ssrc`), repair flows included.
    pub ssrcs: Vec<u32>,
    /// Whether it announces RID-based streams (`a=rid`, simulcast).
    pub rids: bool,
    /// The id it gives the MID header extension (`a=extmap:N urn:...:sdes:mid`).
    pub mid_extension: Option<u8>,
    /// The id it gives the RFC 6464 audio level extension (`a=extmap:N urn:...:ssrc-audio-level`).
    pub audio_level_extension: Option<u8>,
}

impl MediaOffer {
    /// Whether the line is rejected (its media must not flow).
    pub fn rejected(&self) -> bool {
        self.transport == Transport::Rejected
    }

    /// Whether the offerer sends on it but says nothing about the SSRC it will use: packets
    /// must then be routed by the MID header extension or the payload type (RFC 8843 §9.2).
    pub fn sends_undeclared(&self) -> bool {
        self.direction.sends() && self.ssrcs.is_empty() && !self.rids
    }

    /// The format of one payload type.
    pub fn format(&self, payload_type: u8) -> Option<&OfferedFormat> {
        self.formats.iter().find(|f| f.payload_type == payload_type)
    }
}

/// What an offer asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferSummary {
    /// The audio and video m-lines, in order (data channels are ignored).
    pub media: Vec<MediaOffer>,
    /// The mids of each `a=group:BUNDLE`, in the offer's order (the first is the offerer tag).
    pub bundle_groups: Vec<Vec<String>>,
}

impl OfferSummary {
    /// The first m-line of `kind` that is not rejected.
    pub fn first(&self, kind: MediaKind) -> Option<&MediaOffer> {
        self.media.iter().find(|m| m.kind == kind && !m.rejected())
    }
    /// Whether any m-line sends.
    pub fn sends(&self) -> bool {
        self.media.iter().any(|m| m.direction.sends())
    }
    /// Whether any m-line receives.
    pub fn receives(&self) -> bool {
        self.media.iter().any(|m| m.direction.receives())
    }
    /// The m-line with this mid.
    pub fn by_mid(&self, mid: &str) -> Option<&MediaOffer> {
        self.media.iter().find(|m| m.mid.as_deref() == Some(mid))
    }
}

/// Parses `sdp` as an offer and summarises its audio and video m-lines.
pub fn inspect_offer(sdp: &str) -> Result<OfferSummary, PeerError> {
    if sdp.trim().is_empty() {
        return Err(PeerError::BadOffer("the body is empty".into()));
    }
    check_size(sdp)?;
    let parsed = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| PeerError::BadOffer(e.to_string()))?;
    let bundle_groups: Vec<Vec<String>> = parsed
        .attributes
        .iter()
        .filter(|a| a.key == "group")
        .filter_map(|a| a.value.as_deref())
        .filter_map(|v| v.strip_prefix("BUNDLE"))
        .map(|mids| mids.split_whitespace().map(str::to_owned).collect())
        .collect();
    let bundled = |mid: &Option<String>| {
        mid.as_ref()
            .is_some_and(|mid| bundle_groups.iter().flatten().any(|m| m == mid))
    };
    let session_dir = direction_of(parsed.attributes.iter().map(|a| a.key.as_str()));
    let mut media = Vec::new();
    for m in &parsed.media_descriptions {
        let kind = match m.media_name.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => continue,
        };
        let mid = m.attribute("mid").flatten().map(str::to_owned);
        let port_zero = m.media_name.port.value == 0;
        let bundle_only = m.attribute("bundle-only").is_some();
        let transport = match (bundled(&mid), port_zero) {
            (true, true) if bundle_only => Transport::Bundled { bundle_only: true },
            (true, false) => Transport::Bundled { bundle_only: false },
            (false, false) => Transport::Own,
            (_, true) => Transport::Rejected,
        };
        let direction = if transport == Transport::Rejected {
            Direction::Inactive
        } else {
            direction_of(m.attributes.iter().map(|a| a.key.as_str()))
                .or(session_dir)
                .unwrap_or(Direction::SendRecv)
        };
        let formats = formats_of(m);
        let mut codecs: Vec<String> = Vec::new();
        for f in &formats {
            if !codecs.contains(&f.name) {
                codecs.push(f.name.clone());
            }
        }
        media.push(MediaOffer {
            kind,
            mid,
            direction,
            codecs,
            formats,
            transport,
            ssrcs: ssrcs_of(m),
            rids: m.attributes.iter().any(|a| a.key == "rid"),
            mid_extension: extension_id(m, MID_EXTENSION_URI),
            audio_level_extension: extension_id(m, AUDIO_LEVEL_EXTENSION_URI),
        });
    }
    if media.is_empty() {
        return Err(PeerError::BadOffer(
            "the offer has no audio or video m-line".into(),
        ));
    }
    if !sdp.contains("a=fingerprint:") {
        return Err(PeerError::BadOffer(
            "the offer has no DTLS fingerprint (WebRTC needs DTLS-SRTP)".into(),
        ));
    }
    let summary = OfferSummary {
        media,
        bundle_groups,
    };
    check_bundle_tags(&summary)?;
    Ok(summary)
}

/// Refuses an offer bigger than any client needs (see [`MAX_MEDIA_LINES`],
/// [`MAX_OFFER_CANDIDATES`], [`MAX_LINE_BYTES`]), before it is parsed.
fn check_size(sdp: &str) -> Result<(), PeerError> {
    let (mut media, mut candidates) = (0, 0);
    for (n, line) in sdp.lines().enumerate() {
        if line.len() > MAX_LINE_BYTES {
            return Err(PeerError::BadOffer(format!(
                "line {} is {} bytes long; at most {MAX_LINE_BYTES}",
                n + 1,
                line.len()
            )));
        }
        media += usize::from(line.starts_with("m="));
        candidates += usize::from(line.starts_with("a=candidate:"));
    }
    if media > MAX_MEDIA_LINES {
        return Err(PeerError::BadOffer(format!(
            "the offer has {media} m-lines; at most {MAX_MEDIA_LINES}"
        )));
    }
    if candidates > MAX_OFFER_CANDIDATES {
        return Err(PeerError::BadOffer(format!(
            "the offer has {candidates} candidates; at most {MAX_OFFER_CANDIDATES}"
        )));
    }
    Ok(())
}

/// The offer as webrtc-rs 0.21 can take it. A sending m-line with `a=msid` but no `a=ssrc`
/// makes webrtc-rs expect a track it can never bind (on a session of several m-lines), and it
/// then fails the whole answer ("no trackStreams found for SSRC"). Those lines lose their
/// `a=msid` here, so webrtc-rs leaves them alone and the stream router places their packets
/// (RFC 8843 §9.2). tessera does not use the stream and track ids it drops.
pub fn for_webrtc_rs<'a>(sdp: &'a str, offer: &OfferSummary) -> std::borrow::Cow<'a, str> {
    let active = offer.media.iter().filter(|m| !m.rejected()).count();
    let undeclared: Vec<&str> = offer
        .media
        .iter()
        .filter(|m| m.sends_undeclared())
        .filter_map(|m| m.mid.as_deref())
        .collect();
    if active < 2 || undeclared.is_empty() {
        return std::borrow::Cow::Borrowed(sdp);
    }
    let mut out = String::with_capacity(sdp.len());
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let mid = section
            .iter()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"));
        let strip = mid.is_some_and(|mid| undeclared.contains(&mid));
        for line in section.drain(..) {
            if !(strip && line.starts_with("a=msid:")) {
                out.push_str(line);
            }
        }
    };
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    std::borrow::Cow::Owned(out)
}

/// RFC 8843 §7.2.1: the offerer-tagged m-line of a group (its first mid) carries the group's
/// address, so it cannot itself be bundle-only.
fn check_bundle_tags(offer: &OfferSummary) -> Result<(), PeerError> {
    for group in &offer.bundle_groups {
        let Some(tag) = group.first() else { continue };
        if let Some(m) = offer.by_mid(tag)
            && m.transport == (Transport::Bundled { bundle_only: true })
        {
            return Err(PeerError::BadOffer(format!(
                "the BUNDLE group's first m-line (mid {tag}) is bundle-only with port 0: no \
                 m-line carries the group's transport (RFC 8843 §7.2.1)"
            )));
        }
    }
    Ok(())
}

fn formats_of(m: &MediaDescription) -> Vec<OfferedFormat> {
    let by_pt = m.codecs();
    m.media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .map(|pt| match by_pt.get(&pt) {
            Some(c) => OfferedFormat {
                payload_type: pt,
                name: c.name.clone(),
                clock_rate: c.clock_rate,
                fmtp: c.fmtp.clone(),
            },
            // A static payload type without rtpmap (RFC 3551), e.g. 0 = PCMU.
            None => OfferedFormat {
                payload_type: pt,
                name: pt.to_string(),
                clock_rate: 0,
                fmtp: String::new(),
            },
        })
        .collect()
}

fn ssrcs_of(m: &MediaDescription) -> Vec<u32> {
    let mut ssrcs: Vec<u32> = Vec::new();
    for a in m.attributes.iter().filter(|a| a.key == "ssrc") {
        if let Some(ssrc) = a
            .value
            .as_deref()
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            && !ssrcs.contains(&ssrc)
        {
            ssrcs.push(ssrc);
        }
    }
    ssrcs
}

/// The id an m-line gives the header extension `uri` (`a=extmap:<id>[/<dir>] <uri>`).
fn extension_id(m: &MediaDescription, uri: &str) -> Option<u8> {
    m.attributes
        .iter()
        .filter(|a| a.key == "extmap")
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let mut parts = v.split_whitespace();
            let id = parts.next()?.split('/').next()?.parse().ok()?;
            (parts.next()? == uri).then_some(id)
        })
}

fn direction_of<'a>(keys: impl Iterator<Item = &'a str>) -> Option<Direction> {
    for key in keys {
        match key {
            "sendrecv" => return Some(Direction::SendRecv),
            "sendonly" => return Some(Direction::SendOnly),
            "recvonly" => return Some(Direction::RecvOnly),
            "inactive" => return Some(Direction::Inactive),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[path = "offer_tests.rs"]
mod tests;
