//! The one integration-test binary.
mod core_mcu;
mod support;
