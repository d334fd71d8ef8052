//! [`LpmTable`]: longest-prefix match on IPv4 and IPv6 addresses.
//!
//! One hash map per prefix length and address family, plus the list of lengths in use, longest
//! first. A lookup masks the address to each length in use and probes that map; the first hit
//! is the longest match. Real routing tables use few distinct lengths, so a lookup costs a
//! handful of probes; insertion and removal are a single map operation. The whole index sits
//! behind one `RwLock` (lookups share it; route changes are rare).
//!
//! Byte encoding (what plugins pass through the `tables` interface): a prefix key is the prefix
//! length followed by the address (5 bytes for IPv4, 17 for IPv6), with no bits set beyond the
//! prefix; a lookup key is a plain address (4 or 16 bytes).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::spec::{Limits, TableSpec};
use super::{TableError, TableStats};

/// The prefixes of one address family, `N` bytes per address.
struct PrefixMaps<const N: usize> {
    /// Index = prefix length.
    by_len: Vec<HashMap<[u8; N], Box<[u8]>>>,
    /// Lengths whose map is non-empty, longest first.
    lengths: Vec<u8>,
}

impl<const N: usize> PrefixMaps<N> {
    fn new() -> Self {
        Self {
            by_len: (0..=N * 8).map(|_| HashMap::new()).collect(),
            lengths: Vec::new(),
        }
    }

    fn longest_match(&self, addr: &[u8; N]) -> Option<&[u8]> {
        self.lengths
            .iter()
            .find_map(|&len| self.by_len[len as usize].get(&mask(addr, len)))
            .map(|v| &**v)
    }

    fn get(&self, prefix: &[u8; N], len: u8) -> Option<&[u8]> {
        self.by_len[len as usize].get(prefix).map(|v| &**v)
    }

    /// Inserts or replaces; returns whether the prefix is new.
    fn insert(&mut self, prefix: [u8; N], len: u8, value: Box<[u8]>) -> bool {
        let map = &mut self.by_len[len as usize];
        let was_empty = map.is_empty();
        let new = map.insert(prefix, value).is_none();
        if was_empty {
            let at = self.lengths.partition_point(|&l| l > len);
            self.lengths.insert(at, len);
        }
        new
    }

    fn remove(&mut self, prefix: &[u8; N], len: u8) -> bool {
        let map = &mut self.by_len[len as usize];
        let removed = map.remove(prefix).is_some();
        if removed && map.is_empty() {
            self.lengths.retain(|&l| l != len);
        }
        removed
    }

    fn clear(&mut self) {
        for map in &mut self.by_len {
            map.clear();
        }
        self.lengths.clear();
    }

    fn for_each(&self, f: &mut impl FnMut(&[u8], &[u8])) {
        let mut key = Vec::with_capacity(N + 1);
        for (len, map) in self.by_len.iter().enumerate() {
            for (prefix, value) in map {
                key.clear();
                key.push(len as u8);
                key.extend_from_slice(prefix);
                f(&key, value);
            }
        }
    }
}

/// `addr` with every bit beyond the first `len` cleared.
fn mask<const N: usize>(addr: &[u8; N], len: u8) -> [u8; N] {
    let mut out = [0u8; N];
    let len = usize::from(len);
    let full = len / 8;
    out[..full].copy_from_slice(&addr[..full]);
    if full < N && len % 8 != 0 {
        out[full] = addr[full] & (0xffu8 << (8 - len % 8));
    }
    out
}

struct Index {
    v4: PrefixMaps<4>,
    v6: PrefixMaps<16>,
    len: u64,
}

/// A prefix parsed from its byte encoding.
enum Prefix {
    V4([u8; 4], u8),
    V6([u8; 16], u8),
}

/// A longest-prefix-match table over IPv4 and IPv6 prefixes.
pub struct LpmTable {
    name: Arc<str>,
    index: RwLock<Index>,
    limits: Limits,
    hits: AtomicU64,
    misses: AtomicU64,
    insert_failures: AtomicU64,
}

impl std::fmt::Debug for LpmTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LpmTable")
            .field("name", &self.name)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl LpmTable {
    /// An empty table with `spec`'s limits.
    pub fn new(spec: &TableSpec) -> Self {
        Self {
            name: spec.name.as_str().into(),
            index: RwLock::new(Index {
                v4: PrefixMaps::new(),
                v6: PrefixMaps::new(),
                len: 0,
            }),
            limits: Limits::new(spec),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            insert_failures: AtomicU64::new(0),
        }
    }

    fn parse_prefix(&self, key: &[u8]) -> Result<Prefix, TableError> {
        let table = || self.name.to_string();
        let (&len, addr) = key.split_first().ok_or_else(|| TableError::BadLpmKey {
            table: table(),
            len: 0,
        })?;
        let check = |max: u8| {
            if len > max {
                Err(TableError::BadPrefixLength {
                    table: table(),
                    prefix_len: len,
                    max,
                })
            } else {
                Ok(())
            }
        };
        let prefix = if let Ok(addr) = <[u8; 4]>::try_from(addr) {
            check(32)?;
            (mask(&addr, len) == addr).then_some(Prefix::V4(addr, len))
        } else if let Ok(addr) = <[u8; 16]>::try_from(addr) {
            check(128)?;
            (mask(&addr, len) == addr).then_some(Prefix::V6(addr, len))
        } else {
            return Err(TableError::BadLpmKey {
                table: table(),
                len: key.len(),
            });
        };
        prefix.ok_or_else(|| TableError::HostBitsSet {
            table: table(),
            prefix_len: len,
        })
    }

    /// Calls `f` with the value of the longest prefix containing `addr` (4 or 16 bytes).
    pub fn lookup_with<R>(&self, addr: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let index = self.index.read();
        let found = if let Ok(a) = <&[u8; 4]>::try_from(addr) {
            index.v4.longest_match(a)
        } else if let Ok(a) = <&[u8; 16]>::try_from(addr) {
            index.v6.longest_match(a)
        } else {
            None
        };
        self.count(found.is_some());
        found.map(f)
    }

    /// A copy of the value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<Vec<u8>> {
        match addr {
            IpAddr::V4(a) => self.lookup_with(&a.octets(), <[u8]>::to_vec),
            IpAddr::V6(a) => self.lookup_with(&a.octets(), <[u8]>::to_vec),
        }
    }

    /// Calls `f` with the value under the exact prefix `key` (length byte then address).
    pub fn get_prefix_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let index = self.index.read();
        let found = match self.parse_prefix(key).ok()? {
            Prefix::V4(addr, len) => index.v4.get(&addr, len),
            Prefix::V6(addr, len) => index.v6.get(&addr, len),
        };
        self.count(found.is_some());
        found.map(f)
    }

    /// Byte-API lookup: a plain address (4 or 16 bytes) is a longest-prefix match, a prefix key
    /// (5 or 17 bytes) an exact match on that prefix.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match key.len() {
            4 | 16 => self.lookup_with(key, f),
            _ => self.get_prefix_with(key, f),
        }
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Inserts or replaces the prefix `key` (length byte then address).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        let result = self.try_put(key, value);
        if result.is_err() {
            self.insert_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Inserts or replaces `addr/prefix_len`.
    pub fn insert(&self, addr: IpAddr, prefix_len: u8, value: &[u8]) -> Result<(), TableError> {
        let mut key = vec![prefix_len];
        match addr {
            IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
        }
        self.put(&key, value)
    }

    fn try_put(&self, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        let prefix = self.parse_prefix(key)?;
        if value.len() > self.limits.max_value_len() {
            return Err(TableError::ValueTooLong {
                table: self.name.to_string(),
                len: value.len(),
                max: self.limits.max_value_len(),
            });
        }
        let mut index = self.index.write();
        let exists = match &prefix {
            Prefix::V4(addr, len) => index.v4.get(addr, *len).is_some(),
            Prefix::V6(addr, len) => index.v6.get(addr, *len).is_some(),
        };
        let max = self.limits.max_entries();
        if !exists && index.len >= max {
            return Err(TableError::Full {
                table: self.name.to_string(),
                max,
            });
        }
        let new = match prefix {
            Prefix::V4(addr, len) => index.v4.insert(addr, len, value.into()),
            Prefix::V6(addr, len) => index.v6.insert(addr, len, value.into()),
        };
        index.len += u64::from(new);
        Ok(())
    }

    /// Removes the prefix `key`; returns whether it was there (false for a malformed key).
    pub fn remove(&self, key: &[u8]) -> bool {
        let Ok(prefix) = self.parse_prefix(key) else {
            return false;
        };
        let mut index = self.index.write();
        let removed = match prefix {
            Prefix::V4(addr, len) => index.v4.remove(&addr, len),
            Prefix::V6(addr, len) => index.v6.remove(&addr, len),
        };
        index.len -= u64::from(removed);
        removed
    }

    /// Number of prefixes.
    pub fn len(&self) -> u64 {
        self.index.read().len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every prefix.
    pub fn clear(&self) {
        let mut index = self.index.write();
        index.v4.clear();
        index.v6.clear();
        index.len = 0;
    }

    /// Calls `f` with every prefix (in its byte encoding) and value.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        let index = self.index.read();
        index.v4.for_each(&mut f);
        index.v6.for_each(&mut f);
    }

    /// The table's counters.
    pub fn stats(&self) -> TableStats {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        TableStats {
            entries: self.len(),
            lookups: hits + misses,
            hits,
            misses,
            insert_failures: self.insert_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn grow(&self, spec: &TableSpec) {
        self.limits.set(spec);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::table::TableKind;

    fn table(max_entries: u64) -> LpmTable {
        LpmTable::new(&TableSpec::new("routes", TableKind::Lpm, max_entries))
    }

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let t = table(10);
        t.insert(v4("0.0.0.0"), 0, b"default").unwrap();
        t.insert(v4("10.0.0.0"), 8, b"ten").unwrap();
        t.insert(v4("10.1.0.0"), 16, b"ten-one").unwrap();
        t.insert(v4("10.1.2.3"), 32, b"host").unwrap();
        assert_eq!(t.lookup(v4("10.1.2.3")).unwrap(), b"host");
        assert_eq!(t.lookup(v4("10.1.9.9")).unwrap(), b"ten-one");
        assert_eq!(t.lookup(v4("10.200.0.1")).unwrap(), b"ten");
        assert_eq!(t.lookup(v4("192.168.0.1")).unwrap(), b"default");
        assert!(t.remove(&[16, 10, 1, 0, 0]));
        assert_eq!(t.lookup(v4("10.1.9.9")).unwrap(), b"ten");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn ipv4_and_ipv6_prefixes_do_not_mix() {
        let t = table(10);
        t.insert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, b"v6-default")
            .unwrap();
        assert_eq!(t.lookup(v4("1.2.3.4")), None);
        let addr: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(t.lookup(IpAddr::V6(addr)).unwrap(), b"v6-default");
    }

    #[test]
    fn the_byte_api_distinguishes_lookups_from_prefix_keys_by_length() {
        let t = table(10);
        t.put(&[8, 10, 0, 0, 0], b"ten").unwrap();
        assert_eq!(t.get_with(&[10, 9, 9, 9], <[u8]>::to_vec).unwrap(), b"ten");
        assert_eq!(
            t.get_with(&[8, 10, 0, 0, 0], <[u8]>::to_vec).unwrap(),
            b"ten"
        );
        assert_eq!(t.get_with(&[16, 10, 0, 0, 0], <[u8]>::to_vec), None);
        assert_eq!(t.get_with(&[1, 2, 3], <[u8]>::to_vec), None);
    }

    #[test]
    fn malformed_prefix_keys_are_refused_with_reasons() {
        let t = table(10);
        assert!(matches!(
            t.put(&[8, 10, 0, 0], b""),
            Err(TableError::BadLpmKey { len: 4, .. })
        ));
        assert!(matches!(
            t.put(&[33, 10, 0, 0, 0], b""),
            Err(TableError::BadPrefixLength {
                prefix_len: 33,
                max: 32,
                ..
            })
        ));
        let err = t.put(&[8, 10, 0, 0, 1], b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "table \"routes\": address has bits set beyond its /8 prefix"
        );
        assert!(matches!(
            t.put(&[], b""),
            Err(TableError::BadLpmKey { len: 0, .. })
        ));
        assert!(!t.remove(&[1]));
        assert_eq!(t.stats().insert_failures, 4);
    }

    #[test]
    fn a_full_table_refuses_new_prefixes_but_replaces_existing_ones() {
        let t = table(1);
        t.put(&[8, 10, 0, 0, 0], b"a").unwrap();
        assert!(matches!(
            t.put(&[8, 11, 0, 0, 0], b"b"),
            Err(TableError::Full { max: 1, .. })
        ));
        t.put(&[8, 10, 0, 0, 0], b"c").unwrap();
        assert_eq!(t.lookup(v4("10.0.0.1")).unwrap(), b"c");
    }

    #[test]
    fn mask_clears_bits_beyond_the_prefix() {
        assert_eq!(mask(&[0xff; 4], 0), [0, 0, 0, 0]);
        assert_eq!(mask(&[0xff; 4], 12), [0xff, 0xf0, 0, 0]);
        assert_eq!(mask(&[0xff; 4], 32), [0xff; 4]);
    }

    /// The oracle: scan every prefix, keep the longest that contains the address.
    fn brute_force(prefixes: &[(Vec<u8>, u8, u8)], addr: &[u8]) -> Option<u8> {
        let contains = |prefix: &[u8], len: u8| {
            let bits = usize::from(len);
            (0..bits).all(|bit| {
                let m = 0x80u8 >> (bit % 8);
                prefix[bit / 8] & m == addr[bit / 8] & m
            })
        };
        prefixes
            .iter()
            .filter(|(p, len, _)| p.len() == addr.len() && contains(p, *len))
            .max_by_key(|(_, len, _)| *len)
            .map(|(_, _, value)| *value)
    }

    fn masked(addr: Vec<u8>, len: u8) -> Vec<u8> {
        match addr.len() {
            4 => mask(&<[u8; 4]>::try_from(&addr[..]).unwrap(), len).to_vec(),
            _ => mask(&<[u8; 16]>::try_from(&addr[..]).unwrap(), len).to_vec(),
        }
    }

    /// Addresses from a small pool of bytes so prefixes and lookups overlap often.
    fn address(bytes: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(10), Just(0xff), any::<u8>()],
            bytes,
        )
    }

    fn prefix() -> impl Strategy<Value = (Vec<u8>, u8)> {
        prop_oneof![
            (address(4), 0u8..=32).prop_map(|(a, l)| (masked(a, l), l)),
            (address(16), 0u8..=128).prop_map(|(a, l)| (masked(a, l), l)),
        ]
    }

    proptest! {
        #[test]
        fn lookups_agree_with_a_brute_force_scan(
            inserts in proptest::collection::vec(prefix(), 0..40),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            lookups in proptest::collection::vec(prop_oneof![address(4), address(16)], 1..40),
        ) {
            let t = table(1000);
            // The oracle keeps the last value per prefix, like the table.
            let mut oracle: Vec<(Vec<u8>, u8, u8)> = Vec::new();
            for (i, (addr, len)) in inserts.iter().enumerate() {
                let mut key = vec![*len];
                key.extend_from_slice(addr);
                t.put(&key, &[i as u8]).unwrap();
                oracle.retain(|(a, l, _)| !(a == addr && l == len));
                oracle.push((addr.clone(), *len, i as u8));
            }
            for index in removals {
                if oracle.is_empty() {
                    break;
                }
                let (addr, len, _) = oracle.remove(index.index(oracle.len()));
                let mut key = vec![len];
                key.extend_from_slice(&addr);
                prop_assert!(t.remove(&key));
            }
            prop_assert_eq!(t.len(), oracle.len() as u64);
            for addr in lookups {
                let got = t.get_with(&addr, |v| v[0]);
                prop_assert_eq!(got, brute_force(&oracle, &addr), "address {:?}", addr);
            }
        }
    }
}
