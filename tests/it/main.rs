//! The one integration-test binary.
mod core_mcu;
mod smoke;
mod support;
