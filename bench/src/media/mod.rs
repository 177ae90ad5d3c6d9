//! The benchmark's media, the only part of it that touches GStreamer: the replayed dumps
//! ([`dump`]), the same media as files for the raw gst-launch baseline ([`files`]) and the
//! sampled receivers' decoders ([`probe`]).

pub mod dump;
pub mod files;
pub mod probe;

/// An error of a GStreamer step, with what was being done.
fn build_err(context: impl std::fmt::Display, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{context}: {e}")
}
