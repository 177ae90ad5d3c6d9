//! The `sdp_offer` fuzz target: AFL++'s inputs to [`tessera::fuzzing::sdp_offer`].
fn main() {
    afl::fuzz!(|data: &[u8]| tessera::fuzzing::sdp_offer(data));
}
