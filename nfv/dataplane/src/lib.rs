//! Network-function data plane on the host: packet ports and host-owned tables.
