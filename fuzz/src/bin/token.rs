//! The `token` fuzz target: AFL++'s inputs to [`tessera::fuzzing::token`].
fn main() {
    afl::fuzz!(|data: &[u8]| tessera::fuzzing::token(data));
}
