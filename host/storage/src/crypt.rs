//! Client-side encryption of uploaded objects: the layout of an encrypted object.
//!
//! An encrypted object is the concatenation of independently sealed *units*
//! ([`outpost_keys::seal`]): unit `i` holds plaintext bytes `i*U .. min((i+1)*U, size)` where
//! `U` is the unit size (the share's part size when uploaded); an empty file is one sealed empty
//! unit. Each unit is an `outpost-keys` object: a header (key id, KEK version, wrapped data key,
//! header tag) and 64 KiB AES-256-GCM segments, so a unit's sealed length follows from its
//! plaintext length ([`sealed_unit_len`]) and the byte span of any unit is computable without
//! reading the object.
//!
//! Each unit authenticates itself; the order of units is protected by the plaintext SHA-256
//! the journal keeps for whole recalls (range reads rely on the per-unit authentication).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use outpost_keys::{DEFAULT_SEGMENT_SIZE, KeyProvider};

use crate::error::{Result, StorageError};
use crate::spec::SharedKeyProvider;

/// Object metadata key marking an encrypted object (value `1`), set where the backend keeps
/// metadata on a single PUT.
pub const ENCRYPTED_METADATA_KEY: &str = "outpost_encrypted";

/// The magic every sealed unit (so every encrypted object) starts with.
pub(crate) const MAGIC: [u8; 4] = outpost_keys::header::MAGIC;

/// AES-GCM tag length.
const TAG_LEN: u64 = outpost_keys::header::TAG_LEN as u64;
/// A 32-byte data key wrapped with AES-256 key wrap with padding (RFC 5649): 40 bytes.
const WRAPPED_KEY_LEN: u64 = 40;

/// Length of a unit header for a KEK with id `key_id` (see `outpost_keys::header`):
/// 17 fixed bytes + key id + 7 (algorithm, version, wrapped length) + wrapped key + tag.
pub(crate) fn header_len(key_id: &str) -> u64 {
    17 + key_id.len() as u64 + 7 + WRAPPED_KEY_LEN + TAG_LEN
}

/// Sealed length of a unit of `plaintext_len` bytes whose header is `header_len` bytes:
/// header, plaintext, and one tag per 64 KiB segment (at least one: an empty unit has an empty
/// final segment).
pub fn sealed_unit_len(header_len: u64, plaintext_len: u64) -> u64 {
    let segments = plaintext_len
        .div_ceil(u64::from(DEFAULT_SEGMENT_SIZE))
        .max(1);
    header_len + plaintext_len + segments * TAG_LEN
}

/// Where the units of an encrypted object lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Plaintext size of the whole file.
    pub size: u64,
    /// Plaintext bytes per unit.
    pub unit: u64,
    /// Header length of each unit.
    pub header: u64,
}

impl Layout {
    pub(crate) fn new(size: u64, unit: u64, provider: &dyn KeyProvider) -> Self {
        Layout {
            size,
            unit: unit.max(1),
            header: header_len(provider.key_id()),
        }
    }

    /// Number of units (at least one).
    pub(crate) fn units(&self) -> u64 {
        self.size.div_ceil(self.unit).max(1)
    }

    /// Plaintext bytes of unit `i`.
    pub(crate) fn plain(&self, i: u64) -> Range<u64> {
        let start = (i * self.unit).min(self.size);
        start..(start + self.unit).min(self.size)
    }

    /// Sealed bytes of unit `i` within the object.
    pub(crate) fn sealed(&self, i: u64) -> Range<u64> {
        let full = sealed_unit_len(self.header, self.unit);
        let start = i * full;
        let p = self.plain(i);
        start..start + sealed_unit_len(self.header, p.end - p.start)
    }

    /// Length of the whole encrypted object.
    pub(crate) fn sealed_total(&self) -> u64 {
        self.sealed(self.units() - 1).end
    }

    /// Units covering plaintext `range` (non-empty range).
    pub(crate) fn covering(&self, range: &Range<u64>) -> Range<u64> {
        range.start / self.unit..(range.end - 1) / self.unit + 1
    }

    /// The layout of an object of `total` sealed bytes in units of `unit`, or `None` when no
    /// plaintext size gives that length.
    pub(crate) fn from_sealed(total: u64, unit: u64, provider: &dyn KeyProvider) -> Option<Self> {
        let header = header_len(provider.key_id());
        let unit = unit.max(1);
        let full = sealed_unit_len(header, unit);
        let (n, rest) = (total / full, total % full);
        let size = if rest == 0 {
            (n > 0).then(|| n * unit)?
        } else {
            let body = rest.checked_sub(header)?;
            let seg = u64::from(DEFAULT_SEGMENT_SIZE) + TAG_LEN;
            let segments = body.div_ceil(seg).max(1);
            let last = body.checked_sub(segments * TAG_LEN)?;
            (last < unit && sealed_unit_len(header, last) == rest).then_some(n * unit + last)?
        };
        let layout = Layout { size, unit, header };
        (layout.sealed_total() == total).then_some(layout)
    }
}

/// Seals `plain` as units of `layout.unit` bytes starting at unit `first` and returns the
/// concatenation, checking every unit's length against the layout. Runs on a blocking thread.
pub(crate) async fn seal_units(
    provider: &SharedKeyProvider,
    path: &str,
    layout: Layout,
    first: u64,
    plain: Bytes,
) -> Result<Bytes> {
    let provider = provider.clone();
    let path = path.to_owned();
    crate::share::blocking(move || {
        let mut out = BytesMut::new();
        let mut i = first;
        let mut off = 0usize;
        loop {
            let r = layout.plain(i);
            let len = (r.end - r.start) as usize;
            let chunk = plain.get(off..off + len).ok_or_else(|| {
                StorageError::encrypted_layout(&path, "unit outside the data being sealed")
            })?;
            let sealed = outpost_keys::seal(provider.as_ref(), chunk)
                .map_err(|e| StorageError::encryption(&path, e))?;
            let expected = layout.sealed(i);
            if sealed.len() as u64 != expected.end - expected.start {
                return Err(StorageError::encrypted_layout(
                    &path,
                    format!(
                        "unit {i} sealed to {} bytes, the layout expects {}",
                        sealed.len(),
                        expected.end - expected.start
                    ),
                ));
            }
            out.extend_from_slice(&sealed);
            off += len;
            i += 1;
            if off >= plain.len() {
                break;
            }
        }
        Ok(out.freeze())
    })
    .await
}

/// Opens the consecutive sealed units `units` whose bytes are `sealed` (exactly their spans)
/// and returns their plaintext. Runs on a blocking thread.
pub(crate) async fn open_units(
    provider: &SharedKeyProvider,
    path: &str,
    layout: Layout,
    units: Range<u64>,
    sealed: Bytes,
) -> Result<Bytes> {
    let provider = provider.clone();
    let path = path.to_owned();
    crate::share::blocking(move || {
        let base = layout.sealed(units.start).start;
        let end = layout.sealed(units.end - 1).end;
        if sealed.len() as u64 != end - base {
            return Err(StorageError::encrypted_layout(
                &path,
                format!(
                    "{} sealed bytes where units {units:?} take {}",
                    sealed.len(),
                    end - base
                ),
            ));
        }
        let mut out = BytesMut::new();
        for i in units {
            let r = layout.sealed(i);
            let span = &sealed[(r.start - base) as usize..(r.end - base) as usize];
            let plain = outpost_keys::open(provider.as_ref(), span)
                .map_err(|e| StorageError::encryption(&path, e))?;
            let p = layout.plain(i);
            if plain.len() as u64 != p.end - p.start {
                return Err(StorageError::encrypted_layout(
                    &path,
                    format!(
                        "unit {i} opened to {} bytes, expected {}",
                        plain.len(),
                        p.end - p.start
                    ),
                ));
            }
            out.extend_from_slice(&plain);
        }
        Ok(out.freeze())
    })
    .await
}

/// Opens a downloaded encrypted object unit by unit as its bytes arrive.
pub(crate) struct UnitReader {
    layout: Layout,
    provider: SharedKeyProvider,
    buf: BytesMut,
    next: u64,
}

impl UnitReader {
    pub(crate) fn new(layout: Layout, provider: SharedKeyProvider) -> Self {
        UnitReader {
            layout,
            provider,
            buf: BytesMut::new(),
            next: 0,
        }
    }

    /// Takes the next downloaded bytes and returns the plaintext of every unit they complete.
    pub(crate) async fn push(&mut self, path: &str, chunk: Bytes) -> Result<Vec<Bytes>> {
        self.buf.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while self.next < self.layout.units() {
            let r = self.layout.sealed(self.next);
            let len = (r.end - r.start) as usize;
            if self.buf.len() < len {
                break;
            }
            let sealed = self.buf.split_to(len).freeze();
            let unit = self.next..self.next + 1;
            out.push(open_units(&self.provider, path, self.layout, unit, sealed).await?);
            self.next += 1;
        }
        if self.next == self.layout.units() && !self.buf.is_empty() {
            return Err(StorageError::encrypted_layout(
                path,
                "the object is longer than its layout (appended data)",
            ));
        }
        Ok(out)
    }

    /// Checks every unit arrived.
    pub(crate) fn finish(&self, path: &str) -> Result<()> {
        if self.next < self.layout.units() || !self.buf.is_empty() {
            return Err(StorageError::encrypted_layout(
                path,
                format!(
                    "the object is truncated: {} of {} units",
                    self.next,
                    self.layout.units()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_and_matches_real_seals() {
        let dir = tempfile::tempdir().unwrap();
        let keys = outpost_keys::DeviceKeyStore::open(dir.path().join("k"), "share-kek").unwrap();
        for (plain, unit) in [
            (0u64, 65_536u64),
            (1, 65_536),
            (65_536, 65_536),
            (65_537, 65_536),
            (300_000, 131_072),
            (262_144, 131_072),
            (1_000_003, 200_000),
        ] {
            let layout = Layout::new(plain, unit, &keys);
            assert_eq!(
                Layout::from_sealed(layout.sealed_total(), unit, &keys),
                Some(layout)
            );
            for i in 0..layout.units() {
                let p = layout.plain(i);
                let real =
                    outpost_keys::seal(&keys, &vec![7u8; (p.end - p.start) as usize]).unwrap();
                let s = layout.sealed(i);
                assert_eq!(real.len() as u64, s.end - s.start, "{plain} {unit} {i}");
            }
        }
        assert_eq!(Layout::from_sealed(3, 65_536, &keys), None);
    }
}
