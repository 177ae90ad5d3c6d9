//! The one integration-test binary.
mod bench;
mod browser;
mod core_mcu;
mod outputs;
mod recording;
mod room_events;
mod support;
