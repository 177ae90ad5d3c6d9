//! The codecs tessera speaks, as one table (pure): payload types it offers, clock rates, and
//! the parameters it declares. The server's media engine, its answers and the test client all
//! read them from here.

/// VP8 (RFC 7741): the video every browser sends and decodes.
pub const VP8: Codec = Codec {
    mime_type: "video/VP8",
    name: "VP8",
    payload_type: 96,
    clock_rate: 90_000,
    channels: 0,
    fmtp: "",
};

/// H.264 constrained baseline, level 3.1, packetization mode 1 (RFC 6184): what kiosks and
/// set-top boxes decode in hardware, and what tessera's payloader writes.
pub const H264: Codec = Codec {
    mime_type: "video/H264",
    name: "H264",
    payload_type: 102,
    clock_rate: 90_000,
    channels: 0,
    fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
};

/// Opus (RFC 7587): `opus/48000/2` on the wire, whatever the channels carry; in-band FEC on.
pub const OPUS: Codec = Codec {
    mime_type: "audio/opus",
    name: "opus",
    payload_type: 111,
    clock_rate: 48_000,
    channels: 2,
    fmtp: "minptime=10;useinbandfec=1",
};

/// Retransmissions of VP8 (RFC 4588): a lost packet sent again on a stream of its own, its
/// original sequence number first in the payload; `apt` names VP8's payload type.
pub const VP8_RTX: Codec = Codec {
    mime_type: "video/rtx",
    name: "rtx",
    payload_type: 97,
    clock_rate: 90_000,
    channels: 0,
    fmtp: "apt=96",
};

/// Retransmissions of H.264 (RFC 4588); `apt` names H.264's payload type.
pub const H264_RTX: Codec = Codec {
    mime_type: "video/rtx",
    name: "rtx",
    payload_type: 103,
    clock_rate: 90_000,
    channels: 0,
    fmtp: "apt=102",
};

/// One codec's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// `kind/name`, as webrtc-rs names codecs.
    pub mime_type: &'static str,
    /// The encoding name of `a=rtpmap`.
    pub name: &'static str,
    /// The payload type tessera offers it under (answers use the offerer's numbers).
    pub payload_type: u8,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channels in `a=rtpmap` (0: none written).
    pub channels: u16,
    /// The `a=fmtp` parameters tessera declares for it.
    pub fmtp: &'static str,
}
