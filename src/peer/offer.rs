//! Reading an SDP offer before anything is built: which media it sends and receives and in which
//! codecs, so the room can classify the session (participant, contributor, viewer) and refuse an
//! offer it cannot serve with a precise 400 instead of a half-connected peer.

use std::io::Cursor;

use rtc::sdp::SessionDescription;

use super::PeerError;
use crate::types::MediaKind;

/// Direction of an m-line, from the offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives.
    SendRecv,
    /// Only sends.
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither (or a rejected m-line with port 0).
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

/// One audio or video m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOffer {
    /// Audio or video.
    pub kind: MediaKind,
    /// Its direction.
    pub direction: Direction,
    /// The codec names offered (`VP8`, `opus`, ...), in the offerer's order.
    pub codecs: Vec<String>,
}

/// What an offer asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferSummary {
    /// The audio and video m-lines, in order (data channels are ignored).
    pub media: Vec<MediaOffer>,
}

impl OfferSummary {
    /// The first m-line of `kind`.
    pub fn first(&self, kind: MediaKind) -> Option<&MediaOffer> {
        self.media.iter().find(|m| m.kind == kind)
    }
    /// Whether any m-line sends.
    pub fn sends(&self) -> bool {
        self.media.iter().any(|m| m.direction.sends())
    }
    /// Whether any m-line receives.
    pub fn receives(&self) -> bool {
        self.media.iter().any(|m| m.direction.receives())
    }
}

/// Parses `sdp` as an offer and summarises its audio and video m-lines.
pub fn inspect_offer(sdp: &str) -> Result<OfferSummary, PeerError> {
    if sdp.trim().is_empty() {
        return Err(PeerError::BadOffer("the body is empty".into()));
    }
    let parsed = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| PeerError::BadOffer(e.to_string()))?;
    let session_dir = direction_of(parsed.attributes.iter().map(|a| a.key.as_str()));
    let mut media = Vec::new();
    for m in &parsed.media_descriptions {
        let kind = match m.media_name.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => continue,
        };
        let direction = if m.media_name.port.value == 0 {
            Direction::Inactive
        } else {
            direction_of(m.attributes.iter().map(|a| a.key.as_str()))
                .or(session_dir)
                .unwrap_or(Direction::SendRecv)
        };
        let codecs_by_pt = m.codecs();
        let mut codecs = Vec::new();
        for format in &m.media_name.formats {
            let name = format
                .parse::<u8>()
                .ok()
                .and_then(|pt| codecs_by_pt.get(&pt))
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format.clone());
            if !codecs.contains(&name) {
                codecs.push(name);
            }
        }
        media.push(MediaOffer {
            kind,
            direction,
            codecs,
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
    Ok(OfferSummary { media })
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
mod tests {
    use super::*;

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
    }

    #[test]
    fn garbage_and_empty_are_bad_offers() {
        assert!(inspect_offer("").is_err());
        assert!(inspect_offer("hello world").is_err());
        assert!(inspect_offer("v=0\r\n").is_err());
    }
}
