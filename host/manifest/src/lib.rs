//! The Outpost deployment manifest (`outpost.toml`): which plugins run, from which component,
//! with which grants and limits.
//!
//! Everything a plugin can reach is listed here; nothing else is ambient. Parsing is strict:
//! unknown keys, wrong types and invalid values are errors that name the file, line and field.
//!
//! ```
//! let manifest = outpost_manifest::Manifest::parse(r#"
//! [host]
//! name = "backroom-1"
//!
//! [plugins.echo]
//! kind = "pipeline"
//! component = "echo-pipeline.wasm"
//! grants.bus = { subscribe = ["camera/frames"], publish = ["camera/echo"] }
//! "#, "outpost.toml").unwrap();
//! assert_eq!(manifest.plugins["echo"].grants.bus.publish[0].as_str(), "camera/echo");
//! ```

mod error;
mod nf;
mod raw;
mod sdwan;
mod topic;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub use error::ManifestError;
pub use nf::{Ipv4Cidr, NfGrant, OverlaySpec, PortKind, PortSpec, TableKind, TableSpec};
pub use sdwan::{LINK_VALUE_LEN, SdwanSettings, UplinkSpec};
pub use topic::TopicPattern;

/// A validated deployment manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Host-wide settings.
    pub host: HostSettings,
    /// Plugins by name, sorted.
    pub plugins: BTreeMap<String, PluginSpec>,
    /// Timers by name: sources that publish on the bus at a fixed interval.
    pub timers: BTreeMap<String, TimerSpec>,
    /// Sinks by name: where routed messages leave the box.
    pub sinks: BTreeMap<String, SinkSpec>,
    /// Routes, in manifest order: sources connected to plugins, topics and sinks.
    pub routes: Vec<RouteSpec>,
    /// Models (`[[models]]`) by name: graphs the host preloads for `wasi:nn` `load-by-name`.
    pub models: BTreeMap<String, ModelSpec>,
    /// Packet ports by name (`[ports.NAME]`), for network functions.
    pub ports: BTreeMap<String, PortSpec>,
    /// Host-owned tables by name (`[tables.NAME]`), for network functions.
    pub tables: BTreeMap<String, TableSpec>,
    /// Shares by name (`[shares.NAME]`): edge-local or cloud-tiered directories.
    pub shares: BTreeMap<String, ShareSettings>,
    /// The site's WAN uplinks and their probes (`[sdwan]`).
    pub sdwan: Option<SdwanSettings>,
    /// Directory that relative paths in the manifest are resolved against.
    pub base_dir: PathBuf,
}

/// Host-wide settings from the `[host]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSettings {
    /// Device name shown in status and logs.
    pub name: String,
    /// Directories searched, in order, for plugin components named by a relative path.
    pub plugin_dirs: Vec<PathBuf>,
    /// Address the host serves `http` plugins and its own endpoints on.
    pub http_listen: SocketAddr,
    /// Bus topics whose messages the host writes to its log (for watching a pipeline work).
    pub log_topics: Vec<TopicPattern>,
    /// The management API.
    pub api: ApiSettings,
    /// Inference engines (`[host.nn]`).
    pub nn: NnSettings,
    /// Encryption at rest (`[host.encryption]`); read when the host starts.
    pub encryption: EncryptionSettings,
    /// The certificate of the host's TLS endpoints (`[host.tls]`); read when the API starts.
    pub tls: TlsSettings,
    /// Update control for plugins distributed as signed OCI artifacts (`[host.updates]`).
    pub updates: UpdateSettings,
}

/// A share (`[shares.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSettings {
    /// Share name.
    pub name: String,
    /// Its local directory.
    pub path: PathBuf,
    /// Whether its data may leave the device.
    pub kind: ShareKind,
    /// Object store URL of a cloud-tiered share.
    pub target: Option<String>,
    /// `object_store` options of the target (account, endpoint, ...).
    pub target_options: BTreeMap<String, String>,
    /// Bytes the share may hold locally.
    pub quota_bytes: u64,
    /// The tiering-policy plugin deciding what to evict.
    pub policy: Option<String>,
    /// Seconds between policy evaluations (a sixth of it in low-space mode).
    pub evaluate_s: u64,
    /// Upload bandwidth schedule.
    pub bandwidth: BandwidthSettings,
}

/// Edge-local or cloud-tiered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareKind {
    /// Data never leaves the device.
    EdgeLocal,
    /// Data is uploaded; cold files may be evicted and recalled.
    CloudTiered,
}

/// An upload bandwidth schedule: windows (first match wins) with a rate, else the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BandwidthSettings {
    /// Mbit/s outside every window (`None`: unlimited).
    pub default_mbps: Option<u32>,
    /// Windows (UTC) and their rate (`None`: unlimited).
    pub windows: Vec<(TimeWindow, Option<u32>)>,
}

/// Update control (`[host.updates]`): who may sign which plugins, when code updates may be
/// applied, and how to reach registries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSettings {
    /// Trusted publishers. An `image` plugin is only run when one of them signed it.
    pub publishers: Vec<PublisherSettings>,
    /// Maintenance windows (UTC); empty means updates apply at once.
    pub windows: Vec<TimeWindow>,
    /// Registries (`host:port`) reached over plain HTTP (loopback labs only).
    pub insecure_registries: Vec<String>,
    /// Basic credentials per registry (`host:port`).
    pub registry_auth: BTreeMap<String, RegistryAuthSettings>,
}

/// A trusted publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherSettings {
    /// Name shown in status and the audit log.
    pub name: String,
    /// Its ECDSA P-256 public key (SPKI PEM file).
    pub key: PathBuf,
    /// Plugin names it may sign (exact or `*` globs).
    pub plugins: Vec<String>,
    /// Repositories it may sign for (exact or `*` globs).
    pub repositories: Vec<String>,
}

/// Basic credentials for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuthSettings {
    /// User name.
    pub username: String,
    /// File holding the password.
    pub password_file: PathBuf,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// The weekday of a Unix time (seconds, UTC).
    pub fn of_unix(secs: u64) -> Weekday {
        // 1970-01-01 was a Thursday.
        match (secs / 86_400 + 3) % 7 {
            0 => Weekday::Mon,
            1 => Weekday::Tue,
            2 => Weekday::Wed,
            3 => Weekday::Thu,
            4 => Weekday::Fri,
            5 => Weekday::Sat,
            _ => Weekday::Sun,
        }
    }
}

/// A weekly time window in UTC: on `days` (all days when empty) from `start_minute` to
/// `stop_minute` after midnight. A window whose stop is before its start runs past midnight
/// into the next day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TimeWindow {
    /// Days the window opens on.
    pub days: Vec<Weekday>,
    /// Opening minute of the day (0..1440).
    pub start_minute: u16,
    /// Closing minute of the day (0..=1440).
    pub stop_minute: u16,
}

impl TimeWindow {
    /// Whether the window is open at Unix time `secs` (UTC).
    pub fn contains(&self, secs: u64) -> bool {
        let minute = ((secs % 86_400) / 60) as u16;
        let day_ok = |d: Weekday| self.days.is_empty() || self.days.contains(&d);
        if self.start_minute < self.stop_minute {
            day_ok(Weekday::of_unix(secs))
                && minute >= self.start_minute
                && minute < self.stop_minute
        } else {
            // Past midnight: the late part belongs to the day it opened, the early part to the
            // day before.
            (minute >= self.start_minute && day_ok(Weekday::of_unix(secs)))
                || (minute < self.stop_minute
                    && day_ok(Weekday::of_unix(secs.saturating_sub(86_400))))
        }
    }

    /// Seconds from `secs` until the window next opens (0 when open now); `None` if it never
    /// opens (no days).
    pub fn opens_in(&self, secs: u64) -> Option<u64> {
        if self.contains(secs) {
            return Some(0);
        }
        // Step minute by minute over one week from the next whole minute: 10,080 checks at most.
        let next_minute = (secs / 60 + 1) * 60;
        (0..7 * 24 * 60)
            .map(|i| next_minute + i * 60)
            .find(|t| self.contains(*t))
            .map(|t| t - secs)
    }
}

/// Staged rollout of a new version: this share of calls goes to it until it has served this
/// many, then it takes all traffic; failures on the way roll it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CanarySpec {
    /// Percent of calls sent to the new version (1..99).
    pub percent: u8,
    /// Calls the new version must serve before it takes over.
    pub calls: u32,
}

/// The TLS endpoints' certificate (`[host.tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Names (DNS or IP) an uploaded or ACME certificate must cover; empty means the host name.
    pub names: Vec<String>,
    /// PEM bundle of the CAs an uploaded certificate must chain to; when set, self-signed and
    /// otherwise-issued certificates are refused.
    pub ca_bundle: Option<PathBuf>,
    /// Days before expiry at which status and metrics raise an alert.
    pub alert_days: Vec<u32>,
    /// Issue and renew the certificate with ACME.
    pub acme: Option<AcmeSettings>,
    /// Client certificates for the management API (mutual TLS).
    pub client_auth: Option<ClientAuthSettings>,
}

/// Client certificates for the management API (`[host.tls.client_auth]`): which CAs issue them,
/// whether every connection must present one, and the role each certificate name gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthSettings {
    /// PEM bundle of the CAs that issue client certificates.
    pub ca: PathBuf,
    /// Every API connection must present a certificate from `ca` (a token alone is refused).
    pub required: bool,
    /// Certificate name (subject common name, or a DNS, e-mail or URI subject alternative name)
    /// to role (`viewer`, `operator`, `ingest`).
    pub roles: BTreeMap<String, String>,
}

/// The roles a client certificate may be mapped to (the API token roles).
pub const CLIENT_ROLES: [&str; 3] = ["viewer", "operator", "ingest"];

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            names: Vec::new(),
            ca_bundle: None,
            alert_days: vec![30, 7, 1],
            acme: None,
            client_auth: None,
        }
    }
}

/// ACME issuance (`[host.tls.acme]`); http-01 challenges are answered on the host's HTTP
/// listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The directory URL.
    pub directory: String,
    /// Account contacts (`mailto:` URLs).
    pub contact: Vec<String>,
    /// Names to request; empty means `names`.
    pub domains: Vec<String>,
    /// PEM roots that the directory's own HTTPS certificate chains to (default: the system's).
    pub roots: Option<PathBuf>,
    /// Renew when fewer days than this are left.
    pub renew_before_days: u32,
}

/// Encryption at rest of the host's stores (`[host.encryption]`). On by default, with a
/// device-managed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionSettings {
    /// Where the key-encryption key lives.
    pub provider: KeyProviderSpec,
    /// The KEK's id (its label in a PKCS#11 token).
    pub key: String,
}

impl Default for EncryptionSettings {
    fn default() -> Self {
        EncryptionSettings {
            provider: KeyProviderSpec::Device {
                passphrase_file: None,
            },
            key: "outpost-kek".to_string(),
        }
    }
}

/// A key-encryption key provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProviderSpec {
    /// Stores are not encrypted.
    None,
    /// A KEK generated on first start and kept in `<data-dir>/keys` (0600 files), optionally
    /// sealed by a passphrase read from a file.
    Device {
        /// File holding the passphrase that seals the KEK files.
        passphrase_file: Option<PathBuf>,
    },
    /// A customer-managed KEK in an HSM over PKCS#11; it never leaves the token.
    Pkcs11 {
        /// The PKCS#11 module (shared library).
        module: PathBuf,
        /// The token's label.
        token: String,
        /// File holding the user PIN.
        pin_file: PathBuf,
    },
}

/// Inference settings (`[host.nn]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NnSettings {
    /// The ONNX Runtime shared library (`libonnxruntime.so.1.x`). When unset, the host uses
    /// `ORT_DYLIB_PATH`; with neither, ONNX Runtime is unavailable and `auto` models use tract.
    pub onnxruntime: Option<PathBuf>,
}

/// A model the host preloads (`[[models]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Name plugins pass to `load-by-name`, and list in `grants.models`.
    pub name: String,
    /// The ONNX file.
    pub path: PathBuf,
    /// Expected SHA-256 of the file (lower-case hex); a file that differs is not loaded.
    pub sha256: String,
    /// Which engine runs it.
    pub engine: ModelEngine,
    /// Where it runs; the host falls back to CPU (and says so) when the target is missing.
    pub target: ModelTarget,
    /// Intra-op threads per inference; `None` lets the engine decide.
    pub threads: Option<u32>,
    /// Most computes that run on this model at once (ONNX Runtime sessions in its pool).
    pub sessions: u32,
}

/// Which engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelEngine {
    /// ONNX Runtime when its library is available, tract otherwise.
    Auto,
    /// ONNX Runtime (the library must be available).
    OnnxRuntime,
    /// tract, the pure-Rust engine built into the host.
    Tract,
}

impl std::fmt::Display for ModelEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelEngine::Auto => "auto",
            ModelEngine::OnnxRuntime => "onnxruntime",
            ModelEngine::Tract => "tract",
        })
    }
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelTarget {
    /// The CPU.
    Cpu,
    /// A GPU (CUDA through ONNX Runtime).
    Gpu,
}

impl std::fmt::Display for ModelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelTarget::Cpu => "cpu",
            ModelTarget::Gpu => "gpu",
        })
    }
}

/// Where and how the management API listens (`[host.api]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Listen address; `127.0.0.1:7443` by default.
    pub listen: SocketAddr,
    /// Serve TLS with the device certificate. Plain HTTP is only allowed on loopback.
    pub tls: bool,
}

/// Default management API address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7443";

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: DEFAULT_API_LISTEN
                .parse()
                .expect("the default address is valid"),
            tls: true,
        }
    }
}

/// A timer: publishes `payload` on `topic` every `every_ms` milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerSpec {
    /// Name (the default topic is `timers/NAME`).
    pub name: String,
    /// Interval in milliseconds.
    pub every_ms: u64,
    /// Topic it publishes on.
    pub topic: String,
    /// Payload of each tick.
    pub payload: Vec<u8>,
}

/// A sink: an external endpoint that routed messages are delivered to, through an on-disk
/// store-and-forward buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSpec {
    /// Name.
    pub name: String,
    /// Where messages go.
    pub target: SinkTargetSpec,
    /// The store-and-forward buffer in front of it.
    pub buffer: BufferSpec,
}

/// The endpoint behind a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTargetSpec {
    /// An MQTT broker (`mqtt://HOST:PORT`).
    Mqtt {
        /// Broker host.
        host: String,
        /// Broker port.
        port: u16,
        /// MQTT client id (defaults to `HOSTNAME-SINK`).
        client_id: Option<String>,
        /// Prepended to each bus topic.
        topic_prefix: String,
        /// QoS 0 or 1.
        qos: u8,
    },
    /// An HTTP endpoint that each message is `POST`ed to.
    Webhook {
        /// `http://` URL.
        url: String,
        /// Extra request headers.
        headers: BTreeMap<String, String>,
    },
}

/// Bounds of a sink's store-and-forward buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSpec {
    /// Most bytes buffered.
    pub max_bytes: u64,
    /// Most messages buffered.
    pub max_messages: u64,
    /// How long a message may wait before it expires, in seconds (IoT Edge's default, 7200).
    pub ttl_secs: u64,
}

impl Default for BufferSpec {
    fn default() -> Self {
        BufferSpec {
            max_bytes: 64 << 20,
            max_messages: 100_000,
            ttl_secs: 7200,
        }
    }
}

/// Where a route takes messages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSource {
    /// Any message on matching bus topics (`topics/PATTERN`).
    Topics(TopicPattern),
    /// Messages a plugin published (`plugins/NAME` or `plugins/NAME/PATTERN`).
    Plugin {
        /// Publishing plugin.
        plugin: String,
        /// Topics of its output.
        topics: TopicPattern,
    },
    /// A timer's ticks (`timers/NAME`).
    Timer(String),
    /// Messages posted to `POST /v1/ingest/{topic}` (`ingest/PATTERN`).
    Ingest(TopicPattern),
}

/// Where a route delivers messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// A pipeline plugin's `handle` (`plugins/NAME`).
    Plugin(String),
    /// Republished on a bus topic (`topics/TOPIC`).
    Topic(String),
    /// A sink (`sinks/NAME`).
    Sink(String),
}

/// One route: `from` → `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Source as written.
    pub from_text: String,
    /// Target as written.
    pub to_text: String,
    /// Parsed source.
    pub from: RouteSource,
    /// Parsed target.
    pub to: RouteTarget,
}

/// The bus source name the host uses for a timer's ticks.
pub fn timer_source(name: &str) -> String {
    format!("timer:{name}")
}

/// The bus source name the host uses for messages from the ingest endpoint.
pub const INGEST_SOURCE: &str = "http-ingest";

/// When a job is started again after it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartSpec {
    /// The policy.
    pub policy: RestartPolicy,
    /// First delay before a restart, in milliseconds; it doubles after each restart.
    pub backoff_ms: u64,
    /// Longest delay, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec {
            policy: RestartPolicy::Never,
            backoff_ms: 1_000,
            max_backoff_ms: 300_000,
        }
    }
}

/// Restart policies, as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Start again whenever it ends.
    Always,
    /// Start again when it exits non-zero or traps.
    OnFailure,
    /// Run once.
    Never,
}

/// What world a plugin implements, and so how the host drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// `outpost:plugin/pipeline`: message in, messages out.
    Pipeline,
    /// `outpost:plugin/tiering-policy`: storage-tiering decisions.
    TieringPolicy,
    /// `outpost:plugin/network-function`: batched packet processing.
    NetworkFunction,
    /// `wasi:cli/command`: a batch job run to completion.
    Job,
    /// `wasi:http/proxy`: request/response handler behind a route prefix.
    Http,
}

impl PluginKind {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Pipeline => "pipeline",
            PluginKind::TieringPolicy => "tiering-policy",
            PluginKind::NetworkFunction => "network-function",
            PluginKind::Job => "job",
            PluginKind::Http => "http",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plugin: its code, configuration, grants and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// Unique name (lowercase letters, digits and `-`).
    pub name: String,
    /// The world it implements.
    pub kind: PluginKind,
    /// Path of the component (or, for jobs, a WASI preview1 module), resolved at load time.
    /// Empty for `image` plugins until the host has fetched and verified the artifact.
    pub component: PathBuf,
    /// The signed OCI artifact the component comes from (`registry/repo@sha256:…`).
    pub image: Option<String>,
    /// Staged rollout for a new version of this plugin.
    pub canary: Option<CanarySpec>,
    /// Operator-facing version label.
    pub version: Option<String>,
    /// The plugin's own configuration, served read-only through `outpost:plugin/config`.
    pub config: BTreeMap<String, String>,
    /// What the plugin may reach.
    pub grants: Grants,
    /// Resource ceilings.
    pub limits: Limits,
    /// Route prefix for `http` plugins (e.g. `/hello`).
    pub route: Option<String>,
    /// Arguments for `job` plugins (without the program name).
    pub args: Vec<String>,
    /// Probe a new version must pass before it takes traffic (pipelines).
    pub health: Option<HealthCheck>,
    /// When a newly swapped-in version is rolled back by itself.
    pub rollback: RollbackSpec,
    /// When a job is started again (jobs only).
    pub restart: RestartSpec,
}

/// A health probe: a call of the pipeline's `handle` that must succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Probe topic.
    pub topic: String,
    /// Probe payload.
    pub payload: Vec<u8>,
}

/// Automatic rollback: more than `max_failures` traps or broken limits within `window_ms` of a
/// new version roll it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackSpec {
    /// Failures tolerated within the window.
    pub max_failures: u32,
    /// The window, in milliseconds.
    pub window_ms: u64,
}

impl Default for RollbackSpec {
    fn default() -> Self {
        RollbackSpec {
            max_failures: 3,
            window_ms: 60_000,
        }
    }
}

/// Capabilities granted to one plugin. Empty means none: deny by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Outbound network access.
    pub net: NetGrant,
    /// Environment variables the plugin sees (and only these).
    pub env: BTreeMap<String, String>,
    /// Message-bus topics.
    pub bus: BusGrant,
    /// A key-value namespace, if granted.
    pub kv: Option<KvGrant>,
    /// Models (by `[[models]]` name) the plugin may `load-by-name`.
    pub models: Vec<String>,
    /// Loading arbitrary model bytes with `wasi:nn` `load`; off unless granted.
    pub nn_load: Option<NnLoadGrant>,
    /// Ports, tables and the control socket (network functions).
    pub nf: NfGrant,
    /// Shares the plugin may read (`ro`) or read and write (`rw`), by `[shares]` name.
    pub shares: BTreeMap<String, ShareAccess>,
}

/// How a plugin may use a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareAccess {
    /// Read and list (`"ro"`).
    ReadOnly,
    /// Read, list and write (`"rw"`).
    ReadWrite,
}

/// Permission to load model bytes the plugin supplies (`grants.nn = { load = true, max_mb = N }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NnLoadGrant {
    /// Largest model accepted, in bytes.
    pub max_bytes: u64,
}

/// A host directory preopened into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Directory on the host (resolved against the manifest's directory).
    pub host: PathBuf,
    /// Absolute path the guest sees it at.
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

/// Outbound socket endpoints a plugin may connect or send to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetGrant {
    /// Allowed remote endpoints.
    pub connect: Vec<Endpoint>,
    /// Whether DNS lookups are allowed.
    pub lookup: bool,
}

impl NetGrant {
    /// Whether any network access is granted.
    pub fn is_empty(&self) -> bool {
        self.connect.is_empty() && !self.lookup
    }

    /// Whether `addr` matches an allowed endpoint.
    pub fn allows(&self, addr: &SocketAddr) -> bool {
        self.connect.iter().any(|e| e.matches(addr))
    }
}

/// An allowed remote endpoint: an IP address and a port, or any port (`ip:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Remote address.
    pub ip: IpAddr,
    /// Remote port; `None` allows every port.
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parses `ip:port`, `ip:*`, `[v6]:port` or `[v6]:*`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if let Some(ip) = text.strip_suffix(":*") {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            return ip
                .parse()
                .map(|ip| Endpoint { ip, port: None })
                .map_err(|_| format!("`{text}` is not an IP address followed by `:*`"));
        }
        text.parse::<SocketAddr>()
            .map(|addr| Endpoint {
                ip: addr.ip(),
                port: Some(addr.port()),
            })
            .map_err(|_| format!("`{text}` is not `IP:PORT` or `IP:*`"))
    }

    /// Whether `addr` is this endpoint.
    pub fn matches(&self, addr: &SocketAddr) -> bool {
        addr.ip() == self.ip && self.port.is_none_or(|p| p == addr.port())
    }
}

/// Bus topics a plugin may publish to and receives messages from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusGrant {
    /// Topics the plugin may publish to.
    pub publish: Vec<TopicPattern>,
    /// Topics whose messages are delivered to the plugin.
    pub subscribe: Vec<TopicPattern>,
}

impl BusGrant {
    /// Whether any bus access is granted.
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty()
    }

    /// Whether publishing on `topic` is allowed.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }
}

/// A key-value namespace grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvGrant {
    /// Namespace name (defaults to the plugin's name).
    pub namespace: String,
    /// Most bytes (keys plus values) the namespace may hold.
    pub quota_bytes: u64,
}

/// Per-plugin resource ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear-memory ceiling per instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline for one call, in milliseconds.
    pub deadline_ms: u64,
    /// Most elements a table may grow to, and most resource handles an instance may hold.
    pub table_elements: u32,
    /// Most bytes a call may return to the host.
    pub output_bytes: u64,
    /// Most `wasi:nn` computes the plugin runs at once (all its instances together); more
    /// wait their turn, so one tenant cannot take every inference slot.
    pub inference_concurrency: u32,
    /// Network functions: most packets handed to the plugin in one batch.
    pub batch: u32,
    /// Network functions: interval of the `tick` timer, in milliseconds.
    pub tick_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline_ms: 1_000,
            table_elements: 10_000,
            output_bytes: 16 << 20,
            inference_concurrency: 2,
            batch: 256,
            tick_ms: 100,
        }
    }
}

/// Largest per-plugin memory ceiling a manifest may ask for.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Longest per-call deadline a manifest may ask for.
pub const MAX_DEADLINE_MS: u64 = 10 * 60 * 1_000;

impl Manifest {
    /// Reads and validates the manifest at `path`; relative paths in it resolve against its
    /// directory.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::io(path, e))?;
        let mut manifest = Manifest::parse(&text, &path.display().to_string())?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute, so paths that must be absolute (a share's root) are, whatever the current
        // directory was when the manifest was named relatively.
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        manifest.rebase(&base);
        Ok(manifest)
    }

    /// Parses and validates manifest text; `origin` names it in errors. Relative paths resolve
    /// against the current directory until [`Manifest::rebase`] says otherwise.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        raw::parse(text, origin)
    }

    /// Resolves every relative path in the manifest against `base`.
    pub fn rebase(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.base_dir = base.to_path_buf();
        self.host.plugin_dirs.iter_mut().for_each(join);
        if let Some(lib) = &mut self.host.nn.onnxruntime {
            join(lib);
        }
        for model in self.models.values_mut() {
            join(&mut model.path);
        }
        match &mut self.host.encryption.provider {
            KeyProviderSpec::None => {}
            KeyProviderSpec::Device { passphrase_file } => {
                if let Some(f) = passphrase_file {
                    join(f);
                }
            }
            KeyProviderSpec::Pkcs11 {
                module, pin_file, ..
            } => {
                join(module);
                join(pin_file);
            }
        }
        for p in &mut self.host.updates.publishers {
            join(&mut p.key);
        }
        for a in self.host.updates.registry_auth.values_mut() {
            join(&mut a.password_file);
        }
        for share in self.shares.values_mut() {
            join(&mut share.path);
        }
        for port in self.ports.values_mut() {
            if let Some(f) = port
                .overlay
                .as_mut()
                .and_then(|o| o.private_key_file.as_mut())
            {
                join(f);
            }
        }
        if let Some(f) = &mut self.host.tls.ca_bundle {
            join(f);
        }
        if let Some(f) = self.host.tls.acme.as_mut().and_then(|a| a.roots.as_mut()) {
            join(f);
        }
        if let Some(a) = &mut self.host.tls.client_auth {
            join(&mut a.ca);
        }
        for port in self.ports.values_mut() {
            if let Some(path) = &mut port.path {
                join(path);
            }
        }
        for plugin in self.plugins.values_mut() {
            for dir in &mut plugin.grants.dirs {
                join(&mut dir.host);
            }
        }
    }

    /// Finds a plugin's component: an absolute path as is, a relative one in the manifest's
    /// directory and then in each of `plugin_dirs` (and the extra directories given).
    pub fn resolve_component(
        &self,
        plugin: &PluginSpec,
        extra_dirs: &[PathBuf],
    ) -> Option<PathBuf> {
        if plugin.component.is_absolute() {
            return Some(plugin.component.clone()).filter(|p| p.is_file());
        }
        std::iter::once(&self.base_dir)
            .chain(&self.host.plugin_dirs)
            .chain(extra_dirs)
            .map(|dir| dir.join(&plugin.component))
            .find(|p| p.is_file())
    }
}
