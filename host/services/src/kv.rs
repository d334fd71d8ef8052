//! The host's key-value store: one embedded, crash-safe database ([`redb`]) holding a namespace
//! per plugin, each with a byte quota. Plugin state lives here, not in the plugin, so it
//! survives restarts and hot swaps.
//!
//! ```
//! let store = outpost_services::KvStore::in_memory().unwrap();
//! let ns = store.namespace("counter", 1024);
//! ns.set("hits", b"1").unwrap();
//! assert_eq!(ns.get("hits").unwrap().as_deref(), Some(&b"1"[..]));
//! ```

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::cipher::{CipherError, RecordCipher, SharedProvider, StoredKey};

/// (namespace, key) → value
const DATA: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv-data");
/// namespace → bytes used (keys plus values)
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("kv-usage");
/// `data-key` → the store's wrapped data key (present when values are encrypted)
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("kv-meta");
const DATA_KEY: &str = "data-key";

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Why a kv operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The namespace would exceed its quota.
    #[error("namespace `{namespace}` would exceed its quota of {quota} bytes")]
    QuotaExceeded {
        /// Namespace name.
        namespace: String,
        /// Quota in bytes.
        quota: u64,
    },
    /// A key or value is over the size limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// `key` or `value`.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The database failed.
    #[error("kv store: {0}")]
    Io(String),
    /// A value could not be encrypted or decrypted (key unavailable, record altered).
    #[error("kv store: {0}")]
    Encryption(#[from] CipherError),
    /// The store holds encrypted values but no key provider was given.
    #[error("kv store is encrypted, but no key provider is configured")]
    NoKeyProvider,
}

fn io(e: impl Into<redb::Error>) -> KvError {
    KvError::Io(e.into().to_string())
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    db: Arc<Database>,
    cipher: Option<Arc<RecordCipher>>,
}

impl KvStore {
    /// Opens (or creates) the store at `path`, values in plaintext. A store that was
    /// encrypted refuses to open this way.
    pub fn open(path: &Path) -> Result<KvStore, KvError> {
        let db = Database::create(path)
            .map_err(|e| KvError::Io(format!("opening {}: {e}", path.display())))?;
        Self::init(db, None)
    }

    /// Opens (or creates) the store at `path` with every value encrypted under the store's
    /// data key, wrapped by `provider`'s KEK. Values of a store written before encryption was
    /// turned on are encrypted here, in one transaction.
    pub fn open_encrypted(path: &Path, provider: SharedProvider) -> Result<KvStore, KvError> {
        let db = Database::create(path)
            .map_err(|e| KvError::Io(format!("opening {}: {e}", path.display())))?;
        Self::init(db, Some(provider))
    }

    /// Opens the file just long enough to see that no other process holds it (a wipe's check).
    pub fn open_raw_check(path: &Path) -> Result<(), KvError> {
        Database::open(path)
            .map(drop)
            .map_err(|e| KvError::Io(format!("opening {}: {e}", path.display())))
    }

    /// A store that lives in memory only (tests, `--ephemeral`).
    pub fn in_memory() -> Result<KvStore, KvError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        Self::init(db, None)
    }

    fn init(mut db: Database, provider: Option<SharedProvider>) -> Result<KvStore, KvError> {
        let mut migrated = false;
        let tx = db.begin_write().map_err(io)?;
        let cipher = {
            let mut data = tx.open_table(DATA).map_err(io)?;
            tx.open_table(USAGE).map_err(io)?;
            let mut meta = tx.open_table(META).map_err(io)?;
            let stored = meta
                .get(DATA_KEY)
                .map_err(io)?
                .map(|v| StoredKey::decode(v.value()))
                .transpose()?;
            match (stored, provider) {
                (Some(_), None) => return Err(KvError::NoKeyProvider),
                (None, None) => None,
                (Some(stored), Some(p)) => Some(Arc::new(RecordCipher::unwrap(p, stored)?)),
                (None, Some(p)) => {
                    let cipher = RecordCipher::generate(p)?;
                    meta.insert(DATA_KEY, cipher.stored_key().encode().as_slice())
                        .map_err(io)?;
                    // Encrypt what an unencrypted store held.
                    let mut plain = Vec::new();
                    for entry in data.iter().map_err(io)? {
                        let (k, v) = entry.map_err(io)?;
                        let (ns, key) = k.value();
                        plain.push((ns.to_string(), key.to_string(), v.value().to_vec()));
                    }
                    for (ns, key, value) in &plain {
                        let sealed = cipher.seal(&context(ns, key), value)?;
                        data.insert((ns.as_str(), key.as_str()), sealed.as_slice())
                            .map_err(io)?;
                    }
                    if !plain.is_empty() {
                        tracing::info!(values = plain.len(), "kv store: encrypted existing values");
                        migrated = true;
                    }
                    Some(Arc::new(cipher))
                }
            }
        };
        tx.commit().map_err(io)?;
        if migrated {
            // The plaintext pages are free now but still on disk until reused: compact them away.
            while db.compact().map_err(io)? {}
        }
        Ok(KvStore {
            db: Arc::new(db),
            cipher,
        })
    }

    /// Whether values are encrypted, and the KEK version wrapping the data key.
    pub fn encryption(&self) -> Option<u32> {
        self.cipher.as_ref().map(|c| c.kek_version())
    }

    /// Wraps the data key under the provider's newest KEK version (after a rotation). Values
    /// are not rewritten; readers are not disturbed.
    pub fn rewrap(&self) -> Result<(), KvError> {
        let Some(cipher) = &self.cipher else {
            return Ok(());
        };
        let stored = cipher.rewrap()?;
        let tx = self.db.begin_write().map_err(io)?;
        tx.open_table(META)
            .map_err(io)?
            .insert(DATA_KEY, stored.encode().as_slice())
            .map_err(io)?;
        tx.commit().map_err(io)
    }

    /// Checks the KEK still unwraps the data key.
    pub fn check_key(&self) -> Result<(), KvError> {
        match &self.cipher {
            Some(c) => Ok(c.check()?),
            None => Ok(()),
        }
    }

    fn seal(&self, ns: &str, key: &str, value: &[u8]) -> Result<Vec<u8>, KvError> {
        match &self.cipher {
            Some(c) => Ok(c.seal(&context(ns, key), value)?),
            None => Ok(value.to_vec()),
        }
    }

    fn unseal(&self, ns: &str, key: &str, stored: &[u8]) -> Result<Vec<u8>, KvError> {
        match &self.cipher {
            Some(c) => Ok(c.open(&context(ns, key), stored)?),
            None => Ok(stored.to_vec()),
        }
    }

    /// The plaintext length of a stored value.
    fn plain_len(&self, stored: usize) -> usize {
        match self.cipher {
            Some(_) => RecordCipher::plain_len(stored),
            None => stored,
        }
    }

    /// A handle on `namespace`, limited to `quota` bytes of keys plus values.
    pub fn namespace(&self, namespace: &str, quota: u64) -> KvNamespace {
        KvNamespace {
            store: self.clone(),
            name: namespace.to_string(),
            quota,
        }
    }
}

/// One plugin's namespace.
#[derive(Clone)]
pub struct KvNamespace {
    store: KvStore,
    name: String,
    quota: u64,
}

impl KvNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let tx = self.store.db.begin_read().map_err(io)?;
        let table = tx.open_table(DATA).map_err(io)?;
        let value = table.get((self.name.as_str(), key)).map_err(io)?;
        value
            .map(|v| self.store.unseal(&self.name, key, v.value()))
            .transpose()
    }

    /// Stores `value` under `key`, within the quota.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_size("key", key.len(), MAX_KEY_BYTES)?;
        check_size("value", value.len(), MAX_VALUE_BYTES)?;
        let stored = self.store.seal(&self.name, key, value)?;
        let tx = self.store.db.begin_write().map_err(io)?;
        {
            let mut data = tx.open_table(DATA).map_err(io)?;
            let mut usage = tx.open_table(USAGE).map_err(io)?;
            let used = usage
                .get(self.name.as_str())
                .map_err(io)?
                .map_or(0, |v| v.value());
            let old = data
                .get((self.name.as_str(), key))
                .map_err(io)?
                .map_or(0, |v| {
                    (key.len() + self.store.plain_len(v.value().len())) as u64
                });
            let new_used = used - old.min(used) + (key.len() + value.len()) as u64;
            if new_used > self.quota {
                return Err(KvError::QuotaExceeded {
                    namespace: self.name.clone(),
                    quota: self.quota,
                });
            }
            data.insert((self.name.as_str(), key), stored.as_slice())
                .map_err(io)?;
            usage.insert(self.name.as_str(), new_used).map_err(io)?;
        }
        tx.commit().map_err(io)
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        let tx = self.store.db.begin_write().map_err(io)?;
        let existed = {
            let mut data = tx.open_table(DATA).map_err(io)?;
            let mut usage = tx.open_table(USAGE).map_err(io)?;
            let removed = data
                .remove((self.name.as_str(), key))
                .map_err(io)?
                .map(|v| (key.len() + self.store.plain_len(v.value().len())) as u64);
            if let Some(freed) = removed {
                let used = usage
                    .get(self.name.as_str())
                    .map_err(io)?
                    .map_or(0, |v| v.value());
                usage
                    .insert(self.name.as_str(), used.saturating_sub(freed))
                    .map_err(io)?;
            }
            removed.is_some()
        };
        tx.commit().map_err(io)?;
        Ok(existed)
    }

    /// Keys starting with `prefix`, sorted.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let tx = self.store.db.begin_read().map_err(io)?;
        let table = tx.open_table(DATA).map_err(io)?;
        let mut keys = Vec::new();
        for entry in table.range((self.name.as_str(), prefix)..).map_err(io)? {
            let (k, _) = entry.map_err(io)?;
            let (ns, key) = k.value();
            if ns != self.name || !key.starts_with(prefix) {
                break;
            }
            keys.push(key.to_string());
        }
        Ok(keys)
    }

    /// Bytes of keys plus values the namespace holds.
    pub fn usage(&self) -> Result<u64, KvError> {
        let tx = self.store.db.begin_read().map_err(io)?;
        let usage = tx.open_table(USAGE).map_err(io)?;
        Ok(usage
            .get(self.name.as_str())
            .map_err(io)?
            .map_or(0, |v| v.value()))
    }
}

/// What a value is bound to: its namespace and key.
fn context(ns: &str, key: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(4 + ns.len() + key.len());
    c.extend_from_slice(b"kv\0");
    c.extend_from_slice(ns.as_bytes());
    c.push(0);
    c.extend_from_slice(key.as_bytes());
    c
}

fn check_size(what: &'static str, size: usize, limit: usize) -> Result<(), KvError> {
    if size > limit {
        return Err(KvError::TooLarge { what, size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_do_not_see_each_other() {
        let store = KvStore::in_memory().unwrap();
        let a = store.namespace("a", 1 << 20);
        let b = store.namespace("b", 1 << 20);
        a.set("k", b"from a").unwrap();
        assert_eq!(b.get("k").unwrap(), None);
        assert_eq!(b.list_keys("").unwrap(), Vec::<String>::new());
        assert_eq!(a.list_keys("").unwrap(), vec!["k".to_string()]);
    }

    #[test]
    fn quota_counts_keys_and_values_and_is_freed_by_delete_and_overwrite() {
        let store = KvStore::in_memory().unwrap();
        let ns = store.namespace("q", 20);
        ns.set("k1", &[0; 8]).unwrap(); // 10 bytes
        ns.set("k1", &[0; 3]).unwrap(); // overwrite: 5 bytes
        assert_eq!(ns.usage().unwrap(), 5);
        ns.set("k2", &[0; 13]).unwrap(); // 20 bytes in all
        assert_eq!(
            ns.set("k3", &[]).unwrap_err(),
            KvError::QuotaExceeded {
                namespace: "q".into(),
                quota: 20
            }
        );
        assert!(ns.delete("k2").unwrap());
        assert!(!ns.delete("k2").unwrap());
        assert_eq!(ns.usage().unwrap(), 5);
        ns.set("k3", &[]).unwrap();
    }

    #[test]
    fn a_refused_write_leaves_the_old_value() {
        let store = KvStore::in_memory().unwrap();
        let ns = store.namespace("q", 16);
        ns.set("k", b"old").unwrap();
        assert!(ns.set("k", &[0; 64]).is_err());
        assert_eq!(ns.get("k").unwrap().as_deref(), Some(&b"old"[..]));
    }

    #[test]
    fn list_keys_filters_by_prefix_in_order() {
        let store = KvStore::in_memory().unwrap();
        let ns = store.namespace("p", 1 << 20);
        for k in ["b/2", "a/1", "b/1", "c"] {
            ns.set(k, b"").unwrap();
        }
        assert_eq!(ns.list_keys("b/").unwrap(), vec!["b/1", "b/2"]);
    }

    #[test]
    fn values_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        KvStore::open(&path)
            .unwrap()
            .namespace("n", 100)
            .set("k", b"v")
            .unwrap();
        let again = KvStore::open(&path).unwrap().namespace("n", 100);
        assert_eq!(again.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(again.usage().unwrap(), 2);
    }

    #[test]
    fn oversized_keys_are_refused() {
        let store = KvStore::in_memory().unwrap();
        let ns = store.namespace("n", u64::MAX);
        let key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            ns.set(&key, b""),
            Err(KvError::TooLarge { what: "key", .. })
        ));
    }
}
