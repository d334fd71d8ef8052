//! Conformance suites live in tests/. This crate holds what they share: the tensor bundle format
//! the `nn-runner` test plugin speaks.

pub mod bundle;
