//! Trickle ICE over HTTP (RFC 9725 §4.3.1): the body of a WHIP/WHEP `PATCH` is an SDP fragment
//! (`application/trickle-ice-sdpfrag`, RFC 8840) carrying the client's ICE credentials and the
//! candidates it gathered after its offer. Parsing is pure; the room decides what the fragment
//! means (more candidates for the same ICE session, or an ICE restart it does not support).

/// Most candidates one fragment may carry: browsers gather a handful per interface.
const MAX_CANDIDATES: usize = 64;

/// One trickled candidate, with the m-line it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrickleCandidate {
    /// The attribute value, `candidate:...`.
    pub candidate: String,
    /// The `a=mid` of its m-line, if given.
    pub mid: Option<String>,
    /// The index of its m-line within the fragment.
    pub mline_index: u16,
}

/// A parsed `application/trickle-ice-sdpfrag` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrickleFragment {
    /// The client's ICE username fragment; a new one means an ICE restart.
    pub ufrag: Option<String>,
    /// The client's ICE password.
    pub pwd: Option<String>,
    /// The candidates, in order.
    pub candidates: Vec<TrickleCandidate>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

/// Parses a trickle fragment; the error is a sentence for the client.
pub fn parse_fragment(body: &str) -> Result<TrickleFragment, String> {
    let mut frag = TrickleFragment::default();
    let mut mline: Option<u16> = None;
    let mut mid: Option<String> = None;
    for (n, raw) in body.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not an SDP line: {line:?}", n + 1));
        };
        match key {
            "m" => {
                mline = Some(mline.map_or(0, |i| i + 1));
                mid = None;
            }
            "a" => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                match name {
                    "ice-ufrag" => frag.ufrag = Some(arg.trim().to_owned()),
                    "ice-pwd" => frag.pwd = Some(arg.trim().to_owned()),
                    "mid" => mid = Some(arg.trim().to_owned()),
                    "end-of-candidates" => frag.end_of_candidates = true,
                    "candidate" => {
                        // foundation component transport priority address port "typ" type ...
                        if arg.split_whitespace().count() < 8 {
                            return Err(format!("line {}: malformed candidate: {line:?}", n + 1));
                        }
                        if frag.candidates.len() == MAX_CANDIDATES {
                            return Err(format!("more than {MAX_CANDIDATES} candidates"));
                        }
                        frag.candidates.push(TrickleCandidate {
                            candidate: value.to_owned(),
                            mid: mid.clone(),
                            mline_index: mline.unwrap_or(0),
                        });
                    }
                    // Other attributes (ice-options, group, ...) carry nothing we act on.
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(frag)
}

/// The session-level or first `a=ice-ufrag` of an SDP.
pub fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("a=ice-ufrag:"))
        .map(|u| u.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAG: &str = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
        a=candidate:1387637174 1 udp 2122260223 127.0.0.1 61764 typ host generation 0\r\n\
        a=candidate:3471623853 1 udp 2122194687 10.0.0.2 61765 typ host generation 0\r\n\
        a=end-of-candidates\r\n";

    #[test]
    fn a_browser_fragment_gives_credentials_candidates_and_the_end() {
        let f = parse_fragment(FRAG).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(f.candidates.len(), 2);
        assert!(
            f.candidates[0]
                .candidate
                .starts_with("candidate:1387637174 1 udp")
        );
        assert_eq!(f.candidates[0].mid.as_deref(), Some("0"));
        assert_eq!(f.candidates[1].mline_index, 0);
        assert!(f.end_of_candidates);
    }

    #[test]
    fn garbage_and_truncated_candidates_are_refused() {
        assert!(parse_fragment("hello").is_err());
        assert!(parse_fragment("a=candidate:1 1 udp 5 1.2.3.4\r\n").is_err());
        let many = "a=candidate:1 1 udp 2122260223 127.0.0.1 1 typ host\r\n".repeat(65);
        assert!(parse_fragment(&many).is_err());
    }

    #[test]
    fn an_empty_fragment_is_valid_and_says_nothing() {
        assert_eq!(parse_fragment("").unwrap(), TrickleFragment::default());
    }

    #[test]
    fn the_offer_ufrag_is_found() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\n";
        assert_eq!(ice_ufrag(sdp).as_deref(), Some("abcd"));
        assert_eq!(ice_ufrag("v=0\r\n"), None);
    }
}
