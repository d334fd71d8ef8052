//! Conformance suites live in tests/.
