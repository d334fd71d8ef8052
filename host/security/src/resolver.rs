//! Hot certificate rotation: a rustls certificate resolver over an atomic pointer.
//!
//! Every handshake loads the current certificate; [`HotResolver::rotate`] swaps it without a
//! lock, so the next handshake serves the new one while established connections, which no
//! longer consult the resolver, carry on undisturbed.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// A [`ResolvesServerCert`] that serves one certificate, replaceable at any time.
pub struct HotResolver {
    current: ArcSwap<CertifiedKey>,
    sessions: Arc<RotatingSessions>,
}

/// How many TLS sessions the server keeps for resumption.
const SESSION_CACHE_SIZE: usize = 256;

impl std::fmt::Debug for HotResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotResolver")
            .field("fingerprint", &self.fingerprint_sha256())
            .finish()
    }
}

impl HotResolver {
    /// A resolver serving `initial`.
    pub fn new(initial: Arc<CertifiedKey>) -> HotResolver {
        HotResolver {
            current: ArcSwap::new(initial),
            sessions: Arc::new(RotatingSessions {
                cache: ArcSwap::new(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE)),
            }),
        }
    }

    /// Serves `next` from the next handshake on.
    pub fn rotate(&self, next: Arc<CertifiedKey>) {
        let previous = self.current.swap(next);
        self.sessions
            .cache
            .store(ServerSessionMemoryCache::new(SESSION_CACHE_SIZE));
        tracing::info!(
            from = %leaf_fingerprint(&previous),
            to = %self.fingerprint_sha256(),
            "rotated the served TLS certificate"
        );
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// A session cache for `ServerConfig::session_storage` that [`HotResolver::rotate`]
    /// empties, so sessions from before a rotation are not resumed.
    pub fn session_storage(&self) -> Arc<dyn StoresServerSessions> {
        Arc::clone(&self.sessions) as Arc<dyn StoresServerSessions>
    }

    /// SHA-256 of the leaf certificate served now, lowercase hex.
    pub fn fingerprint_sha256(&self) -> String {
        leaf_fingerprint(&self.current.load())
    }
}

impl ResolvesServerCert for HotResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn leaf_fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|c| hex::encode(Sha256::digest(c)))
        .unwrap_or_default()
}

/// A server session cache replaced wholesale on rotation.
#[derive(Debug)]
struct RotatingSessions {
    cache: ArcSwap<ServerSessionMemoryCache>,
}

impl StoresServerSessions for RotatingSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.cache.load().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache.load().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache.load().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}
