//! The `trickle` fuzz target: AFL++'s inputs to [`tessera::fuzzing::trickle`].
fn main() {
    afl::fuzz!(|data: &[u8]| tessera::fuzzing::trickle(data));
}
