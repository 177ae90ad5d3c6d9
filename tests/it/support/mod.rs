//! Test support: everything an integration test needs to drive a real tessera from the outside.
//!
//! - [`server`] starts the real binary on port 0 and owns the child process.
//! - [`client`] is a real WebRTC peer (webrtc-rs) that joins a room over WHIP/WHEP, sends a
//!   coloured test picture and a sine tone, and decodes what the server sends back.
//! - [`media`] holds the GStreamer pipelines the client uses (encode to RTP, decode from RTP) and
//!   the Opus receive path; they need no network, so [`selftest`] checks them in isolation.
//! - [`reflector`] is a stand-in server that sends a participant its own media back, so the
//!   self-tests can check the client end to end without tessera.
//! - [`analysis`] is pure: pixel colours and tone levels, with their own unit tests.
//! - [`http`] is the small HTTP client the others share.
//! - [`eventually`] is the one way to wait for something to become true (with a deadline).
//!
//! Every wait in here has a deadline, and every pipeline, task and process has one owner that
//! stops it on drop.

// Not every test uses every helper, and the test modules arrive after this support code; without
// this, each unused accessor would be a warning in the one test binary.
#![allow(dead_code)]

pub mod analysis;
pub mod browser;
pub mod client;
pub mod events;
pub mod http;
pub mod impair;
pub mod media;
pub mod netns;
pub mod pebble;
pub mod resources;
pub mod server;
pub mod steady;
pub mod turn_net;
mod wait;
pub mod webrtcbin;

mod reflector;
mod selftest;

pub use client::{JoinOptions, Mangle, Role, SendMedia, TestClient};
pub use server::TestServer;
pub use wait::{eventually, eventually_sync};
