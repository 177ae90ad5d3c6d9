//! The few fields of an RTP packet (RFC 3550 §5.1) the server reads or rewrites on raw bytes,
//! without parsing the whole packet (pure).

/// The sequence number, if `packet` is long enough to be RTP.
pub fn sequence(packet: &[u8]) -> Option<u16> {
    (packet.len() >= 12).then(|| u16::from_be_bytes([packet[2], packet[3]]))
}

/// Rewrites the sequence number in place; false (and untouched) if `packet` is too short to
/// be RTP. (It once panicked on a short packet: the `rtp` fuzz target's first find.)
pub fn set_sequence(packet: &mut [u8], sequence: u16) -> bool {
    if packet.len() < 12 {
        return false;
    }
    packet[2..4].copy_from_slice(&sequence.to_be_bytes());
    true
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

/// The data of header extension element `id` (RFC 8285: one-byte or two-byte elements), if
/// the packet carries it. `None` if it does not, or if the lengths do not add up.
pub fn extension(packet: &[u8], id: u8) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] >> 6 != 2 || packet[0] & 0x10 == 0 || id == 0 {
        return None;
    }
    let start = 12 + 4 * usize::from(packet[0] & 0x0f);
    let header = packet.get(start..start + 4)?;
    let profile = u16::from_be_bytes([header[0], header[1]]);
    let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut data = packet.get(start + 4..start + 4 + 4 * words)?;
    // One-byte elements: 4 bits of id, 4 of length - 1 (id 15 ends the list); two-byte
    // elements: a byte of id, a byte of length. Zero bytes between elements are padding.
    let one_byte = match profile {
        0xbede => true,
        p if p >> 4 == 0x100 => false,
        _ => return None,
    };
    while let Some(&first) = data.first() {
        if first == 0 {
            data = &data[1..];
            continue;
        }
        let (element, len, skip) = if one_byte {
            if first >> 4 == 15 {
                return None;
            }
            (first >> 4, usize::from(first & 0x0f) + 1, 1)
        } else {
            (first, usize::from(*data.get(1)?), 2)
        };
        let value = data.get(skip..skip + len)?;
        if element == id {
            return Some(value);
        }
        data = &data[skip + len..];
    }
    None
}

/// The RFC 6464 audio level a sender put in its packet (extension `id`): the level in -dBov,
/// 0 (loudest) to 127 (silence); the voice-activity bit is left out (the server decides that).
pub fn audio_level(packet: &[u8], id: u8) -> Option<u8> {
    extension(packet, id)?.first().map(|b| b & 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue16_renumbering_a_packet_too_short_for_rtp_leaves_it_alone() {
        // The `rtp` fuzz target's find: a one-byte packet panicked (fuzz/regressions/rtp/).
        let mut short = *b"a";
        assert!(!set_sequence(&mut short, 7));
        assert_eq!(&short, b"a");
        let mut packet = [0x80u8, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(set_sequence(&mut packet, 0x1234));
        assert_eq!(sequence(&packet), Some(0x1234));
    }

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

    #[test]
    fn rfc_6464_levels_are_read_from_one_and_two_byte_extensions() {
        // One-byte elements: a mid (id 3, "0"), padding, the level (id 1: voice, -5 dBov).
        let mut one = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        one.extend_from_slice(&[0xbe, 0xde, 0, 2, 0x30, b'0', 0, 0x10, 0x85, 0, 0, 0]);
        one.extend_from_slice(b"opus");
        assert_eq!(audio_level(&one, 1), Some(5));
        assert_eq!(extension(&one, 3), Some(&b"0"[..]));
        assert_eq!(audio_level(&one, 2), None);
        assert_eq!(payload(&one), Some(&b"opus"[..]));
        // Two-byte elements (profile 0x100x): id 1, length 1, silence.
        let mut two = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        two.extend_from_slice(&[0x10, 0x00, 0, 1, 1, 1, 0x7f, 0]);
        assert_eq!(audio_level(&two, 1), Some(127));
        // No extension, an unknown profile, an element running past the end.
        let plain = [0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2];
        assert_eq!(audio_level(&plain, 1), None);
        let mut unknown = two.clone();
        unknown[12] = 0x12;
        assert_eq!(audio_level(&unknown, 1), None);
        let mut overrun = one.clone();
        overrun[19] = 0x1f;
        assert_eq!(audio_level(&overrun, 1), None);
        assert_eq!(audio_level(&one[..20], 1), None);
    }
}
