//! Where a receiver can start decoding: keyframe detection on RTP payloads (pure).
//!
//! Used by the server (a receiver's video starts at a keyframe; a tier switch waits for one)
//! and by the test client (counting the keyframes it receives), so there is one reading of the
//! payload formats: RFC 7741 (VP8) and RFC 6184 (H.264).

use crate::types::VideoCodec;

/// Whether an RTP payload of `codec` starts a keyframe.
pub fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => is_vp8_keyframe_start(payload),
        VideoCodec::H264 => is_h264_keyframe_start(payload),
    }
}

/// Whether an RTP payload starts an H.264 keyframe (RFC 6184): an SPS or IDR NAL unit, alone,
/// inside a STAP-A, or as the first fragment of an FU-A. Our payloader sends SPS/PPS before
/// every IDR, so the SPS is where a receiver can start.
pub fn is_h264_keyframe_start(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1f {
        IDR | SPS => true,
        24 => {
            // STAP-A: 16-bit sizes, each followed by a NAL unit.
            let mut at = 1;
            while at + 2 < payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
                if matches!(payload[at + 2] & 0x1f, IDR | SPS) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        // FU-A: start bit and the fragmented unit's type.
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == IDR),
        _ => false,
    }
}

/// Whether an RTP payload starts a VP8 keyframe (RFC 7741): the descriptor's S bit with
/// partition 0, and the P bit of the frame header clear.
pub fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    if first & 0x10 == 0 || first & 0x0f != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = payload.get(1) else {
            return false;
        };
        at = 2;
        if ext & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            at += if payload.get(at).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID / KEYIDX
        }
    }
    payload.get(at).is_some_and(|header| header & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::{is_h264_keyframe_start, is_vp8_keyframe_start};

    #[test]
    fn h264_keyframes_are_recognised_alone_aggregated_and_fragmented() {
        assert!(is_h264_keyframe_start(&[0x67, 0x42]), "SPS");
        assert!(is_h264_keyframe_start(&[0x65, 0x88]), "IDR slice");
        assert!(!is_h264_keyframe_start(&[0x41, 0x9a]), "non-IDR slice");
        // STAP-A with an SPS (size 2) then a PPS (size 1).
        assert!(is_h264_keyframe_start(&[
            0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68
        ]));
        assert!(
            !is_h264_keyframe_start(&[0x78, 0, 1, 0x68]),
            "STAP-A of a PPS"
        );
        // FU-A: first fragment of an IDR, then a middle one.
        assert!(is_h264_keyframe_start(&[0x7c, 0x85, 0]));
        assert!(!is_h264_keyframe_start(&[0x7c, 0x05, 0]));
        assert!(!is_h264_keyframe_start(&[]));
    }

    #[test]
    fn vp8_keyframes_are_recognised_from_the_payload_descriptor() {
        // Extended descriptor with a 15-bit picture id, then a key frame (P bit clear).
        assert!(is_vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x10]));
        assert!(
            !is_vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x11]),
            "interframe"
        );
        assert!(
            !is_vp8_keyframe_start(&[0x80, 0x80, 0x81, 0x23, 0x10]),
            "not a partition start"
        );
        assert!(is_vp8_keyframe_start(&[0x10, 0x50]), "minimal descriptor");
        assert!(!is_vp8_keyframe_start(&[]));
    }
}
