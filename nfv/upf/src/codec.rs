//! The compact binary encoding of the records kept in host tables: big-endian integers,
//! length-prefixed byte strings, a version byte first in every record.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// A record could not be decoded (truncated, unknown version, bad value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// Result of decoding.
pub(crate) type DecResult<T> = Result<T, Corrupt>;

/// Appends fields to a record.
#[derive(Debug, Default)]
pub(crate) struct Enc {
    buf: Vec<u8>,
}

impl Enc {
    /// A record that starts with `version`.
    pub fn new(version: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.push(version);
        Enc { buf }
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn ipv4(&mut self, v: Ipv4Addr) {
        self.buf.extend_from_slice(&v.octets());
    }

    /// A count that the decoder reads back with [`Dec::len`]; saturates at `u16::MAX`
    /// (callers never store that many items).
    pub fn len(&mut self, n: usize) {
        self.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }

    /// A length-prefixed byte string (at most 65535 octets are kept).
    pub fn bytes(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn opt_u8(&mut self, v: Option<u8>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.u8(v);
        }
    }

    pub fn opt_u16(&mut self, v: Option<u16>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.u16(v);
        }
    }

    pub fn opt_u32(&mut self, v: Option<u32>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.u32(v);
        }
    }

    pub fn opt_u64(&mut self, v: Option<u64>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.u64(v);
        }
    }

    pub fn opt_ipv4(&mut self, v: Option<Ipv4Addr>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.ipv4(v);
        }
    }

    pub fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        for x in v {
            self.u32(*x);
        }
    }
}

/// Reads fields back, never past the end.
#[derive(Debug)]
pub(crate) struct Dec<'a> {
    data: &'a [u8],
}

impl<'a> Dec<'a> {
    /// Starts decoding `data`, whose version byte must be one of `versions`; returns the
    /// decoder and the version found.
    pub fn new(data: &'a [u8], max_version: u8) -> DecResult<(Self, u8)> {
        let (&version, rest) = data.split_first().ok_or(Corrupt)?;
        if version == 0 || version > max_version {
            return Err(Corrupt);
        }
        Ok((Dec { data: rest }, version))
    }

    fn take<const N: usize>(&mut self) -> DecResult<[u8; N]> {
        let (head, rest) = self.data.split_first_chunk::<N>().ok_or(Corrupt)?;
        self.data = rest;
        Ok(*head)
    }

    pub fn u8(&mut self) -> DecResult<u8> {
        Ok(self.take::<1>()?[0])
    }

    pub fn bool(&mut self) -> DecResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Corrupt),
        }
    }

    pub fn u16(&mut self) -> DecResult<u16> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    pub fn u32(&mut self) -> DecResult<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    pub fn u64(&mut self) -> DecResult<u64> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    pub fn ipv4(&mut self) -> DecResult<Ipv4Addr> {
        Ok(Ipv4Addr::from(self.take::<4>()?))
    }

    /// A count written by [`Enc::len`]; bounded by the octets left so that a corrupt count
    /// cannot make a caller reserve a huge vector.
    pub fn len(&mut self) -> DecResult<usize> {
        let n = usize::from(self.u16()?);
        if n > self.data.len() {
            return Err(Corrupt);
        }
        Ok(n)
    }

    pub fn bytes(&mut self) -> DecResult<&'a [u8]> {
        let n = self.len()?;
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    pub fn string(&mut self) -> DecResult<String> {
        let b = self.bytes()?;
        core::str::from_utf8(b)
            .map(String::from)
            .map_err(|_| Corrupt)
    }

    pub fn opt_u8(&mut self) -> DecResult<Option<u8>> {
        Ok(if self.bool()? { Some(self.u8()?) } else { None })
    }

    pub fn opt_u16(&mut self) -> DecResult<Option<u16>> {
        Ok(if self.bool()? {
            Some(self.u16()?)
        } else {
            None
        })
    }

    pub fn opt_u32(&mut self) -> DecResult<Option<u32>> {
        Ok(if self.bool()? {
            Some(self.u32()?)
        } else {
            None
        })
    }

    pub fn opt_u64(&mut self) -> DecResult<Option<u64>> {
        Ok(if self.bool()? {
            Some(self.u64()?)
        } else {
            None
        })
    }

    pub fn opt_ipv4(&mut self) -> DecResult<Option<Ipv4Addr>> {
        Ok(if self.bool()? {
            Some(self.ipv4()?)
        } else {
            None
        })
    }

    pub fn u32s(&mut self) -> DecResult<Vec<u32>> {
        let n = self.len()?;
        (0..n).map(|_| self.u32()).collect()
    }

    /// Decodes `n` items (the count read first) with `f`.
    pub fn list<T>(&mut self, mut f: impl FnMut(&mut Self) -> DecResult<T>) -> DecResult<Vec<T>> {
        let n = self.len()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }
}
