//! GTP-U (3GPP TS 29.281) wire codec.
#![no_std]
