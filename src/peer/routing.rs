//! Which m-line an incoming RTP stream belongs to when the offer did not say (pure).
//!
//! An offer may announce a sending m-line without `a=ssrc` (webrtcbin when its encoder's caps
//! arrive after the offer, some OBS and ffmpeg builds). webrtc-rs 0.21 binds such a stream only
//! when the session has a single m-line or uses RID simulcast; otherwise it drops the packets.
//! RFC 8843 §9.2 says how a receiver decides instead, in this order:
//! 1. the MID header extension in the packet names the m-line (and the SSRC is remembered);
//! 2. an SSRC already associated with an m-line stays there;
//! 3. a payload type that only one m-line offers decides it.
//!
//! [`RouteTable`] applies that to the lines the offer left undeclared. Only media payload types
//! are routed (not RTX, RED or FEC, whose packets must not reach a depayloader), and each line
//! carries one stream at a time: a second SSRC takes a line over only after the first has been
//! silent for [`TAKEOVER_AFTER`] (a sender that restarted), so a stray or hostile stream cannot
//! interleave with the real one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::offer::{OfferSummary, OfferedFormat};
use crate::types::MediaKind;

/// How long a line's stream must have been silent before another SSRC may take the line.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(2);

/// Payload formats that never carry a primary media stream.
const NOT_MEDIA: [&str; 7] = [
    "rtx",
    "red",
    "ulpfec",
    "flexfec-03",
    "flexfec",
    "CN",
    "telephone-event",
];

/// One m-line whose streams the table routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedLine {
    /// Its mid.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// Its media payload formats (repair and comfort-noise formats left out).
    pub formats: Vec<OfferedFormat>,
    /// Its id for the RFC 6464 audio level extension, if it offers it.
    pub audio_level_extension: Option<u8>,
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index of the line in [`RouteTable::lines`].
    pub line: usize,
    /// This packet starts the line's stream (or a takeover): announce it.
    pub new_stream: bool,
    /// Its MID header extension named the line (else its SSRC or payload type did).
    pub by_mid: bool,
}

/// The lines to route and what has been learned from the packets so far.
#[derive(Debug, Clone)]
pub struct RouteTable {
    lines: Vec<RoutedLine>,
    /// Every payload type some sending line of the offer uses, with how many lines use it.
    payload_type_lines: HashMap<u8, usize>,
    /// The current stream of each line: its SSRC and when it was last seen.
    current: Vec<Option<(u32, Instant)>>,
    /// SSRC -> line, from the MID extension or a unique payload type.
    associated: HashMap<u32, usize>,
    /// The id the offer gives the MID header extension.
    mid_extension: Option<u8>,
}

impl RouteTable {
    /// The table for `offer`'s sending lines that declare no SSRC, or `None` when every sending
    /// line declares its SSRCs (or uses RIDs), so webrtc-rs routes everything itself.
    pub fn for_offer(offer: &OfferSummary) -> Option<RouteTable> {
        let mut payload_type_lines: HashMap<u8, usize> = HashMap::new();
        for m in offer.media.iter().filter(|m| m.direction.sends()) {
            for f in &m.formats {
                *payload_type_lines.entry(f.payload_type).or_default() += 1;
            }
        }
        let lines: Vec<RoutedLine> = offer
            .media
            .iter()
            .filter(|m| m.sends_undeclared())
            .filter_map(|m| {
                Some(RoutedLine {
                    mid: m.mid.clone()?,
                    kind: m.kind,
                    formats: m
                        .formats
                        .iter()
                        .filter(|f| !NOT_MEDIA.iter().any(|n| f.name.eq_ignore_ascii_case(n)))
                        .cloned()
                        .collect(),
                    audio_level_extension: m.audio_level_extension,
                })
            })
            .collect();
        if lines.is_empty() {
            return None;
        }
        Some(RouteTable {
            current: vec![None; lines.len()],
            lines,
            payload_type_lines,
            associated: HashMap::new(),
            mid_extension: offer.media.iter().find_map(|m| m.mid_extension),
        })
    }

    /// The id of the MID header extension, if the offer negotiates it.
    pub fn mid_extension(&self) -> Option<u8> {
        self.mid_extension
    }

    /// The lines, in offer order.
    pub fn lines(&self) -> &[RoutedLine] {
        &self.lines
    }

    /// Routes one packet of an SSRC webrtc-rs did not bind, given its payload type and the
    /// value of its MID header extension (if the packet has one). `None`: drop it.
    pub fn route(
        &mut self,
        now: Instant,
        ssrc: u32,
        payload_type: u8,
        mid: Option<&[u8]>,
    ) -> Option<Route> {
        let by_mid = mid.and_then(|m| self.line_of_mid(m));
        let line = match by_mid {
            Some(line) => line,
            None => match self.associated.get(&ssrc) {
                Some(&line) => line,
                None => self.line_of_payload_type(payload_type)?,
            },
        };
        // Only the line's own media formats reach its depayloader.
        if self.lines[line]
            .formats
            .iter()
            .all(|f| f.payload_type != payload_type)
        {
            return None;
        }
        let new_stream = match self.current[line] {
            Some((current, _)) if current == ssrc => false,
            Some((_, last_seen)) if now.duration_since(last_seen) < TAKEOVER_AFTER => {
                return None;
            }
            _ => true,
        };
        self.current[line] = Some((ssrc, now));
        if new_stream {
            self.associated.insert(ssrc, line);
            // Bounded: only the lines' current streams are remembered once it grows, so a
            // sender cycling SSRCs cannot grow the map without end.
            if self.associated.len() > 64 {
                let keep: Vec<u32> = self.current.iter().flatten().map(|(s, _)| *s).collect();
                self.associated.retain(|s, _| keep.contains(s));
            }
        }
        Some(Route {
            line,
            new_stream,
            by_mid: by_mid.is_some(),
        })
    }

    fn line_of_mid(&self, mid: &[u8]) -> Option<usize> {
        self.lines.iter().position(|l| l.mid.as_bytes() == mid)
    }

    /// The one undeclared line offering `payload_type`, if no other sending line offers it.
    fn line_of_payload_type(&self, payload_type: u8) -> Option<usize> {
        if self.payload_type_lines.get(&payload_type) != Some(&1) {
            return None;
        }
        self.lines
            .iter()
            .position(|l| l.formats.iter().any(|f| f.payload_type == payload_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::offer::inspect_offer;

    fn without_ssrcs(name: &str) -> OfferSummary {
        let path = format!("{}/tests/offers/{name}.sdp", env!("CARGO_MANIFEST_DIR"));
        let sdp = std::fs::read_to_string(&path).expect("captured offer");
        let stripped: String = sdp
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("a=ssrc"))
            .collect();
        inspect_offer(&stripped).expect("still a valid offer")
    }

    #[test]
    fn issue9_declared_offers_need_no_table() {
        let path = format!(
            "{}/tests/offers/webrtcbin-max-bundle-participant.sdp",
            env!("CARGO_MANIFEST_DIR")
        );
        let offer = inspect_offer(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(RouteTable::for_offer(&offer).is_none());
    }

    #[test]
    fn issue9_unique_payload_types_route_webrtcbin_streams() {
        // webrtcbin sends no MID extension: the payload type is all there is (VP8 96, Opus 111).
        let mut t = RouteTable::for_offer(&without_ssrcs("webrtcbin-max-bundle-participant"))
            .expect("two undeclared lines");
        assert_eq!(t.lines().len(), 2);
        let now = Instant::now();
        let video = t.route(now, 1111, 96, None).expect("VP8 routes");
        assert_eq!(t.lines()[video.line].kind, MediaKind::Video);
        assert!(video.new_stream);
        let audio = t.route(now, 2222, 111, None).expect("Opus routes");
        assert_eq!(t.lines()[audio.line].kind, MediaKind::Audio);
        assert!(!t.route(now, 1111, 96, None).unwrap().new_stream);
        assert_eq!(
            t.route(now, 3333, 50, None),
            None,
            "an unknown payload type"
        );
    }

    #[test]
    fn issue9_the_mid_extension_decides_before_the_payload_type() {
        // Chromium offers the same payload types on no two lines, but a MID beats them anyway.
        let mut t = RouteTable::for_offer(&without_ssrcs("chromium-max-bundle-participant"))
            .expect("undeclared lines");
        let now = Instant::now();
        let video_mid = t
            .lines()
            .iter()
            .find(|l| l.kind == MediaKind::Video)
            .unwrap()
            .mid
            .clone();
        let r = t.route(now, 7, 96, Some(video_mid.as_bytes())).unwrap();
        assert_eq!(t.lines()[r.line].kind, MediaKind::Video);
        assert!(r.by_mid);
        // Later packets of that SSRC without the extension stay on the line.
        assert_eq!(t.route(now, 7, 96, None).unwrap().line, r.line);
        // RTX (97 is rtx for 96 in Chromium's offer) never reaches the depayloader.
        assert_eq!(t.route(now, 8, 97, Some(video_mid.as_bytes())), None);
    }

    #[test]
    fn issue9_a_shared_payload_type_without_mid_is_dropped() {
        let offer = without_ssrcs("webrtcbin-max-bundle-participant");
        let mut sdp_offer = offer.clone();
        // Make audio offer PT 96 too: a packet of 96 with no MID could be either.
        sdp_offer.media[1].formats[0].payload_type = 96;
        let mut t = RouteTable::for_offer(&sdp_offer).unwrap();
        assert_eq!(t.route(Instant::now(), 1, 96, None), None);
    }

    #[test]
    fn issue9_one_stream_per_line_with_takeover_after_silence() {
        let mut t =
            RouteTable::for_offer(&without_ssrcs("webrtcbin-max-bundle-participant")).unwrap();
        let t0 = Instant::now();
        assert!(t.route(t0, 1, 96, None).unwrap().new_stream);
        // A second SSRC while the first is alive is refused.
        assert_eq!(t.route(t0 + Duration::from_millis(100), 2, 96, None), None);
        // After the first fell silent, the new one takes the line (a restarted sender).
        let later = t0 + TAKEOVER_AFTER + Duration::from_millis(1);
        let r = t.route(later, 2, 96, None).unwrap();
        assert!(r.new_stream);
        assert_eq!(t.route(later, 1, 96, None), None, "the old stream is gone");
    }

    #[test]
    fn issue9_many_ssrcs_do_not_grow_the_table_without_end() {
        let mut t =
            RouteTable::for_offer(&without_ssrcs("webrtcbin-max-bundle-participant")).unwrap();
        let now = Instant::now();
        t.route(now, 1, 96, None);
        for ssrc in 100..10_000 {
            t.route(now, ssrc, 96, None);
        }
        assert!(t.associated.len() <= 65);
        assert!(!t.route(now, 1, 96, None).unwrap().new_stream);
    }
}
