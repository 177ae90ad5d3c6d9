//! SDP text, pure (no `webrtc::`, no `gst::`): trickle ICE fragments (RFC 8840, as RFC 9725's
//! `PATCH` carries them) and H.264's `profile-level-id` and levels (RFC 6184). The HTTP edge,
//! the room and the peer read them from here.

pub mod h264;
pub mod trickle;

pub use trickle::{TrickleCandidate, TrickleFragment, ice_ufrag, parse_fragment};
