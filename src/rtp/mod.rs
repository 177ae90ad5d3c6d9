//! RTP facts, pure (no `webrtc::`, no `gst::`): which codecs tessera speaks and under which
//! numbers ([`codecs`]), where a receiver can start decoding ([`keyframe`]), and when a
//! jittery sender's audio packets should go on to the mix ([`playout`]). The server and
//! the test client both read these, so each is written once.

pub mod codecs;
pub mod keyframe;
pub mod packet;
pub mod playout;
