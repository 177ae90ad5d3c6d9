//! The `rtp_decode` fuzz target: AFL++'s inputs to [`tessera::fuzzing::rtp_decode`].
fn main() {
    afl::fuzz!(|data: &[u8]| tessera::fuzzing::rtp_decode(data));
}
