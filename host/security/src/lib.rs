//! Host security services.
