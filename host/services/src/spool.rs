//! A bounded, durable FIFO of messages waiting for a sink ("store and forward").
//!
//! Messages live in an embedded [`redb`] database, so whatever was not yet acknowledged by the
//! sink's peer survives a host restart, in order. The spool is bounded by message count and by
//! bytes (topic plus payload); when it is full a *new* message is refused (and counted), never
//! an old one dropped silently. Messages older than the TTL are removed when the sink looks at
//! the head of the queue ([`Spool::peek`] or [`Spool::expire`]) and counted as expired.
//!
//! Every [`Spool::push`] commits durably (an fsync) before it returns; [`Spool::push_batch`]
//! commits many messages at the cost of one. Most [`Spool::ack`]s skip the fsync: an ack lost
//! in a crash only means those messages are delivered again, which at-least-once delivery
//! allows; the next push, every 16th ack and an ack that empties the spool make them durable.
//!
//! ```
//! use outpost_services::{Spool, SpoolLimits};
//!
//! let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
//! let first = spool.push("sensors/t1", b"21.5").unwrap();
//! spool.push("sensors/t1", b"21.6").unwrap();
//! let head = spool.peek(10).unwrap();
//! assert_eq!(head.len(), 2);
//! assert_eq!(head[0].seq, first);
//! spool.ack(first).unwrap();
//! assert_eq!(spool.stats().depth, 1);
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::cipher::{CipherError, RecordCipher, SharedProvider, StoredKey};

/// seq → (enqueued at, unix ms; topic; payload)
const MESSAGES: TableDefinition<u64, (u64, &str, &[u8])> = TableDefinition::new("spool-messages");
/// `next-seq` → the sequence number the next message gets
const META: TableDefinition<&str, u64> = TableDefinition::new("spool-meta");
const NEXT_SEQ: &str = "next-seq";
/// `data-key` → the spool's wrapped data key (present when payloads are encrypted)
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("spool-keys");
const DATA_KEY: &str = "data-key";

/// At least every this many acks is committed durably (the others skip the fsync).
const ACK_SYNC_EVERY: u64 = 16;
/// Overflow warnings are logged for the first refusal of a streak and then every this many.
const OVERFLOW_LOG_EVERY: u64 = 1000;

/// How much a spool may hold and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpoolLimits {
    /// Most bytes (topics plus payloads) held at once.
    pub max_bytes: u64,
    /// Most messages held at once.
    pub max_messages: u64,
    /// Age after which an undelivered message is expired; `Duration::ZERO` keeps messages forever.
    pub ttl: Duration,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        SpoolLimits {
            max_bytes: 64 << 20,
            max_messages: 100_000,
            ttl: Duration::from_secs(7200),
        }
    }
}

/// Why a spool operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The spool is full; the new message was refused (and counted as overflow).
    #[error(
        "spool full ({depth} messages, {bytes} bytes held; limits {max_messages} messages, \
         {max_bytes} bytes): message of {size} bytes refused"
    )]
    Full {
        /// Messages held.
        depth: u64,
        /// Bytes held.
        bytes: u64,
        /// Size of the refused message (or batch), topic plus payload.
        size: u64,
        /// The message limit.
        max_messages: u64,
        /// The byte limit.
        max_bytes: u64,
    },
    /// The database failed.
    #[error("spool: {0}")]
    Io(String),
    /// A payload could not be encrypted or decrypted (key unavailable, record altered).
    #[error("spool: {0}")]
    Encryption(#[from] CipherError),
    /// The spool holds encrypted payloads but no key provider was given.
    #[error("spool is encrypted, but no key provider is configured")]
    NoKeyProvider,
}

fn io(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::Io(e.into().to_string())
}

/// One message held by the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// Sequence number, increasing in push order; pass it to [`Spool::ack`].
    pub seq: u64,
    /// Bus topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// When it was pushed, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
}

/// A snapshot of a spool's state. `depth` and `bytes` are what the file holds; the other counters
/// count since the spool was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    /// Messages waiting.
    pub depth: u64,
    /// Bytes (topics plus payloads) waiting.
    pub bytes: u64,
    /// Messages accepted by `push`/`push_batch`.
    pub pushed: u64,
    /// Messages removed by `ack` (delivered, or rejected by the peer).
    pub delivered: u64,
    /// Messages removed because they outlived the TTL.
    pub expired: u64,
    /// Messages refused because the spool was full.
    pub overflowed: u64,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    stats: SpoolStats,
    /// Refusals since the last accepted push (for rate-limiting the warning).
    overflow_streak: u64,
    /// Acks committed without an fsync since the last durable commit.
    lazy_acks: u64,
}

struct Inner {
    db: Database,
    limits: SpoolLimits,
    state: Mutex<State>,
    cipher: Option<RecordCipher>,
}

/// A durable FIFO of messages waiting for a sink. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("limits", &self.inner.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type Entry<'a> = (
    redb::AccessGuard<'a, u64>,
    redb::AccessGuard<'a, (u64, &'static str, &'static [u8])>,
);

fn message_size(topic: &str, payload: &[u8]) -> u64 {
    (topic.len() + payload.len()) as u64
}

/// What a payload is bound to: its place in the queue and its topic.
fn context(seq: u64, topic: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(14 + topic.len());
    c.extend_from_slice(b"spool\0");
    c.extend_from_slice(&seq.to_be_bytes());
    c.extend_from_slice(topic.as_bytes());
    c
}

/// The plaintext size of a stored message.
fn stored_size(cipher: Option<&RecordCipher>, topic: &str, payload: &[u8]) -> u64 {
    match cipher {
        Some(_) => (topic.len() + RecordCipher::plain_len(payload.len())) as u64,
        None => message_size(topic, payload),
    }
}

impl Spool {
    /// Opens (or creates) the spool file at `path`; messages left from before are kept, in order.
    /// Payloads are stored in plaintext; a spool that was encrypted refuses to open this way.
    pub fn open(path: &Path, limits: SpoolLimits) -> Result<Spool, SpoolError> {
        let db = Database::create(path)
            .map_err(|e| SpoolError::Io(format!("opening {}: {e}", path.display())))?;
        Self::init(db, limits, None)
    }

    /// Opens (or creates) the spool file at `path` with payloads encrypted under the spool's
    /// data key, wrapped by `provider`'s KEK. Messages a plaintext spool held are encrypted here.
    pub fn open_encrypted(
        path: &Path,
        limits: SpoolLimits,
        provider: SharedProvider,
    ) -> Result<Spool, SpoolError> {
        let db = Database::create(path)
            .map_err(|e| SpoolError::Io(format!("opening {}: {e}", path.display())))?;
        Self::init(db, limits, Some(provider))
    }

    /// A spool that lives in memory only (tests, `--ephemeral`).
    pub fn in_memory(limits: SpoolLimits) -> Result<Spool, SpoolError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        Self::init(db, limits, None)
    }

    fn init(
        mut db: Database,
        limits: SpoolLimits,
        provider: Option<SharedProvider>,
    ) -> Result<Spool, SpoolError> {
        let tx = db.begin_write().map_err(io)?;
        let mut state = State::default();
        let mut migrated = false;
        let cipher;
        {
            let mut messages = tx.open_table(MESSAGES).map_err(io)?;
            let meta = tx.open_table(META).map_err(io)?;
            let mut keys = tx.open_table(KEYS).map_err(io)?;
            let stored = keys
                .get(DATA_KEY)
                .map_err(io)?
                .map(|v| StoredKey::decode(v.value()))
                .transpose()?;
            cipher = match (stored, provider) {
                (Some(_), None) => return Err(SpoolError::NoKeyProvider),
                (None, None) => None,
                (Some(stored), Some(p)) => Some(RecordCipher::unwrap(p, stored)?),
                (None, Some(p)) => {
                    let cipher = RecordCipher::generate(p)?;
                    keys.insert(DATA_KEY, cipher.stored_key().encode().as_slice())
                        .map_err(io)?;
                    let mut plain = Vec::new();
                    for entry in messages.iter().map_err(io)? {
                        let (seq, value) = entry.map_err(io)?;
                        let (at, topic, payload) = value.value();
                        plain.push((seq.value(), at, topic.to_string(), payload.to_vec()));
                    }
                    for (seq, at, topic, payload) in &plain {
                        let sealed = cipher.seal(&context(*seq, topic), payload)?;
                        messages
                            .insert(*seq, (*at, topic.as_str(), sealed.as_slice()))
                            .map_err(io)?;
                    }
                    if !plain.is_empty() {
                        tracing::info!(messages = plain.len(), "spool: encrypted held messages");
                        migrated = true;
                    }
                    Some(cipher)
                }
            };
            let mut last = 0;
            for entry in messages.iter().map_err(io)? {
                let (seq, value) = entry.map_err(io)?;
                let (_, topic, payload) = value.value();
                state.stats.depth += 1;
                state.stats.bytes += stored_size(cipher.as_ref(), topic, payload);
                last = seq.value();
            }
            let stored = meta.get(NEXT_SEQ).map_err(io)?.map_or(1, |v| v.value());
            state.next_seq = stored.max(last + 1);
        }
        tx.commit().map_err(io)?;
        if migrated {
            // The plaintext pages are free now but still on disk until reused: compact them away.
            while db.compact().map_err(io)? {}
        }
        Ok(Spool {
            inner: Arc::new(Inner {
                db,
                limits,
                state: Mutex::new(state),
                cipher,
            }),
        })
    }

    fn spooled(&self, (seq, value): Entry<'_>) -> Result<Spooled, SpoolError> {
        let (enqueued_at_ms, topic, payload) = value.value();
        let seq = seq.value();
        let payload = match &self.inner.cipher {
            Some(c) => c.open(&context(seq, topic), payload)?,
            None => payload.to_vec(),
        };
        Ok(Spooled {
            seq,
            topic: topic.to_string(),
            payload,
            enqueued_at_ms,
        })
    }

    /// Whether payloads are encrypted, and the KEK version wrapping the data key.
    pub fn encryption(&self) -> Option<u32> {
        self.inner.cipher.as_ref().map(|c| c.kek_version())
    }

    /// Wraps the data key under the provider's newest KEK version (after a rotation); payloads
    /// are not rewritten.
    pub fn rewrap(&self) -> Result<(), SpoolError> {
        let Some(cipher) = &self.inner.cipher else {
            return Ok(());
        };
        let stored = cipher.rewrap()?;
        let tx = self.inner.db.begin_write().map_err(io)?;
        tx.open_table(KEYS)
            .map_err(io)?
            .insert(DATA_KEY, stored.encode().as_slice())
            .map_err(io)?;
        tx.commit().map_err(io)
    }

    /// Checks the KEK still unwraps the data key.
    pub fn check_key(&self) -> Result<(), SpoolError> {
        match &self.inner.cipher {
            Some(c) => Ok(c.check()?),
            None => Ok(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still holds consistent counters.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The limits the spool enforces.
    pub fn limits(&self) -> SpoolLimits {
        self.inner.limits
    }

    /// Appends a message durably; returns its sequence number, or `Full` if it does not fit.
    pub fn push(&self, topic: &str, payload: &[u8]) -> Result<u64, SpoolError> {
        let seqs = self.push_batch(&[(topic, payload)])?;
        Ok(seqs[0])
    }

    /// Appends all of `messages` durably in one commit, or none of them if they do not all fit.
    /// Returns their sequence numbers.
    pub fn push_batch(&self, messages: &[(&str, &[u8])]) -> Result<Vec<u64>, SpoolError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let count = messages.len() as u64;
        let size: u64 = messages.iter().map(|(t, p)| message_size(t, p)).sum();
        let limits = self.inner.limits;
        let mut state = self.state();
        let fits = state.stats.depth + count <= limits.max_messages
            && state.stats.bytes + size <= limits.max_bytes;
        if !fits {
            state.stats.overflowed += count;
            if state.overflow_streak.is_multiple_of(OVERFLOW_LOG_EVERY) {
                tracing::warn!(
                    depth = state.stats.depth,
                    bytes = state.stats.bytes,
                    refused = count,
                    overflowed_total = state.stats.overflowed,
                    "spool full, new message refused"
                );
            }
            state.overflow_streak += 1;
            return Err(SpoolError::Full {
                depth: state.stats.depth,
                bytes: state.stats.bytes,
                size,
                max_messages: limits.max_messages,
                max_bytes: limits.max_bytes,
            });
        }
        let now = now_ms();
        let first = state.next_seq;
        let sealed = match &self.inner.cipher {
            Some(c) => messages
                .iter()
                .enumerate()
                .map(|(i, (topic, payload))| c.seal(&context(first + i as u64, topic), payload))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let tx = self.inner.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(MESSAGES).map_err(io)?;
            for (i, (topic, payload)) in messages.iter().enumerate() {
                let stored = sealed.get(i).map_or(*payload, Vec::as_slice);
                table
                    .insert(first + i as u64, (now, *topic, stored))
                    .map_err(io)?;
            }
            let mut meta = tx.open_table(META).map_err(io)?;
            meta.insert(NEXT_SEQ, first + count).map_err(io)?;
        }
        tx.commit().map_err(io)?;
        state.next_seq = first + count;
        state.stats.depth += count;
        state.stats.bytes += size;
        state.stats.pushed += count;
        state.overflow_streak = 0;
        state.lazy_acks = 0;
        Ok((first..first + count).collect())
    }

    /// Up to `max` of the oldest messages, oldest first, without removing them. Expired
    /// messages at the head are removed (and counted) first.
    pub fn peek(&self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        self.peek_at(max, now_ms())
    }

    pub(crate) fn peek_at(&self, max: usize, now_ms: u64) -> Result<Vec<Spooled>, SpoolError> {
        self.expire_at(now_ms)?;
        let tx = self.inner.db.begin_read().map_err(io)?;
        let table = tx.open_table(MESSAGES).map_err(io)?;
        let mut out = Vec::with_capacity(max.min(1024));
        for entry in table.iter().map_err(io)?.take(max) {
            out.push(self.spooled(entry.map_err(io)?)?);
        }
        Ok(out)
    }

    /// Up to `max` messages with a sequence number above `after`, oldest first, without removing
    /// or expiring any (for a sink that already has the ones up to `after` in flight).
    pub fn peek_after(&self, after: u64, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let tx = self.inner.db.begin_read().map_err(io)?;
        let table = tx.open_table(MESSAGES).map_err(io)?;
        let mut out = Vec::with_capacity(max.min(1024));
        for entry in table.range(from..).map_err(io)?.take(max) {
            out.push(self.spooled(entry.map_err(io)?)?);
        }
        Ok(out)
    }

    /// Removes the messages at the head that outlived the TTL; returns how many.
    pub fn expire(&self) -> Result<u64, SpoolError> {
        self.expire_at(now_ms())
    }

    pub(crate) fn expire_at(&self, now_ms: u64) -> Result<u64, SpoolError> {
        let ttl = self.inner.limits.ttl.as_millis() as u64;
        if ttl == 0 {
            return Ok(0);
        }
        let deadline = now_ms.saturating_sub(ttl);
        // Find the last expired message of the head run with a cheap read first; most calls
        // find none and never open a write transaction.
        let last_expired = {
            let tx = self.inner.db.begin_read().map_err(io)?;
            let table = tx.open_table(MESSAGES).map_err(io)?;
            let mut last = None;
            for entry in table.iter().map_err(io)? {
                let (seq, value) = entry.map_err(io)?;
                if value.value().0 > deadline {
                    break;
                }
                last = Some(seq.value());
            }
            last
        };
        let Some(last) = last_expired else {
            return Ok(0);
        };
        let mut state = self.state();
        let (count, bytes) = self.remove_through(last, true)?;
        state.stats.depth = state.stats.depth.saturating_sub(count);
        state.stats.bytes = state.stats.bytes.saturating_sub(bytes);
        state.stats.expired += count;
        if count > 0 {
            tracing::warn!(
                expired = count,
                ttl_ms = ttl,
                expired_total = state.stats.expired,
                "spooled messages outlived their TTL and were dropped"
            );
        }
        Ok(count)
    }

    /// Removes every message up to and including `through_seq` (delivered or rejected by the
    /// peer); returns how many were removed.
    pub fn ack(&self, through_seq: u64) -> Result<u64, SpoolError> {
        let mut state = self.state();
        // An ack lost in a crash only means its messages are delivered again (at-least-once),
        // so most acks skip the fsync; they become durable with the next durable commit (any
        // push, every ACK_SYNC_EVERY-th ack, or the ack that empties the spool).
        let durable = state.lazy_acks + 1 >= ACK_SYNC_EVERY || {
            let last = state.next_seq.saturating_sub(1);
            through_seq >= last
        };
        let (count, bytes) = self.remove_through(through_seq, durable)?;
        state.lazy_acks = if durable { 0 } else { state.lazy_acks + 1 };
        state.stats.depth = state.stats.depth.saturating_sub(count);
        state.stats.bytes = state.stats.bytes.saturating_sub(bytes);
        state.stats.delivered += count;
        Ok(count)
    }

    /// Deletes seqs `..=through` in one commit (with an fsync if `durable`); returns (messages,
    /// bytes) removed. The caller holds the state lock.
    fn remove_through(&self, through: u64, durable: bool) -> Result<(u64, u64), SpoolError> {
        let mut tx = self.inner.db.begin_write().map_err(io)?;
        if !durable {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| SpoolError::Io(e.to_string()))?;
        }
        let (mut count, mut bytes) = (0u64, 0u64);
        {
            let mut table = tx.open_table(MESSAGES).map_err(io)?;
            for entry in table.extract_from_if(..=through, |_, _| true).map_err(io)? {
                let (_, value) = entry.map_err(io)?;
                let (_, topic, payload) = value.value();
                count += 1;
                bytes += stored_size(self.inner.cipher.as_ref(), topic, payload);
            }
        }
        if count == 0 {
            tx.abort().map_err(io)?;
        } else {
            tx.commit().map_err(io)?;
        }
        Ok((count, bytes))
    }

    /// Counters and current depth.
    pub fn stats(&self) -> SpoolStats {
        self.state().stats
    }

    /// Messages waiting, read from the database (a check on `stats().depth`).
    pub fn len(&self) -> Result<u64, SpoolError> {
        let tx = self.inner.db.begin_read().map_err(io)?;
        let table = tx.open_table(MESSAGES).map_err(io)?;
        table.len().map_err(io)
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_messages: u64, max_bytes: u64) -> SpoolLimits {
        SpoolLimits {
            max_bytes,
            max_messages,
            ttl: Duration::ZERO,
        }
    }

    fn payloads(spooled: &[Spooled]) -> Vec<Vec<u8>> {
        spooled.iter().map(|m| m.payload.clone()).collect()
    }

    #[test]
    fn messages_come_out_in_push_order_until_acked() {
        let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
        let seqs: Vec<u64> = (0..5u8).map(|i| spool.push("t", &[i]).unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let head = spool.peek(3).unwrap();
        assert_eq!(payloads(&head), vec![vec![0], vec![1], vec![2]]);
        // peek does not remove
        assert_eq!(spool.peek(10).unwrap().len(), 5);
        assert_eq!(spool.ack(head[1].seq).unwrap(), 2);
        assert_eq!(
            payloads(&spool.peek(10).unwrap()),
            vec![vec![2], vec![3], vec![4]]
        );
        // acking an already acked seq removes nothing
        assert_eq!(spool.ack(head[1].seq).unwrap(), 0);
        let stats = spool.stats();
        assert_eq!((stats.depth, stats.pushed, stats.delivered), (3, 5, 2));
        assert_eq!(stats.bytes, 3 * 2);
    }

    #[test]
    fn peek_after_skips_what_is_already_in_flight() {
        let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
        let seqs: Vec<u64> = (0..5u8).map(|i| spool.push("t", &[i]).unwrap()).collect();
        let next = spool.peek_after(seqs[1], 2).unwrap();
        assert_eq!(payloads(&next), vec![vec![2], vec![3]]);
        assert!(spool.peek_after(seqs[4], 10).unwrap().is_empty());
        assert!(spool.peek_after(u64::MAX, 10).unwrap().is_empty());
        assert_eq!(spool.peek_after(0, 10).unwrap().len(), 5);
    }

    #[test]
    fn a_full_spool_refuses_the_new_message_and_counts_it() {
        let spool = Spool::in_memory(limits(2, 1 << 20)).unwrap();
        spool.push("t", b"a").unwrap();
        spool.push("t", b"b").unwrap();
        let err = spool.push("t", b"c").unwrap_err();
        assert!(matches!(err, SpoolError::Full { depth: 2, .. }), "{err}");
        assert_eq!(spool.stats().overflowed, 1);
        // the old messages are intact
        assert_eq!(
            payloads(&spool.peek(10).unwrap()),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        spool.ack(spool.peek(1).unwrap()[0].seq).unwrap();
        spool.push("t", b"c").unwrap();
    }

    #[test]
    fn the_byte_limit_counts_topics_and_payloads() {
        let spool = Spool::in_memory(limits(100, 10)).unwrap();
        spool.push("ab", &[0; 6]).unwrap(); // 8 bytes
        assert!(matches!(
            spool.push("ab", &[0; 1]),
            Err(SpoolError::Full {
                bytes: 8,
                size: 3,
                ..
            })
        ));
        spool.push("a", &[0; 1]).unwrap(); // exactly 10
        assert_eq!(spool.stats().bytes, 10);
        assert_eq!(spool.stats().overflowed, 1);
    }

    #[test]
    fn a_batch_that_does_not_fit_is_refused_whole() {
        let spool = Spool::in_memory(limits(3, 1 << 20)).unwrap();
        spool.push("t", b"0").unwrap();
        let batch: Vec<(&str, &[u8])> = vec![("t", b"1"), ("t", b"2"), ("t", b"3")];
        assert!(spool.push_batch(&batch).is_err());
        assert_eq!(spool.stats().overflowed, 3);
        assert_eq!(spool.len().unwrap(), 1);
        let seqs = spool.push_batch(&batch[..2]).unwrap();
        assert_eq!(seqs.len(), 2);
        assert_eq!(spool.stats().depth, 3);
    }

    #[test]
    fn undelivered_messages_and_counters_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        let last_seq = {
            let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
            for i in 0..10u8 {
                spool.push("sensors/x", &[i; 3]).unwrap();
            }
            let head = spool.peek(4).unwrap();
            spool.ack(head[3].seq).unwrap();
            spool.peek(100).unwrap().last().unwrap().seq
        };
        let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
        let stats = spool.stats();
        assert_eq!(stats.depth, 6);
        assert_eq!(stats.bytes, 6 * (9 + 3));
        let left = spool.peek(100).unwrap();
        assert_eq!(
            payloads(&left),
            (4..10u8).map(|i| vec![i; 3]).collect::<Vec<_>>()
        );
        // sequence numbers keep increasing across a reopen, even once the spool was emptied
        spool.ack(last_seq).unwrap();
        drop(spool);
        let spool = Spool::open(&path, SpoolLimits::default()).unwrap();
        assert_eq!(spool.stats().depth, 0);
        assert!(spool.push("t", b"").unwrap() > last_seq);
    }

    #[test]
    fn messages_older_than_the_ttl_are_expired_and_counted() {
        let spool = Spool::in_memory(SpoolLimits {
            ttl: Duration::from_secs(10),
            ..SpoolLimits::default()
        })
        .unwrap();
        spool.push("t", b"old1").unwrap();
        spool.push("t", b"old2").unwrap();
        // The two pushes may land in different milliseconds on a busy machine: the TTL is
        // measured from each message's own enqueue time.
        let queued = spool.peek(2).unwrap();
        let first_at = queued[0].enqueued_at_ms;
        let last_at = queued[1].enqueued_at_ms;
        // nothing expires before the TTL
        assert_eq!(spool.peek_at(10, first_at + 9_000).unwrap().len(), 2);
        let later = spool.peek_at(10, last_at + 10_001).unwrap();
        assert!(later.is_empty());
        let stats = spool.stats();
        assert_eq!((stats.depth, stats.bytes, stats.expired), (0, 0, 2));
        assert_eq!(stats.delivered, 0);
    }

    #[test]
    fn a_zero_ttl_keeps_messages_forever() {
        let spool = Spool::in_memory(limits(10, 1 << 20)).unwrap();
        spool.push("t", b"x").unwrap();
        assert_eq!(spool.expire_at(u64::MAX).unwrap(), 0);
        assert_eq!(spool.len().unwrap(), 1);
    }

    #[test]
    fn stats_serialize_for_the_status_json() {
        let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
        spool.push("t", b"x").unwrap();
        let json = serde_json::to_value(spool.stats()).unwrap();
        assert_eq!(json["depth"], 1);
        assert_eq!(json["pushed"], 1);
        assert_eq!(json["overflowed"], 0);
    }

    /// Prints durable push throughput (`cargo test -p outpost-services spool_throughput --
    /// --nocapture`). Single pushes pay one fsync each; batches pay one per batch.
    #[test]
    fn spool_throughput_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.redb"), SpoolLimits::default()).unwrap();
        let payload = [7u8; 100];
        let singles = 200;
        let t = std::time::Instant::now();
        for _ in 0..singles {
            spool.push("bench/topic", &payload).unwrap();
        }
        let single_rate = singles as f64 / t.elapsed().as_secs_f64();
        let batch: Vec<(&str, &[u8])> = (0..100).map(|_| ("bench/topic", &payload[..])).collect();
        let batches = 50;
        let t = std::time::Instant::now();
        for _ in 0..batches {
            spool.push_batch(&batch).unwrap();
        }
        let batch_rate = (batches * batch.len()) as f64 / t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut drained = 0;
        loop {
            let head = spool.peek(100).unwrap();
            let Some(last) = head.last() else { break };
            drained += spool.ack(last.seq).unwrap();
        }
        let drain_rate = drained as f64 / t.elapsed().as_secs_f64();
        println!(
            "spool (100-byte payloads, durable commits): push {single_rate:.0} msg/s, \
             push_batch(100) {batch_rate:.0} msg/s, peek+ack(100) {drain_rate:.0} msg/s"
        );
        assert_eq!(drained, (singles + batches * batch.len()) as u64);
    }
}
