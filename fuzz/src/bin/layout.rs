//! The `layout` fuzz target: AFL++'s inputs to [`tessera::fuzzing::layout`].
fn main() {
    afl::fuzz!(|data: &[u8]| tessera::fuzzing::layout(data));
}
