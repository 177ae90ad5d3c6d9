//! The one integration-test binary.
mod bench;
mod browser;
mod core_mcu;
mod interop;
mod outputs;
mod packages;
mod recording;
mod room_events;
mod structure;
mod support;
