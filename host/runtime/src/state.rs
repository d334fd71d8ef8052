//! Per-plugin context and per-store state: what a running instance can reach, built from its
//! grants, and the host side of the `outpost:plugin` interfaces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use outpost_inference::host::{NnPolicy, NnState, WasiNn};
use outpost_manifest::{Grants, Limits, NetGrant, PluginKind};
use outpost_services::{Bus, KvNamespace};
use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::RuntimeError;
use crate::limits::PluginLimiter;

/// Host bindings of the `outpost:plugin` interfaces (generated from `wit/`).
#[allow(missing_docs)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "outpost:plugin/imports",
        with: {
            "outpost:plugin/tables.table": crate::nf::TableHandle,
        },
        // Share writes and reads wait for the quota, the disk and recalls: async, so a
        // waiting plugin holds no thread.
        imports: {
            "outpost:plugin/shares.write": async,
            "outpost:plugin/shares.read": async,
        },
    });
}

pub(crate) use bindings::Imports;
use bindings::outpost::plugin::{bus, config, kv, log, shares};

/// Longest log line kept; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;
/// Log lines a plugin may write per second (stdout, stderr and `log` together), and burst.
const LOG_RATE: f64 = 200.0;
const LOG_BURST: f64 = 1000.0;

/// Everything about a plugin that every instance of it shares.
pub struct PluginContext {
    /// Plugin name.
    pub name: String,
    /// Its kind.
    pub kind: PluginKind,
    /// Its config block.
    pub config: BTreeMap<String, String>,
    /// Its grants.
    pub grants: Grants,
    /// Its limits.
    pub limits: Limits,
    /// The bus, when it has a bus grant.
    pub bus: Option<Bus>,
    /// Its kv namespace, when granted.
    pub kv: Option<KvNamespace>,
    /// Its `wasi:nn` grants, limit and counters, when it may run models.
    pub nn: Option<Arc<NnPolicy>>,
    /// Its tables, ports and control socket, when it is a network function.
    pub nf: Option<Arc<crate::nf::NfIo>>,
    /// The host's open shares (shares open after the first apply, so this is looked up at
    /// call time), when the plugin is granted any.
    pub shares: Option<crate::shares::ShareRegistry>,
    log_budget: Mutex<LogBudget>,
}

struct LogBudget {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl PluginContext {
    /// A context from a plugin's manifest entry and the host services it was granted.
    pub fn new(
        name: &str,
        kind: PluginKind,
        config: BTreeMap<String, String>,
        grants: Grants,
        limits: Limits,
        bus: Option<Bus>,
        kv: Option<KvNamespace>,
    ) -> PluginContext {
        PluginContext {
            name: name.to_string(),
            kind,
            config,
            grants,
            limits,
            bus,
            kv,
            nn: None,
            nf: None,
            shares: None,
            log_budget: Mutex::new(LogBudget {
                tokens: LOG_BURST,
                refilled: Instant::now(),
                dropped: 0,
            }),
        }
    }

    /// Gives the plugin `wasi:nn` under `policy` (its model grants and concurrency limit).
    pub fn with_nn(mut self, policy: NnPolicy) -> PluginContext {
        self.nn = Some(Arc::new(policy));
        self
    }

    /// Gives the plugin the host's shares (its grants say which and how).
    pub fn with_shares(mut self, registry: crate::shares::ShareRegistry) -> PluginContext {
        self.shares = Some(registry);
        self
    }

    /// Gives the plugin its network-function I/O (tables, ports, control socket).
    pub fn with_nf(mut self, io: Arc<crate::nf::NfIo>) -> PluginContext {
        self.nf = Some(io);
        self
    }

    /// Writes one plugin log record, unless the plugin is over its log rate.
    pub fn log(&self, level: tracing::Level, stream: &str, message: &str) {
        let mut budget = self.log_budget.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(budget.refilled).as_secs_f64();
        budget.tokens = (budget.tokens + elapsed * LOG_RATE).min(LOG_BURST);
        budget.refilled = now;
        if budget.tokens < 1.0 {
            budget.dropped += 1;
            return;
        }
        budget.tokens -= 1.0;
        let dropped = std::mem::take(&mut budget.dropped);
        drop(budget);
        if dropped > 0 {
            tracing::warn!(plugin = %self.name, dropped, "plugin exceeded its log rate; lines dropped");
        }
        let message = truncate(message, MAX_LOG_LINE);
        let plugin = self.name.as_str();
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "plugin", plugin, stream, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "plugin", plugin, stream, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "plugin", plugin, stream, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "plugin", plugin, stream, "{message}"),
            tracing::Level::ERROR => tracing::error!(target: "plugin", plugin, stream, "{message}"),
        }
    }

    /// A WASI context holding exactly this plugin's grants: its preopens, its environment, its
    /// network allow-list; stdout and stderr go to the host log.
    pub fn wasi_ctx(self: &Arc<Self>) -> Result<WasiCtx, RuntimeError> {
        let mut b = WasiCtxBuilder::new();
        self.route_stdio_to_log(&mut b);
        apply_grants(&mut b, &self.grants)?;
        Ok(b.build())
    }

    /// Sends the guest's stdout and stderr to the host log, a record per line.
    pub fn route_stdio_to_log(self: &Arc<Self>, b: &mut WasiCtxBuilder) {
        b.stdout(LogStream::new(self.clone(), "stdout"))
            .stderr(LogStream::new(self.clone(), "stderr"));
    }
}

/// Adds preopens, environment and the network allow-list of `grants` to a WASI builder.
pub fn apply_grants(b: &mut WasiCtxBuilder, grants: &Grants) -> Result<(), RuntimeError> {
    for (k, v) in &grants.env {
        b.env(k, v);
    }
    for dir in &grants.dirs {
        let perms = if dir.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&dir.host, &dir.guest, perms).map_err(|e| {
            RuntimeError::io(
                &dir.host,
                format!("cannot preopen for {}: {e:#}", dir.guest),
            )
        })?;
    }
    let net = grants.net.clone();
    b.allow_ip_name_lookup(net.lookup)
        .allow_tcp(!net.connect.is_empty())
        .allow_udp(!net.connect.is_empty())
        .socket_addr_check(move |addr, usage| {
            let ok = socket_allowed(&net, addr, usage);
            if !ok {
                tracing::debug!(%addr, ?usage, "socket use refused by grant");
            }
            Box::pin(async move { ok })
        });
    Ok(())
}

/// Outbound use of a granted endpoint is allowed; binding only to an ephemeral wildcard
/// address (what a connect does implicitly); listening and accepting never.
fn socket_allowed(net: &NetGrant, addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
            net.allows(&addr)
        }
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
            addr.ip().is_unspecified() && addr.port() == 0
        }
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The data of one store: one instance of a plugin, for one call or one job run.
pub struct StoreState {
    pub(crate) plugin: Arc<PluginContext>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    hooks: DenyOutgoingHttp,
    pub(crate) limiter: PluginLimiter,
    pub(crate) deadline: Option<Instant>,
    pub(crate) nn: NnState,
}

/// wasi:http hooks that refuse outgoing requests: plugins reach the network only through
/// `wasi:sockets` and their `grants.net` allow-list for now.
struct DenyOutgoingHttp;

type WasiHttpResponse = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl wasmtime_wasi_http::WasiHttpHooks for DenyOutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn std::future::Future<Output = WasiHttpResponse> + Send> {
        tracing::debug!(uri = %request.uri(), "outgoing http request denied");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl StoreState {
    /// State for a new store of `plugin`, with a WASI context from its grants.
    pub fn new(plugin: Arc<PluginContext>, wasi: WasiCtx) -> StoreState {
        let limits = plugin.limits;
        let nn = match &plugin.nn {
            Some(policy) => NnState::new(policy.clone()),
            None => NnState::none(),
        };
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.table_elements as usize);
        StoreState {
            plugin,
            wasi,
            http: WasiHttpCtx::new(),
            table,
            hooks: DenyOutgoingHttp,
            limiter: PluginLimiter::new(limits.memory_bytes, u64::from(limits.table_elements)),
            deadline: None,
            nn,
        }
    }
}

impl StoreState {
    /// The `wasi:nn` view of this store.
    pub(crate) fn wasi_nn(&mut self) -> WasiNn<'_> {
        WasiNn::new(&mut self.nn, &mut self.table)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => tracing::Level::TRACE,
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        self.plugin.log(level, "log", &message);
    }
}

impl config::Host for StoreState {
    fn get(&mut self, key: String) -> Option<String> {
        self.plugin.config.get(&key).cloned()
    }

    fn keys(&mut self) -> Vec<String> {
        self.plugin.config.keys().cloned().collect()
    }
}

impl bus::Host for StoreState {
    fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), bus::BusError> {
        let p = &self.plugin;
        let Some(bus) = p.bus.as_ref().filter(|_| p.grants.bus.may_publish(&topic)) else {
            return Err(bus::BusError::NotGranted(topic));
        };
        match bus.publish(&p.name, &topic, payload) {
            Ok(_) => Ok(()),
            Err(outpost_services::bus::PublishError::TooLarge { limit, .. }) => Err(
                bus::BusError::TooLarge(limit.try_into().unwrap_or(u32::MAX)),
            ),
            // A granted pattern only matches valid concrete topics, so this is a wildcard.
            Err(outpost_services::bus::PublishError::BadTopic(topic, _)) => {
                Err(bus::BusError::NotGranted(topic))
            }
        }
    }
}

fn kv_err(e: outpost_services::KvError) -> kv::KvError {
    match e {
        outpost_services::KvError::QuotaExceeded { quota, .. } => kv::KvError::QuotaExceeded(quota),
        outpost_services::KvError::TooLarge { .. } => kv::KvError::TooLarge,
        outpost_services::KvError::Io(m) => kv::KvError::Io(m),
        // The plugin learns the store is unreadable; the operator sees which key in the log and
        // in status (the key check).
        e @ (outpost_services::KvError::Encryption(_)
        | outpost_services::KvError::NoKeyProvider) => {
            tracing::error!(error = %e, "kv value unreadable");
            kv::KvError::Io(
                "stored value unreadable (encryption key unavailable or record altered)".into(),
            )
        }
    }
}

impl StoreState {
    fn kv(&self) -> Result<&KvNamespace, kv::KvError> {
        // Unreachable for a loaded plugin (the import check requires the grant), but a clear
        // error beats a panic.
        self.plugin
            .kv
            .as_ref()
            .ok_or_else(|| kv::KvError::Io("no kv namespace granted".into()))
    }
}

impl kv::Host for StoreState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        self.kv()?.get(&key).map_err(kv_err)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), kv::KvError> {
        self.kv()?.set(&key, &value).map_err(kv_err)
    }

    fn delete(&mut self, key: String) -> Result<bool, kv::KvError> {
        self.kv()?.delete(&key).map_err(kv_err)
    }

    fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, kv::KvError> {
        self.kv()?.list_keys(&prefix).map_err(kv_err)
    }
}

/// Largest file a plugin writes or reads through `shares` in one call.
pub const MAX_SHARE_FILE_BYTES: u64 = 64 << 20;

impl StoreState {
    /// The running share `name`, if the plugin may use it as `need` asks.
    fn share(
        &self,
        name: &str,
        write: bool,
    ) -> Result<std::sync::Arc<crate::shares::RunningShare>, shares::ShareError> {
        use outpost_manifest::ShareAccess;
        let plugin = &self.plugin.name;
        match self.plugin.grants.shares.get(name) {
            None => {
                return Err(shares::ShareError::Denied(format!(
                    "plugin `{plugin}` is not granted share `{name}`"
                )));
            }
            Some(ShareAccess::ReadOnly) if write => {
                return Err(shares::ShareError::Denied(format!(
                    "plugin `{plugin}` may only read share `{name}` (grants.shares.{name} = \"ro\")"
                )));
            }
            Some(_) => {}
        }
        self.plugin
            .shares
            .as_ref()
            .and_then(|r| r.get(name))
            .ok_or_else(|| shares::ShareError::Io(format!("share `{name}` is not open yet")))
    }
}

fn share_path(path: &str) -> Result<outpost_storage::SharePath, shares::ShareError> {
    outpost_storage::SharePath::new(path).map_err(|e| shares::ShareError::BadPath(e.to_string()))
}

fn share_err(e: outpost_storage::StorageError) -> shares::ShareError {
    match e {
        outpost_storage::StorageError::NotFound(m) => shares::ShareError::NotFound(m),
        outpost_storage::StorageError::InvalidPath { .. } => {
            shares::ShareError::BadPath(e.to_string())
        }
        e => shares::ShareError::Io(e.to_string()),
    }
}

impl shares::Host for StoreState {
    async fn write(
        &mut self,
        share: String,
        path: String,
        data: Vec<u8>,
    ) -> Result<(), shares::ShareError> {
        let running = self.share(&share, true)?;
        let path = share_path(&path)?;
        if data.len() as u64 > MAX_SHARE_FILE_BYTES {
            return Err(shares::ShareError::TooLarge(MAX_SHARE_FILE_BYTES));
        }
        let size = data.len();
        running
            .share()
            .write(&path, bytes::Bytes::from(data))
            .await
            .map_err(share_err)?;
        tracing::debug!(plugin = %self.plugin.name, share, path = path.as_str(), size, "plugin wrote a share file");
        Ok(())
    }

    async fn read(&mut self, share: String, path: String) -> Result<Vec<u8>, shares::ShareError> {
        let running = self.share(&share, false)?;
        let path = share_path(&path)?;
        let size = running
            .share()
            .entry(&path)
            .map_err(share_err)?
            .ok_or_else(|| shares::ShareError::NotFound(format!("{share}/{}", path.as_str())))?
            .size;
        if size > MAX_SHARE_FILE_BYTES {
            return Err(shares::ShareError::TooLarge(MAX_SHARE_FILE_BYTES));
        }
        let data = running.share().read(&path).await.map_err(share_err)?;
        Ok(data.to_vec())
    }

    fn list_files(
        &mut self,
        share: String,
        prefix: String,
    ) -> Result<Vec<String>, shares::ShareError> {
        let running = self.share(&share, false)?;
        let mut files: Vec<String> = running
            .share()
            .entries()
            .map_err(share_err)?
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with(&prefix))
            .collect();
        files.sort();
        Ok(files)
    }
}

/// A plugin's stdout or stderr: each line becomes a log record tagged with the plugin.
#[derive(Clone)]
struct LogStream {
    plugin: Arc<PluginContext>,
    stream: &'static str,
}

impl LogStream {
    fn new(plugin: Arc<PluginContext>, stream: &'static str) -> LogStream {
        LogStream { plugin, stream }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LogWriter {
            stream: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LogWriter {
    stream: LogStream,
    line: Vec<u8>,
}

impl LogWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let level = if self.stream.stream == "stderr" {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        };
        self.stream
            .plugin
            .log(level, self.stream.stream, text.trim_end_matches('\r'));
        self.line.clear();
    }
}

impl AsyncWrite for LogWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LOG_LINE {
                self.line.push(b);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
