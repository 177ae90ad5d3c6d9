//! The one integration-test binary.
mod bench;
mod core_mcu;
mod support;
