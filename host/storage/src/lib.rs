//! Shares and their sync engine (work in progress).
