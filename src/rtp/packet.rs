//! The few fields of an RTP packet (RFC 3550 §5.1) the server reads or rewrites on raw bytes,
//! without parsing the whole packet (pure).

/// The sequence number, if `packet` is long enough to be RTP.
pub fn sequence(packet: &[u8]) -> Option<u16> {
    (packet.len() >= 12).then(|| u16::from_be_bytes([packet[2], packet[3]]))
}

/// Rewrites the sequence number in place (`packet` must be at least 12 bytes).
pub fn set_sequence(packet: &mut [u8], sequence: u16) {
    packet[2..4].copy_from_slice(&sequence.to_be_bytes());
}

/// The payload: after the fixed header, the CSRCs and the header extension, before the
/// padding. `None` if the lengths do not add up.
pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(packet[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if packet[0] & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    packet.get(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_found_past_csrcs_extensions_and_before_padding() {
        let mut plain = vec![0x80, 111, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 2];
        plain.extend_from_slice(b"opus");
        assert_eq!(payload(&plain), Some(&b"opus"[..]));
        assert_eq!(sequence(&plain), Some(0x1234));
        set_sequence(&mut plain, 7);
        assert_eq!(sequence(&plain), Some(7));
        // One CSRC, a one-word extension (RFC 8285 one-byte: an audio level), two bytes of
        // padding.
        let mut full = vec![0xb1, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        full.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0]);
        full.extend_from_slice(b"opus");
        full.extend_from_slice(&[0, 2]);
        assert_eq!(payload(&full), Some(&b"opus"[..]));
        // Truncated or not RTP.
        assert_eq!(payload(&full[..18]), None);
        assert_eq!(payload(&[0x40; 12]), None);
        assert_eq!(sequence(&[0x80; 11]), None);
        let mut bad_padding = plain.clone();
        bad_padding[0] |= 0x20;
        *bad_padding.last_mut().unwrap() = 200;
        assert_eq!(payload(&bad_padding), None);
    }
}
