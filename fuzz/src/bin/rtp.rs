//! The `rtp` fuzz target: AFL++'s inputs to [`tessera::fuzzing::rtp`].
fn main() {
    afl::fuzz!(|data: &[u8]| tessera::fuzzing::rtp(data));
}
