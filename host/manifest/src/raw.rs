//! The manifest as written (with source spans), and its validation into [`crate::Manifest`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::{
    AcmeSettings, BandwidthSettings, CLIENT_ROLES, CanarySpec, ClientAuthSettings,
    EncryptionSettings, KeyProviderSpec, PublisherSettings, RegistryAuthSettings, ShareKind,
    ShareSettings, TimeWindow, TlsSettings, UpdateSettings, Weekday,
};
use crate::{
    ApiSettings, BufferSpec, BusGrant, DirGrant, Endpoint, Grants, HealthCheck, HostSettings,
    KvGrant, Limits, MAX_DEADLINE_MS, MAX_MEMORY_BYTES, Manifest, ManifestError, ModelEngine,
    ModelSpec, ModelTarget, NetGrant, NnLoadGrant, NnSettings, PluginKind, PluginSpec,
    RestartPolicy, RestartSpec, RollbackSpec, RouteSource, RouteSpec, RouteTarget, SinkSpec,
    SinkTargetSpec, TimerSpec, TopicPattern,
};
use crate::{Ipv4Cidr, NfGrant, PortKind, PortSpec, TableKind, TableSpec};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    plugins: BTreeMap<Spanned<String>, RawPlugin>,
    #[serde(default)]
    timers: BTreeMap<Spanned<String>, Spanned<RawTimer>>,
    #[serde(default)]
    sinks: BTreeMap<Spanned<String>, Spanned<RawSink>>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    models: Vec<Spanned<RawModel>>,
    #[serde(default)]
    ports: BTreeMap<Spanned<String>, Spanned<RawPort>>,
    #[serde(default)]
    tables: BTreeMap<Spanned<String>, Spanned<RawTable>>,
    #[serde(default)]
    shares: BTreeMap<Spanned<String>, Spanned<RawShare>>,
    sdwan: Option<Spanned<crate::sdwan::RawSdwan>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShare {
    path: PathBuf,
    kind: Spanned<String>,
    target: Option<Spanned<String>>,
    #[serde(default)]
    target_options: BTreeMap<String, String>,
    quota_mb: Option<Spanned<u64>>,
    policy: Option<Spanned<String>>,
    evaluate_s: Option<Spanned<u64>>,
    bandwidth: Option<Spanned<RawBandwidth>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBandwidth {
    default_mbps: Option<u32>,
    #[serde(default)]
    windows: Vec<Spanned<RawRateWindow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateWindow {
    #[serde(default)]
    days: Vec<String>,
    start: String,
    stop: String,
    mbps: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    kind: Spanned<RawPortKind>,
    interface: Option<Spanned<String>>,
    path: Option<PathBuf>,
    address: Option<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    capacity: Option<Spanned<u32>>,
    local: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    peer_public_key: Option<Spanned<String>>,
    private_key_file: Option<PathBuf>,
    uplink: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawPortKind {
    Memory,
    Tap,
    AfPacket,
    Pcap,
    Overlay,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    kind: RawTableKind,
    max_entries: Option<Spanned<u64>>,
    max_key: Option<Spanned<u32>>,
    max_value: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawTableKind {
    Exact,
    Lpm,
    Counters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    path: PathBuf,
    sha256: Spanned<String>,
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    target: RawTarget,
    threads: Option<Spanned<u32>>,
    sessions: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawEngine {
    #[default]
    Auto,
    Onnxruntime,
    Tract,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawTarget {
    #[default]
    Cpu,
    Gpu,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNn {
    onnxruntime: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNnGrant {
    #[serde(default)]
    load: bool,
    max_mb: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<Spanned<String>>,
    tls: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimer {
    every_ms: u64,
    topic: Option<String>,
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawSinkKind {
    Mqtt,
    Webhook,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: RawSinkKind,
    url: String,
    client_id: Option<String>,
    #[serde(default)]
    topic_prefix: String,
    qos: Option<u8>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    buffer: Option<RawBuffer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    max_mb: Option<u64>,
    max_messages: Option<u64>,
    ttl_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    from: String,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    policy: RawRestartPolicy,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawRestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Option<String>,
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    http_listen: Option<Spanned<String>>,
    #[serde(default)]
    log_topics: Vec<Spanned<String>>,
    api: Option<Spanned<RawApi>>,
    #[serde(default)]
    nn: RawNn,
    encryption: Option<Spanned<RawEncryption>>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    updates: RawUpdates,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    names: Vec<Spanned<String>>,
    ca_bundle: Option<PathBuf>,
    alert_days: Option<Spanned<Vec<u32>>>,
    acme: Option<Spanned<RawAcme>>,
    client_auth: Option<Spanned<RawClientAuth>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientAuth {
    ca: PathBuf,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Spanned<String>,
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    roots: Option<PathBuf>,
    renew_before_days: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    percent: u8,
    calls: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpdates {
    #[serde(default)]
    publishers: Vec<Spanned<RawPublisher>>,
    #[serde(default)]
    windows: Vec<Spanned<RawWindow>>,
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    registry_auth: BTreeMap<String, RawRegistryAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublisher {
    name: String,
    key: PathBuf,
    #[serde(default)]
    plugins: Vec<String>,
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    days: Vec<String>,
    start: String,
    stop: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistryAuth {
    username: String,
    password_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    provider: Spanned<String>,
    passphrase_file: Option<PathBuf>,
    module: Option<PathBuf>,
    token: Option<String>,
    pin_file: Option<PathBuf>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum RawKind {
    Pipeline,
    TieringPolicy,
    NetworkFunction,
    Job,
    Http,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    kind: Spanned<RawKind>,
    component: Option<Spanned<PathBuf>>,
    image: Option<Spanned<String>>,
    canary: Option<Spanned<RawCanary>>,
    version: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    limits: RawLimits,
    route: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    health: Option<Spanned<RawHealth>>,
    rollback: Option<Spanned<RawRollback>>,
    restart: Option<Spanned<RawRestart>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    topic: String,
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    max_failures: Option<u32>,
    window_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    #[serde(default)]
    dirs: Vec<Spanned<RawDir>>,
    #[serde(default)]
    net: RawNet,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    bus: RawBus,
    kv: Option<Spanned<RawKv>>,
    #[serde(default)]
    models: Vec<Spanned<String>>,
    nn: Option<Spanned<RawNnGrant>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    tables: Vec<Spanned<String>>,
    control: Option<Spanned<String>>,
    #[serde(default)]
    shares: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    mode: RawMode,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
enum RawMode {
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNet {
    #[serde(default)]
    connect: Vec<Spanned<String>>,
    #[serde(default)]
    lookup: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBus {
    #[serde(default)]
    publish: Vec<Spanned<String>>,
    #[serde(default)]
    subscribe: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKv {
    namespace: Option<String>,
    quota_kb: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<Spanned<u64>>,
    deadline_ms: Option<Spanned<u64>>,
    table_elements: Option<Spanned<u32>>,
    output_mb: Option<Spanned<u64>>,
    inference_concurrency: Option<Spanned<u32>>,
    batch: Option<Spanned<u32>>,
    tick_ms: Option<Spanned<u64>>,
}

const DEFAULT_KV_QUOTA_KB: u64 = 16 * 1024;
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";

struct Checker<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Checker<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, message: String) -> Result<T, ManifestError> {
        Err(ManifestError::at(
            self.origin,
            self.text,
            Some(span.start),
            message,
        ))
    }
}

pub(crate) fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        ManifestError::at(
            origin,
            text,
            e.span().map(|s| s.start),
            e.message().to_string(),
        )
    })?;
    let c = Checker { origin, text };

    let http_listen = match &raw.host.http_listen {
        Some(s) => s.get_ref().parse().or_else(|_| {
            c.err(
                s.span(),
                format!(
                    "host.http_listen: `{}` is not an `IP:PORT` address",
                    s.get_ref()
                ),
            )
        })?,
        None => DEFAULT_HTTP_LISTEN
            .parse()
            .expect("the default address is valid"),
    };
    let mut log_topics = Vec::new();
    for t in raw.host.log_topics {
        match TopicPattern::parse(t.get_ref()) {
            Ok(p) => log_topics.push(p),
            Err(why) => return c.err(t.span(), format!("host.log_topics: {why}")),
        }
    }
    let api = check_api(&c, raw.host.api)?;
    let encryption = check_encryption(&c, raw.host.encryption)?;
    let tls = check_tls(&c, raw.host.tls)?;
    let updates = check_updates(&c, raw.host.updates)?;
    let host = HostSettings {
        name: raw.host.name.unwrap_or_else(|| "outpost".to_string()),
        plugin_dirs: raw.host.plugin_dirs,
        http_listen,
        log_topics,
        api,
        nn: NnSettings {
            onnxruntime: raw.host.nn.onnxruntime,
        },
        encryption,
        tls,
        updates,
    };

    let models = check_models(&c, raw.models)?;
    let ports = check_ports(&c, raw.ports)?;
    let tables = check_tables(&c, raw.tables)?;
    let raw_shares = raw.shares;
    let share_names: Vec<String> = raw_shares.keys().map(|k| k.get_ref().clone()).collect();

    let mut plugins = BTreeMap::new();
    let mut routes: BTreeMap<String, String> = BTreeMap::new();
    for (name, plugin) in raw.plugins {
        let spec = check_plugin(&c, &name, plugin, &models, &ports, &tables, &share_names)?;
        if let Some(route) = &spec.route
            && let Some(other) = routes.insert(route.clone(), spec.name.clone())
        {
            return c.err(
                name.span(),
                format!(
                    "plugins.{}.route: `{route}` is already served by `{other}`",
                    spec.name
                ),
            );
        }
        plugins.insert(spec.name.clone(), spec);
    }

    let mut timers = BTreeMap::new();
    for (name, timer) in raw.timers {
        check_name(&c, &name, "timers")?;
        let span = timer.span();
        let t = timer.into_inner();
        let n = name.into_inner();
        if !(10..=7 * 24 * 3600 * 1000).contains(&t.every_ms) {
            return c.err(
                span,
                format!(
                    "timers.{n}.every_ms: {} is outside 10..=604800000",
                    t.every_ms
                ),
            );
        }
        let topic = t.topic.unwrap_or_else(|| format!("timers/{n}"));
        match TopicPattern::parse(&topic) {
            Ok(p) if !p.is_wildcard() => {}
            _ => {
                return c.err(
                    span,
                    format!("timers.{n}.topic: `{topic}` is not a concrete topic"),
                );
            }
        }
        timers.insert(
            n.clone(),
            TimerSpec {
                name: n,
                every_ms: t.every_ms,
                topic,
                payload: t.payload.into_bytes(),
            },
        );
    }

    let mut sinks = BTreeMap::new();
    for (name, sink) in raw.sinks {
        check_name(&c, &name, "sinks")?;
        let span = sink.span();
        let n = name.into_inner();
        let spec = check_sink(&n, sink.into_inner()).or_else(|why| c.err(span, why))?;
        sinks.insert(n, spec);
    }

    let mut checked_routes = Vec::new();
    for (i, route) in raw.routes.into_iter().enumerate() {
        let span = route.span();
        let r = route.into_inner();
        let from = parse_source(&r.from, &plugins, &timers)
            .or_else(|why| c.err(span.clone(), format!("routes[{i}].from: {why}")))?;
        let to = parse_target(&r.to, &plugins, &sinks)
            .or_else(|why| c.err(span.clone(), format!("routes[{i}].to: {why}")))?;
        if let (RouteSource::Plugin { plugin: a, .. }, RouteTarget::Plugin(b)) = (&from, &to)
            && a == b
        {
            return c.err(
                span,
                format!("routes[{i}]: `{a}` would receive its own output"),
            );
        }
        checked_routes.push(RouteSpec {
            from_text: r.from,
            to_text: r.to,
            from,
            to,
        });
    }

    let shares = check_shares(&c, raw_shares, &plugins)?;
    let sdwan = match raw.sdwan {
        None => None,
        Some(s) => {
            let span = s.span();
            match crate::sdwan::check_sdwan(s.into_inner(), &tables) {
                Ok(s) => Some(s),
                Err((at, why)) => return c.err(if at.is_empty() { span } else { at }, why),
            }
        }
    };
    let mut ports = ports;
    for port in ports.values_mut() {
        let name = port.name.clone();
        let Some(overlay) = port.overlay.as_mut() else {
            continue;
        };
        let Some(uplink) = &overlay.uplink else {
            continue;
        };
        match sdwan.as_ref().and_then(|s| s.uplinks.get(uplink)) {
            Some(u) => overlay.rate_mbps = u.rate_mbps,
            None => {
                return c.err(
                    0..0,
                    format!("ports.{name}.uplink: no `[sdwan.uplinks.{uplink}]` in this manifest"),
                );
            }
        }
    }
    Ok(Manifest {
        host,
        plugins,
        timers,
        sinks,
        routes: checked_routes,
        models,
        ports,
        tables,
        shares,
        sdwan,
        base_dir: PathBuf::from("."),
    })
}

/// Largest model a plugin may be granted to load from its own bytes.
const MAX_NN_LOAD_MB: u64 = 4096;

fn check_models(
    c: &Checker<'_>,
    raw: Vec<Spanned<RawModel>>,
) -> Result<BTreeMap<String, ModelSpec>, ManifestError> {
    let mut models = BTreeMap::new();
    for (i, model) in raw.into_iter().enumerate() {
        let span = model.span();
        let m = model.into_inner();
        check_name(c, &m.name, "models")?;
        let name = m.name.get_ref().clone();
        let sha = m.sha256.get_ref().to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return c.err(
                m.sha256.span(),
                format!(
                    "models[{i}].sha256: `{}` is not 64 hex digits",
                    m.sha256.get_ref()
                ),
            );
        }
        if m.path.as_os_str().is_empty() {
            return c.err(span, format!("models[{i}].path: empty path"));
        }
        let threads = match m.threads {
            Some(t) if !(1..=256).contains(t.get_ref()) => {
                return c.err(
                    t.span(),
                    format!("models[{i}].threads: {} is outside 1..=256", t.get_ref()),
                );
            }
            Some(t) => Some(t.into_inner()),
            None => None,
        };
        let sessions = match m.sessions {
            Some(s) if !(1..=64).contains(s.get_ref()) => {
                return c.err(
                    s.span(),
                    format!("models[{i}].sessions: {} is outside 1..=64", s.get_ref()),
                );
            }
            Some(s) => s.into_inner(),
            None => 4,
        };
        let spec = ModelSpec {
            name: name.clone(),
            path: m.path,
            sha256: sha,
            engine: match m.engine {
                RawEngine::Auto => ModelEngine::Auto,
                RawEngine::Onnxruntime => ModelEngine::OnnxRuntime,
                RawEngine::Tract => ModelEngine::Tract,
            },
            target: match m.target {
                RawTarget::Cpu => ModelTarget::Cpu,
                RawTarget::Gpu => ModelTarget::Gpu,
            },
            threads,
            sessions,
        };
        if models.insert(name.clone(), spec).is_some() {
            return c.err(
                m.name.span(),
                format!("models[{i}].name: `{name}` is declared twice"),
            );
        }
    }
    Ok(models)
}

fn check_encryption(
    c: &Checker<'_>,
    raw: Option<Spanned<RawEncryption>>,
) -> Result<EncryptionSettings, ManifestError> {
    let Some(raw) = raw else {
        return Ok(EncryptionSettings::default());
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let key = match &raw.key {
        Some(k) => {
            let ok = !k.get_ref().is_empty()
                && k.get_ref().len() <= 64
                && k.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return c.err(
                    k.span(),
                    format!(
                        "host.encryption.key: `{}` must be 1 to 64 letters, digits, `-` or `_`",
                        k.get_ref()
                    ),
                );
            }
            Some(k.get_ref().clone())
        }
        None => None,
    };
    let pkcs11_only = |field: &str, set: bool| -> Result<(), ManifestError> {
        if set {
            return c.err(
                span.clone(),
                format!("host.encryption.{field}: only the `pkcs11` provider takes it"),
            );
        }
        Ok(())
    };
    let provider = match raw.provider.get_ref().as_str() {
        "none" => {
            if raw.passphrase_file.is_some() {
                return c.err(
                    span,
                    "host.encryption.passphrase_file: provider is `none`".into(),
                );
            }
            pkcs11_only("module", raw.module.is_some())?;
            pkcs11_only("token", raw.token.is_some())?;
            pkcs11_only("pin_file", raw.pin_file.is_some())?;
            KeyProviderSpec::None
        }
        "device" => {
            pkcs11_only("module", raw.module.is_some())?;
            pkcs11_only("token", raw.token.is_some())?;
            pkcs11_only("pin_file", raw.pin_file.is_some())?;
            KeyProviderSpec::Device {
                passphrase_file: raw.passphrase_file,
            }
        }
        "pkcs11" => {
            if raw.passphrase_file.is_some() {
                return c.err(
                    span,
                    "host.encryption.passphrase_file: only the `device` provider takes it \
                     (a PKCS#11 token is unlocked with pin_file)"
                        .into(),
                );
            }
            let (Some(module), Some(token), Some(pin_file)) = (raw.module, raw.token, raw.pin_file)
            else {
                return c.err(
                    span,
                    "host.encryption: the `pkcs11` provider needs module, token and pin_file"
                        .into(),
                );
            };
            KeyProviderSpec::Pkcs11 {
                module,
                token,
                pin_file,
            }
        }
        other => {
            return c.err(
                raw.provider.span(),
                format!(
                    "host.encryption.provider: `{other}` is not one of `device`, `pkcs11`, `none`"
                ),
            );
        }
    };
    Ok(EncryptionSettings {
        provider,
        key: key.unwrap_or_else(|| EncryptionSettings::default().key),
    })
}

fn check_tls(c: &Checker<'_>, raw: Option<Spanned<RawTls>>) -> Result<TlsSettings, ManifestError> {
    let Some(raw) = raw else {
        return Ok(TlsSettings::default());
    };
    let raw = raw.into_inner();
    let mut names = Vec::new();
    for n in raw.names {
        let name = n.get_ref();
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.*:".contains(&b));
        if !ok {
            return c.err(
                n.span(),
                format!("host.tls.names: `{name}` is not a DNS name or IP address"),
            );
        }
        names.push(name.clone());
    }
    let alert_days = match raw.alert_days {
        Some(d) => {
            if d.get_ref().is_empty() || d.get_ref().iter().any(|&x| x == 0 || x > 3650) {
                return c.err(
                    d.span(),
                    "host.tls.alert_days: give 1 to 3650 days per threshold, at least one".into(),
                );
            }
            d.into_inner()
        }
        None => TlsSettings::default().alert_days,
    };
    let acme = match raw.acme {
        None => None,
        Some(a) => {
            let a = a.into_inner();
            if !a.directory.get_ref().starts_with("https://") {
                return c.err(
                    a.directory.span(),
                    format!(
                        "host.tls.acme.directory: `{}` must be an https:// URL",
                        a.directory.get_ref()
                    ),
                );
            }
            let renew_before_days = match a.renew_before_days {
                Some(d) if *d.get_ref() == 0 || *d.get_ref() > 365 => {
                    return c.err(d.span(), "host.tls.acme.renew_before_days: 1 to 365".into());
                }
                Some(d) => d.into_inner(),
                None => 30,
            };
            Some(AcmeSettings {
                directory: a.directory.into_inner(),
                contact: a.contact,
                domains: a.domains,
                roots: a.roots,
                renew_before_days,
            })
        }
    };
    let client_auth = match raw.client_auth {
        None => None,
        Some(a) => {
            let span = a.span();
            let a = a.into_inner();
            let mut roles = BTreeMap::new();
            for (name, role) in a.roles {
                if name.trim().is_empty() || name.len() > 255 {
                    return c.err(
                        role.span(),
                        format!("host.tls.client_auth.roles: `{name}` is not a certificate name"),
                    );
                }
                if !CLIENT_ROLES.contains(&role.get_ref().as_str()) {
                    return c.err(
                        role.span(),
                        format!(
                            "host.tls.client_auth.roles.{name}: unknown role `{}`: expected `viewer`, `operator` or `ingest`",
                            role.get_ref()
                        ),
                    );
                }
                roles.insert(name, role.into_inner());
            }
            if roles.is_empty() && !a.required {
                return c.err(
                    span,
                    "host.tls.client_auth: map certificate names to roles, or set required = true, or both".into(),
                );
            }
            Some(ClientAuthSettings {
                ca: a.ca,
                required: a.required,
                roles,
            })
        }
    };
    Ok(TlsSettings {
        names,
        ca_bundle: raw.ca_bundle,
        client_auth,
        alert_days,
        acme,
    })
}

fn check_shares(
    c: &Checker<'_>,
    raw: BTreeMap<Spanned<String>, Spanned<RawShare>>,
    plugins: &BTreeMap<String, PluginSpec>,
) -> Result<BTreeMap<String, ShareSettings>, ManifestError> {
    let mut shares = BTreeMap::new();
    for (name, share) in raw {
        let n = name.get_ref().clone();
        let valid = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return c.err(
                name.span(),
                format!("shares.{n}: a share name is 1 to 63 lowercase letters, digits or `-`"),
            );
        }
        let span = share.span();
        let share = share.into_inner();
        let kind = match share.kind.get_ref().as_str() {
            "edge-local" => ShareKind::EdgeLocal,
            "cloud-tiered" => ShareKind::CloudTiered,
            other => {
                return c.err(
                    share.kind.span(),
                    format!("shares.{n}.kind: `{other}` is not `edge-local` or `cloud-tiered`"),
                );
            }
        };
        let target = match (kind, share.target) {
            (ShareKind::EdgeLocal, Some(t)) => {
                return c.err(
                    t.span(),
                    format!("shares.{n}.target: an edge-local share never leaves the device"),
                );
            }
            (ShareKind::CloudTiered, None) => {
                return c.err(span, format!("shares.{n}: a cloud-tiered share needs a target (file:///DIR, az://CONTAINER/PREFIX or s3://BUCKET/PREFIX)"));
            }
            (ShareKind::CloudTiered, Some(t)) => {
                let ok = ["file://", "az://", "azure://", "s3://"]
                    .iter()
                    .any(|p| t.get_ref().starts_with(p));
                if !ok {
                    return c.err(
                        t.span(),
                        format!(
                            "shares.{n}.target: `{}` is not a file://, az:// or s3:// URL",
                            t.get_ref()
                        ),
                    );
                }
                Some(t.into_inner())
            }
            (ShareKind::EdgeLocal, None) => None,
        };
        let quota_bytes = match share.quota_mb {
            Some(q) if *q.get_ref() == 0 => {
                return c.err(q.span(), format!("shares.{n}.quota_mb: must be at least 1"));
            }
            Some(q) => q.get_ref().saturating_mul(1 << 20),
            None => 1 << 30,
        };
        let policy = match share.policy {
            None => None,
            Some(p) => {
                match plugins.get(p.get_ref()) {
                    Some(spec) if spec.kind == PluginKind::TieringPolicy => Some(p.into_inner()),
                    Some(spec) => {
                        return c.err(p.span(), format!("shares.{n}.policy: plugin `{}` is a {} plugin, not a tiering-policy", p.get_ref(), spec.kind));
                    }
                    None => {
                        return c.err(
                            p.span(),
                            format!(
                                "shares.{n}.policy: no plugin `{}` in this manifest",
                                p.get_ref()
                            ),
                        );
                    }
                }
            }
        };
        if policy.is_some() && kind == ShareKind::EdgeLocal {
            return c.err(
                span,
                format!("shares.{n}.policy: an edge-local share has nothing to tier"),
            );
        }
        let evaluate_s = match share.evaluate_s {
            Some(e) if *e.get_ref() == 0 || *e.get_ref() > 86_400 => {
                return c.err(
                    e.span(),
                    format!("shares.{n}.evaluate_s: 1 to 86400 seconds"),
                );
            }
            Some(e) => e.into_inner(),
            None => 60,
        };
        let mut bandwidth = BandwidthSettings::default();
        if let Some(b) = share.bandwidth {
            let b = b.into_inner();
            bandwidth.default_mbps = b.default_mbps;
            for w in b.windows {
                let wspan = w.span();
                let w = w.into_inner();
                let window = check_window(
                    c,
                    &format!("shares.{n}.bandwidth.windows"),
                    Spanned::new(
                        wspan,
                        RawWindow {
                            days: w.days,
                            start: w.start,
                            stop: w.stop,
                        },
                    ),
                )?;
                bandwidth.windows.push((window, w.mbps));
            }
        }
        shares.insert(
            n.clone(),
            ShareSettings {
                name: n,
                path: share.path,
                kind,
                target,
                target_options: share.target_options,
                quota_bytes,
                policy,
                evaluate_s,
                bandwidth,
            },
        );
    }
    Ok(shares)
}

fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if (h == 24 && m == 0) || (h < 24 && m < 60) {
        Some(h * 60 + m)
    } else {
        None
    }
}

/// Parses `{ days, start, stop }` (days `mon`..`sun`, empty = every day; times `HH:MM` UTC).
fn check_window(
    c: &Checker<'_>,
    field: &str,
    w: Spanned<RawWindow>,
) -> Result<TimeWindow, ManifestError> {
    let span = w.span();
    let w = w.into_inner();
    let mut days = Vec::new();
    for d in &w.days {
        let day = match d.to_ascii_lowercase().as_str() {
            "mon" | "monday" => Weekday::Mon,
            "tue" | "tuesday" => Weekday::Tue,
            "wed" | "wednesday" => Weekday::Wed,
            "thu" | "thursday" => Weekday::Thu,
            "fri" | "friday" => Weekday::Fri,
            "sat" | "saturday" => Weekday::Sat,
            "sun" | "sunday" => Weekday::Sun,
            other => {
                return c.err(
                    span,
                    format!("{field}.days: `{other}` is not a weekday (mon..sun)"),
                );
            }
        };
        if !days.contains(&day) {
            days.push(day);
        }
    }
    let (Some(start), Some(stop)) = (parse_hhmm(&w.start), parse_hhmm(&w.stop)) else {
        return c.err(
            span,
            format!("{field}: start and stop are HH:MM (UTC), e.g. \"02:00\" and \"04:30\""),
        );
    };
    if start == stop {
        return c.err(
            span,
            format!("{field}: start and stop are equal (an empty window)"),
        );
    }
    Ok(TimeWindow {
        days,
        start_minute: start,
        stop_minute: stop,
    })
}

fn check_updates(c: &Checker<'_>, raw: RawUpdates) -> Result<UpdateSettings, ManifestError> {
    let mut publishers = Vec::new();
    for p in raw.publishers {
        let span = p.span();
        let p = p.into_inner();
        if p.name.is_empty() || p.plugins.is_empty() || p.repositories.is_empty() {
            return c.err(
                span,
                "host.updates.publishers: each publisher needs a name, the plugins it may sign and the repositories it may sign for (\"*\" allows any)".into(),
            );
        }
        publishers.push(PublisherSettings {
            name: p.name,
            key: p.key,
            plugins: p.plugins,
            repositories: p.repositories,
        });
    }
    let mut windows = Vec::new();
    for w in raw.windows {
        windows.push(check_window(c, "host.updates.windows", w)?);
    }
    Ok(UpdateSettings {
        publishers,
        windows,
        insecure_registries: raw.insecure_registries,
        registry_auth: raw
            .registry_auth
            .into_iter()
            .map(|(registry, a)| {
                (
                    registry,
                    RegistryAuthSettings {
                        username: a.username,
                        password_file: a.password_file,
                    },
                )
            })
            .collect(),
    })
}

fn check_api(c: &Checker<'_>, raw: Option<Spanned<RawApi>>) -> Result<ApiSettings, ManifestError> {
    let mut api = ApiSettings::default();
    let Some(raw) = raw else {
        return Ok(api);
    };
    let span = raw.span();
    let raw = raw.into_inner();
    if let Some(listen) = raw.listen {
        api.listen = listen.get_ref().parse().or_else(|_| {
            c.err(
                listen.span(),
                format!(
                    "host.api.listen: `{}` is not an `IP:PORT` address",
                    listen.get_ref()
                ),
            )
        })?;
    }
    if let Some(tls) = raw.tls {
        api.tls = tls;
    }
    if !api.tls && !api.listen.ip().is_loopback() {
        return c.err(
            span,
            format!(
                "host.api.tls: plain HTTP is only allowed on a loopback address, not {}",
                api.listen
            ),
        );
    }
    Ok(api)
}

fn check_name(c: &Checker<'_>, name: &Spanned<String>, table: &str) -> Result<(), ManifestError> {
    let n = name.get_ref();
    let valid = !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-');
    if valid {
        Ok(())
    } else {
        c.err(
            name.span(),
            format!("{table}.{n}: a name is 1-63 lowercase letters, digits and `-`"),
        )
    }
}

fn check_sink(n: &str, raw: RawSink) -> Result<SinkSpec, String> {
    let mut buffer = BufferSpec::default();
    if let Some(b) = raw.buffer {
        if let Some(mb) = b.max_mb {
            if mb == 0 || mb > 1 << 20 {
                return Err(format!(
                    "sinks.{n}.buffer.max_mb: {mb} is outside 1..=1048576"
                ));
            }
            buffer.max_bytes = mb << 20;
        }
        if let Some(m) = b.max_messages {
            if m == 0 {
                return Err(format!("sinks.{n}.buffer.max_messages: must be at least 1"));
            }
            buffer.max_messages = m;
        }
        if let Some(ttl) = b.ttl_s {
            if ttl == 0 || ttl > 30 * 24 * 3600 {
                return Err(format!(
                    "sinks.{n}.buffer.ttl_s: {ttl} is outside 1..=2592000"
                ));
            }
            buffer.ttl_secs = ttl;
        }
    }
    let target = match raw.kind {
        RawSinkKind::Mqtt => {
            let rest = raw
                .url
                .strip_prefix("mqtt://")
                .ok_or_else(|| format!("sinks.{n}.url: `{}` must start with `mqtt://`", raw.url))?;
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse::<u16>()
                        .map_err(|_| format!("sinks.{n}.url: `{p}` is not a port"))?,
                ),
                None => (rest, 1883),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || host.contains('/') {
                return Err(format!("sinks.{n}.url: `{}` has no broker host", raw.url));
            }
            let qos = raw.qos.unwrap_or(1);
            if qos > 1 {
                return Err(format!("sinks.{n}.qos: {qos} is not 0 or 1"));
            }
            if !raw.headers.is_empty() {
                return Err(format!(
                    "sinks.{n}.headers: only webhook sinks have headers"
                ));
            }
            if raw.topic_prefix.contains(['+', '#']) {
                return Err(format!("sinks.{n}.topic_prefix: wildcards are not allowed"));
            }
            SinkTargetSpec::Mqtt {
                host: host.to_string(),
                port,
                client_id: raw.client_id,
                topic_prefix: raw.topic_prefix,
                qos,
            }
        }
        RawSinkKind::Webhook => {
            let ok = raw
                .url
                .strip_prefix("http://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return Err(format!(
                    "sinks.{n}.url: `{}` must be an `http://HOST[:PORT]/PATH` URL",
                    raw.url
                ));
            }
            if raw.qos.is_some() || raw.client_id.is_some() || !raw.topic_prefix.is_empty() {
                return Err(format!(
                    "sinks.{n}: qos, client_id and topic_prefix are for mqtt sinks"
                ));
            }
            for (k, v) in &raw.headers {
                let valid = !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !v.contains(['\r', '\n']);
                if !valid {
                    return Err(format!("sinks.{n}.headers: `{k}` is not a valid header"));
                }
            }
            SinkTargetSpec::Webhook {
                url: raw.url,
                headers: raw.headers,
            }
        }
    };
    Ok(SinkSpec {
        name: n.to_string(),
        target,
        buffer,
    })
}

fn parse_source(
    text: &str,
    plugins: &BTreeMap<String, PluginSpec>,
    timers: &BTreeMap<String, TimerSpec>,
) -> Result<RouteSource, String> {
    let pattern = |p: &str| TopicPattern::parse(p).map_err(|why| format!("`{text}`: {why}"));
    if let Some(p) = text.strip_prefix("topics/") {
        return Ok(RouteSource::Topics(pattern(p)?));
    }
    if let Some(p) = text.strip_prefix("ingest/") {
        return Ok(RouteSource::Ingest(pattern(p)?));
    }
    if let Some(t) = text.strip_prefix("timers/") {
        return if timers.contains_key(t) {
            Ok(RouteSource::Timer(t.to_string()))
        } else {
            Err(format!("`{text}`: no timer `{t}` in [timers]"))
        };
    }
    if let Some(rest) = text.strip_prefix("plugins/") {
        let (name, topics) = rest.split_once('/').unwrap_or((rest, "#"));
        if !plugins.contains_key(name) {
            return Err(format!("`{text}`: no plugin `{name}` in [plugins]"));
        }
        return Ok(RouteSource::Plugin {
            plugin: name.to_string(),
            topics: pattern(topics)?,
        });
    }
    Err(format!(
        "`{text}` must start with `topics/`, `plugins/`, `timers/` or `ingest/`"
    ))
}

fn parse_target(
    text: &str,
    plugins: &BTreeMap<String, PluginSpec>,
    sinks: &BTreeMap<String, SinkSpec>,
) -> Result<RouteTarget, String> {
    if let Some(t) = text.strip_prefix("topics/") {
        return match TopicPattern::parse(t) {
            Ok(p) if !p.is_wildcard() => Ok(RouteTarget::Topic(t.to_string())),
            _ => Err(format!("`{text}`: the target must be a concrete topic")),
        };
    }
    if let Some(s) = text.strip_prefix("sinks/") {
        return if sinks.contains_key(s) {
            Ok(RouteTarget::Sink(s.to_string()))
        } else {
            Err(format!("`{text}`: no sink `{s}` in [sinks]"))
        };
    }
    if let Some(p) = text.strip_prefix("plugins/") {
        return match plugins.get(p) {
            Some(spec) if spec.kind == PluginKind::Pipeline => {
                Ok(RouteTarget::Plugin(p.to_string()))
            }
            Some(spec) => Err(format!(
                "`{text}`: only pipelines receive routed messages, `{p}` is {}",
                spec.kind
            )),
            None => Err(format!("`{text}`: no plugin `{p}` in [plugins]")),
        };
    }
    Err(format!(
        "`{text}` must start with `plugins/`, `topics/` or `sinks/`"
    ))
}

fn check_plugin(
    c: &Checker<'_>,
    name: &Spanned<String>,
    raw: RawPlugin,
    models: &BTreeMap<String, ModelSpec>,
    ports: &BTreeMap<String, PortSpec>,
    tables: &BTreeMap<String, TableSpec>,
    shares: &[String],
) -> Result<PluginSpec, ManifestError> {
    let n = name.get_ref();
    let valid_name = !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-');
    if !valid_name {
        return c.err(
            name.span(),
            format!("plugins.{n}: a plugin name is 1-63 lowercase letters, digits and `-`"),
        );
    }
    let kind = match raw.kind.get_ref() {
        RawKind::Pipeline => PluginKind::Pipeline,
        RawKind::TieringPolicy => PluginKind::TieringPolicy,
        RawKind::NetworkFunction => PluginKind::NetworkFunction,
        RawKind::Job => PluginKind::Job,
        RawKind::Http => PluginKind::Http,
    };
    let (component, image) = match (raw.component, raw.image) {
        (Some(_), Some(image)) => {
            return c.err(
                image.span(),
                format!(
                    "plugins.{n}: give `component` (a file) or `image` (an OCI artifact), not both"
                ),
            );
        }
        (None, None) => {
            return c.err(
                name.span(),
                format!("plugins.{n}: missing `component` (a file) or `image` (an OCI artifact)"),
            );
        }
        (Some(component), None) => {
            if component.get_ref().as_os_str().is_empty() {
                return c.err(
                    component.span(),
                    format!("plugins.{n}.component: empty path"),
                );
            }
            (component.into_inner(), None)
        }
        (None, Some(image)) => {
            let r = image.get_ref();
            let by_digest = r.split_once("@sha256:").is_some_and(|(repo, hex)| {
                !repo.is_empty()
                    && repo.contains('/')
                    && hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
            if !by_digest {
                return c.err(
                    image.span(),
                    format!(
                        "plugins.{n}.image: `{r}` must name an artifact by digest: REGISTRY/REPOSITORY@sha256:<64 hex>"
                    ),
                );
            }
            (PathBuf::new(), Some(image.into_inner()))
        }
    };
    let canary = match raw.canary {
        None => None,
        Some(cn) => {
            if kind != PluginKind::Pipeline {
                return c.err(
                    cn.span(),
                    format!("plugins.{n}.canary: only pipelines take a share of calls"),
                );
            }
            let cv = cn.get_ref();
            if cv.percent == 0 || cv.percent >= 100 || cv.calls == 0 {
                return c.err(
                    cn.span(),
                    format!("plugins.{n}.canary: percent must be 1 to 99 and calls at least 1"),
                );
            }
            Some(CanarySpec {
                percent: cv.percent,
                calls: cv.calls,
            })
        }
    };

    let route = match (kind, raw.route) {
        (PluginKind::Http, Some(route)) => {
            let r = route.get_ref();
            if !r.starts_with('/') || r.contains("..") || r.contains(char::is_whitespace) {
                return c.err(
                    route.span(),
                    format!(
                        "plugins.{n}.route: `{r}` must start with `/` and hold no `..` or spaces"
                    ),
                );
            }
            Some(r.trim_end_matches('/').to_string())
                .map(|r| if r.is_empty() { "/".into() } else { r })
        }
        (PluginKind::Http, None) => {
            return c.err(
                name.span(),
                format!("plugins.{n}: an http plugin needs a `route`"),
            );
        }
        (_, Some(route)) => {
            return c.err(
                route.span(),
                format!("plugins.{n}.route: only http plugins have a route, this one is {kind}"),
            );
        }
        (_, None) => None,
    };
    if !raw.args.is_empty() && kind != PluginKind::Job {
        return c.err(
            name.span(),
            format!("plugins.{n}.args: only jobs take arguments"),
        );
    }

    let grants = check_grants(c, n, kind, raw.grants, models, ports, tables, shares)?;
    let limits = check_limits(c, n, raw.limits)?;
    let health = match raw.health {
        Some(h) if kind != PluginKind::Pipeline => {
            return c.err(
                h.span(),
                format!(
                    "plugins.{n}.health: only pipelines have a health probe, this one is {kind}"
                ),
            );
        }
        Some(h) => {
            let span = h.span();
            let h = h.into_inner();
            if TopicPattern::parse(&h.topic).is_err() {
                return c.err(
                    span,
                    format!(
                        "plugins.{n}.health.topic: `{}` is not a valid topic",
                        h.topic
                    ),
                );
            }
            Some(HealthCheck {
                topic: h.topic,
                payload: h.payload.into_bytes(),
            })
        }
        None => None,
    };
    let mut rollback = RollbackSpec::default();
    if let Some(r) = raw.rollback {
        let span = r.span();
        let r = r.into_inner();
        if let Some(max) = r.max_failures {
            rollback.max_failures = max;
        }
        if let Some(ms) = r.window_ms {
            if ms == 0 || ms > 24 * 60 * 60 * 1000 {
                return c.err(
                    span,
                    format!("plugins.{n}.rollback.window_ms: {ms} is outside 1..=86400000"),
                );
            }
            rollback.window_ms = ms;
        }
    }

    let mut restart = RestartSpec::default();
    if let Some(r) = raw.restart {
        let span = r.span();
        let r = r.into_inner();
        if kind != PluginKind::Job {
            return c.err(
                span,
                format!("plugins.{n}.restart: only jobs are restarted, this one is {kind}"),
            );
        }
        restart.policy = match r.policy {
            RawRestartPolicy::Always => RestartPolicy::Always,
            RawRestartPolicy::OnFailure => RestartPolicy::OnFailure,
            RawRestartPolicy::Never => RestartPolicy::Never,
        };
        if let Some(ms) = r.backoff_ms {
            if !(10..=3_600_000).contains(&ms) {
                return c.err(
                    span,
                    format!("plugins.{n}.restart.backoff_ms: {ms} is outside 10..=3600000"),
                );
            }
            restart.backoff_ms = ms;
        }
        if let Some(ms) = r.max_backoff_ms {
            if ms < restart.backoff_ms || ms > 24 * 3_600_000 {
                return c.err(
                    span,
                    format!(
                        "plugins.{n}.restart.max_backoff_ms: {ms} is outside {}..=86400000",
                        restart.backoff_ms
                    ),
                );
            }
            restart.max_backoff_ms = ms;
        }
    }

    Ok(PluginSpec {
        name: n.clone(),
        kind,
        component,
        image,
        canary,
        version: raw.version,
        config: raw.config,
        grants,
        limits,
        route,
        args: raw.args,
        health,
        rollback,
        restart,
    })
}

#[allow(clippy::too_many_arguments)]
fn check_grants(
    c: &Checker<'_>,
    n: &str,
    kind: PluginKind,
    raw: RawGrants,
    models: &BTreeMap<String, ModelSpec>,
    ports: &BTreeMap<String, PortSpec>,
    tables: &BTreeMap<String, TableSpec>,
    shares: &[String],
) -> Result<Grants, ManifestError> {
    let mut granted_shares = BTreeMap::new();
    for (name, mode) in &raw.shares {
        let share = name.get_ref();
        if !shares.contains(share) {
            return c.err(
                name.span(),
                format!(
                    "plugins.{n}.grants.shares: no share named `{share}` (declared: {})",
                    if shares.is_empty() {
                        "none".to_string()
                    } else {
                        shares.join(", ")
                    }
                ),
            );
        }
        let access = match mode.get_ref().as_str() {
            "ro" => crate::ShareAccess::ReadOnly,
            "rw" => crate::ShareAccess::ReadWrite,
            other => {
                return c.err(
                    mode.span(),
                    format!(
                        "plugins.{n}.grants.shares.{share}: `{other}` is neither `ro` nor `rw`"
                    ),
                );
            }
        };
        granted_shares.insert(share.clone(), access);
    }
    let nf = check_nf_grant(c, n, kind, &raw, ports, tables)?;
    let mut dirs = Vec::new();
    for dir in raw.dirs {
        let span = dir.span();
        let d = dir.into_inner();
        if !d.guest.starts_with('/') || d.guest.split('/').any(|seg| seg == "..") {
            return c.err(
                span,
                format!(
                    "plugins.{n}.grants.dirs: guest path `{}` must be absolute, without `..`",
                    d.guest
                ),
            );
        }
        if d.host.as_os_str().is_empty() {
            return c.err(span, format!("plugins.{n}.grants.dirs: empty host path"));
        }
        dirs.push(DirGrant {
            host: d.host,
            guest: d.guest,
            read_only: matches!(d.mode, RawMode::ReadOnly),
        });
    }

    let mut connect = Vec::new();
    for entry in raw.net.connect {
        match Endpoint::parse(entry.get_ref()) {
            Ok(e) => connect.push(e),
            Err(why) => {
                return c.err(
                    entry.span(),
                    format!("plugins.{n}.grants.net.connect: {why}"),
                );
            }
        }
    }

    let mut env = BTreeMap::new();
    for (key, value) in raw.env {
        let k = key.get_ref();
        if k.is_empty() || k.contains('=') || k.contains('\0') || value.contains('\0') {
            return c.err(
                key.span(),
                format!("plugins.{n}.grants.env: `{k}` is not a valid variable"),
            );
        }
        env.insert(key.into_inner(), value);
    }

    let topics =
        |list: Vec<Spanned<String>>, field: &str| -> Result<Vec<TopicPattern>, ManifestError> {
            list.into_iter()
                .map(|t| {
                    TopicPattern::parse(t.get_ref()).or_else(|why| {
                        c.err(t.span(), format!("plugins.{n}.grants.bus.{field}: {why}"))
                    })
                })
                .collect()
        };
    let subscribe_spans: Vec<_> = raw.bus.subscribe.iter().map(|s| s.span()).collect();
    let bus = BusGrant {
        publish: topics(raw.bus.publish, "publish")?,
        subscribe: topics(raw.bus.subscribe, "subscribe")?,
    };
    if !bus.subscribe.is_empty() && kind != PluginKind::Pipeline {
        return c.err(
            subscribe_spans[0].clone(),
            format!("plugins.{n}.grants.bus.subscribe: only pipelines receive bus messages, this plugin is {kind}"),
        );
    }

    let kv = match raw.kv {
        Some(kv) => {
            let span = kv.span();
            let kv = kv.into_inner();
            let namespace = kv.namespace.unwrap_or_else(|| n.to_string());
            if namespace.is_empty()
                || !namespace
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return c.err(span, format!("plugins.{n}.grants.kv.namespace: `{namespace}` must be letters, digits, `-` or `_`"));
            }
            let quota_kb = kv.quota_kb.unwrap_or(DEFAULT_KV_QUOTA_KB);
            if quota_kb == 0 || quota_kb > (1 << 30) {
                return c.err(
                    span,
                    format!("plugins.{n}.grants.kv.quota_kb: {quota_kb} is outside 1..=1073741824"),
                );
            }
            Some(KvGrant {
                namespace,
                quota_bytes: quota_kb * 1024,
            })
        }
        None => None,
    };

    let mut granted_models = Vec::new();
    for model in raw.models {
        if !models.contains_key(model.get_ref()) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return c.err(
                model.span(),
                format!(
                    "plugins.{n}.grants.models: no model named `{}` (declared: {})",
                    model.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if kind != PluginKind::Pipeline {
            return c.err(
                model.span(),
                format!(
                    "plugins.{n}.grants.models: only pipelines run models, this plugin is {kind}"
                ),
            );
        }
        if !granted_models.contains(model.get_ref()) {
            granted_models.push(model.into_inner());
        }
    }
    let nn_load = match raw.nn {
        Some(nn) => {
            let span = nn.span();
            let nn = nn.into_inner();
            if kind != PluginKind::Pipeline {
                return c.err(
                    span,
                    format!(
                        "plugins.{n}.grants.nn: only pipelines run models, this plugin is {kind}"
                    ),
                );
            }
            let max_mb = nn.max_mb.unwrap_or(64);
            if max_mb == 0 || max_mb > MAX_NN_LOAD_MB {
                return c.err(
                    span,
                    format!(
                        "plugins.{n}.grants.nn.max_mb: {max_mb} is outside 1..={MAX_NN_LOAD_MB}"
                    ),
                );
            }
            nn.load.then_some(NnLoadGrant {
                max_bytes: max_mb << 20,
            })
        }
        None => None,
    };

    Ok(Grants {
        dirs,
        net: NetGrant {
            connect,
            lookup: raw.net.lookup,
        },
        env,
        bus,
        kv,
        models: granted_models,
        nn_load,
        nf,
        shares: granted_shares,
    })
}

/// Largest table a manifest may declare.
const MAX_TABLE_ENTRIES: u64 = 16 << 20;
/// Most ports one network function may be granted.
const MAX_NF_PORTS: usize = 64;

fn check_ports(
    c: &Checker<'_>,
    raw: BTreeMap<Spanned<String>, Spanned<RawPort>>,
) -> Result<BTreeMap<String, PortSpec>, ManifestError> {
    let mut ports = BTreeMap::new();
    for (name, port) in raw {
        check_name(c, &name, "ports")?;
        let n = name.into_inner();
        let span = port.span();
        let mut p = port.into_inner();
        let kind = match p.kind.get_ref() {
            RawPortKind::Memory => PortKind::Memory,
            RawPortKind::Tap => PortKind::Tap,
            RawPortKind::AfPacket => PortKind::AfPacket,
            RawPortKind::Pcap => PortKind::Pcap,
            RawPortKind::Overlay => PortKind::Overlay,
        };
        let overlay = check_overlay(c, &n, kind, span.clone(), &mut p)?;
        let interface = match (kind, p.interface) {
            (PortKind::Tap | PortKind::AfPacket, Some(i)) => {
                let valid = !i.get_ref().is_empty()
                    && i.get_ref().len() < 16
                    && !i.get_ref().contains(['/', ' ', '\0']);
                if !valid {
                    return c.err(
                        i.span(),
                        format!(
                            "ports.{n}.interface: `{}` is not an interface name (1-15 bytes, no `/` or spaces)",
                            i.get_ref()
                        ),
                    );
                }
                Some(i.into_inner())
            }
            (PortKind::Tap | PortKind::AfPacket, None) => {
                return c.err(
                    span,
                    format!("ports.{n}: a {kind} port needs an `interface`"),
                );
            }
            (_, Some(i)) => {
                return c.err(
                    i.span(),
                    format!(
                        "ports.{n}.interface: only tap and af-packet ports have one, this is {kind}"
                    ),
                );
            }
            (_, None) => None,
        };
        let path = match (kind, p.path) {
            (PortKind::Pcap, Some(path)) => Some(path),
            (PortKind::Pcap, None) => {
                return c.err(span, format!("ports.{n}: a pcap port needs a `path`"));
            }
            (_, Some(_)) => {
                return c.err(
                    span,
                    format!("ports.{n}.path: only pcap ports read a file, this is {kind}"),
                );
            }
            (_, None) => None,
        };
        let address = match p.address {
            Some(a) => Some(
                Ipv4Cidr::parse(a.get_ref())
                    .or_else(|why| c.err(a.span(), format!("ports.{n}.address: {why}")))?,
            ),
            None => None,
        };
        let gateway = match p.gateway {
            Some(g) => {
                let ip: std::net::Ipv4Addr = g.get_ref().parse().or_else(|_| {
                    c.err(
                        g.span(),
                        format!(
                            "ports.{n}.gateway: `{}` is not an IPv4 address",
                            g.get_ref()
                        ),
                    )
                })?;
                match address {
                    Some(a) if a.contains(ip) => Some(ip),
                    Some(a) => {
                        return c.err(
                            g.span(),
                            format!(
                                "ports.{n}.gateway: {ip} is not on the port's subnet {}/{}",
                                a.address, a.prefix
                            ),
                        );
                    }
                    None => {
                        return c.err(
                            g.span(),
                            format!("ports.{n}.gateway: a gateway needs the port's `address`"),
                        );
                    }
                }
            }
            None => None,
        };
        let capacity = match p.capacity {
            Some(cap) if !(1..=1_000_000).contains(cap.get_ref()) => {
                return c.err(
                    cap.span(),
                    format!(
                        "ports.{n}.capacity: {} is outside 1..=1000000",
                        cap.get_ref()
                    ),
                );
            }
            Some(cap) => *cap.get_ref() as usize,
            None => 4096,
        };
        ports.insert(
            n.clone(),
            PortSpec {
                name: n,
                kind,
                interface,
                path,
                address,
                gateway,
                capacity,
                overlay,
            },
        );
    }
    Ok(ports)
}

/// An overlay port's tunnel fields (and none of them on another kind of port).
fn check_overlay(
    c: &Checker<'_>,
    n: &str,
    kind: PortKind,
    span: std::ops::Range<usize>,
    p: &mut RawPort,
) -> Result<Option<crate::OverlaySpec>, ManifestError> {
    let (local, peer, key, file, uplink) = (
        p.local.take(),
        p.peer.take(),
        p.peer_public_key.take(),
        p.private_key_file.take(),
        p.uplink.take(),
    );
    if kind != PortKind::Overlay {
        if local.is_some() || peer.is_some() || key.is_some() || file.is_some() || uplink.is_some()
        {
            return c.err(
                span,
                format!("ports.{n}: `local`, `peer`, `peer_public_key`, `private_key_file` and `uplink` are for overlay ports, this is {kind}"),
            );
        }
        return Ok(None);
    }
    if p.address.is_some() || p.gateway.is_some() {
        return c.err(
            span,
            format!(
                "ports.{n}: an overlay port carries IP packets already: no `address` or `gateway`"
            ),
        );
    }
    let addr = |v: Option<Spanned<String>>, field: &str| match v {
        None => c.err(
            span.clone(),
            format!("ports.{n}: an overlay port needs `{field}`"),
        ),
        Some(v) => v.get_ref().parse::<std::net::SocketAddr>().or_else(|_| {
            c.err(
                v.span(),
                format!(
                    "ports.{n}.{field}: `{}` is not an `IP:PORT` address",
                    v.get_ref()
                ),
            )
        }),
    };
    let local = addr(local, "local")?;
    let peer = addr(peer, "peer")?;
    if peer.port() == 0 || peer.ip().is_unspecified() {
        return c.err(
            span,
            format!("ports.{n}.peer: `{peer}` needs a real address and port"),
        );
    }
    let Some(key) = key else {
        return c.err(
            span,
            format!(
                "ports.{n}: an overlay port needs `peer_public_key` (the remote site's, base64)"
            ),
        );
    };
    let k = key.get_ref().trim();
    // Base64 of 32 bytes: 43 characters and one `=`.
    let looks_right = k.len() == 44
        && k.ends_with('=')
        && k[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !looks_right {
        return c.err(
            key.span(),
            format!("ports.{n}.peer_public_key: not a WireGuard public key (base64 of 32 bytes)"),
        );
    }
    Ok(Some(crate::OverlaySpec {
        local,
        peer,
        peer_public_key: k.to_owned(),
        private_key_file: file,
        uplink: uplink.map(Spanned::into_inner),
        rate_mbps: None,
    }))
}

fn check_tables(
    c: &Checker<'_>,
    raw: BTreeMap<Spanned<String>, Spanned<RawTable>>,
) -> Result<BTreeMap<String, TableSpec>, ManifestError> {
    let mut tables = BTreeMap::new();
    for (name, table) in raw {
        check_name(c, &name, "tables")?;
        let n = name.into_inner();
        let t = table.into_inner();
        let kind = match t.kind {
            RawTableKind::Exact => TableKind::Exact,
            RawTableKind::Lpm => TableKind::Lpm,
            RawTableKind::Counters => TableKind::Counters,
        };
        let max_entries = match t.max_entries {
            Some(m) if !(1..=MAX_TABLE_ENTRIES).contains(m.get_ref()) => {
                return c.err(
                    m.span(),
                    format!(
                        "tables.{n}.max_entries: {} is outside 1..={MAX_TABLE_ENTRIES}",
                        m.get_ref()
                    ),
                );
            }
            Some(m) => *m.get_ref(),
            None => 65_536,
        };
        let size = |v: Option<Spanned<u32>>, field: &str, default: u32, max: u32| match v {
            Some(s) if !(1..=max).contains(s.get_ref()) => c.err(
                s.span(),
                format!("tables.{n}.{field}: {} is outside 1..={max}", s.get_ref()),
            ),
            Some(s) => Ok(*s.get_ref()),
            None => Ok(default),
        };
        let max_key = match kind {
            // A prefix length byte and an IPv6 address at most.
            TableKind::Lpm => size(t.max_key, "max_key", 17, 17)?,
            _ => size(t.max_key, "max_key", 64, 1024)?,
        };
        let max_value = size(t.max_value, "max_value", 256, 64 * 1024)?;
        tables.insert(
            n.clone(),
            TableSpec {
                name: n,
                kind,
                max_entries,
                max_key,
                max_value,
            },
        );
    }
    Ok(tables)
}

fn check_nf_grant(
    c: &Checker<'_>,
    n: &str,
    kind: PluginKind,
    raw: &RawGrants,
    ports: &BTreeMap<String, PortSpec>,
    tables: &BTreeMap<String, TableSpec>,
) -> Result<NfGrant, ManifestError> {
    let only_nf = |span: std::ops::Range<usize>, field: &str| {
        c.err(
            span,
            format!("plugins.{n}.grants.{field}: only network functions have {field}, this plugin is {kind}"),
        )
    };
    let mut grant = NfGrant::default();
    for p in &raw.ports {
        if kind != PluginKind::NetworkFunction {
            return only_nf(p.span(), "ports");
        }
        if !ports.contains_key(p.get_ref()) {
            let known: Vec<&str> = ports.keys().map(String::as_str).collect();
            return c.err(
                p.span(),
                format!(
                    "plugins.{n}.grants.ports: no port named `{}` (declared: {})",
                    p.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if grant.ports.contains(p.get_ref()) {
            return c.err(
                p.span(),
                format!(
                    "plugins.{n}.grants.ports: `{}` is listed twice",
                    p.get_ref()
                ),
            );
        }
        grant.ports.push(p.get_ref().clone());
    }
    if grant.ports.len() > MAX_NF_PORTS {
        return c.err(
            0..0,
            format!("plugins.{n}.grants.ports: more than {MAX_NF_PORTS} ports"),
        );
    }
    for t in &raw.tables {
        if kind != PluginKind::NetworkFunction {
            return only_nf(t.span(), "tables");
        }
        if !tables.contains_key(t.get_ref()) {
            let known: Vec<&str> = tables.keys().map(String::as_str).collect();
            return c.err(
                t.span(),
                format!(
                    "plugins.{n}.grants.tables: no table named `{}` (declared: {})",
                    t.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if !grant.tables.contains(t.get_ref()) {
            grant.tables.push(t.get_ref().clone());
        }
    }
    if let Some(ctl) = &raw.control {
        if kind != PluginKind::NetworkFunction {
            return only_nf(ctl.span(), "control");
        }
        grant.control = Some(ctl.get_ref().parse().or_else(|_| {
            c.err(
                ctl.span(),
                format!(
                    "plugins.{n}.grants.control: `{}` is not an `IP:PORT` address",
                    ctl.get_ref()
                ),
            )
        })?);
    }
    Ok(grant)
}

fn check_limits(c: &Checker<'_>, n: &str, raw: RawLimits) -> Result<Limits, ManifestError> {
    let mut limits = Limits::default();
    if let Some(mb) = raw.memory_mb {
        let bytes = mb.get_ref().saturating_mul(1 << 20);
        if *mb.get_ref() == 0 || bytes > MAX_MEMORY_BYTES {
            return c.err(
                mb.span(),
                format!(
                    "plugins.{n}.limits.memory_mb: {} is outside 1..={}",
                    mb.get_ref(),
                    MAX_MEMORY_BYTES >> 20
                ),
            );
        }
        limits.memory_bytes = bytes;
    }
    if let Some(ms) = raw.deadline_ms {
        if *ms.get_ref() == 0 || *ms.get_ref() > MAX_DEADLINE_MS {
            return c.err(
                ms.span(),
                format!(
                    "plugins.{n}.limits.deadline_ms: {} is outside 1..={MAX_DEADLINE_MS}",
                    ms.get_ref()
                ),
            );
        }
        limits.deadline_ms = *ms.get_ref();
    }
    if let Some(t) = raw.table_elements {
        if *t.get_ref() < 16 || *t.get_ref() > 1_000_000 {
            return c.err(
                t.span(),
                format!(
                    "plugins.{n}.limits.table_elements: {} is outside 16..=1000000",
                    t.get_ref()
                ),
            );
        }
        limits.table_elements = *t.get_ref();
    }
    if let Some(mb) = raw.output_mb {
        if *mb.get_ref() == 0 || *mb.get_ref() > 1024 {
            return c.err(
                mb.span(),
                format!(
                    "plugins.{n}.limits.output_mb: {} is outside 1..=1024",
                    mb.get_ref()
                ),
            );
        }
        limits.output_bytes = mb.get_ref() << 20;
    }
    if let Some(k) = raw.inference_concurrency {
        if *k.get_ref() == 0 || *k.get_ref() > 256 {
            return c.err(
                k.span(),
                format!(
                    "plugins.{n}.limits.inference_concurrency: {} is outside 1..=256",
                    k.get_ref()
                ),
            );
        }
        limits.inference_concurrency = *k.get_ref();
    }
    if let Some(b) = raw.batch {
        if *b.get_ref() == 0 || *b.get_ref() > 4096 {
            return c.err(
                b.span(),
                format!(
                    "plugins.{n}.limits.batch: {} is outside 1..=4096",
                    b.get_ref()
                ),
            );
        }
        limits.batch = *b.get_ref();
    }
    if let Some(t) = raw.tick_ms {
        if *t.get_ref() < 10 || *t.get_ref() > 3_600_000 {
            return c.err(
                t.span(),
                format!(
                    "plugins.{n}.limits.tick_ms: {} is outside 10..=3600000",
                    t.get_ref()
                ),
            );
        }
        limits.tick_ms = *t.get_ref();
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        crate::Manifest::parse(text, "test.toml")
    }

    #[test]
    fn a_minimal_plugin_gets_no_grants_and_default_limits() {
        let m = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\n").unwrap();
        let a = &m.plugins["a"];
        assert_eq!(a.grants, Grants::default());
        assert_eq!(a.limits, Limits::default());
        assert_eq!(m.host.http_listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_keys_are_errors_with_line_numbers() {
        let err =
            parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\ncolour = \"red\"\n")
                .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("colour"), "{err}");
        assert!(err.to_string().starts_with("test.toml:4:"), "{err}");
    }

    #[test]
    fn wrong_types_are_errors_with_line_numbers() {
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\n\n[plugins.a.limits]\nmemory_mb = \"lots\"\n")
            .unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.message.contains("\"lots\""), "{err}");
    }

    #[test]
    fn an_unknown_kind_names_the_valid_ones() {
        let err = parse("[plugins.a]\nkind = \"daemon\"\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("pipeline"), "{err}");
    }

    #[test]
    fn bad_grants_name_the_field_and_line() {
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\ngrants.net.connect = [\"127.0.0.1:80\", \"example:80\"]\n")
            .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("grants.net.connect"), "{err}");
        assert!(err.message.contains("example:80"), "{err}");

        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\n[[plugins.a.grants.dirs]]\nhost = \"/tmp\"\nguest = \"data\"\n")
            .unwrap_err();
        assert!(err.message.contains("must be absolute"), "{err}");
        assert_eq!(err.line, Some(4), "{err}");
    }

    #[test]
    fn limits_outside_their_range_are_refused() {
        let err = parse(
            "[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nlimits.memory_mb = 0\n",
        )
        .unwrap_err();
        assert!(err.message.contains("limits.memory_mb"), "{err}");
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nlimits.deadline_ms = 99999999\n")
            .unwrap_err();
        assert!(err.message.contains("limits.deadline_ms"), "{err}");
    }

    #[test]
    fn http_plugins_need_a_unique_route_and_others_cannot_have_one() {
        let err = parse("[plugins.a]\nkind = \"http\"\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert!(err.message.contains("needs a `route`"), "{err}");
        let err = parse("[plugins.a]\nkind = \"job\"\ncomponent = \"a.wasm\"\nroute = \"/a\"\n")
            .unwrap_err();
        assert!(err.message.contains("only http plugins"), "{err}");
        let err = parse("[plugins.a]\nkind = \"http\"\ncomponent = \"a.wasm\"\nroute = \"/x\"\n[plugins.b]\nkind = \"http\"\ncomponent = \"b.wasm\"\nroute = \"/x/\"\n")
            .unwrap_err();
        assert!(err.message.contains("already served by `a`"), "{err}");
    }

    #[test]
    fn only_pipelines_subscribe() {
        let err = parse(
            "[plugins.a]\nkind = \"job\"\ncomponent = \"a.wasm\"\ngrants.bus.subscribe = [\"x\"]\n",
        )
        .unwrap_err();
        assert!(err.message.contains("only pipelines"), "{err}");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn health_probes_and_rollback_policies_are_parsed_and_checked() {
        let m = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nhealth = { topic = \"health\", payload = \"ping\" }\nrollback = { max_failures = 5, window_ms = 1000 }\n").unwrap();
        let a = &m.plugins["a"];
        assert_eq!(
            a.health,
            Some(HealthCheck {
                topic: "health".into(),
                payload: b"ping".to_vec()
            })
        );
        assert_eq!(
            a.rollback,
            RollbackSpec {
                max_failures: 5,
                window_ms: 1000
            }
        );
        let err = parse(
            "[plugins.a]\nkind = \"job\"\ncomponent = \"a.wasm\"\nhealth = { topic = \"h\" }\n",
        )
        .unwrap_err();
        assert!(
            err.message.contains("only pipelines have a health probe"),
            "{err}"
        );
        let err = parse("[plugins.a]\nkind = \"pipeline\"\ncomponent = \"a.wasm\"\nrollback = { window_ms = 0 }\n").unwrap_err();
        assert!(err.message.contains("rollback.window_ms"), "{err}");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn plugin_names_are_checked() {
        let err =
            parse("[plugins.\"Bad Name\"]\nkind = \"job\"\ncomponent = \"a.wasm\"\n").unwrap_err();
        assert!(err.message.contains("plugin name"), "{err}");
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn a_full_manifest_round_trips_every_grant() {
        let m = parse(
            r#"
[host]
name = "store-42"
plugin_dirs = ["plugins"]
http_listen = "0.0.0.0:9000"

[plugins.cam]
kind = "pipeline"
component = "cam.wasm"
version = "1.2.0"
config = { threshold = "0.5" }
grants.env = { MODE = "fast" }
grants.bus = { publish = ["cam/out"], subscribe = ["cam/+/in"] }
grants.kv = { quota_kb = 64 }
grants.net = { connect = ["10.0.0.1:1883", "[::1]:*"], lookup = true }
limits = { memory_mb = 32, deadline_ms = 250, table_elements = 1000, output_mb = 2 }

[[plugins.cam.grants.dirs]]
host = "data"
guest = "/data"
mode = "rw"
"#,
        )
        .unwrap();
        let cam = &m.plugins["cam"];
        assert_eq!(m.host.name, "store-42");
        assert_eq!(m.host.http_listen.port(), 9000);
        assert_eq!(cam.version.as_deref(), Some("1.2.0"));
        assert_eq!(cam.config["threshold"], "0.5");
        assert_eq!(cam.grants.env["MODE"], "fast");
        assert!(cam.grants.bus.may_publish("cam/out"));
        assert!(!cam.grants.bus.may_publish("cam/other"));
        assert!(cam.grants.bus.subscribe[0].matches("cam/front/in"));
        assert_eq!(cam.grants.kv.as_ref().unwrap().namespace, "cam");
        assert_eq!(cam.grants.kv.as_ref().unwrap().quota_bytes, 64 * 1024);
        assert!(cam.grants.net.allows(&"10.0.0.1:1883".parse().unwrap()));
        assert!(!cam.grants.net.allows(&"10.0.0.1:1884".parse().unwrap()));
        assert!(cam.grants.net.allows(&"[::1]:4242".parse().unwrap()));
        assert!(cam.grants.net.lookup);
        assert_eq!(cam.grants.dirs[0].guest, "/data");
        assert!(!cam.grants.dirs[0].read_only);
        assert_eq!(cam.limits.memory_bytes, 32 << 20);
        assert_eq!(cam.limits.deadline_ms, 250);
        assert_eq!(cam.limits.output_bytes, 2 << 20);
    }
}

#[cfg(test)]
mod operations_tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        crate::Manifest::parse(text, "ops.toml")
    }

    const PLUGINS: &str = "[plugins.det]\nkind = \"pipeline\"\ncomponent = \"d.wasm\"\n[plugins.job]\nkind = \"job\"\ncomponent = \"j.wasm\"\n";

    #[test]
    fn timers_sinks_and_routes_are_parsed_into_their_specs() {
        let m = parse(&format!(
            "{PLUGINS}
[timers.tick]
every_ms = 500
payload = \"now\"

[sinks.cloud]
kind = \"mqtt\"
url = \"mqtt://127.0.0.1:1884\"
topic_prefix = \"site/\"
buffer = {{ max_mb = 8, ttl_s = 60 }}

[sinks.hook]
kind = \"webhook\"
url = \"http://127.0.0.1:9000/in\"
headers = {{ x-site = \"1\" }}

[[routes]]
from = \"timers/tick\"
to = \"plugins/det\"

[[routes]]
from = \"plugins/det/out/#\"
to = \"sinks/cloud\"

[[routes]]
from = \"ingest/cam/+\"
to = \"topics/cam/all\"
"
        ))
        .unwrap();
        assert_eq!(m.timers["tick"].topic, "timers/tick");
        assert_eq!(m.timers["tick"].payload, b"now");
        assert_eq!(
            m.sinks["cloud"].target,
            SinkTargetSpec::Mqtt {
                host: "127.0.0.1".into(),
                port: 1884,
                client_id: None,
                topic_prefix: "site/".into(),
                qos: 1
            }
        );
        assert_eq!(m.sinks["cloud"].buffer.max_bytes, 8 << 20);
        assert_eq!(m.sinks["cloud"].buffer.ttl_secs, 60);
        assert_eq!(m.sinks["hook"].buffer, BufferSpec::default());
        assert_eq!(m.routes.len(), 3);
        assert_eq!(m.routes[0].from, RouteSource::Timer("tick".into()));
        assert_eq!(m.routes[0].to, RouteTarget::Plugin("det".into()));
        assert!(
            matches!(&m.routes[1].from, RouteSource::Plugin { plugin, topics } if plugin == "det" && topics.matches("out/a/b"))
        );
        assert_eq!(m.routes[1].to, RouteTarget::Sink("cloud".into()));
        assert!(matches!(&m.routes[2].from, RouteSource::Ingest(p) if p.matches("cam/front")));
    }

    #[test]
    fn routes_to_unknown_things_name_the_route_and_the_missing_name() {
        let err = parse(&format!(
            "{PLUGINS}[[routes]]\nfrom = \"topics/a\"\nto = \"sinks/nowhere\"\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("routes[0].to"), "{err}");
        assert!(err.message.contains("no sink `nowhere`"), "{err}");
        let err = parse(&format!(
            "{PLUGINS}[[routes]]\nfrom = \"topics/a\"\nto = \"plugins/job\"\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("only pipelines"), "{err}");
        let err = parse(&format!(
            "{PLUGINS}[[routes]]\nfrom = \"plugins/det\"\nto = \"plugins/det\"\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("its own output"), "{err}");
        let err = parse(&format!(
            "{PLUGINS}[[routes]]\nfrom = \"cameras\"\nto = \"topics/x\"\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("routes[0].from"), "{err}");
    }

    #[test]
    fn ports_tables_and_network_function_grants_are_parsed_in_order() {
        let m = parse(
            r#"
[ports.n3]
kind = "af-packet"
interface = "veth-n3"
address = "10.0.1.1/24"
gateway = "10.0.1.254"
[ports.n6]
kind = "memory"
capacity = 64
[tables.pdr]
kind = "exact"
max_entries = 1000
[tables.routes]
kind = "lpm"
[plugins.upf]
kind = "network-function"
component = "upf.wasm"
grants.ports = ["n6", "n3"]
grants.tables = ["pdr", "routes"]
grants.control = "127.0.0.1:8805"
limits = { batch = 32, tick_ms = 50 }
"#,
        )
        .unwrap();
        let n3 = &m.ports["n3"];
        assert_eq!(n3.kind, PortKind::AfPacket);
        assert_eq!(n3.interface.as_deref(), Some("veth-n3"));
        assert_eq!(n3.address.unwrap().prefix, 24);
        assert_eq!(n3.gateway, Some("10.0.1.254".parse().unwrap()));
        assert_eq!(m.ports["n6"].capacity, 64);
        assert_eq!(m.tables["pdr"].max_entries, 1000);
        assert_eq!(m.tables["routes"].kind, TableKind::Lpm);
        assert_eq!(m.tables["routes"].max_key, 17);
        let upf = &m.plugins["upf"];
        assert_eq!(
            upf.grants.nf.ports,
            ["n6", "n3"],
            "grant order is port numbering"
        );
        assert_eq!(upf.grants.nf.tables, ["pdr", "routes"]);
        assert_eq!(
            upf.grants.nf.control,
            Some("127.0.0.1:8805".parse().unwrap())
        );
        assert_eq!((upf.limits.batch, upf.limits.tick_ms), (32, 50));
    }

    #[test]
    fn bad_ports_tables_and_nf_grants_name_the_field() {
        let cases = [
            (
                "[ports.a]\nkind = \"af-packet\"\n",
                "ports.a: a af-packet port needs an `interface`",
            ),
            (
                "[ports.a]\nkind = \"tap\"\ninterface = \"x/y\"\n",
                "ports.a.interface",
            ),
            (
                "[ports.a]\nkind = \"pcap\"\n",
                "ports.a: a pcap port needs a `path`",
            ),
            (
                "[ports.a]\nkind = \"memory\"\naddress = \"10.0.0.1\"\n",
                "ports.a.address",
            ),
            (
                "[ports.a]\nkind = \"memory\"\naddress = \"10.0.0.1/24\"\ngateway = \"10.9.0.1\"\n",
                "not on the port's subnet",
            ),
            ("[ports.a]\nkind = \"wifi\"\n", "unknown variant `wifi`"),
            (
                "[tables.t]\nkind = \"lpm\"\nmax_key = 40\n",
                "tables.t.max_key",
            ),
            (
                "[tables.t]\nkind = \"exact\"\nmax_entries = 0\n",
                "tables.t.max_entries",
            ),
            (
                "[plugins.p]\nkind = \"network-function\"\ncomponent = \"p.wasm\"\ngrants.ports = [\"nope\"]\n",
                "no port named `nope`",
            ),
            (
                "[tables.t]\nkind = \"exact\"\n[plugins.p]\nkind = \"pipeline\"\ncomponent = \"p.wasm\"\ngrants.tables = [\"t\"]\n",
                "only network functions have tables",
            ),
            (
                "[plugins.p]\nkind = \"network-function\"\ncomponent = \"p.wasm\"\ngrants.control = \"8805\"\n",
                "grants.control",
            ),
            (
                "[plugins.p]\nkind = \"network-function\"\ncomponent = \"p.wasm\"\nlimits.batch = 0\n",
                "limits.batch",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn bad_sinks_and_timers_are_refused_with_the_field() {
        let err = parse("[sinks.s]\nkind = \"mqtt\"\nurl = \"tcp://x\"\n").unwrap_err();
        assert!(err.message.contains("sinks.s.url"), "{err}");
        let err =
            parse("[sinks.s]\nkind = \"mqtt\"\nurl = \"mqtt://b:1883\"\nqos = 2\n").unwrap_err();
        assert!(err.message.contains("sinks.s.qos"), "{err}");
        let err = parse("[sinks.s]\nkind = \"webhook\"\nurl = \"https://x/\"\n").unwrap_err();
        assert!(err.message.contains("sinks.s.url"), "{err}");
        let err = parse("[timers.t]\nevery_ms = 1\n").unwrap_err();
        assert!(err.message.contains("timers.t.every_ms"), "{err}");
        assert_eq!(err.line, Some(1), "the error points at the timer's table");
    }

    #[test]
    fn the_api_defaults_to_tls_on_loopback_and_refuses_plain_http_elsewhere() {
        let m = parse("").unwrap();
        assert_eq!(m.host.api.listen.to_string(), "127.0.0.1:7443");
        assert!(m.host.api.tls);
        let m = parse("[host.api]\nlisten = \"127.0.0.1:9443\"\ntls = false\n").unwrap();
        assert!(!m.host.api.tls);
        let err = parse("[host.api]\nlisten = \"0.0.0.0:7443\"\ntls = false\n").unwrap_err();
        assert!(err.message.contains("only allowed on a loopback"), "{err}");
    }

    #[test]
    fn client_certificates_map_names_to_known_roles_and_need_roles_or_required() {
        let m = parse(
            "[host.tls.client_auth]\nca = \"clients.pem\"\nroles = { \"ops-laptop\" = \"operator\", \"grafana\" = \"viewer\" }\n",
        )
        .unwrap();
        let auth = m.host.tls.client_auth.unwrap();
        assert_eq!(auth.ca, PathBuf::from("clients.pem"));
        assert!(!auth.required);
        assert_eq!(auth.roles["ops-laptop"], "operator");
        assert_eq!(auth.roles["grafana"], "viewer");

        let m = parse("[host.tls.client_auth]\nca = \"clients.pem\"\nrequired = true\n").unwrap();
        assert!(m.host.tls.client_auth.unwrap().required);

        let err = parse(
            "[host.tls.client_auth]\nca = \"clients.pem\"\nroles = { \"ops\" = \"admin\" }\n",
        )
        .unwrap_err();
        assert!(err.message.contains("unknown role `admin`"), "{err}");
        let err = parse("[host.tls.client_auth]\nca = \"clients.pem\"\n").unwrap_err();
        assert!(err.message.contains("required = true"), "{err}");
        let err = parse("[host.tls.client_auth]\nroles = { \"ops\" = \"viewer\" }\n").unwrap_err();
        assert!(err.message.contains("ca"), "{err}");
    }

    #[test]
    fn encryption_is_on_by_default_with_a_device_key_and_each_provider_checks_its_fields() {
        let m = parse("").unwrap();
        assert_eq!(m.host.encryption, crate::EncryptionSettings::default());
        assert!(matches!(
            m.host.encryption.provider,
            crate::KeyProviderSpec::Device {
                passphrase_file: None
            }
        ));
        let m = parse("[host.encryption]\nprovider = \"none\"\n").unwrap();
        assert_eq!(m.host.encryption.provider, crate::KeyProviderSpec::None);
        let m = parse(
            "[host.encryption]\nprovider = \"pkcs11\"\nmodule = \"/m.so\"\ntoken = \"t\"\npin_file = \"pin\"\nkey = \"site-kek\"\n",
        )
        .unwrap();
        assert_eq!(m.host.encryption.key, "site-kek");
        assert!(matches!(
            m.host.encryption.provider,
            crate::KeyProviderSpec::Pkcs11 { .. }
        ));
        let err =
            parse("[host.encryption]\nprovider = \"pkcs11\"\nmodule = \"/m.so\"\n").unwrap_err();
        assert!(
            err.message.contains("needs module, token and pin_file"),
            "{err}"
        );
        let err = parse("[host.encryption]\nprovider = \"device\"\ntoken = \"t\"\n").unwrap_err();
        assert!(err.message.contains("host.encryption.token"), "{err}");
        let err = parse("[host.encryption]\nprovider = \"vault\"\n").unwrap_err();
        assert!(err.message.contains("`vault` is not one of"), "{err}");
        let err = parse("[host.encryption]\nprovider = \"device\"\nkey = \"a b\"\n").unwrap_err();
        assert!(err.message.contains("host.encryption.key"), "{err}");
    }

    #[test]
    fn image_plugins_name_their_artifact_by_digest_and_canaries_are_bounded() {
        let hex = "a".repeat(64);
        let m = parse(&format!(
            "[plugins.f]\nkind = \"pipeline\"\nimage = \"127.0.0.1:5000/acme/filter@sha256:{hex}\"\ncanary = {{ percent = 10, calls = 50 }}\n"
        ))
        .unwrap();
        let f = &m.plugins["f"];
        assert_eq!(
            f.image.as_deref(),
            Some(&*format!("127.0.0.1:5000/acme/filter@sha256:{hex}"))
        );
        assert_eq!(
            f.canary,
            Some(crate::CanarySpec {
                percent: 10,
                calls: 50
            })
        );
        let err =
            parse("[plugins.f]\nkind = \"pipeline\"\nimage = \"127.0.0.1:5000/acme/filter:1.0\"\n")
                .unwrap_err();
        assert!(err.message.contains("by digest"), "{err}");
        let err = parse(&format!(
            "[plugins.f]\nkind = \"pipeline\"\ncomponent = \"f.wasm\"\nimage = \"r/x@sha256:{hex}\"\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("not both"), "{err}");
        let err = parse("[plugins.f]\nkind = \"pipeline\"\n").unwrap_err();
        assert!(err.message.contains("missing `component`"), "{err}");
        let err = parse("[plugins.f]\nkind = \"pipeline\"\ncomponent = \"f.wasm\"\ncanary = { percent = 100, calls = 5 }\n").unwrap_err();
        assert!(err.message.contains("canary"), "{err}");
    }

    #[test]
    fn maintenance_windows_open_on_their_days_and_may_run_past_midnight() {
        let m = parse(
            "[host.updates]\nwindows = [{ days = [\"sat\"], start = \"23:00\", stop = \"02:00\" }, { start = \"12:00\", stop = \"12:30\" }]\n",
        )
        .unwrap();
        let (night, noon) = (&m.host.updates.windows[0], &m.host.updates.windows[1]);
        // 2026-11-28 is a Saturday; 1_795_824_000 is its midnight UTC.
        let saturday = 1_795_824_000u64;
        assert_eq!(crate::Weekday::of_unix(saturday), crate::Weekday::Sat);
        assert!(
            night.contains(saturday + 23 * 3600 + 30 * 60),
            "Saturday 23:30"
        );
        assert!(
            night.contains(saturday + 86_400 + 3600),
            "Sunday 01:00 belongs to Saturday's window"
        );
        assert!(
            !night.contains(saturday + 3600),
            "Saturday 01:00 belongs to Friday, not in the window"
        );
        assert!(
            !night.contains(saturday + 86_400 + 23 * 3600 + 30 * 60),
            "Sunday 23:30"
        );
        assert_eq!(night.opens_in(saturday + 22 * 3600), Some(3600));
        assert!(noon.contains(saturday + 12 * 3600 + 60));
        assert!(!noon.contains(saturday + 12 * 3600 + 30 * 60));
        for bad in [
            "[host.updates]\nwindows = [{ start = \"25:00\", stop = \"02:00\" }]\n",
            "[host.updates]\nwindows = [{ days = [\"someday\"], start = \"01:00\", stop = \"02:00\" }]\n",
            "[host.updates]\nwindows = [{ start = \"01:00\", stop = \"01:00\" }]\n",
        ] {
            assert!(
                parse(bad)
                    .unwrap_err()
                    .message
                    .contains("host.updates.windows"),
                "{bad}"
            );
        }
        let err = parse("[[host.updates.publishers]]\nname = \"acme\"\nkey = \"acme.pub\"\n")
            .unwrap_err();
        assert!(
            err.message.contains("the repositories it may sign for"),
            "{err}"
        );
    }

    #[test]
    fn shares_name_a_kind_a_target_when_tiered_and_a_tiering_policy_plugin() {
        let m = parse(
            "[plugins.t]\nkind = \"tiering-policy\"\ncomponent = \"t.wasm\"\n[shares.cam]\npath = \"/srv/cam\"\nkind = \"cloud-tiered\"\ntarget = \"az://archive/site-42\"\nquota_mb = 10\npolicy = \"t\"\nbandwidth = { default_mbps = 20, windows = [{ start = \"08:00\", stop = \"18:00\", mbps = 5 }] }\n",
        )
        .unwrap();
        let s = &m.shares["cam"];
        assert_eq!(s.quota_bytes, 10 << 20);
        assert_eq!(s.policy.as_deref(), Some("t"));
        assert_eq!(s.bandwidth.default_mbps, Some(20));
        assert_eq!(s.bandwidth.windows[0].1, Some(5));
        for (text, why) in [
            (
                "[shares.a]\npath = \"/a\"\nkind = \"edge-local\"\ntarget = \"s3://b/p\"\n",
                "never leaves the device",
            ),
            (
                "[shares.a]\npath = \"/a\"\nkind = \"cloud-tiered\"\n",
                "needs a target",
            ),
            (
                "[shares.a]\npath = \"/a\"\nkind = \"cloud-tiered\"\ntarget = \"ftp://x\"\n",
                "is not a file://",
            ),
            (
                "[shares.a]\npath = \"/a\"\nkind = \"cloud-tiered\"\ntarget = \"s3://b/p\"\npolicy = \"nope\"\n",
                "no plugin `nope`",
            ),
            (
                "[plugins.p]\nkind = \"pipeline\"\ncomponent = \"p.wasm\"\n[shares.a]\npath = \"/a\"\nkind = \"cloud-tiered\"\ntarget = \"s3://b/p\"\npolicy = \"p\"\n",
                "not a tiering-policy",
            ),
            (
                "[shares.a]\npath = \"/a\"\nkind = \"tiered\"\n",
                "is not `edge-local`",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.message.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn only_jobs_have_a_restart_policy_and_its_backoff_is_bounded() {
        let m = parse("[plugins.j]\nkind = \"job\"\ncomponent = \"j.wasm\"\nrestart = { policy = \"on-failure\", backoff_ms = 100 }\n").unwrap();
        assert_eq!(m.plugins["j"].restart.policy, RestartPolicy::OnFailure);
        assert_eq!(m.plugins["j"].restart.backoff_ms, 100);
        let err = parse("[plugins.p]\nkind = \"pipeline\"\ncomponent = \"p.wasm\"\nrestart = { policy = \"always\" }\n").unwrap_err();
        assert!(err.message.contains("only jobs are restarted"), "{err}");
        let err = parse("[plugins.j]\nkind = \"job\"\ncomponent = \"j.wasm\"\nrestart = { policy = \"always\", backoff_ms = 0 }\n").unwrap_err();
        assert!(err.message.contains("restart.backoff_ms"), "{err}");
    }

    #[test]
    fn share_grants_name_declared_shares_with_ro_or_rw_and_anything_else_is_refused() {
        let base = "[shares.archive]\npath = \"/a\"\nkind = \"edge-local\"\n\n[plugins.p]\nkind = \"pipeline\"\ncomponent = \"p.wasm\"\n";
        let m = parse(&format!("{base}grants.shares = {{ archive = \"rw\" }}\n")).unwrap();
        assert_eq!(
            m.plugins["p"].grants.shares["archive"],
            crate::ShareAccess::ReadWrite
        );
        let m = parse(&format!("{base}grants.shares = {{ archive = \"ro\" }}\n")).unwrap();
        assert_eq!(
            m.plugins["p"].grants.shares["archive"],
            crate::ShareAccess::ReadOnly
        );
        let err = parse(&format!("{base}grants.shares = {{ other = \"rw\" }}\n")).unwrap_err();
        assert!(
            err.message
                .contains("no share named `other` (declared: archive)"),
            "{err}"
        );
        let err = parse(&format!(
            "{base}grants.shares = {{ archive = \"write\" }}\n"
        ))
        .unwrap_err();
        assert!(
            err.message.contains("`write` is neither `ro` nor `rw`"),
            "{err}"
        );
    }
}
