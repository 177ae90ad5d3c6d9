//! The one integration-test binary.
mod acme;
mod admission;
mod auth;
mod bench;
mod browser;
mod composition;
mod core_mcu;
mod https;
mod interop;
mod outputs;
mod packages;
mod recording;
mod room_events;
mod structure;
mod support;
mod turn;
mod voices;
