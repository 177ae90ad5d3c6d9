//! The `config` fuzz target: AFL++'s inputs to [`tessera::fuzzing::config`].
fn main() {
    afl::fuzz!(|data: &[u8]| tessera::fuzzing::config(data));
}
