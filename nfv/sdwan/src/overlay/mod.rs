//! Encrypted overlay between two sites: WireGuard (the `boringtun` implementation) over UDP.
//!
//! An [`OverlayPeer`] owns one WireGuard tunnel ([`boringtun::noise::Tunn`]) bound to one
//! uplink: one UDP socket and one remote endpoint. **One tunnel per uplink** is deliberate:
//! each path has its own handshake, session, timers and replay window, so losing an uplink does
//! not stall traffic on the others while a shared session re-handshakes, and reordering between
//! paths of very different latency cannot push packets out of a shared replay window. A site
//! with two uplinks therefore runs two peers (with the same static keys) and the
//! [`crate::policy`] choice says which peer a packet is handed to.
//!
//! [`OverlayPeer::send`] encrypts an inner IP packet into a datagram. A background task
//! receives datagrams, decrypts them, answers handshakes, runs WireGuard's timers and hands
//! inner packets to the receiver returned by [`OverlayPeer::start`]. Every datagram that does
//! not decrypt to something useful is dropped and counted ([`OverlayCounters`]): replays
//! separately from other invalid input (truncated, foreign, wrong key, bad MAC or tag).
//!
//! Keys are x25519 static keys; see [`generate_secret`], [`encode_key`] and the `decode_*`
//! helpers. [`mtu`] computes the inner MTU and clamps TCP MSS to it.

pub mod mtu;
pub mod port;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
pub use boringtun::x25519::{PublicKey, StaticSecret};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// WireGuard's per-datagram overhead: type(4) + receiver index(4) + counter(8) + tag(16).
pub const WIREGUARD_OVERHEAD: usize = 32;
/// Largest datagram the peer handles (also the size of its scratch buffers).
pub const MAX_DATAGRAM: usize = 65_535;

/// Errors from the overlay.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Socket trouble.
    #[error("overlay socket: {0}")]
    Io(#[from] std::io::Error),
    /// A key string is not base64 of 32 bytes.
    #[error("invalid key encoding")]
    BadKey,
    /// boringtun refused the parameters.
    #[error("tunnel setup failed: {0}")]
    Setup(&'static str),
    /// The inner packet is too big to encapsulate.
    #[error("inner packet of {0} bytes is too large")]
    TooLarge(usize),
    /// WireGuard refused to encapsulate.
    #[error("encapsulation failed: {0:?}")]
    Encapsulate(WireGuardError),
    /// The egress shaper's settings were refused.
    #[error("egress shaping: {0}")]
    Qos(String),
}

/// A fresh random x25519 static secret.
pub fn generate_secret() -> StaticSecret {
    StaticSecret::random_from_rng(rand_core::OsRng)
}

/// The public key of a secret.
pub fn public_key(secret: &StaticSecret) -> PublicKey {
    PublicKey::from(secret)
}

/// Standard base64 of a 32-byte key (the `wg` tool's format).
pub fn encode_key(key: &[u8; 32]) -> String {
    BASE64.encode(key)
}

fn decode_32(s: &str) -> Result<[u8; 32], OverlayError> {
    let bytes = BASE64.decode(s.trim()).map_err(|_| OverlayError::BadKey)?;
    bytes.try_into().map_err(|_| OverlayError::BadKey)
}

/// Decodes a base64 secret key.
pub fn decode_secret(s: &str) -> Result<StaticSecret, OverlayError> {
    decode_32(s).map(StaticSecret::from)
}

/// Decodes a base64 public key.
pub fn decode_public(s: &str) -> Result<PublicKey, OverlayError> {
    decode_32(s).map(PublicKey::from)
}

/// Settings of one overlay peer.
pub struct OverlayConfig {
    /// This site's static secret.
    pub secret: StaticSecret,
    /// The other site's static public key.
    pub peer_public: PublicKey,
    /// Optional pre-shared key.
    pub preshared_key: Option<[u8; 32]>,
    /// Persistent keepalive, seconds.
    pub keepalive_secs: Option<u16>,
    /// Local session index (distinct per tunnel on a host; only the low 24 bits are used).
    pub index: u32,
    /// How often WireGuard's timers run (default 100 ms).
    pub timer_interval: Duration,
    /// Capacity of the inner-packet channel; packets beyond it are dropped and counted.
    pub rx_queue: usize,
}

impl OverlayConfig {
    /// The WireGuard state machine these settings describe.
    pub(crate) fn clone_tunnel(&self) -> Result<Tunn, OverlayError> {
        Tunn::new(
            self.secret.clone(),
            self.peer_public,
            self.preshared_key,
            self.keepalive_secs,
            self.index & 0x00ff_ffff,
            None,
        )
        .map_err(OverlayError::Setup)
    }

    /// Defaults around a key pair.
    pub fn new(secret: StaticSecret, peer_public: PublicKey) -> Self {
        Self {
            secret,
            peer_public,
            preshared_key: None,
            keepalive_secs: None,
            index: 1,
            timer_interval: Duration::from_millis(100),
            rx_queue: 1024,
        }
    }
}

/// Live counters of a tunnel ([`OverlayPeer`] or [`port::OverlayPort`]), shared with readers
/// while the tunnel's task or the data path updates them.
#[derive(Debug, Default)]
pub struct SharedOverlayCounters {
    tx_packets: AtomicU64,
    tx_datagrams: AtomicU64,
    rx_ok: AtomicU64,
    rx_control: AtomicU64,
    rx_dropped_invalid: AtomicU64,
    rx_dropped_replay: AtomicU64,
    rx_dropped_queue_full: AtomicU64,
}

impl SharedOverlayCounters {
    /// A point-in-time copy.
    pub fn snapshot(&self) -> OverlayCounters {
        OverlayCounters {
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_datagrams: self.tx_datagrams.load(Ordering::Relaxed),
            rx_ok: self.rx_ok.load(Ordering::Relaxed),
            rx_control: self.rx_control.load(Ordering::Relaxed),
            rx_dropped_invalid: self.rx_dropped_invalid.load(Ordering::Relaxed),
            rx_dropped_replay: self.rx_dropped_replay.load(Ordering::Relaxed),
            rx_dropped_queue_full: self.rx_dropped_queue_full.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of a peer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OverlayCounters {
    /// Inner packets handed to [`OverlayPeer::send`] and accepted.
    pub tx_packets: u64,
    /// Datagrams written to the socket (data, handshakes, keepalives).
    pub tx_datagrams: u64,
    /// Inner packets decrypted and delivered.
    pub rx_ok: u64,
    /// Valid control datagrams (handshake, cookie, keepalive).
    pub rx_control: u64,
    /// Dropped: truncated, malformed, foreign, wrong key, bad MAC or AEAD tag, no session.
    pub rx_dropped_invalid: u64,
    /// Dropped as replays (duplicate or too-old counter, replayed handshake).
    pub rx_dropped_replay: u64,
    /// Dropped because the inner-packet receiver was full or gone.
    pub rx_dropped_queue_full: u64,
}

struct Shared {
    tunn: Mutex<Tunn>,
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    counters: SharedOverlayCounters,
}

/// One WireGuard tunnel over one uplink; see the module documentation.
pub struct OverlayPeer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// Encrypted datagrams ready for the wire, produced while the tunnel lock is held.
type Outgoing = Vec<Vec<u8>>;

impl OverlayPeer {
    /// Starts a peer that talks to `remote` over `socket`; returns it and the receiver of
    /// decrypted inner packets.
    pub fn start(
        config: OverlayConfig,
        socket: Arc<UdpSocket>,
        remote: SocketAddr,
    ) -> Result<(Self, mpsc::Receiver<Vec<u8>>), OverlayError> {
        let tunn = config.clone_tunnel()?;
        let shared = Arc::new(Shared {
            tunn: Mutex::new(tunn),
            socket,
            remote,
            counters: SharedOverlayCounters::default(),
        });
        let (tx, rx) = mpsc::channel(config.rx_queue.max(1));
        let task = tokio::spawn(run_peer(
            Arc::clone(&shared),
            tx,
            config.timer_interval.max(Duration::from_millis(10)),
        ));
        Ok((Self { shared, task }, rx))
    }

    /// Encrypts an inner IP packet and sends it. Before the first handshake completes the packet
    /// is queued inside the tunnel and a handshake is started; it goes out once keys exist.
    pub async fn send(&self, inner: &[u8]) -> Result<(), OverlayError> {
        if inner.len() + WIREGUARD_OVERHEAD > MAX_DATAGRAM {
            return Err(OverlayError::TooLarge(inner.len()));
        }
        let out = {
            let mut buf = vec![0u8; (inner.len() + WIREGUARD_OVERHEAD).max(148)];
            let mut tunn = self.shared.tunn.lock();
            match tunn.encapsulate(inner, &mut buf) {
                TunnResult::WriteToNetwork(d) => vec![d.to_vec()],
                TunnResult::Done => Vec::new(),
                TunnResult::Err(e) => return Err(OverlayError::Encapsulate(e)),
                // Encapsulation never yields tunnel output.
                TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => Vec::new(),
            }
        };
        self.shared
            .counters
            .tx_packets
            .fetch_add(1, Ordering::Relaxed);
        flush(&self.shared, out).await;
        Ok(())
    }

    /// Starts a handshake now instead of waiting for the first packet.
    pub async fn connect(&self) {
        let out = {
            let mut buf = vec![0u8; 256];
            let mut tunn = self.shared.tunn.lock();
            match tunn.format_handshake_initiation(&mut buf, false) {
                TunnResult::WriteToNetwork(d) => vec![d.to_vec()],
                _ => Vec::new(),
            }
        };
        flush(&self.shared, out).await;
    }

    /// Whether a session with the peer is established (a handshake has completed).
    pub fn is_established(&self) -> bool {
        self.shared
            .tunn
            .lock()
            .time_since_last_handshake()
            .is_some()
    }

    /// Counters so far.
    pub fn counters(&self) -> OverlayCounters {
        self.shared.counters.snapshot()
    }

    /// The remote endpoint datagrams are sent to.
    pub fn remote(&self) -> SocketAddr {
        self.shared.remote
    }
}

impl Drop for OverlayPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn flush(shared: &Shared, out: Outgoing) {
    for d in out {
        match shared.socket.send_to(&d, shared.remote).await {
            Ok(_) => {
                shared.counters.tx_datagrams.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::debug!(%error, remote = %shared.remote, "overlay send failed"),
        }
    }
}

pub(crate) fn is_replay(e: &WireGuardError) -> bool {
    matches!(
        e,
        WireGuardError::DuplicateCounter
            | WireGuardError::InvalidCounter
            | WireGuardError::WrongTai64nTimestamp
    )
}

/// What one received datagram produced.
struct Decapsulated {
    outgoing: Outgoing,
    inner: Option<Vec<u8>>,
}

fn decapsulate(shared: &Shared, from: SocketAddr, datagram: &[u8], buf: &mut [u8]) -> Decapsulated {
    let mut outgoing = Vec::new();
    let mut inner = None;
    let c = &shared.counters;
    if datagram.is_empty() {
        // boringtun treats an empty input as "flush queued packets"; from the wire it is junk.
        c.rx_dropped_invalid.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, "empty overlay datagram dropped");
        return Decapsulated { outgoing, inner };
    }
    let mut tunn = shared.tunn.lock();
    match tunn.decapsulate(Some(from.ip()), datagram, buf) {
        TunnResult::WriteToNetwork(d) => {
            c.rx_control.fetch_add(1, Ordering::Relaxed);
            outgoing.push(d.to_vec());
            // Drain packets queued while the handshake was in flight.
            while let TunnResult::WriteToNetwork(d) = tunn.decapsulate(None, &[], buf) {
                outgoing.push(d.to_vec());
            }
        }
        TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
            c.rx_ok.fetch_add(1, Ordering::Relaxed);
            inner = Some(p.to_vec());
        }
        TunnResult::Done => {
            // Keepalive, or a handshake response with nothing to answer.
            c.rx_control.fetch_add(1, Ordering::Relaxed);
            while let TunnResult::WriteToNetwork(d) = tunn.decapsulate(None, &[], buf) {
                outgoing.push(d.to_vec());
            }
        }
        TunnResult::Err(e) => {
            if is_replay(&e) {
                c.rx_dropped_replay.fetch_add(1, Ordering::Relaxed);
            } else {
                c.rx_dropped_invalid.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(error = ?e, %from, len = datagram.len(), "overlay datagram dropped");
        }
    }
    Decapsulated { outgoing, inner }
}

async fn run_peer(shared: Arc<Shared>, inner_tx: mpsc::Sender<Vec<u8>>, tick: Duration) {
    let mut rx_buf = vec![0u8; MAX_DATAGRAM];
    let mut work_buf = vec![0u8; MAX_DATAGRAM];
    let mut timers = tokio::time::interval(tick);
    timers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = shared.socket.recv_from(&mut rx_buf) => {
                let (len, from) = match received {
                    Ok(v) => v,
                    Err(error) => {
                        tracing::debug!(%error, "overlay receive error");
                        continue;
                    }
                };
                let Some(datagram) = rx_buf.get(..len) else { continue };
                // Defence in depth: a panic inside the WireGuard library on hostile input must
                // cost one datagram, not the whole tunnel task.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    decapsulate(&shared, from, datagram, &mut work_buf)
                }));
                let result = match outcome {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::error!(%from, len, "overlay decapsulation panicked; datagram dropped");
                        shared.counters.rx_dropped_invalid.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                flush(&shared, result.outgoing).await;
                if let Some(inner) = result.inner
                    && inner_tx.try_send(inner).is_err()
                {
                    shared.counters.rx_dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = timers.tick() => {
                let out = {
                    let mut tunn = shared.tunn.lock();
                    match tunn.update_timers(&mut work_buf) {
                        TunnResult::WriteToNetwork(d) => vec![d.to_vec()],
                        TunnResult::Err(WireGuardError::ConnectionExpired) => {
                            tracing::debug!("overlay session expired");
                            Vec::new()
                        }
                        _ => Vec::new(),
                    }
                };
                flush(&shared, out).await;
            }
        }
    }
}
