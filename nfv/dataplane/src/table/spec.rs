//! What a manifest declares about a table, and the limits a table enforces.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::TableSetError;

/// Which structure a table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableKind {
    /// Exact match: arbitrary byte keys to byte values.
    Exact,
    /// Longest-prefix match on IPv4 and IPv6 addresses.
    Lpm,
    /// Fixed array of packet and byte counters, indexed by a `u32`.
    Counters,
}

impl TableKind {
    /// The kind as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Lpm => "lpm",
            Self::Counters => "counters",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Exact => 0,
            Self::Lpm => 1,
            Self::Counters => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Exact),
            1 => Some(Self::Lpm),
            2 => Some(Self::Counters),
            _ => None,
        }
    }
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table as declared in a manifest.
///
/// `max-entries` bounds every kind (for `counters` it is the number of counters, allocated up
/// front). `max-key-len` applies to `exact` tables (LPM keys are 5 or 17 bytes, counter keys 4);
/// `max-value-len` to `exact` and `lpm` (counter values are 16 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TableSpec {
    /// The name plugins open the table by.
    pub name: String,
    /// The table's structure.
    pub kind: TableKind,
    /// Most entries (or counters) the table holds.
    pub max_entries: u64,
    /// Longest key, in bytes (exact tables).
    #[serde(default = "default_max_key_len")]
    pub max_key_len: u32,
    /// Longest value, in bytes (exact and LPM tables).
    #[serde(default = "default_max_value_len")]
    pub max_value_len: u32,
}

fn default_max_key_len() -> u32 {
    64
}

fn default_max_value_len() -> u32 {
    1024
}

/// Longest table name (snapshots store it with a 16-bit length; names are for humans).
pub const MAX_NAME_LEN: usize = 255;
/// Largest key an exact table may declare.
pub const MAX_KEY_LEN: u32 = 4096;
/// Largest value any table may declare.
pub const MAX_VALUE_LEN: u32 = 1 << 20;
/// Most counters a counters table may declare (16 bytes each, allocated up front: 64 MiB).
pub const MAX_COUNTERS: u64 = 1 << 22;

impl TableSpec {
    /// A spec with the default key and value limits.
    pub fn new(name: &str, kind: TableKind, max_entries: u64) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            max_entries,
            max_key_len: default_max_key_len(),
            max_value_len: default_max_value_len(),
        }
    }

    /// Checks the spec's limits; the error names the table and the field.
    pub fn validate(&self) -> Result<(), TableSetError> {
        let invalid = |reason: String| {
            Err(TableSetError::InvalidSpec {
                table: self.name.clone(),
                reason,
            })
        };
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return invalid(format!(
                "name must be 1 to {MAX_NAME_LEN} bytes, got {}",
                self.name.len()
            ));
        }
        if self.max_entries == 0 {
            return invalid("max-entries must be at least 1".into());
        }
        match self.kind {
            TableKind::Exact if self.max_key_len == 0 || self.max_key_len > MAX_KEY_LEN => {
                invalid(format!(
                    "max-key-len must be 1 to {MAX_KEY_LEN}, got {}",
                    self.max_key_len
                ))
            }
            TableKind::Exact | TableKind::Lpm if self.max_value_len > MAX_VALUE_LEN => {
                invalid(format!(
                    "max-value-len must be at most {MAX_VALUE_LEN}, got {}",
                    self.max_value_len
                ))
            }
            TableKind::Counters if self.max_entries > MAX_COUNTERS => invalid(format!(
                "a counters table holds at most {MAX_COUNTERS} counters, got max-entries {}",
                self.max_entries
            )),
            _ => Ok(()),
        }
    }

    /// Whether a table built for `old` can serve this spec without losing anything: same kind,
    /// and no limit smaller.
    pub fn covers(&self, old: &TableSpec) -> bool {
        self.kind == old.kind
            && self.max_entries >= old.max_entries
            && self.max_key_len >= old.max_key_len
            && self.max_value_len >= old.max_value_len
    }
}

/// A table's limits, which can grow while the table is in use.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) max_entries: AtomicU64,
    pub(crate) max_key_len: AtomicU32,
    pub(crate) max_value_len: AtomicU32,
}

impl Limits {
    pub(crate) fn new(spec: &TableSpec) -> Self {
        Self {
            max_entries: AtomicU64::new(spec.max_entries),
            max_key_len: AtomicU32::new(spec.max_key_len),
            max_value_len: AtomicU32::new(spec.max_value_len),
        }
    }

    pub(crate) fn set(&self, spec: &TableSpec) {
        self.max_entries.store(spec.max_entries, Ordering::Relaxed);
        self.max_key_len.store(spec.max_key_len, Ordering::Relaxed);
        self.max_value_len
            .store(spec.max_value_len, Ordering::Relaxed);
    }

    pub(crate) fn max_entries(&self) -> u64 {
        self.max_entries.load(Ordering::Relaxed)
    }

    pub(crate) fn max_key_len(&self) -> usize {
        self.max_key_len.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn max_value_len(&self) -> usize {
        self.max_value_len.load(Ordering::Relaxed) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_deserialize_with_default_lengths() {
        let spec: TableSpec =
            toml::from_str("name = \"sessions\"\nkind = \"exact\"\nmax-entries = 1000").unwrap();
        assert_eq!(spec, TableSpec::new("sessions", TableKind::Exact, 1000));
        assert!(
            toml::from_str::<TableSpec>("name = \"x\"\nkind = \"bloom\"\nmax-entries = 1").is_err()
        );
    }

    #[test]
    fn invalid_limits_are_rejected_with_the_table_name() {
        let cases = [
            TableSpec::new("", TableKind::Exact, 1),
            TableSpec::new("zero", TableKind::Exact, 0),
            TableSpec {
                max_key_len: 0,
                ..TableSpec::new("nokey", TableKind::Exact, 1)
            },
            TableSpec {
                max_value_len: MAX_VALUE_LEN + 1,
                ..TableSpec::new("bigvalue", TableKind::Lpm, 1)
            },
            TableSpec::new("many", TableKind::Counters, MAX_COUNTERS + 1),
        ];
        for spec in cases {
            let err = spec.validate().unwrap_err();
            assert!(
                err.to_string().contains(&format!("{:?}", spec.name)),
                "{err}"
            );
        }
    }

    #[test]
    fn a_spec_covers_an_older_one_only_if_nothing_shrank() {
        let old = TableSpec::new("t", TableKind::Exact, 100);
        assert!(old.covers(&old));
        assert!(TableSpec::new("t", TableKind::Exact, 200).covers(&old));
        assert!(!TableSpec::new("t", TableKind::Exact, 50).covers(&old));
        assert!(!TableSpec::new("t", TableKind::Lpm, 100).covers(&old));
        let shorter_keys = TableSpec {
            max_key_len: 8,
            ..old.clone()
        };
        assert!(!shorter_keys.covers(&old));
    }
}
