//! One site's SD-WAN data path: classify, route, duplicate, clamp, schedule, encrypt.
//!
//! A [`Gateway`] ties the crate's pieces together for a site with N uplinks to one remote site.
//! Each [`Uplink`] brings
//!
//! * an **overlay socket** bound to the uplink's local address, the remote site's overlay
//!   address on the same link, and gets its own [`OverlayPeer`] (one WireGuard tunnel per
//!   uplink, see [`crate::overlay`]);
//! * a **probe socket** (also bound to the uplink's local address, any port) from which a
//!   [`crate::probe::Prober`] probes the remote site's [`Reflector`], and optionally a socket
//!   on which this gateway runs its own reflector for the remote site's prober.
//!
//! Probes use **their own port** rather than being multiplexed into the overlay socket: the
//! prober and the reflector stay exactly as they are, the overlay's receive path never sees
//! plaintext probe datagrams, and the probes still take the same link (same addresses and
//! interface) as the tunnel. The cost is one extra UDP port per uplink on each side.
//!
//! ## Send path ([`Gateway::send`])
//!
//! 1. parse and classify the inner packet ([`Classifier`]);
//! 2. route the flow with the [`FlowTable`]: new flows are pinned by [`crate::policy::select`],
//!    pinned flows stay put until their link fails or breaks the class SLA, and return to a
//!    recovered preferred link after the table's hold-down. Every quality update from a prober
//!    also re-evaluates all pinned flows, so failover does not wait for the next packet;
//! 3. a class with `duplicate = true` also sends a copy on its second-best link (the receiving
//!    gateway drops the later copy, see below);
//! 4. TCP SYNs get their MSS clamped to the smallest inner MTU of all uplinks (a flow may move
//!    between links, so it must fit all of them);
//! 5. the packet is queued in the uplink's [`Scheduler`] (the QoS class is the one whose name is
//!    the packet's policy class; otherwise the classifier's default class; otherwise the last)
//!    and a per-uplink task hands scheduled packets to the [`OverlayPeer`].
//!
//! ## Receive path (the receiver returned by [`Gateway::start`])
//!
//! Decrypted inner packets of all uplinks are merged into one channel. Packets of a duplicated
//! class are de-duplicated: both copies are byte-identical, so a keyed hash (SipHash with a
//! random key) of the whole inner packet — which includes the flow's 5-tuple and the IPv4
//! identification — is remembered for [`GatewayConfig::dedup_window`] and a second sighting
//! inside the window is dropped and counted. A legitimately repeated byte-identical packet of a
//! duplicated class inside the window would be dropped too, which real-time media (RTP carries
//! sequence numbers and timestamps) never sends.
//!
//! ## State
//!
//! [`Gateway::status`] returns a serializable [`GatewayStatus`]: per-link quality, state,
//! tunnel and QoS counters; per-class current choice, pinned flows and counters per link; and
//! the last [`GatewayConfig::failover_history`] failover events. [`Gateway::export_flows`] and
//! [`Gateway::import_flows`] move the flow pins across a hot swap. The flow table's clock is
//! milliseconds since the Unix epoch, so exported pins stay meaningful in another process.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::overlay::mtu::{OuterFamily, clamp_mss_ipv4, inner_mtu, mss_for_ipv4};
use crate::overlay::{OverlayConfig, OverlayCounters, OverlayError, OverlayPeer};
use crate::overlay::{PublicKey, StaticSecret};
use crate::policy::classify::{Classifier, parse_ip};
use crate::policy::{Choice, FlowKey, FlowMove, FlowTable, Links, Policy, select};
use crate::probe::{
    LinkId, LinkQuality, LinkState, ProbeConfig, ProbeError, Prober, ProberHandle, Reflector,
};
use crate::qos::{ClassCounters, ClassIdx, QosConfig, QosError, RateCap, Scheduler};

/// Errors from building or using a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Overlay setup failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// Probe setup failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// Invalid QoS settings.
    #[error(transparent)]
    Qos(#[from] QosError),
    /// Socket trouble.
    #[error("gateway socket: {0}")]
    Io(#[from] std::io::Error),
    /// Invalid gateway settings.
    #[error("invalid gateway config: {0}")]
    Config(String),
    /// The packet is not a parseable IP packet.
    #[error("not an IP packet")]
    Malformed,
    /// The packet's class has no policy.
    #[error("class {0:?} has no policy")]
    UnknownClass(String),
    /// No uplink is up for the packet's class.
    #[error("no uplink available for class {0:?}")]
    NoRoute(String),
    /// The uplink's queue for the class is full (drop-tail).
    #[error("queue full for class {0:?}")]
    QueueFull(String),
}

/// Site-wide gateway settings.
pub struct GatewayConfig {
    /// This site's static secret.
    pub secret: StaticSecret,
    /// The remote site's static public key.
    pub peer_public: PublicKey,
    /// Optional WireGuard pre-shared key.
    pub preshared_key: Option<[u8; 32]>,
    /// WireGuard persistent keepalive, seconds.
    pub keepalive_secs: Option<u16>,
    /// Traffic classifier.
    pub classifier: Classifier,
    /// Per-class path policy.
    pub policy: Policy,
    /// Egress scheduler settings (one scheduler per uplink).
    pub qos: QosConfig,
    /// Return-to-preferred hold-down of the flow table.
    pub hold_down: Duration,
    /// How long a duplicated packet is remembered for de-duplication.
    pub dedup_window: Duration,
    /// Failover events kept for [`GatewayStatus::failovers`].
    pub failover_history: usize,
    /// Pinned flows idle this long are forgotten.
    pub flow_idle: Duration,
    /// Capacity of the received-inner-packet channel (overflow is dropped and counted).
    pub rx_queue: usize,
}

impl GatewayConfig {
    /// Defaults around keys, classification, policy and QoS: 3 s hold-down, 2 s de-duplication
    /// window, 32 failover events, 5 min flow idle time, 4096-packet receive queue.
    pub fn new(
        secret: StaticSecret,
        peer_public: PublicKey,
        classifier: Classifier,
        policy: Policy,
        qos: QosConfig,
    ) -> Self {
        Self {
            secret,
            peer_public,
            preshared_key: None,
            keepalive_secs: Some(10),
            classifier,
            policy,
            qos,
            hold_down: Duration::from_secs(3),
            dedup_window: Duration::from_secs(2),
            failover_history: 32,
            flow_idle: Duration::from_secs(300),
            rx_queue: 4096,
        }
    }
}

/// One uplink of the gateway; see the module documentation.
pub struct Uplink {
    /// Link id (shared with the remote site's matching uplink).
    pub link_id: LinkId,
    /// Overlay socket, bound to this uplink's local address.
    pub socket: UdpSocket,
    /// The remote site's overlay address on this link.
    pub remote: SocketAddr,
    /// Probe socket, bound to this uplink's local address (any port).
    pub probe_socket: UdpSocket,
    /// The remote site's reflector on this link.
    pub remote_reflector: SocketAddr,
    /// If given, this gateway runs a reflector on it for the remote site's prober.
    pub reflector_socket: Option<UdpSocket>,
    /// Probe settings (`link_id` is overridden with [`Self::link_id`]).
    pub probe: ProbeConfig,
    /// MTU of the uplink's interface (outer packets); decides the inner MTU.
    pub outer_mtu: u16,
    /// This uplink's egress rate cap; `None` uses [`QosConfig::rate`] (itself `None` =
    /// unlimited).
    pub rate: Option<RateCap>,
}

/// Why flows moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailoverReason {
    /// The link they were on went down.
    LinkDown,
    /// The link they were on stopped meeting the class SLA.
    SlaViolation,
    /// Their preferred link recovered and the hold-down passed.
    ReturnToPreferred,
    /// The flow's class changed.
    Reclassified,
}

/// Flows moving from one link to another at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverEvent {
    /// When, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// When, milliseconds since the gateway started.
    pub since_start_ms: u64,
    /// Previous link.
    pub from: LinkId,
    /// New link.
    pub to: LinkId,
    /// How many flows moved.
    pub flows: usize,
    /// Classes of the moved flows.
    pub classes: Vec<String>,
    /// Why.
    pub reason: FailoverReason,
}

/// Counters of one class on one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassLinkCounters {
    /// Packets routed here as the primary copy.
    pub tx_packets: u64,
    /// Bytes routed here as the primary copy.
    pub tx_bytes: u64,
    /// Duplicate copies routed here.
    pub tx_duplicates: u64,
    /// Packets (primary or duplicate) refused by this link's full queue.
    pub tx_queue_dropped: u64,
    /// Inner packets received from this link and delivered.
    pub rx_packets: u64,
    /// Bytes received from this link and delivered.
    pub rx_bytes: u64,
    /// Received copies dropped as duplicates.
    pub rx_duplicates: u64,
}

/// Gateway-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GatewayCounters {
    /// Packets submitted to [`Gateway::send`].
    pub submitted: u64,
    /// Submitted packets that were not IP.
    pub dropped_malformed: u64,
    /// Submitted packets whose class has no policy.
    pub dropped_unknown_class: u64,
    /// Submitted packets with no usable uplink.
    pub dropped_no_route: u64,
    /// TCP SYNs whose MSS was lowered.
    pub mss_clamped: u64,
    /// Received inner packets dropped because the receiver was full or gone.
    pub rx_dropped_queue_full: u64,
    /// Received inner packets that were not parseable IP (delivered anyway, class `"?"`).
    pub rx_unparsed: u64,
}

/// One QoS class's counters on a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QosClassStatus {
    /// QoS class name.
    pub name: String,
    /// Its scheduler counters.
    pub counters: ClassCounters,
}

/// State of one uplink.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkStatus {
    /// Link id.
    pub link_id: LinkId,
    /// Up or down (down until the prober has proven it up).
    pub state: LinkState,
    /// Latest measured quality.
    pub quality: LinkQuality,
    /// Whether the link's WireGuard session has completed a handshake.
    pub established: bool,
    /// Overlay counters, including hostile datagrams dropped.
    pub overlay: OverlayCounters,
    /// Inner MTU of the link.
    pub inner_mtu: u16,
    /// Scheduler counters per QoS class.
    pub qos: Vec<QosClassStatus>,
}

/// State of one policy class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStatus {
    /// Where a new flow of the class would go now.
    pub selected: Option<Choice>,
    /// Pinned flows of the class per primary link.
    pub flows_by_link: BTreeMap<LinkId, usize>,
    /// Counters per link.
    pub links: BTreeMap<LinkId, ClassLinkCounters>,
}

/// A snapshot of the gateway; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayStatus {
    /// Milliseconds since the gateway started.
    pub uptime_ms: u64,
    /// Uplinks, in configuration order.
    pub links: Vec<LinkStatus>,
    /// Policy classes, by name.
    pub classes: BTreeMap<String, ClassStatus>,
    /// Gateway-wide counters.
    pub counters: GatewayCounters,
    /// Pinned flows.
    pub flows: usize,
    /// The most recent failover events, oldest first.
    pub failovers: Vec<FailoverEvent>,
}

impl GatewayStatus {
    /// The status of link `id`.
    pub fn link(&self, id: LinkId) -> Option<&LinkStatus> {
        self.links.iter().find(|l| l.link_id == id)
    }

    /// Counters of `class` on link `id` (zero when nothing was counted).
    pub fn class_link(&self, class: &str, id: LinkId) -> ClassLinkCounters {
        self.classes
            .get(class)
            .and_then(|c| c.links.get(&id))
            .copied()
            .unwrap_or_default()
    }
}

/// Remembers recently seen duplicated packets.
struct Dedup {
    hasher: RandomState,
    window: Duration,
    max_entries: usize,
    seen: HashMap<u64, Instant>,
    order: VecDeque<(Instant, u64)>,
}

impl Dedup {
    fn new(window: Duration) -> Self {
        Self {
            hasher: RandomState::new(),
            window,
            max_entries: 65_536,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(at, h)) = self.order.front() {
            if now.duration_since(at) < self.window && self.order.len() <= self.max_entries {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&h) == Some(&at) {
                self.seen.remove(&h);
            }
        }
    }

    /// Whether `packet` was seen within the window; remembers it otherwise.
    fn is_duplicate(&mut self, packet: &[u8], now: Instant) -> bool {
        self.prune(now);
        let h = self.hasher.hash_one(packet);
        if self
            .seen
            .get(&h)
            .is_some_and(|at| now.duration_since(*at) < self.window)
        {
            return true;
        }
        self.seen.insert(h, now);
        self.order.push_back((now, h));
        false
    }
}

struct LinkRt {
    id: LinkId,
    peer: OverlayPeer,
    prober: ProberHandle,
    _reflector: Option<Reflector>,
    sched: Mutex<Scheduler>,
    notify: Notify,
    inner_mtu: u16,
}

struct State {
    links: Links,
    flows: FlowTable,
    failovers: VecDeque<FailoverEvent>,
    counters: BTreeMap<(String, LinkId), ClassLinkCounters>,
    totals: GatewayCounters,
    dedup: Dedup,
}

struct Inner {
    classifier: Classifier,
    policy: Policy,
    qos_index: HashMap<String, ClassIdx>,
    qos_default: ClassIdx,
    mss: u16,
    failover_history: usize,
    flow_idle: Duration,
    links: Vec<LinkRt>,
    state: Mutex<State>,
    started: Instant,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Inner {
    fn link(&self, id: LinkId) -> Option<&LinkRt> {
        self.links.iter().find(|l| l.id == id)
    }

    fn since_start_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn reason(&self, links: &Links, class: &str, from: LinkId) -> FailoverReason {
        let Some(q) = links.get(&from) else {
            return FailoverReason::LinkDown;
        };
        if q.state != LinkState::Up {
            return FailoverReason::LinkDown;
        }
        match self.policy.class(class) {
            Some(c) if !c.sla.is_met_by(q) => FailoverReason::SlaViolation,
            _ => FailoverReason::ReturnToPreferred,
        }
    }

    /// Groups moves into events and logs them.
    fn record_moves(
        &self,
        state: &mut State,
        moves: &[(FlowMove, String)],
        reason_override: Option<FailoverReason>,
    ) {
        if moves.is_empty() {
            return;
        }
        let unix_ms = unix_ms();
        let since_start_ms = self.since_start_ms();
        let mut grouped: BTreeMap<(LinkId, LinkId), (usize, Vec<String>, FailoverReason)> =
            BTreeMap::new();
        for (m, class) in moves {
            let reason =
                reason_override.unwrap_or_else(|| self.reason(&state.links, class, m.from));
            let e = grouped
                .entry((m.from, m.to))
                .or_insert_with(|| (0, Vec::new(), reason));
            e.0 += 1;
            if !e.1.contains(class) {
                e.1.push(class.clone());
            }
        }
        for ((from, to), (flows, classes, reason)) in grouped {
            tracing::info!(from, to, flows, ?classes, ?reason, "sdwan failover");
            state.failovers.push_back(FailoverEvent {
                unix_ms,
                since_start_ms,
                from,
                to,
                flows,
                classes,
                reason,
            });
            while state.failovers.len() > self.failover_history.max(1) {
                state.failovers.pop_front();
            }
        }
    }

    fn on_quality(&self, quality: LinkQuality) {
        let mut state = self.state.lock();
        state.links.insert(quality.link_id, quality);
        let now = unix_ms();
        let links = state.links.clone();
        let moves = state.flows.reevaluate(&self.policy, &links, now);
        let tagged = tag_with_class(&state.flows, moves);
        self.record_moves(&mut state, &tagged, None);
    }

    fn housekeeping(&self) {
        let mut state = self.state.lock();
        let expired = state.flows.expire_idle(unix_ms(), self.flow_idle);
        if expired > 0 {
            tracing::debug!(expired, "idle flows forgotten");
        }
        state.dedup.prune(Instant::now());
    }

    fn send(&self, mut packet: Vec<u8>) -> Result<Choice, GatewayError> {
        let (key, class): (FlowKey, String) = {
            let parsed = parse_ip(&packet);
            let mut state = self.state.lock();
            state.totals.submitted += 1;
            let Some(info) = parsed else {
                state.totals.dropped_malformed += 1;
                return Err(GatewayError::Malformed);
            };
            (info.key, self.classifier.classify(&info).to_owned())
        };
        let Some(class_policy) = self.policy.class(&class) else {
            self.state.lock().totals.dropped_unknown_class += 1;
            return Err(GatewayError::UnknownClass(class));
        };
        let choice = {
            let mut state = self.state.lock();
            let now = unix_ms();
            let before = state
                .flows
                .get(&key)
                .map(|e| (e.choice.primary, e.class.clone()));
            let links = state.links.clone();
            let Some(choice) = state.flows.route(key, class_policy, &links, now) else {
                state.totals.dropped_no_route += 1;
                return Err(GatewayError::NoRoute(class));
            };
            if let Some((from, old_class)) = before
                && from != choice.primary
            {
                let mv = FlowMove {
                    key,
                    from,
                    to: choice.primary,
                };
                let reason = (old_class != class).then_some(FailoverReason::Reclassified);
                self.record_moves(&mut state, &[(mv, class.clone())], reason);
            }
            choice
        };
        if key.proto == 6 {
            match clamp_mss_ipv4(&mut packet, self.mss) {
                Ok(crate::overlay::mtu::MssClamp::Clamped { from, to }) => {
                    tracing::trace!(from, to, "mss clamped");
                    self.state.lock().totals.mss_clamped += 1;
                }
                Ok(_) => {}
                Err(error) => tracing::trace!(%error, "mss clamp skipped"),
            }
        }
        let qos = self
            .qos_index
            .get(&class)
            .copied()
            .unwrap_or(self.qos_default);
        let len = packet.len() as u64;
        let duplicate = choice
            .duplicate
            .filter(|d| *d != choice.primary)
            .map(|d| (d, packet.clone()));
        let primary_ok = self.enqueue(choice.primary, qos, packet);
        let dup_ok = duplicate.map(|(d, p)| (d, self.enqueue(d, qos, p)));
        let mut state = self.state.lock();
        {
            let c = state
                .counters
                .entry((class.clone(), choice.primary))
                .or_default();
            if primary_ok {
                c.tx_packets += 1;
                c.tx_bytes += len;
            } else {
                c.tx_queue_dropped += 1;
            }
        }
        if let Some((d, ok)) = dup_ok {
            let c = state.counters.entry((class.clone(), d)).or_default();
            if ok {
                c.tx_duplicates += 1;
            } else {
                c.tx_queue_dropped += 1;
            }
            if !primary_ok && !ok {
                return Err(GatewayError::QueueFull(class));
            }
        } else if !primary_ok {
            return Err(GatewayError::QueueFull(class));
        }
        Ok(choice)
    }

    fn enqueue(&self, link: LinkId, qos: ClassIdx, packet: Vec<u8>) -> bool {
        let Some(l) = self.link(link) else {
            return false;
        };
        let ok = l.sched.lock().enqueue(qos, packet).is_ok();
        if ok {
            l.notify.notify_one();
        }
        ok
    }

    fn on_received(&self, link: LinkId, packet: Vec<u8>, out: &mpsc::Sender<Vec<u8>>) {
        let class = parse_ip(&packet).map(|info| self.classifier.classify(&info).to_owned());
        let len = packet.len() as u64;
        let mut state = self.state.lock();
        let Some(class) = class else {
            state.totals.rx_unparsed += 1;
            drop(state);
            if out.try_send(packet).is_err() {
                self.state.lock().totals.rx_dropped_queue_full += 1;
            }
            return;
        };
        let dedup = self.policy.class(&class).is_some_and(|c| c.duplicate);
        if dedup && state.dedup.is_duplicate(&packet, Instant::now()) {
            state
                .counters
                .entry((class, link))
                .or_default()
                .rx_duplicates += 1;
            return;
        }
        if out.try_send(packet).is_err() {
            state.totals.rx_dropped_queue_full += 1;
            return;
        }
        let c = state.counters.entry((class, link)).or_default();
        c.rx_packets += 1;
        c.rx_bytes += len;
    }
}

/// A running gateway; dropping it stops all its tasks. See the module documentation.
pub struct Gateway {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Starts the gateway on `uplinks`; returns it and the receiver of inner packets from the
    /// remote site. Must be called inside a Tokio runtime.
    pub fn start(
        config: GatewayConfig,
        uplinks: Vec<Uplink>,
    ) -> Result<(Self, mpsc::Receiver<Vec<u8>>), GatewayError> {
        if uplinks.is_empty() {
            return Err(GatewayError::Config("at least one uplink is needed".into()));
        }
        for (i, u) in uplinks.iter().enumerate() {
            if uplinks.iter().skip(i + 1).any(|o| o.link_id == u.link_id) {
                return Err(GatewayError::Config(format!(
                    "link id {} appears twice",
                    u.link_id
                )));
            }
        }
        // Validate QoS once; each uplink gets its own scheduler.
        Scheduler::new(config.qos.clone())?;
        let qos_index: HashMap<String, ClassIdx> = config
            .qos
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let qos_default = config
            .qos
            .class_index(&config.classifier.default_class)
            .unwrap_or(config.qos.classes.len().saturating_sub(1));

        let mut links = Vec::with_capacity(uplinks.len());
        let mut receivers = Vec::with_capacity(uplinks.len());
        let mut min_inner = u16::MAX;
        for u in uplinks {
            let mut overlay = OverlayConfig::new(config.secret.clone(), config.peer_public);
            overlay.preshared_key = config.preshared_key;
            overlay.keepalive_secs = config.keepalive_secs;
            overlay.index = u.link_id.wrapping_add(1);
            overlay.rx_queue = config.rx_queue;
            let (peer, rx) = OverlayPeer::start(overlay, Arc::new(u.socket), u.remote)?;
            let probe = ProbeConfig {
                link_id: u.link_id,
                ..u.probe
            };
            let prober = Prober::spawn(u.probe_socket, u.remote_reflector, probe)?;
            let reflector = u.reflector_socket.map(Reflector::spawn).transpose()?;
            let mtu = inner_mtu(u.outer_mtu, OuterFamily::V4);
            min_inner = min_inner.min(mtu);
            links.push(LinkRt {
                id: u.link_id,
                peer,
                prober,
                _reflector: reflector,
                sched: Mutex::new(Scheduler::new(QosConfig {
                    rate: u.rate.or(config.qos.rate),
                    ..config.qos.clone()
                })?),
                notify: Notify::new(),
                inner_mtu: mtu,
            });
            receivers.push((u.link_id, rx));
        }
        let inner = Arc::new(Inner {
            classifier: config.classifier,
            policy: config.policy,
            qos_index,
            qos_default,
            mss: mss_for_ipv4(min_inner),
            failover_history: config.failover_history,
            flow_idle: config.flow_idle,
            links,
            state: Mutex::new(State {
                links: Links::new(),
                flows: FlowTable::new(config.hold_down),
                failovers: VecDeque::new(),
                counters: BTreeMap::new(),
                totals: GatewayCounters::default(),
                dedup: Dedup::new(config.dedup_window),
            }),
            started: Instant::now(),
        });

        let (out_tx, out_rx) = mpsc::channel(config.rx_queue.max(1));
        let mut tasks = Vec::new();
        for (idx, (link_id, mut rx)) in receivers.into_iter().enumerate() {
            // Receive: decrypted packets of this link into the merged channel.
            let inn = Arc::clone(&inner);
            let out = out_tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    inn.on_received(link_id, p, &out);
                }
            }));
            // Quality: re-evaluate pinned flows on every update.
            let inn = Arc::clone(&inner);
            tasks.push(tokio::spawn(async move {
                let Some(mut watch) = inn.links.get(idx).map(|l| l.prober.watch_quality()) else {
                    return;
                };
                loop {
                    let q = watch.borrow_and_update().clone();
                    inn.on_quality(q);
                    if watch.changed().await.is_err() {
                        break;
                    }
                }
            }));
            // Egress: scheduler to overlay.
            let inn = Arc::clone(&inner);
            tasks.push(tokio::spawn(async move { run_egress(inn, idx).await }));
        }
        let inn = Arc::clone(&inner);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                inn.housekeeping();
            }
        }));
        Ok((Self { inner, tasks }, out_rx))
    }

    /// Submits an inner IP packet for the remote site; see the module documentation. Returns
    /// where it was queued.
    pub fn send(&self, packet: Vec<u8>) -> Result<Choice, GatewayError> {
        self.inner.send(packet)
    }

    /// Starts the WireGuard handshakes on every uplink now rather than on the first packet.
    pub async fn connect(&self) {
        for l in &self.inner.links {
            l.peer.connect().await;
        }
    }

    /// Whether every uplink's tunnel has completed a handshake.
    pub fn is_established(&self) -> bool {
        self.inner.links.iter().all(|l| l.peer.is_established())
    }

    /// A snapshot of links, classes, counters and failover events.
    pub fn status(&self) -> GatewayStatus {
        let inner = &self.inner;
        let state = inner.state.lock();
        let links = inner
            .links
            .iter()
            .map(|l| {
                let quality = state
                    .links
                    .get(&l.id)
                    .cloned()
                    .unwrap_or_else(|| l.prober.quality());
                let sched = l.sched.lock();
                let qos = sched
                    .counters()
                    .into_iter()
                    .enumerate()
                    .map(|(i, counters)| QosClassStatus {
                        name: sched.class_name(i).unwrap_or_default().to_owned(),
                        counters,
                    })
                    .collect();
                LinkStatus {
                    link_id: l.id,
                    state: quality.state,
                    quality,
                    established: l.peer.is_established(),
                    overlay: l.peer.counters(),
                    inner_mtu: l.inner_mtu,
                    qos,
                }
            })
            .collect();
        let mut classes: BTreeMap<String, ClassStatus> = inner
            .policy
            .classes
            .values()
            .map(|c| {
                (
                    c.name.clone(),
                    ClassStatus {
                        selected: select(c, &state.links),
                        flows_by_link: BTreeMap::new(),
                        links: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for (_, entry) in state.flows.iter() {
            if let Some(c) = classes.get_mut(&entry.class) {
                *c.flows_by_link.entry(entry.choice.primary).or_default() += 1;
            }
        }
        for ((class, link), counters) in &state.counters {
            let c = classes.entry(class.clone()).or_insert_with(|| ClassStatus {
                selected: None,
                flows_by_link: BTreeMap::new(),
                links: BTreeMap::new(),
            });
            c.links.insert(*link, *counters);
        }
        GatewayStatus {
            uptime_ms: inner.since_start_ms(),
            links,
            classes,
            counters: state.totals,
            flows: state.flows.len(),
            failovers: state.failovers.iter().cloned().collect(),
        }
    }

    /// The flow table (serializable), for a host to persist across a hot swap.
    pub fn export_flows(&self) -> FlowTable {
        self.inner.state.lock().flows.clone()
    }

    /// Replaces the flow table with one exported earlier; pinned flows are re-evaluated
    /// against the current link qualities right away.
    pub fn import_flows(&self, flows: FlowTable) {
        let mut state = self.inner.state.lock();
        state.flows = flows;
        let links = state.links.clone();
        let moves = state
            .flows
            .reevaluate(&self.inner.policy, &links, unix_ms());
        let tagged = tag_with_class(&state.flows, moves);
        self.inner.record_moves(&mut state, &tagged, None);
    }

    /// The TCP MSS that SYNs are clamped to.
    pub fn clamp_mss(&self) -> u16 {
        self.inner.mss
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn run_egress(inner: Arc<Inner>, idx: usize) {
    let Some(link) = inner.links.get(idx) else {
        return;
    };
    loop {
        let next = {
            let mut sched = link.sched.lock();
            let now = Instant::now();
            match sched.dequeue(now) {
                Some(item) => Ok(item),
                None => Err(sched.next_ready_at(now)),
            }
        };
        match next {
            Ok((_class, packet)) => {
                if let Err(error) = link.peer.send(&packet).await {
                    tracing::debug!(link = link.id, %error, "overlay send failed");
                }
            }
            Err(Some(at)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = link.notify.notified() => {}
                }
            }
            Err(None) => link.notify.notified().await,
        }
    }
}

/// Each move with the class of the flow it moved (empty when the flow is gone).
fn tag_with_class(flows: &FlowTable, moves: Vec<FlowMove>) -> Vec<(FlowMove, String)> {
    moves
        .into_iter()
        .map(|m| {
            let class = flows
                .get(&m.key)
                .map(|e| e.class.clone())
                .unwrap_or_default();
            (m, class)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_copy_of_a_packet_inside_the_window_is_a_duplicate() {
        let mut d = Dedup::new(Duration::from_millis(500));
        let t0 = Instant::now();
        assert!(!d.is_duplicate(b"one", t0));
        assert!(!d.is_duplicate(b"two", t0));
        assert!(d.is_duplicate(b"one", t0 + Duration::from_millis(100)));
        // After the window it is new again.
        assert!(!d.is_duplicate(b"one", t0 + Duration::from_millis(700)));
        assert!(d.is_duplicate(b"one", t0 + Duration::from_millis(800)));
    }

    #[test]
    fn the_dedup_cache_stays_bounded() {
        let mut d = Dedup::new(Duration::from_secs(60));
        d.max_entries = 100;
        let t0 = Instant::now();
        for i in 0..1000u32 {
            assert!(!d.is_duplicate(&i.to_be_bytes(), t0));
        }
        assert!(d.order.len() <= 101);
        assert!(d.seen.len() <= 101);
    }
}
