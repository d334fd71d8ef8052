//! The SD-WAN host service: the site's uplinks, their active probes and the reflector that
//! answers the remote sites' probes (`[sdwan]`).
//!
//! Each uplink gets an [`outpost_sdwan::Prober`] bound to its local address that probes the
//! remote site's reflector (default every 100 ms) and keeps RTT, jitter and loss over a sliding
//! window; state changes (up/down) are kept as failover events. All of it is read-only to the
//! rest of the host: `/v1/status`, `/metrics` and the web UI show it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_manifest::{SdwanSettings, UplinkSpec};
use outpost_sdwan::{LinkQuality, LinkState, ProbeConfig, Prober, Reflector, probe::ProberHandle};
use serde::Serialize;
use tokio::sync::watch;

use crate::error::RuntimeError;

/// Link changes kept for the status.
const EVENTS_KEPT: usize = 100;

/// One uplink's place in the status.
#[derive(Debug, Clone, Serialize)]
pub struct UplinkStatus {
    /// Manifest name.
    pub name: String,
    /// Numeric id carried in its probes (the uplinks' sorted order).
    pub link_id: u32,
    /// The address its probes leave from.
    pub local: SocketAddr,
    /// The remote site's reflector.
    pub remote: SocketAddr,
    /// Egress cap in Mbit/s, if any.
    pub rate_mbps: Option<u32>,
    /// Quality over the probe window, and counters.
    pub quality: LinkQuality,
    /// Up/down changes since start.
    pub changes: u64,
}

/// An uplink going down or coming back.
#[derive(Debug, Clone, Serialize)]
pub struct LinkChange {
    /// Uplink name.
    pub uplink: String,
    /// `up` or `down`.
    pub state: &'static str,
    /// When the prober decided it (ms since the Unix epoch).
    pub unix_ms: u64,
    /// Mean RTT then, ms.
    pub rtt_ms: f64,
    /// Loss over the window then, percent.
    pub loss_pct: f64,
}

/// The reflector's address and counters.
#[derive(Debug, Clone, Serialize)]
pub struct ReflectorStatus {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Probes answered.
    pub reflected: u64,
    /// Datagrams refused (not a probe request).
    pub rejected: u64,
}

/// What `/v1/status` shows under `sdwan`.
#[derive(Debug, Clone, Serialize)]
pub struct SdwanStatus {
    /// Milliseconds between probes.
    pub probe_interval_ms: u64,
    /// The reflector, when this site answers probes.
    pub reflector: Option<ReflectorStatus>,
    /// The uplinks in link-id order.
    pub uplinks: Vec<UplinkStatus>,
    /// Recent up/down changes, oldest first.
    pub events: Vec<LinkChange>,
    /// Each application class's current link (port), as the SD-WAN plugin last decided it.
    pub classes: Vec<ClassChoice>,
}

/// One class's current link.
#[derive(Debug, Clone, Serialize)]
pub struct ClassChoice {
    /// Class name.
    pub class: String,
    /// The overlay port its latest flow decision picked.
    pub link: String,
}

struct Uplink {
    spec: UplinkSpec,
    link_id: u32,
    prober: ProberHandle,
    changes: Arc<AtomicU64>,
}

/// The running service.
pub struct SdwanService {
    interval_ms: u64,
    reflector: Option<Reflector>,
    uplinks: Vec<Uplink>,
    events: Arc<Mutex<VecDeque<LinkChange>>>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
    choices: Option<Arc<outpost_dataplane::Table>>,
}

impl std::fmt::Debug for SdwanService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdwanService")
            .field("uplinks", &self.uplinks.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SdwanService {
    /// Binds the reflector and every uplink's prober; the error names the uplink (or the
    /// reflector) and the address that could not be bound.
    pub async fn start(
        settings: &SdwanSettings,
        links_table: Option<Arc<outpost_dataplane::Table>>,
        choices: Option<Arc<outpost_dataplane::Table>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, RuntimeError> {
        let reflector = match settings.reflector {
            Some(addr) => Some(Reflector::bind(addr).await.map_err(|e| {
                RuntimeError::Service(format!("sdwan.reflector: cannot listen on {addr}: {e}"))
            })?),
            None => None,
        };
        let events = Arc::new(Mutex::new(VecDeque::new()));
        let mut uplinks = Vec::new();
        let mut watchers = Vec::new();
        for (link_id, (name, spec)) in (0u32..).zip(&settings.uplinks) {
            let config = ProbeConfig {
                interval: Duration::from_millis(settings.probe_interval_ms),
                down_after: settings.down_after,
                up_after: settings.up_after,
                min_timeout: Duration::from_millis(settings.probe_interval_ms),
                ..ProbeConfig::for_link(link_id)
            };
            let prober = Prober::bind(spec.local, spec.remote, config)
                .await
                .map_err(|e| {
                    RuntimeError::Service(format!(
                        "sdwan.uplinks.{name}: cannot probe {} from {}: {e}",
                        spec.remote, spec.local
                    ))
                })?;
            let mut rx = prober.subscribe();
            let changes = Arc::new(AtomicU64::new(0));
            let (log, uplink, mut stop) = (events.clone(), name.clone(), shutdown.clone());
            let counter = changes.clone();
            watchers.push(tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        e = rx.recv() => e,
                        _ = stop.changed() => return,
                    };
                    let event = match event {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    let state = match event.state {
                        LinkState::Up => "up",
                        LinkState::Down => "down",
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%uplink, state, rtt_ms = event.quality.rtt_ms, loss_pct = event.quality.loss_pct, "sdwan uplink changed state");
                    let mut log = lock(&log);
                    if log.len() == EVENTS_KEPT {
                        log.pop_front();
                    }
                    log.push_back(LinkChange {
                        uplink: uplink.clone(),
                        state,
                        unix_ms: event.unix_ms,
                        rtt_ms: event.quality.rtt_ms,
                        loss_pct: event.quality.loss_pct,
                    });
                }
            }));
            if let Some(table) = &links_table {
                watchers.push(tokio::spawn(publish_quality(
                    table.clone(),
                    name.clone(),
                    prober.watch_quality(),
                    shutdown.clone(),
                )));
            }
            tracing::info!(uplink = %name, local = %prober.local_addr(), remote = %spec.remote, "sdwan uplink probing");
            uplinks.push(Uplink {
                spec: spec.clone(),
                link_id,
                prober,
                changes,
            });
        }
        Ok(Self {
            interval_ms: settings.probe_interval_ms,
            reflector,
            uplinks,
            events,
            watchers,
            choices,
        })
    }

    /// The uplinks' quality and the recent changes.
    pub fn status(&self) -> SdwanStatus {
        let events = lock(&self.events);
        SdwanStatus {
            probe_interval_ms: self.interval_ms,
            reflector: self.reflector.as_ref().map(|r| ReflectorStatus {
                addr: r.local_addr(),
                reflected: r.stats().reflected.load(Ordering::Relaxed),
                rejected: r.stats().rejected.load(Ordering::Relaxed),
            }),
            uplinks: self
                .uplinks
                .iter()
                .map(|u| UplinkStatus {
                    name: u.spec.name.clone(),
                    link_id: u.link_id,
                    local: u.prober.local_addr(),
                    remote: u.spec.remote,
                    rate_mbps: u.spec.rate_mbps,
                    quality: u.prober.quality(),
                    changes: u.changes.load(Ordering::Relaxed),
                })
                .collect(),
            events: events.iter().cloned().collect(),
            classes: self.choices.as_ref().map_or_else(Vec::new, |t| {
                t.keys(None, 64)
                    .into_iter()
                    .filter_map(|k| {
                        let link = t.get(&k)?;
                        Some(ClassChoice {
                            class: String::from_utf8_lossy(&k).into_owned(),
                            link: String::from_utf8_lossy(&link).into_owned(),
                        })
                    })
                    .collect()
            }),
        }
    }
}

/// Encodes an uplink's quality for the links table (what an SD-WAN plugin reads):
///
/// | bytes | field |
/// | --- | --- |
/// | 0 | 1 when up, 0 when down |
/// | 1..4 | reserved, 0 |
/// | 4..8 | mean RTT, µs (u32, big-endian, saturating) |
/// | 8..12 | jitter, µs (u32, big-endian, saturating) |
/// | 12..14 | loss over the window, per mille (u16, big-endian) |
/// | 14..16 | reserved, 0 |
/// | 16..24 | when the state last changed, ms since the Unix epoch (u64, big-endian) |
pub fn encode_link(q: &LinkQuality, changed_unix_ms: u64) -> [u8; 24] {
    let us = |ms: f64| (ms * 1000.0).clamp(0.0, f64::from(u32::MAX)) as u32;
    let mut v = [0u8; 24];
    v[0] = u8::from(q.state == LinkState::Up);
    v[4..8].copy_from_slice(&us(q.rtt_ms).to_be_bytes());
    v[8..12].copy_from_slice(&us(q.jitter_ms).to_be_bytes());
    let permille = (q.loss_pct * 10.0).clamp(0.0, 1000.0) as u16;
    v[12..14].copy_from_slice(&permille.to_be_bytes());
    v[16..24].copy_from_slice(&changed_unix_ms.to_be_bytes());
    v
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes every quality update of `uplink` into `table` until shutdown.
async fn publish_quality(
    table: Arc<outpost_dataplane::Table>,
    uplink: String,
    mut quality: watch::Receiver<LinkQuality>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_state = None;
    let mut changed = unix_ms();
    loop {
        let q = quality.borrow_and_update().clone();
        if last_state != Some(q.state) {
            if last_state.is_some() {
                changed = unix_ms();
            }
            last_state = Some(q.state);
        }
        if let Err(e) = table.put(uplink.as_bytes(), &encode_link(&q, changed)) {
            tracing::warn!(%uplink, error = %e, "cannot publish the uplink's quality");
        }
        tokio::select! {
            r = quality.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

impl Drop for SdwanService {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Overlay ports: the WireGuard tunnels a network function forwards packets into.

/// What status shows of an overlay port.
#[derive(Debug, Clone, Serialize)]
pub struct OverlayPortStatus {
    /// This site's WireGuard public key for the tunnel (give it to the remote site).
    pub public_key: String,
    /// Where its datagrams leave from.
    pub local: SocketAddr,
    /// The remote site's endpoint.
    pub peer: SocketAddr,
    /// The uplink whose probes judge this path.
    pub uplink: Option<String>,
    /// WireGuard counters: packets, datagrams, handshakes, and drops of hostile input.
    pub counters: outpost_sdwan::overlay::OverlayCounters,
}

/// The status side of an open overlay port (the data path owns the port itself).
#[derive(Debug, Clone)]
pub struct OverlayHandle {
    public_key: String,
    local: SocketAddr,
    peer: SocketAddr,
    uplink: Option<String>,
    counters: Arc<outpost_sdwan::overlay::SharedOverlayCounters>,
}

impl OverlayHandle {
    /// A snapshot for status.
    pub fn status(&self) -> OverlayPortStatus {
        OverlayPortStatus {
            public_key: self.public_key.clone(),
            local: self.local,
            peer: self.peer,
            uplink: self.uplink.clone(),
            counters: self.counters.snapshot(),
        }
    }
}

/// Where overlay ports keep the private keys the host generates, and the host's key service
/// that seals them when encryption at rest is on.
#[derive(Clone)]
pub struct OverlayKeys {
    /// `<data>/sdwan`.
    pub dir: std::path::PathBuf,
    /// The KEK provider, when encryption at rest is on.
    pub provider: Option<outpost_services::SharedProvider>,
}

impl std::fmt::Debug for OverlayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayKeys")
            .field("dir", &self.dir)
            .field("sealed", &self.provider.is_some())
            .finish()
    }
}

/// Generates a key for `port` into `<dir>/<file>` (the directory owner-only, the file written
/// atomically and owner-only), storing what `encode` makes of the 32 secret bytes.
fn generate_key_file(
    port: &str,
    keys: &OverlayKeys,
    file: &str,
    encode: impl FnOnce(&[u8; 32]) -> Result<Vec<u8>, String>,
) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = keys.dir.join(file);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&keys.dir)
        .and_then(|()| std::fs::set_permissions(&keys.dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("ports.{port}: {}: {e}", keys.dir.display()))?;
    let secret = outpost_sdwan::overlay::generate_secret();
    let bytes = encode(&secret.to_bytes())?;
    outpost_keys::write_private(&path, &bytes).map_err(|e| format!("ports.{port}: {e}"))?;
    tracing::info!(port, path = %path.display(), "generated the overlay port's private key");
    Ok(path)
}

/// A generated key sealed by the key service: `<dir>/<port>.key.sealed` (envelope-encrypted
/// under the host's KEK, like every other secret at rest); created the first time.
fn sealed_secret(
    port: &str,
    keys: &OverlayKeys,
    provider: &outpost_services::SharedProvider,
) -> Result<outpost_sdwan::overlay::StaticSecret, String> {
    let path = generate_key_file(port, keys, &format!("{port}.key.sealed"), |secret| {
        outpost_keys::seal(provider.as_ref(), secret).map_err(|e| format!("ports.{port}: {e}"))
    })?;
    let err = |e: &dyn std::fmt::Display| format!("ports.{port}: {}: {e}", path.display());
    let sealed = std::fs::read(&path).map_err(|e| err(&e))?;
    let bytes = outpost_keys::open(provider.as_ref(), &sealed).map_err(|e| err(&e))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| err(&"does not hold a 32-byte key"))?;
    Ok(outpost_sdwan::overlay::StaticSecret::from(bytes))
}

/// Reads this site's private key for overlay port `port`: from the manifest's
/// `private_key_file` (which must be owner-only); else, with encryption at rest on, from
/// `<dir>/<port>.key.sealed` (sealed by the key service); else from `<dir>/<port>.key`
/// (owner-only). The last two are generated the first time.
fn overlay_secret(
    port: &str,
    spec: &outpost_manifest::OverlaySpec,
    keys: &OverlayKeys,
) -> Result<outpost_sdwan::overlay::StaticSecret, String> {
    use std::os::unix::fs::PermissionsExt;
    if spec.private_key_file.is_none()
        && let Some(provider) = &keys.provider
    {
        return sealed_secret(port, keys, provider);
    }
    let path = match &spec.private_key_file {
        Some(p) => p.clone(),
        None => generate_key_file(port, keys, &format!("{port}.key"), |secret| {
            Ok(format!("{}\n", outpost_sdwan::overlay::encode_key(secret)).into_bytes())
        })?,
    };
    let meta =
        std::fs::metadata(&path).map_err(|e| format!("ports.{port}: {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "ports.{port}: the private key {} is readable by others (chmod 600 it)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("ports.{port}: {}: {e}", path.display()))?;
    outpost_sdwan::overlay::decode_secret(text.trim()).map_err(|_| {
        format!(
            "ports.{port}: {} does not hold a WireGuard private key (base64 of 32 bytes)",
            path.display()
        )
    })
}

/// Opens overlay port `port` (index `id` among the plugin's ports).
pub fn open_overlay_port(
    id: u16,
    port: &str,
    spec: &outpost_manifest::OverlaySpec,
    keys: &OverlayKeys,
) -> Result<(outpost_sdwan::overlay::port::OverlayPort, OverlayHandle), String> {
    use outpost_sdwan::overlay;
    let secret = overlay_secret(port, spec, keys)?;
    let public_key = overlay::encode_key(overlay::public_key(&secret).as_bytes());
    let peer_public = overlay::decode_public(&spec.peer_public_key).map_err(|_| {
        format!("ports.{port}.peer_public_key: not a WireGuard public key (base64 of 32 bytes)")
    })?;
    let mut config = overlay::OverlayConfig::new(secret, peer_public);
    // Session indices only need to differ between this host's tunnels.
    config.index = u32::from(id) + 1;
    config.keepalive_secs = Some(10);
    let mut open = overlay::port::OverlayPort::open(id, port, spec.local, spec.peer, config)
        .map_err(|e| {
            format!(
                "ports.{port}: cannot open the tunnel from {}: {e}",
                spec.local
            )
        })?;
    if let Some(mbps) = spec.rate_mbps {
        // Mbit/s of inner bytes: the cap is the uplink's; the shaper puts real-time first.
        open = open
            .with_rate_cap(u64::from(mbps) * 125_000)
            .map_err(|e| format!("ports.{port}: {e}"))?;
    }
    let local = open
        .local_addr()
        .map_err(|e| format!("ports.{port}: {e}"))?;
    tracing::info!(port, %local, peer = %spec.peer, public_key = %public_key, "overlay port open");
    let handle = OverlayHandle {
        public_key,
        local,
        peer: spec.peer,
        uplink: spec.uplink.clone(),
        counters: open.overlay_counters(),
    };
    Ok((open, handle))
}
