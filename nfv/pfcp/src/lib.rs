//! PFCP (3GPP TS 29.244) wire codec.
#![no_std]
