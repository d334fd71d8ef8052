//! The table snapshot file format: small, length-prefixed, little-endian.
//!
//! ```text
//! file    = magic "OPTABLES" | version u32 = 1 | table-count u32 | table* | fnv1a-64 u64
//! table   = name-len u16 | name | kind u8 (0 exact, 1 lpm, 2 counters)
//!         | max-entries u64 | max-key-len u32 | max-value-len u32
//!         | entry-count u64 | entry*
//! entry   = key-len u32 | key | value-len u32 | value      (the byte API's encoding)
//! ```
//!
//! The trailing FNV-1a hash covers every byte before it, so a torn or edited file is refused
//! rather than half-loaded. Decoding checks every length against the bytes that remain.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::{Table, TableKind, TableSetError, TableSpec};

const MAGIC: &[u8; 8] = b"OPTABLES";
const VERSION: u32 = 1;

/// One table read back from a snapshot; entries borrow the file's bytes.
#[derive(Debug)]
pub(crate) struct SnapshotTable<'a> {
    pub(crate) spec: TableSpec,
    pub(crate) entries: Vec<(&'a [u8], &'a [u8])>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Serialises `tables`.
pub(crate) fn encode(tables: &[Arc<Table>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(tables.len() as u32).to_le_bytes());
    for table in tables {
        let spec = table.spec();
        // Names are validated to at most 255 bytes, so the u16 length cannot truncate.
        out.extend_from_slice(&(spec.name.len() as u16).to_le_bytes());
        out.extend_from_slice(spec.name.as_bytes());
        out.push(spec.kind.code());
        out.extend_from_slice(&spec.max_entries.to_le_bytes());
        out.extend_from_slice(&spec.max_key_len.to_le_bytes());
        out.extend_from_slice(&spec.max_value_len.to_le_bytes());
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        table.for_each(|key, value| {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
            count += 1;
        });
        out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    }
    let hash = fnv1a(&out);
    out.extend_from_slice(&hash.to_le_bytes());
    out
}

/// A bounds-checked reader over the snapshot's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{what} at byte {} needs {len} bytes but {} remain",
                    self.at,
                    self.bytes.len() - self.at
                )
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let slice = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

/// Parses a snapshot; the error says what is wrong and where.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<SnapshotTable<'_>>, String> {
    if bytes.len() < MAGIC.len() + 16 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a table snapshot (bad magic or too short)".into());
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 8);
    let stored = u64::from_le_bytes(trailer.try_into().map_err(|_| "missing checksum")?);
    if fnv1a(body) != stored {
        return Err("checksum mismatch (torn or modified file)".into());
    }
    let mut cursor = Cursor {
        bytes: body,
        at: MAGIC.len(),
    };
    let version = cursor.u32("version")?;
    if version != VERSION {
        return Err(format!(
            "unsupported version {version} (expected {VERSION})"
        ));
    }
    let table_count = cursor.u32("table count")?;
    let mut tables = Vec::new();
    for t in 0..table_count {
        let name_len = cursor.u16("table name length")?;
        let name = std::str::from_utf8(cursor.take(usize::from(name_len), "table name")?)
            .map_err(|_| format!("table {t}: name is not UTF-8"))?
            .to_owned();
        let kind_code = cursor.array::<1>("table kind")?[0];
        let kind = TableKind::from_code(kind_code)
            .ok_or_else(|| format!("table {name:?}: unknown kind {kind_code}"))?;
        let spec = TableSpec {
            name,
            kind,
            max_entries: cursor.u64("max entries")?,
            max_key_len: cursor.u32("max key length")?,
            max_value_len: cursor.u32("max value length")?,
        };
        let count = cursor.u64("entry count")?;
        // Each entry takes at least 8 bytes, which bounds the allocation by the file size.
        if count > (cursor.remaining() / 8) as u64 {
            return Err(format!(
                "table {:?}: {count} entries cannot fit in the {} bytes left",
                spec.name,
                cursor.remaining()
            ));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let key_len = cursor.u32("key length")? as usize;
            let key = cursor.take(key_len, "key")?;
            let value_len = cursor.u32("value length")? as usize;
            let value = cursor.take(value_len, "value")?;
            entries.push((key, value));
        }
        tables.push(SnapshotTable { spec, entries });
    }
    if cursor.remaining() != 0 {
        return Err(format!(
            "{} unexpected bytes after the last table",
            cursor.remaining()
        ));
    }
    Ok(tables)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TableSetError> {
    let io_error = |source| TableSetError::SnapshotIo {
        path: path.to_owned(),
        source,
    };
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    let mut file = File::create(&temp).map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io_error)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Persist the rename too; a directory that cannot be opened is not worth failing for.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableSet;

    fn sample() -> TableSet {
        let set = TableSet::new();
        set.reconcile(&[
            TableSpec::new("sessions", TableKind::Exact, 100),
            TableSpec::new("routes", TableKind::Lpm, 100),
            TableSpec::new("usage", TableKind::Counters, 8),
        ])
        .unwrap();
        let sessions = set.open("sessions").unwrap();
        for i in 0..20u32 {
            sessions.put(&i.to_be_bytes(), &[i as u8; 3]).unwrap();
        }
        let routes = set.open("routes").unwrap();
        routes.put(&[8, 10, 0, 0, 0], b"ten").unwrap();
        routes.put(&[0; 17], b"v6-default").unwrap();
        set.open("usage")
            .unwrap()
            .add(&3u32.to_le_bytes(), 2, 128)
            .unwrap();
        set
    }

    fn encoded(set: &TableSet) -> Vec<u8> {
        let mut tables: Vec<_> = set.names().iter().map(|n| set.open(n).unwrap()).collect();
        tables.sort_by(|a, b| a.name().cmp(b.name()));
        encode(&tables)
    }

    #[test]
    fn a_snapshot_decodes_to_the_same_specs_and_entries() {
        let set = sample();
        let bytes = encoded(&set);
        let tables = decode(&bytes).unwrap();
        let names: Vec<_> = tables.iter().map(|t| t.spec.name.as_str()).collect();
        assert_eq!(names, ["routes", "sessions", "usage"]);
        assert_eq!(tables[0].entries.len(), 2);
        assert_eq!(tables[1].entries.len(), 20);
        assert_eq!(
            tables[2].spec,
            TableSpec::new("usage", TableKind::Counters, 8)
        );
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = encoded(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x40;
            assert!(decode(&corrupt).is_err(), "flipped byte {at}");
        }
    }

    #[test]
    fn lengths_beyond_the_file_are_errors_even_with_a_valid_checksum() {
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&VERSION.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&u16::MAX.to_le_bytes());
        let hash = fnv1a(&body);
        body.extend_from_slice(&hash.to_le_bytes());
        let err = decode(&body).unwrap_err();
        assert!(err.contains("table name"), "{err}");
    }
}
