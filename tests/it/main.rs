//! The one integration-test binary.
mod smoke;
mod support;
