//! Sinks: where routed messages leave the appliance (an MQTT broker or an HTTP webhook), with
//! store and forward in between.
//!
//! [`Sink::send`] writes the message to the sink's [`Spool`] first (durably) and only then wakes
//! the delivery task, which sends the oldest spooled messages in order and removes them from the
//! spool once the peer confirmed them:
//!
//! - MQTT QoS 1: the broker's PUBACK; QoS 0: the PUBLISH was written to the socket. Up to
//!   `batch` messages are in flight (published, not yet confirmed) on one connection.
//! - Webhook: a 2xx answer to `POST url` (body = payload, header `x-outpost-topic: <topic>`),
//!   one request at a time over a kept-alive connection.
//!
//! While the peer is unreachable messages wait in the spool (bounded; see [`SpoolLimits`]) and the
//! task reconnects with exponential backoff, from `retry_initial` doubling up to `retry_max`, each
//! delay jittered into its upper half.
//!
//! **Delivery is at-least-once and in order.** A message is removed from the spool only after the
//! peer confirmed it, so a confirmation lost with the connection (a broker restart between
//! receiving a PUBLISH and its PUBACK reaching us, a webhook that timed out after processing)
//! means the message, and every unconfirmed one after it, is sent again: receivers may see
//! duplicates, but never a gap or a reordering caused by the sink. Messages leave the spool
//! without being delivered only when counted: expired (older than the TTL), or *rejected* by the
//! peer as permanently unacceptable (a webhook's 4xx other than 408/429; for MQTT a topic or size
//! the protocol cannot carry) so that one poison message cannot block the queue. Messages
//! refused at `send` because the spool is full are counted as overflow and the caller gets
//! [`SpoolError::Full`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::spool::{Spool, SpoolError, SpoolLimits, SpoolStats, Spooled, now_ms};

/// Largest MQTT packet the protocol can carry (its "remaining length" limit).
const MQTT_MAX_PACKET: usize = 268_435_455;
/// Bytes of an MQTT PUBLISH besides topic and payload (fixed header, topic length, packet id).
const MQTT_PUBLISH_OVERHEAD: usize = 9;
/// How long the broker may leave in-flight publishes unconfirmed (no PUBACK at all) before the
/// connection is considered broken and the unconfirmed messages are sent again.
const MQTT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a webhook's answer body that are read (and discarded).
const WEBHOOK_MAX_ANSWER: usize = 64 * 1024;
/// The header that carries a message's bus topic to a webhook.
pub const TOPIC_HEADER: &str = "x-outpost-topic";

/// Where a sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// An MQTT 3.1.1 broker over plain TCP.
    Mqtt {
        /// Broker host name or IP address.
        host: String,
        /// Broker port.
        port: u16,
        /// MQTT client id (must be unique per broker).
        client_id: String,
        /// Prepended to the bus topic to form the MQTT topic (may be empty).
        topic_prefix: String,
        /// 0 (at most once to the broker) or 1 (acknowledged by the broker).
        qos: u8,
        /// MQTT keep-alive; zero or at least one second.
        keep_alive: Duration,
    },
    /// An HTTP endpoint that receives one `POST` per message.
    Webhook {
        /// `http://host[:port]/path` (plain HTTP only for now).
        url: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
        /// Limit for one request: connect, send, answer.
        timeout: Duration,
    },
}

/// How a sink is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Name for logs and status.
    pub name: String,
    /// Where to deliver.
    pub target: SinkTarget,
    /// Limits for the sink's spool (see [`SinkConfig::open_spool`]).
    pub spool: SpoolLimits,
    /// Most messages taken from the spool at once: unconfirmed in flight on an MQTT connection,
    /// or per round of webhook requests.
    pub batch: usize,
    /// First reconnect delay.
    pub retry_initial: Duration,
    /// Longest reconnect delay.
    pub retry_max: Duration,
}

/// Why a sink could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// A configuration field is invalid.
    #[error("sink `{sink}`: invalid {field}: {reason}")]
    Invalid {
        /// Sink name.
        sink: String,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `Sink::start` was called outside a tokio runtime.
    #[error("sink `{0}`: must be started inside a tokio runtime")]
    NoRuntime(String),
}

/// A webhook URL split into what the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WebhookUrl {
    /// Host to connect to (IPv6 without brackets).
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Request target.
    path: String,
}

fn parse_webhook_url(url: &str) -> Result<WebhookUrl, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("`{url}`: scheme `{other}` (only http:// for now)")),
        None => return Err(format!("`{url}`: not an absolute http:// URL")),
    }
    let authority = uri.authority().ok_or_else(|| format!("`{url}`: no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{url}`: credentials in the URL are not supported"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("`{url}`: no host"));
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    if port == 0 {
        return Err(format!("`{url}`: port 0"));
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let path = if path.is_empty() { "/".into() } else { path };
    Ok(WebhookUrl {
        host,
        port,
        authority: authority.as_str().to_string(),
        path,
    })
}

fn parse_headers(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name `{name}`: {e}"))?;
        if name == HOST
            || name == hyper::header::CONTENT_LENGTH
            || name == hyper::header::TRANSFER_ENCODING
            || name.as_str() == TOPIC_HEADER
        {
            return Err(format!("header `{name}` is set by the sink"));
        }
        let value =
            HeaderValue::from_str(value).map_err(|e| format!("value of header `{name}`: {e}"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Why an MQTT topic cannot be published, if it cannot.
fn mqtt_topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("the topic is empty")
    } else if topic.contains(['+', '#']) {
        Some("the topic contains a wildcard (+ or #)")
    } else if topic.contains('\0') {
        Some("the topic contains NUL")
    } else if topic.len() > u16::MAX as usize {
        Some("the topic is longer than 65535 bytes")
    } else {
        None
    }
}

impl SinkConfig {
    /// A config with defaults: default spool limits, batches of 100, retries from 500 ms to 30 s.
    pub fn new(name: impl Into<String>, target: SinkTarget) -> SinkConfig {
        SinkConfig {
            name: name.into(),
            target,
            spool: SpoolLimits::default(),
            batch: 100,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }

    /// Opens (or reopens) the spool file at `path` with this config's limits.
    pub fn open_spool(&self, path: &std::path::Path) -> Result<Spool, SpoolError> {
        Spool::open(path, self.spool)
    }

    /// Checks every field; `Sink::start` calls it too.
    pub fn validate(&self) -> Result<(), SinkError> {
        let invalid = |field: &'static str, reason: String| SinkError::Invalid {
            sink: self.name.clone(),
            field,
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "empty".into()));
        }
        if self.batch == 0 {
            return Err(invalid("batch", "must be at least 1".into()));
        }
        if self.retry_initial.is_zero() {
            return Err(invalid("retry_initial", "must be more than zero".into()));
        }
        if self.retry_max < self.retry_initial {
            return Err(invalid(
                "retry_max",
                format!(
                    "{:?} is less than retry_initial {:?}",
                    self.retry_max, self.retry_initial
                ),
            ));
        }
        match &self.target {
            SinkTarget::Mqtt {
                host,
                port,
                client_id,
                topic_prefix,
                qos,
                keep_alive,
            } => {
                if host.is_empty()
                    || host
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "/@?#".contains(c))
                {
                    return Err(invalid("host", format!("`{host}` is not a host name")));
                }
                if *port == 0 {
                    return Err(invalid("port", "0".into()));
                }
                if client_id.len() > u16::MAX as usize || client_id.contains('\0') {
                    return Err(invalid("client_id", "too long or contains NUL".into()));
                }
                if topic_prefix.contains(['+', '#', '\0']) {
                    return Err(invalid(
                        "topic_prefix",
                        format!("`{topic_prefix}` contains a wildcard or NUL"),
                    ));
                }
                if *qos > 1 {
                    return Err(invalid(
                        "qos",
                        format!("{qos} (only 0 and 1 are supported)"),
                    ));
                }
                if !keep_alive.is_zero()
                    && (*keep_alive < Duration::from_secs(1)
                        || keep_alive.as_secs() > u64::from(u16::MAX))
                {
                    return Err(invalid(
                        "keep_alive",
                        format!("{keep_alive:?} (zero, or 1 s to 65535 s)"),
                    ));
                }
            }
            SinkTarget::Webhook {
                url,
                headers,
                timeout,
            } => {
                parse_webhook_url(url).map_err(|e| invalid("url", e))?;
                parse_headers(headers).map_err(|e| invalid("headers", e))?;
                if timeout.is_zero() {
                    return Err(invalid("timeout", "must be more than zero".into()));
                }
            }
        }
        Ok(())
    }
}

/// A snapshot of a sink's state, for status output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Sink name.
    pub name: String,
    /// Whether the peer is reachable (last connection attempt or request succeeded).
    pub connected: bool,
    /// Messages the peer confirmed, since start.
    pub delivered: u64,
    /// Messages the peer (or the protocol) refused permanently; removed from the spool.
    pub rejected: u64,
    /// Messages handed to the peer, retries included.
    pub attempts: u64,
    /// The last delivery or connection error.
    pub last_error: Option<String>,
    /// When the peer last confirmed a message, in milliseconds since the Unix epoch.
    pub last_delivery_ms: Option<u64>,
    /// The spool's state.
    pub spool: SpoolStats,
}

#[derive(Debug, Default)]
struct Counters {
    connected: bool,
    delivered: u64,
    rejected: u64,
    attempts: u64,
    last_error: Option<String>,
    last_delivery_ms: Option<u64>,
}

/// What the sink handle and its delivery task share.
struct Shared {
    name: String,
    spool: Spool,
    wake: Notify,
    counters: Mutex<Counters>,
}

impl Shared {
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_connected(&self, connected: bool) {
        self.counters().connected = connected;
    }

    fn count_attempts(&self, n: u64) {
        self.counters().attempts += n;
    }

    /// Records a failure; logs a warning when the sink was connected until now.
    fn fail(&self, error: String, disconnected: bool) {
        let mut c = self.counters();
        let was_connected = c.connected;
        if disconnected {
            c.connected = false;
        }
        if was_connected || c.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(sink = %self.name, %error, "delivery failed; will retry");
        } else {
            tracing::debug!(sink = %self.name, %error, "delivery failed again");
        }
        c.last_error = Some(error);
    }

    /// Removes the confirmed prefix from the spool and counts it, under the counters' lock so
    /// that `Sink::stats` never sees the spool emptied but the delivery not yet counted.
    async fn confirm(
        self: &Arc<Self>,
        through: u64,
        delivered: u64,
        rejected: u64,
    ) -> Result<(), SpoolError> {
        let shared = self.clone();
        let acked = blocking(move || {
            let mut c = shared.counters();
            shared.spool.ack(through)?;
            c.delivered += delivered;
            c.rejected += rejected;
            if delivered > 0 {
                c.last_delivery_ms = Some(now_ms());
            }
            Ok(())
        })
        .await;
        if let Err(e) = &acked {
            tracing::error!(sink = %self.name, error = %e, "could not remove delivered messages from the spool; they will be sent again");
            self.counters().last_error = Some(e.to_string());
        }
        acked
    }

    async fn peek(&self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let spool = self.spool.clone();
        blocking(move || spool.peek(max)).await
    }

    async fn expire(&self) {
        let spool = self.spool.clone();
        if let Err(e) = blocking(move || spool.expire()).await {
            tracing::error!(sink = %self.name, error = %e, "spool expiry failed");
        }
    }
}

/// Runs a spool operation on the blocking pool (it may wait for an fsync).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(SpoolError::Io(format!("spool task failed: {e}"))))
}

/// The delivery task's view of the stop signal: set by `shutdown`, or implied once every `Sink`
/// handle is gone.
struct Stop(watch::Receiver<bool>);

impl Stop {
    async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Sleeps for `d`; returns true if told to stop meanwhile.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = self.wait() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }
}

/// Exponential backoff with jitter (each delay lies in the upper half of its nominal value).
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = now_ms() ^ (std::process::id() as u64) << 32 ^ initial.as_nanos() as u64;
        Backoff {
            initial,
            max,
            next: initial,
            rng: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    fn delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift64: good enough to spread reconnects of many sinks
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = nominal / 2;
        let spread = half.as_nanos() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            self.rng % (spread + 1)
        };
        (half + Duration::from_nanos(jitter)).max(Duration::from_millis(1))
    }
}

struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A running sink: a spool plus the task that delivers from it. Cheap to clone; the task stops
/// on `shutdown` or when the last clone is dropped.
#[derive(Clone)]
pub struct Sink {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.handle.shared.name)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Validates `config` and spawns the delivery task on the current tokio runtime; messages
    /// already in `spool` are delivered first.
    pub fn start(config: SinkConfig, spool: Spool) -> Result<Sink, SinkError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SinkError::NoRuntime(config.name.clone()))?;
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            spool,
            wake: Notify::new(),
            counters: Mutex::default(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task_shared = shared.clone();
        let task = runtime.spawn(async move {
            let stop = Stop(stop_rx);
            let backoff = Backoff::new(config.retry_initial, config.retry_max);
            match config.target {
                SinkTarget::Mqtt { .. } => run_mqtt(task_shared, config, backoff, stop).await,
                SinkTarget::Webhook { .. } => run_webhook(task_shared, config, backoff, stop).await,
            }
        });
        // the spool may hold messages from before a restart
        shared.wake.notify_one();
        Ok(Sink {
            handle: Arc::new(Handle {
                shared,
                stop: stop_tx,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.handle.shared.name
    }

    /// The sink's spool.
    pub fn spool(&self) -> &Spool {
        &self.handle.shared.spool
    }

    /// Spools a message durably and wakes the delivery task; returns its spool sequence number.
    /// Blocks for the spool's commit.
    pub fn send(&self, topic: &str, payload: &[u8]) -> Result<u64, SpoolError> {
        let seq = self.handle.shared.spool.push(topic, payload)?;
        self.handle.shared.wake.notify_one();
        Ok(seq)
    }

    /// Spools several messages in one commit (all or none) and wakes the delivery task.
    pub fn send_batch(&self, messages: &[(&str, &[u8])]) -> Result<Vec<u64>, SpoolError> {
        let seqs = self.handle.shared.spool.push_batch(messages)?;
        self.handle.shared.wake.notify_one();
        Ok(seqs)
    }

    /// Counters, connection state and spool state.
    pub fn stats(&self) -> SinkStats {
        let shared = &self.handle.shared;
        let c = shared.counters();
        SinkStats {
            name: shared.name.clone(),
            connected: c.connected,
            delivered: c.delivered,
            rejected: c.rejected,
            attempts: c.attempts,
            last_error: c.last_error.clone(),
            last_delivery_ms: c.last_delivery_ms,
            spool: shared.spool.stats(),
        }
    }

    /// Stops the delivery task and waits for it; undelivered messages stay in the spool.
    pub async fn shutdown(&self) {
        let _ = self.handle.stop.send(true);
        let task = self
            .handle
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(sink = %self.handle.shared.name, error = %e, "delivery task failed");
        }
        self.handle.shared.set_connected(false);
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT

/// Where a message in the MQTT window stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Handed to the event loop, not yet written.
    Queued,
    /// Written with this packet id; waiting for its PUBACK.
    Sent(u16),
    /// Confirmed by the broker (or written, for QoS 0).
    Confirmed,
    /// Cannot be carried by MQTT; dropped (counted).
    Rejected,
}

/// The messages of one connection that were taken from the spool and not yet removed from it,
/// oldest first.
struct Window {
    entries: VecDeque<(u64, Stage)>,
    /// Seqs handed to the event loop, in order, waiting for their packet id.
    queued: VecDeque<u64>,
    /// The spool held nothing beyond the window at the last look (until the next wake).
    exhausted: bool,
    /// When the broker must have made progress by, while anything is in flight.
    deadline: Option<Instant>,
}

impl Window {
    fn new() -> Window {
        Window {
            entries: VecDeque::new(),
            queued: VecDeque::new(),
            exhausted: false,
            deadline: None,
        }
    }

    fn stage_mut(&mut self, seq: u64) -> Option<&mut Stage> {
        let i = self.entries.binary_search_by_key(&seq, |e| e.0).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// The leading run of settled messages: (last seq, delivered, rejected).
    fn settled_prefix(&self) -> Option<(u64, u64, u64)> {
        let mut out = None;
        let (mut delivered, mut rejected) = (0, 0);
        for (seq, stage) in &self.entries {
            match stage {
                Stage::Confirmed => delivered += 1,
                Stage::Rejected => rejected += 1,
                Stage::Queued | Stage::Sent(_) => break,
            }
            out = Some((*seq, delivered, rejected));
        }
        out
    }

    fn in_flight(&self) -> bool {
        self.entries
            .iter()
            .any(|(_, s)| matches!(s, Stage::Queued | Stage::Sent(_)))
    }
}

struct Mqtt {
    shared: Arc<Shared>,
    client: AsyncClient,
    events: EventLoop,
    broker: String,
    topic_prefix: String,
    qos: QoS,
    /// Most messages taken from the spool and not yet confirmed.
    window: usize,
    /// Confirmed messages are removed from the spool in runs of at least this many (or when
    /// nothing else is in flight).
    commit_every: usize,
}

/// What ended a connected stretch.
enum Ended {
    Stopped,
    Failed(String),
}

async fn run_mqtt(shared: Arc<Shared>, config: SinkConfig, mut backoff: Backoff, mut stop: Stop) {
    let SinkTarget::Mqtt {
        host,
        port,
        client_id,
        topic_prefix,
        qos,
        keep_alive,
    } = config.target
    else {
        return;
    };
    let window = config.batch.min(u16::MAX as usize);
    let mut options = MqttOptions::new(client_id, host.clone(), port);
    options
        .set_keep_alive(keep_alive)
        .set_clean_session(true)
        .set_inflight(window as u16)
        .set_max_packet_size(64 * 1024, MQTT_MAX_PACKET);
    let (client, mut events) = AsyncClient::new(options, window);
    let mut network = events.network_options();
    // publishes are written one by one; do not let Nagle hold them back
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(10);
    events.set_network_options(network);
    let mut mqtt = Mqtt {
        shared,
        client,
        events,
        broker: format!("{host}:{port}"),
        topic_prefix,
        qos: if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        },
        window,
        commit_every: (window / 2).max(1),
    };
    while !stop.is_set() {
        let polled = tokio::select! {
            _ = stop.wait() => break,
            polled = mqtt.events.poll() => polled,
        };
        let error = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                mqtt.shared.set_connected(true);
                backoff.reset();
                tracing::info!(sink = %mqtt.shared.name, broker = %mqtt.broker, "connected to MQTT broker");
                match mqtt.deliver(&mut stop).await {
                    Ended::Stopped => break,
                    Ended::Failed(error) => error,
                }
            }
            Ok(_) => continue,
            Err(e) => e.to_string(),
        };
        // drop the connection; a fresh session resends from the oldest unconfirmed message
        mqtt.events.clean();
        mqtt.shared
            .fail(format!("MQTT {}: {error}", mqtt.broker), true);
        mqtt.shared.expire().await;
        if stop.sleep(backoff.delay()).await {
            break;
        }
    }
    mqtt.events.clean();
}

impl Mqtt {
    /// Streams the spool to the connected broker until the connection fails or the sink stops.
    /// Keeps up to `window` messages in flight; removes confirmed ones from the spool in order.
    async fn deliver(&mut self, stop: &mut Stop) -> Ended {
        let mut w = Window::new();
        let ended = loop {
            if let Err(e) = self.commit(&mut w, false).await {
                break Ended::Failed(e);
            }
            if let Err(e) = self.fill(&mut w).await {
                break Ended::Failed(e);
            }
            let idle = w.entries.is_empty();
            let deadline = w
                .deadline
                .unwrap_or_else(|| Instant::now() + MQTT_ACK_TIMEOUT);
            tokio::select! {
                biased;
                _ = stop.wait() => break Ended::Stopped,
                _ = self.shared.wake.notified(), if w.exhausted => w.exhausted = false,
                polled = tokio::time::timeout_at(deadline, self.events.poll()) => match polled {
                    // an idle connection has no deadline: only keep-alive polls
                    Err(_) if idle => {}
                    Err(_) => break Ended::Failed(format!(
                        "no PUBACK from the broker within {MQTT_ACK_TIMEOUT:?}"
                    )),
                    Ok(Err(e)) => break Ended::Failed(e.to_string()),
                    Ok(Ok(event)) => self.on_event(&mut w, event),
                },
            }
        };
        // keep what was confirmed before the connection ended
        let _ = self.commit(&mut w, true).await;
        ended
    }

    fn on_event(&self, w: &mut Window, event: Event) {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let Some(seq) = w.queued.pop_front() else {
                    return;
                };
                let qos0 = self.qos == QoS::AtMostOnce;
                if let Some(stage) = w.stage_mut(seq) {
                    *stage = if qos0 {
                        Stage::Confirmed
                    } else {
                        Stage::Sent(pkid)
                    };
                }
                w.deadline = Some(Instant::now() + MQTT_ACK_TIMEOUT);
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some((_, stage)) = w
                    .entries
                    .iter_mut()
                    .find(|(_, s)| *s == Stage::Sent(ack.pkid))
                {
                    *stage = Stage::Confirmed;
                }
                w.deadline = Some(Instant::now() + MQTT_ACK_TIMEOUT);
            }
            _ => {}
        }
    }

    /// Takes more messages from the spool into the window and hands them to the event loop.
    async fn fill(&mut self, w: &mut Window) -> Result<(), String> {
        let room = self.window.saturating_sub(w.entries.len());
        if w.exhausted || room == 0 {
            return Ok(());
        }
        let spool = self.shared.spool.clone();
        let after = w.entries.back().map(|e| e.0);
        let messages = blocking(move || match after {
            Some(after) => spool.peek_after(after, room),
            // nothing in flight: the head may be expired
            None => spool.peek(room),
        })
        .await
        .map_err(|e| e.to_string())?;
        w.exhausted = messages.len() < room;
        let mut handed = 0;
        for m in messages {
            let topic = format!("{}{}", self.topic_prefix, m.topic);
            let problem = mqtt_topic_problem(&topic).or((topic.len()
                + m.payload.len()
                + MQTT_PUBLISH_OVERHEAD
                > MQTT_MAX_PACKET)
                .then_some("the message is larger than an MQTT packet can be"));
            if let Some(problem) = problem {
                tracing::warn!(sink = %self.shared.name, seq = m.seq, topic = %topic, problem, "message rejected");
                w.entries.push_back((m.seq, Stage::Rejected));
                continue;
            }
            self.client
                .try_publish(topic, self.qos, false, m.payload)
                .map_err(|e| format!("queueing a publish: {e}"))?;
            w.entries.push_back((m.seq, Stage::Queued));
            w.queued.push_back(m.seq);
            handed += 1;
        }
        if handed > 0 {
            self.shared.count_attempts(handed);
            w.deadline
                .get_or_insert_with(|| Instant::now() + MQTT_ACK_TIMEOUT);
        }
        if !w.in_flight() {
            w.deadline = None;
        }
        Ok(())
    }

    /// Removes the settled prefix of the window from the spool once it is long enough, nothing
    /// else is in flight, or `now`.
    async fn commit(&mut self, w: &mut Window, now: bool) -> Result<(), String> {
        let Some((through, delivered, rejected)) = w.settled_prefix() else {
            return Ok(());
        };
        let settled = (delivered + rejected) as usize;
        if !(now || settled >= self.commit_every || settled == w.entries.len()) {
            return Ok(());
        }
        self.shared
            .confirm(through, delivered, rejected)
            .await
            .map_err(|e| e.to_string())?;
        w.entries.drain(..settled);
        if !w.in_flight() {
            w.deadline = None;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook

/// How a webhook answered.
enum Answer {
    /// The HTTP status and a `Retry-After` in seconds, if any.
    Status(u16, Option<Duration>),
    /// The message cannot be put in a request at all (e.g. a topic not valid as a header value).
    Unsendable(String),
}

struct WebhookClient {
    url: WebhookUrl,
    headers: HeaderMap,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl WebhookClient {
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.url.authority))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.url.authority))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
        Ok(sender)
    }

    /// POSTs one message; `Err` is a transport failure (retry later).
    async fn post(&mut self, topic: &str, payload: &[u8]) -> Result<Answer, String> {
        let Ok(topic_value) = HeaderValue::from_str(topic) else {
            return Ok(Answer::Unsendable(format!(
                "topic `{}` is not a valid header value",
                topic.escape_debug()
            )));
        };
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(topic_value, payload)).await {
            Ok(answer) => answer,
            Err(_) => {
                self.sender = None;
                Err(format!(
                    "no answer from {} within {timeout:?}",
                    self.url.authority
                ))
            }
        }
    }

    async fn exchange(&mut self, topic: HeaderValue, payload: &[u8]) -> Result<Answer, String> {
        let reusable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        let mut sender = match self.sender.take() {
            Some(sender) if reusable => sender,
            _ => self.connect().await?,
        };
        let mut request = hyper::Request::post(self.url.path.as_str())
            .body(Full::new(Bytes::copy_from_slice(payload)))
            .map_err(|e| format!("building the request: {e}"))?;
        let headers = request.headers_mut();
        headers.insert(
            HOST,
            HeaderValue::from_str(&self.url.authority).map_err(|e| e.to_string())?,
        );
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(HeaderName::from_static(TOPIC_HEADER), topic);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("POST to {}: {e}", self.url.authority))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read the (small) answer so the connection can be reused; a large one closes it.
        if Limited::new(response.into_body(), WEBHOOK_MAX_ANSWER)
            .collect()
            .await
            .is_ok()
        {
            self.sender = Some(sender);
        }
        Ok(Answer::Status(status, retry_after))
    }
}

async fn run_webhook(
    shared: Arc<Shared>,
    config: SinkConfig,
    mut backoff: Backoff,
    mut stop: Stop,
) {
    let SinkTarget::Webhook {
        url,
        headers,
        timeout,
    } = config.target
    else {
        return;
    };
    // validate() has checked both
    let (Ok(parsed), Ok(headers)) = (parse_webhook_url(&url), parse_headers(&headers)) else {
        return;
    };
    let mut client = WebhookClient {
        url: parsed,
        headers,
        timeout,
        sender: None,
    };
    while !stop.is_set() {
        let messages = match shared.peek(config.batch).await {
            Ok(messages) => messages,
            Err(e) => {
                shared.fail(e.to_string(), false);
                if stop.sleep(backoff.delay()).await {
                    break;
                }
                continue;
            }
        };
        if messages.is_empty() {
            tokio::select! {
                _ = stop.wait() => break,
                _ = shared.wake.notified() => {}
            }
            continue;
        }
        let mut confirmed_through = None;
        let (mut delivered, mut rejected) = (0, 0);
        // (error, Retry-After, whether the peer is unreachable)
        let mut failure: Option<(String, Option<Duration>, bool)> = None;
        for m in &messages {
            shared.count_attempts(1);
            let answer = tokio::select! {
                _ = stop.wait() => break,
                answer = client.post(&m.topic, &m.payload) => answer,
            };
            match answer {
                Ok(Answer::Status(status, _)) if (200..300).contains(&status) => {
                    shared.set_connected(true);
                    delivered += 1;
                }
                Ok(Answer::Status(status, _))
                    if (400..500).contains(&status) && status != 408 && status != 429 =>
                {
                    shared.set_connected(true);
                    tracing::warn!(sink = %shared.name, seq = m.seq, topic = %m.topic, status, "webhook rejected the message; dropped");
                    rejected += 1;
                }
                Ok(Answer::Unsendable(why)) => {
                    tracing::warn!(sink = %shared.name, seq = m.seq, why = %why, "message cannot be sent to a webhook; dropped");
                    rejected += 1;
                }
                Ok(Answer::Status(status, retry_after)) => {
                    shared.set_connected(true);
                    failure = Some((format!("{url} answered HTTP {status}"), retry_after, false));
                    break;
                }
                Err(e) => {
                    failure = Some((e, None, true));
                    break;
                }
            }
            confirmed_through = Some(m.seq);
        }
        if let Some(through) = confirmed_through {
            // an error is logged and recorded; the messages will be sent again
            let _ = shared.confirm(through, delivered, rejected).await;
        }
        match failure {
            None => backoff.reset(),
            Some((error, retry_after, unreachable)) => {
                shared.fail(error, unreachable);
                shared.expire().await;
                let delay = backoff
                    .delay()
                    .max(retry_after.unwrap_or_default().min(config.retry_max));
                if stop.sleep(delay).await {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt(host: &str) -> SinkTarget {
        mqtt_with(host, 1, Duration::from_secs(30), "site/")
    }

    fn mqtt_with(host: &str, qos: u8, keep_alive: Duration, prefix: &str) -> SinkTarget {
        SinkTarget::Mqtt {
            host: host.into(),
            port: 1883,
            client_id: "outpost".into(),
            topic_prefix: prefix.into(),
            qos,
            keep_alive,
        }
    }

    fn webhook(url: &str) -> SinkTarget {
        SinkTarget::Webhook {
            url: url.into(),
            headers: vec![],
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn webhook_urls_are_split_into_host_port_and_path() {
        let u = parse_webhook_url("http://example.test:8080/in?x=1").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.authority.as_str(),
                u.path.as_str()
            ),
            ("example.test", 8080, "example.test:8080", "/in?x=1")
        );
        let u = parse_webhook_url("http://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 80, "/"));
    }

    #[test]
    fn invalid_configs_are_errors_not_panics() {
        for target in [
            webhook("https://example.test/"),
            webhook("example.test/path"),
            webhook("http://"),
            webhook("http://user:pw@example.test/"),
            webhook("not a url at all"),
            mqtt(""),
            mqtt("bad host"),
            mqtt_with("localhost", 2, Duration::from_secs(30), ""),
            mqtt_with("localhost", 1, Duration::from_millis(500), ""),
            mqtt_with("localhost", 1, Duration::from_secs(30), "a/#/"),
            SinkTarget::Webhook {
                url: "http://h/".into(),
                headers: vec![("bad name".into(), "v".into())],
                timeout: Duration::from_secs(1),
            },
            SinkTarget::Webhook {
                url: "http://h/".into(),
                headers: vec![("x-outpost-topic".into(), "v".into())],
                timeout: Duration::from_secs(1),
            },
        ] {
            let config = SinkConfig::new("s", target.clone());
            assert!(
                matches!(config.validate(), Err(SinkError::Invalid { .. })),
                "{target:?} was accepted"
            );
        }
        assert!(SinkConfig::new("s", mqtt("127.0.0.1")).validate().is_ok());
        assert!(
            SinkConfig::new("s", webhook("http://127.0.0.1:9/x"))
                .validate()
                .is_ok()
        );
        let mut config = SinkConfig::new("s", mqtt("localhost"));
        config.retry_initial = Duration::ZERO;
        assert!(config.validate().is_err());
        config.retry_initial = Duration::from_secs(2);
        config.retry_max = Duration::from_secs(1);
        assert!(config.validate().is_err());
    }

    #[test]
    fn starting_outside_a_runtime_is_an_error() {
        let spool = Spool::in_memory(SpoolLimits::default()).unwrap();
        let err = Sink::start(SinkConfig::new("s", mqtt("localhost")), spool).unwrap_err();
        assert_eq!(err, SinkError::NoRuntime("s".into()));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let nominal = [100, 200, 400, 700, 700];
        for n in nominal {
            let d = b.delay().as_millis() as u64;
            assert!((n / 2..=n).contains(&d), "delay {d} ms for nominal {n} ms");
        }
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
    }

    #[test]
    fn mqtt_topics_that_the_protocol_cannot_carry_are_named() {
        assert_eq!(mqtt_topic_problem("a/b"), None);
        assert!(mqtt_topic_problem("").is_some());
        assert!(mqtt_topic_problem("a/+").is_some());
        assert!(mqtt_topic_problem(&"x".repeat(70_000)).is_some());
    }
}
