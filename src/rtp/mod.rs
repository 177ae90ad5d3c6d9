//! RTP facts, pure (no `webrtc::`, no `gst::`): which codecs tessera speaks and under which
//! numbers ([`codecs`]), and where a receiver can start decoding ([`keyframe`]). The server and
//! the test client both read these, so each is written once.

pub mod codecs;
pub mod keyframe;
pub mod packet;
