//! Active link probes.
//!
//! A [`Prober`] runs one task per uplink: every `interval` it sends a small UDP probe from a
//! socket bound to the uplink's local address to a remote [`Reflector`], which echoes it back.
//! Replies give the round-trip time; probes with no reply before their timeout are lost. Over a
//! sliding window of the last `window` probes the prober keeps the mean RTT, the RFC 3550 style
//! smoothed jitter and the loss percentage, and it runs a small state machine: the link goes
//! [`LinkState::Down`] after `down_after` consecutive lost probes (after the first loss, probes go out every
//! `suspect_interval` to confirm it quickly) and comes back
//! [`LinkState::Up`] only after `up_after` consecutive good replies (hold-down).
//!
//! The latest [`LinkQuality`] is published on a [`tokio::sync::watch`] channel (reading it is a
//! cheap borrow) and every state change is also broadcast as a [`LinkEvent`] stamped with the
//! [`Instant`] it was decided, so a failover can be timed from the cut to the event.
//!
//! # Wire format
//!
//! Every probe is exactly [`PROBE_LEN`] bytes, all integers big-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `OSWP` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | type: 1 request, 2 reply |
//! | 6 | 2 | reserved, must be zero |
//! | 8 | 4 | link id |
//! | 12 | 8 | sequence number |
//! | 20 | 8 | sender timestamp, nanoseconds on the prober's monotonic clock |
//!
//! Anything else (short, long, wrong magic, version, type or reserved bits) is rejected by
//! [`ProbePacket::decode`] and counted, never echoed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;

/// Identifies an uplink; carried in every probe and used by [`crate::policy`].
pub type LinkId = u32;

/// Probe magic, the first four bytes of every probe.
pub const PROBE_MAGIC: [u8; 4] = *b"OSWP";
/// Probe wire-format version.
pub const PROBE_VERSION: u8 = 1;
/// Exact length of a probe datagram.
pub const PROBE_LEN: usize = 28;

/// Errors from the probe machinery.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Binding or using the probe socket failed.
    #[error("probe socket: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration is unusable.
    #[error("invalid probe configuration: {0}")]
    Config(&'static str),
}

/// Why a datagram is not a valid probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than [`PROBE_LEN`].
    #[error("truncated probe ({0} bytes)")]
    Truncated(usize),
    /// Longer than [`PROBE_LEN`].
    #[error("oversized probe ({0} bytes)")]
    Oversized(usize),
    /// Does not start with [`PROBE_MAGIC`].
    #[error("foreign datagram (bad magic)")]
    BadMagic,
    /// Unknown version.
    #[error("unsupported probe version {0}")]
    BadVersion(u8),
    /// Unknown type.
    #[error("unknown probe type {0}")]
    BadType(u8),
    /// Reserved bits set.
    #[error("reserved field not zero")]
    BadReserved,
}

/// Request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeKind {
    /// Sent by a prober.
    Request,
    /// Echoed by a reflector.
    Reply,
}

/// One decoded probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePacket {
    /// Request or reply.
    pub kind: ProbeKind,
    /// Uplink this probe measures.
    pub link_id: LinkId,
    /// Sequence number, per prober, starting at 0.
    pub seq: u64,
    /// Prober's send timestamp (ns on its monotonic clock), echoed unchanged.
    pub sent_ns: u64,
}

impl ProbePacket {
    /// Encodes the probe into its fixed-size wire form.
    pub fn encode(&self) -> [u8; PROBE_LEN] {
        let mut out = [0u8; PROBE_LEN];
        out[0..4].copy_from_slice(&PROBE_MAGIC);
        out[4] = PROBE_VERSION;
        out[5] = match self.kind {
            ProbeKind::Request => 1,
            ProbeKind::Reply => 2,
        };
        // out[6..8] reserved, zero
        out[8..12].copy_from_slice(&self.link_id.to_be_bytes());
        out[12..20].copy_from_slice(&self.seq.to_be_bytes());
        out[20..28].copy_from_slice(&self.sent_ns.to_be_bytes());
        out
    }

    /// Decodes and validates a datagram.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() < PROBE_LEN {
            return Err(WireError::Truncated(buf.len()));
        }
        if buf.len() > PROBE_LEN {
            return Err(WireError::Oversized(buf.len()));
        }
        let field = |range: std::ops::Range<usize>| -> &[u8] { &buf[range] };
        if field(0..4) != PROBE_MAGIC {
            return Err(WireError::BadMagic);
        }
        if buf[4] != PROBE_VERSION {
            return Err(WireError::BadVersion(buf[4]));
        }
        let kind = match buf[5] {
            1 => ProbeKind::Request,
            2 => ProbeKind::Reply,
            other => return Err(WireError::BadType(other)),
        };
        if buf[6] != 0 || buf[7] != 0 {
            return Err(WireError::BadReserved);
        }
        let mut link = [0u8; 4];
        link.copy_from_slice(field(8..12));
        let mut seq = [0u8; 8];
        seq.copy_from_slice(field(12..20));
        let mut ts = [0u8; 8];
        ts.copy_from_slice(field(20..28));
        Ok(Self {
            kind,
            link_id: u32::from_be_bytes(link),
            seq: u64::from_be_bytes(seq),
            sent_ns: u64::from_be_bytes(ts),
        })
    }
}

/// Counters of a running [`Reflector`].
#[derive(Debug, Default)]
pub struct ReflectorStats {
    /// Requests echoed.
    pub reflected: AtomicU64,
    /// Datagrams rejected (not a valid probe request).
    pub rejected: AtomicU64,
}

/// Echoes probe requests back to their sender.
pub struct Reflector {
    local_addr: SocketAddr,
    stats: Arc<ReflectorStats>,
    task: JoinHandle<()>,
}

impl Reflector {
    /// Binds a UDP socket on `local` and starts echoing.
    pub async fn bind(local: SocketAddr) -> Result<Self, ProbeError> {
        let socket = UdpSocket::bind(local).await?;
        Self::spawn(socket)
    }

    /// Starts echoing on an already-bound socket.
    pub fn spawn(socket: UdpSocket) -> Result<Self, ProbeError> {
        let local_addr = socket.local_addr()?;
        let stats = Arc::new(ReflectorStats::default());
        let task_stats = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (len, from) = match socket.recv_from(&mut buf).await {
                    Ok(v) => v,
                    Err(error) => {
                        tracing::debug!(%error, "reflector receive error");
                        continue;
                    }
                };
                match ProbePacket::decode(&buf[..len]) {
                    Ok(p) if p.kind == ProbeKind::Request => {
                        let reply = ProbePacket {
                            kind: ProbeKind::Reply,
                            ..p
                        };
                        if let Err(error) = socket.send_to(&reply.encode(), from).await {
                            tracing::debug!(%error, %from, "reflector send error");
                        } else {
                            task_stats.reflected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {
                        task_stats.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::trace!(%error, %from, "reflector rejected datagram");
                        task_stats.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self {
            local_addr,
            stats,
            task,
        })
    }

    /// Address the reflector listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Live counters.
    pub fn stats(&self) -> &ReflectorStats {
        &self.stats
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Up or down, as decided by the prober's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinkState {
    /// Passing probes (after the hold-down).
    Up,
    /// Lost `down_after` probes in a row, or not yet proven up.
    Down,
}

/// Snapshot of one uplink's measured quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkQuality {
    /// Uplink measured.
    pub link_id: LinkId,
    /// Mean RTT over the replies in the window, in milliseconds (0 when none).
    pub rtt_ms: f64,
    /// RTT of the latest reply, in milliseconds.
    pub rtt_latest_ms: f64,
    /// RFC 3550 style smoothed RTT variation, in milliseconds.
    pub jitter_ms: f64,
    /// Lost probes as a percentage of the probes resolved in the window.
    pub loss_pct: f64,
    /// Current state.
    pub state: LinkState,
    /// Probes sent since start.
    pub probes_sent: u64,
    /// Valid, timely replies since start.
    pub replies: u64,
    /// Probes declared lost since start.
    pub lost: u64,
    /// Replies that came after their timeout, duplicates, and invalid or foreign datagrams.
    pub late_or_bad: u64,
}

impl LinkQuality {
    fn new(link_id: LinkId) -> Self {
        Self {
            link_id,
            rtt_ms: 0.0,
            rtt_latest_ms: 0.0,
            jitter_ms: 0.0,
            loss_pct: 0.0,
            state: LinkState::Down,
            probes_sent: 0,
            replies: 0,
            lost: 0,
            late_or_bad: 0,
        }
    }
}

/// A state change of one uplink.
#[derive(Debug, Clone)]
pub struct LinkEvent {
    /// Uplink.
    pub link_id: LinkId,
    /// New state.
    pub state: LinkState,
    /// When the prober decided it (monotonic).
    pub at: Instant,
    /// When the prober decided it, milliseconds since the Unix epoch (for logs and APIs).
    pub unix_ms: u64,
    /// Quality at the moment of the change.
    pub quality: LinkQuality,
}

/// Prober settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Uplink id carried in the probes.
    pub link_id: LinkId,
    /// Time between probes (default 100 ms).
    pub interval: Duration,
    /// Number of resolved probes kept for RTT and loss (default 20).
    pub window: usize,
    /// Consecutive lost probes that take the link down (default 3).
    pub down_after: u32,
    /// Consecutive good replies that bring it back up (default 5).
    pub up_after: u32,
    /// A probe is lost after `max(min_timeout, rtt_timeout_factor × mean RTT)` …
    pub rtt_timeout_factor: u32,
    /// … but never sooner than this (default: the interval, 100 ms). Detection of a cut takes
    /// about `(down_after - 1) × interval + min_timeout` plus up to one interval of phase, so
    /// lowering this (say to 50 ms on links with low RTT) trades false losses for speed …
    pub min_timeout: Duration,
    /// … capped at this (default 1 s).
    pub max_timeout: Duration,
    /// Once a probe of an Up link is lost, the following probes go out this often (default
    /// 20 ms), with a timeout of `max(suspect_interval, rtt_timeout_factor × mean RTT)`, until a
    /// reply arrives or the link is declared Down. A cut is confirmed by the same
    /// `down_after` losses, just sooner: about `min_timeout + (down_after - 1) ×
    /// suspect_interval` plus the phase of the first lost probe, instead of `down_after`
    /// whole intervals.
    pub suspect_interval: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            link_id: 0,
            interval: Duration::from_millis(100),
            window: 20,
            down_after: 3,
            up_after: 5,
            rtt_timeout_factor: 3,
            min_timeout: Duration::from_millis(100),
            max_timeout: Duration::from_secs(1),
            suspect_interval: Duration::from_millis(20),
        }
    }
}

impl ProbeConfig {
    /// Default settings for `link_id`.
    pub fn for_link(link_id: LinkId) -> Self {
        Self {
            link_id,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), ProbeError> {
        if self.interval.is_zero() {
            return Err(ProbeError::Config("interval must be > 0"));
        }
        if self.window == 0 {
            return Err(ProbeError::Config("window must be > 0"));
        }
        if self.down_after == 0 || self.up_after == 0 {
            return Err(ProbeError::Config("down_after and up_after must be > 0"));
        }
        if self.min_timeout.is_zero() || self.max_timeout < self.min_timeout {
            return Err(ProbeError::Config(
                "min_timeout must be > 0 and <= max_timeout",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Sample {
    Reply(Duration),
    Lost,
}

/// Pure measurement and state machine of one link, fed by the prober task.
#[derive(Debug)]
struct Meter {
    config: ProbeConfig,
    window: VecDeque<Sample>,
    quality: LinkQuality,
    consecutive_lost: u32,
    consecutive_good: u32,
    last_rtt: Option<Duration>,
}

impl Meter {
    fn new(config: ProbeConfig) -> Self {
        let quality = LinkQuality::new(config.link_id);
        Self {
            window: VecDeque::with_capacity(config.window),
            config,
            quality,
            consecutive_lost: 0,
            consecutive_good: 0,
            last_rtt: None,
        }
    }

    /// An Up link with a probe just lost: probing fast to confirm or clear it.
    fn suspect(&self) -> bool {
        self.quality.state == LinkState::Up && self.consecutive_lost > 0
    }

    /// Time to the next probe.
    fn next_interval(&self) -> Duration {
        if self.suspect() {
            self.config.suspect_interval.min(self.config.interval)
        } else {
            self.config.interval
        }
    }

    fn timeout(&self) -> Duration {
        let factor = self.config.rtt_timeout_factor.max(1);
        let rtt_based = Duration::from_secs_f64(self.quality.rtt_ms / 1000.0) * factor;
        let floor = if self.suspect() {
            self.config.suspect_interval
        } else {
            self.config.min_timeout
        };
        rtt_based.max(floor).min(self.config.max_timeout)
    }

    fn push(&mut self, sample: Sample) {
        if self.window.len() == self.config.window {
            self.window.pop_front();
        }
        self.window.push_back(sample);
        let mut lost = 0usize;
        let mut sum = Duration::ZERO;
        let mut n = 0u32;
        for s in &self.window {
            match s {
                Sample::Lost => lost += 1,
                Sample::Reply(rtt) => {
                    sum += *rtt;
                    n += 1;
                }
            }
        }
        self.quality.loss_pct = lost as f64 * 100.0 / self.window.len() as f64;
        if n > 0 {
            self.quality.rtt_ms = ms(sum / n);
        }
    }

    /// Returns the new state if this reply changed it.
    fn on_reply(&mut self, rtt: Duration) -> Option<LinkState> {
        self.quality.replies += 1;
        self.quality.rtt_latest_ms = ms(rtt);
        if let Some(prev) = self.last_rtt {
            // RFC 3550 §6.4.1: J += (|D| - J) / 16, with D the change in transit time.
            let d = (ms(rtt) - ms(prev)).abs();
            self.quality.jitter_ms += (d - self.quality.jitter_ms) / 16.0;
        }
        self.last_rtt = Some(rtt);
        self.push(Sample::Reply(rtt));
        self.consecutive_lost = 0;
        self.consecutive_good = self.consecutive_good.saturating_add(1);
        if self.quality.state == LinkState::Down && self.consecutive_good >= self.config.up_after {
            self.quality.state = LinkState::Up;
            return Some(LinkState::Up);
        }
        None
    }

    fn on_lost(&mut self) -> Option<LinkState> {
        self.quality.lost += 1;
        self.push(Sample::Lost);
        self.consecutive_good = 0;
        self.consecutive_lost = self.consecutive_lost.saturating_add(1);
        if self.quality.state == LinkState::Up && self.consecutive_lost >= self.config.down_after {
            self.quality.state = LinkState::Down;
            return Some(LinkState::Down);
        }
        None
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Debug)]
struct Outstanding {
    seq: u64,
    sent_ns: u64,
    sent_at: Instant,
    deadline: Instant,
}

/// Starts probers; see the module documentation.
pub struct Prober;

impl Prober {
    /// Binds a socket on `local` (the uplink's address) and probes `reflector` from it.
    pub async fn bind(
        local: SocketAddr,
        reflector: SocketAddr,
        config: ProbeConfig,
    ) -> Result<ProberHandle, ProbeError> {
        let socket = UdpSocket::bind(local).await?;
        Self::spawn(socket, reflector, config)
    }

    /// Probes `reflector` from an already-bound socket.
    pub fn spawn(
        socket: UdpSocket,
        reflector: SocketAddr,
        config: ProbeConfig,
    ) -> Result<ProberHandle, ProbeError> {
        config.validate()?;
        let local_addr = socket.local_addr()?;
        let (quality_tx, quality_rx) = watch::channel(LinkQuality::new(config.link_id));
        let (events_tx, _) = broadcast::channel(64);
        let task_events = events_tx.clone();
        let task = tokio::spawn(run_prober(
            socket,
            reflector,
            Meter::new(config),
            quality_tx,
            task_events,
        ));
        Ok(ProberHandle {
            local_addr,
            quality: quality_rx,
            events: events_tx,
            task,
        })
    }
}

/// A running prober; dropping it stops the probes.
pub struct ProberHandle {
    local_addr: SocketAddr,
    quality: watch::Receiver<LinkQuality>,
    events: broadcast::Sender<LinkEvent>,
    task: JoinHandle<()>,
}

impl ProberHandle {
    /// Local address the probes leave from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Latest quality snapshot (a cheap clone of the watched value).
    pub fn quality(&self) -> LinkQuality {
        self.quality.borrow().clone()
    }

    /// A receiver that sees every quality update.
    pub fn watch_quality(&self) -> watch::Receiver<LinkQuality> {
        self.quality.clone()
    }

    /// A receiver of state-change events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LinkEvent> {
        self.events.subscribe()
    }
}

impl Drop for ProberHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_prober(
    socket: UdpSocket,
    reflector: SocketAddr,
    mut meter: Meter,
    quality_tx: watch::Sender<LinkQuality>,
    events: broadcast::Sender<LinkEvent>,
) {
    let epoch = Instant::now();
    let link_id = meter.config.link_id;
    let mut next_send = Instant::now();
    let mut outstanding: VecDeque<Outstanding> = VecDeque::new();
    let mut next_seq: u64 = 0;
    let mut buf = [0u8; 2048];
    // Far-future placeholder deadline used when nothing is outstanding.
    let idle = Duration::from_secs(3600);

    loop {
        // Suspect probes time out sooner than the normal ones before them: take the earliest.
        let next_deadline = outstanding
            .iter()
            .map(|o| o.deadline)
            .min()
            .unwrap_or_else(|| Instant::now() + idle);
        let mut changed = None;
        tokio::select! {
            _ = sleep_until(next_send.into()) => {
                let now = Instant::now();
                next_send = now + meter.next_interval();
                let sent_ns = u64::try_from(now.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
                let packet = ProbePacket { kind: ProbeKind::Request, link_id, seq: next_seq, sent_ns };
                if let Err(error) = socket.send_to(&packet.encode(), reflector).await {
                    // Count it as sent: it will time out and be lost, which is the truth.
                    tracing::debug!(link_id, %error, "probe send failed");
                }
                meter.quality.probes_sent += 1;
                outstanding.push_back(Outstanding {
                    seq: next_seq,
                    sent_ns,
                    sent_at: now,
                    deadline: now + meter.timeout(),
                });
                next_seq = next_seq.wrapping_add(1);
                quality_tx.send_replace(meter.quality.clone());
            }
            _ = sleep_until(next_deadline.into()) => {
                let now = Instant::now();
                let was_suspect = meter.suspect();
                while let Some(pos) = outstanding.iter().position(|o| o.deadline <= now) {
                    outstanding.remove(pos);
                    if let Some(state) = meter.on_lost() {
                        changed = Some(state);
                    }
                }
                if !was_suspect && meter.suspect() {
                    // The first loss: probe again now rather than at the next interval.
                    next_send = next_send.min(now + meter.next_interval());
                }
            }
            received = socket.recv_from(&mut buf) => {
                let now = Instant::now();
                match received {
                    Ok((len, from)) => {
                        let valid = (from == reflector)
                            .then(|| ProbePacket::decode(&buf[..len]).ok())
                            .flatten()
                            .filter(|p| p.kind == ProbeKind::Reply && p.link_id == link_id);
                        let matched = valid.and_then(|p| {
                            let pos = outstanding.iter().position(|o| o.seq == p.seq && o.sent_ns == p.sent_ns)?;
                            outstanding.remove(pos)
                        });
                        match matched {
                            Some(o) => {
                                let rtt = now.duration_since(o.sent_at);
                                if let Some(state) = meter.on_reply(rtt) {
                                    changed = Some(state);
                                }
                            }
                            None => {
                                tracing::trace!(link_id, %from, len, "late, duplicate or invalid probe reply");
                                meter.quality.late_or_bad += 1;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::debug!(link_id, %error, "probe receive error");
                    }
                }
            }
        }
        quality_tx.send_replace(meter.quality.clone());
        if let Some(state) = changed {
            let quality = meter.quality.clone();
            tracing::info!(
                link_id,
                ?state,
                rtt_ms = quality.rtt_ms,
                loss_pct = quality.loss_pct,
                "link state changed"
            );
            // No subscribers is fine.
            let _ = events.send(LinkEvent {
                link_id,
                state,
                at: Instant::now(),
                unix_ms: unix_ms(),
                quality,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_probe_round_trips_through_the_wire_format() {
        let p = ProbePacket {
            kind: ProbeKind::Reply,
            link_id: 7,
            seq: u64::MAX - 1,
            sent_ns: 123_456_789,
        };
        assert_eq!(ProbePacket::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn truncated_foreign_and_malformed_probes_are_rejected() {
        let good = ProbePacket {
            kind: ProbeKind::Request,
            link_id: 1,
            seq: 2,
            sent_ns: 3,
        }
        .encode();
        assert_eq!(
            ProbePacket::decode(&good[..10]),
            Err(WireError::Truncated(10))
        );
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(ProbePacket::decode(&long), Err(WireError::Oversized(29)));
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::BadMagic));
        let mut bad = good;
        bad[4] = 9;
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::BadVersion(9)));
        let mut bad = good;
        bad[5] = 3;
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::BadType(3)));
        let mut bad = good;
        bad[7] = 1;
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::BadReserved));
    }

    #[test]
    fn a_lost_probe_on_an_up_link_switches_to_fast_confirmation_probes_until_a_reply() {
        let mut m = Meter::new(ProbeConfig::default());
        for _ in 0..5 {
            m.on_reply(Duration::from_millis(2));
        }
        assert_eq!(m.next_interval(), Duration::from_millis(100));
        assert_eq!(m.timeout(), Duration::from_millis(100));
        assert_eq!(m.on_lost(), None);
        assert_eq!(m.next_interval(), Duration::from_millis(20));
        // 3 × 2 ms RTT is under the 20 ms floor.
        assert_eq!(m.timeout(), Duration::from_millis(20));
        assert_eq!(m.on_reply(Duration::from_millis(2)), None);
        assert_eq!(m.next_interval(), Duration::from_millis(100));
        // A Down link is not "suspect": it probes at the normal pace.
        for _ in 0..3 {
            m.on_lost();
        }
        assert_eq!(m.quality.state, LinkState::Down);
        assert_eq!(m.next_interval(), Duration::from_millis(100));
    }

    #[test]
    fn the_link_goes_down_after_three_losses_and_up_after_five_replies() {
        let mut m = Meter::new(ProbeConfig::default());
        for _ in 0..4 {
            assert_eq!(m.on_reply(Duration::from_millis(10)), None);
        }
        assert_eq!(m.on_reply(Duration::from_millis(10)), Some(LinkState::Up));
        assert_eq!(m.on_lost(), None);
        assert_eq!(m.on_lost(), None);
        assert_eq!(m.on_lost(), Some(LinkState::Down));
        for _ in 0..4 {
            assert_eq!(m.on_reply(Duration::from_millis(10)), None);
        }
        assert_eq!(m.on_lost(), None, "a loss resets the hold-down");
        for _ in 0..4 {
            assert_eq!(m.on_reply(Duration::from_millis(10)), None);
        }
        assert_eq!(m.on_reply(Duration::from_millis(10)), Some(LinkState::Up));
    }

    #[test]
    fn loss_rtt_and_jitter_follow_the_window() {
        let mut m = Meter::new(ProbeConfig {
            window: 4,
            ..ProbeConfig::default()
        });
        m.on_reply(Duration::from_millis(10));
        m.on_reply(Duration::from_millis(30));
        m.on_lost();
        m.on_lost();
        assert!((m.quality.loss_pct - 50.0).abs() < 1e-9);
        assert!((m.quality.rtt_ms - 20.0).abs() < 1e-6);
        assert!((m.quality.jitter_ms - 20.0 / 16.0).abs() < 1e-6);
        m.on_reply(Duration::from_millis(10));
        m.on_reply(Duration::from_millis(10));
        m.on_reply(Duration::from_millis(10));
        m.on_reply(Duration::from_millis(10));
        assert_eq!(m.quality.loss_pct, 0.0);
        assert!((m.quality.rtt_ms - 10.0).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ProbePacket::decode(&bytes);
        }
    }
}
