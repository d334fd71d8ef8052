//! Network functions on the host: the plugin is swappable code, the host owns everything that
//! must outlive a version (ports, tables, the control socket, neighbours).
//!
//! A [`NfRunner`] per network-function plugin runs three loops: the **data path** on its own
//! thread (receive a batch from every granted port, one `process` call, check the verdicts,
//! transmit), the **control path** (datagrams on the plugin's control socket → `control` → the
//! replies), and the **timer** (`tick`). Each loop loads the slot's active version at every
//! call, so a hot swap takes effect at the next batch and never interrupts one. The data path
//! keeps one instance per version (instantiating per batch would cost more than the batch); a
//! trap discards it.
//!
//! Ports with an `address` are IP ports: the host answers ARP for the address, learns
//! neighbours from ARP and from the IPv4 packets it receives, strips the Ethernet header on the
//! way in and adds it on the way out (resolving the next hop, queueing a few packets while it
//! asks). Plugins then see and send IPv4 packets only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_dataplane::{
    Batch, BatchResult, MemoryPortHandle, Port, PortCounters, PortStats, Table, TableSet, Verdict,
    open_port,
};
use outpost_manifest::{Ipv4Cidr, PluginSpec, PortKind, PortSpec};
use serde::Serialize;
use wasmtime::component::{ComponentType, Lift, Resource};

use crate::error::CallError;
use crate::plugin::{Plugin, arm_deadline};
use crate::slot::PluginSlot;
use crate::state::StoreState;
use crate::state::bindings::outpost::plugin::{nf_io, tables};

/// Packets the control and timer paths may queue for the data path to transmit.
const INJECT_QUEUE: usize = 1024;
/// Packets an IP port holds while it resolves their next hop.
const PENDING_PER_PORT: usize = 256;
/// How often an unresolved next hop is asked for again.
const ARP_RETRY: Duration = Duration::from_millis(200);
/// Largest control datagram.
const MAX_DATAGRAM: usize = 65_535;
/// Keys one `keys` call returns at most.
const MAX_KEYS_PAGE: u32 = 4096;

/// A packet the plugin asked to send outside a batch: (port, packet).
type Injected = (u16, Vec<u8>);

/// A table handle held by a plugin instance.
pub struct TableHandle {
    table: Arc<Table>,
}

/// A network function's reach beyond its batch: its tables, its ports' names, the queue of
/// packets to transmit, its control socket, and its counters. Shared by every version of the
/// plugin (a hot swap keeps it).
pub struct NfIo {
    plugin: String,
    tables: Arc<TableSet>,
    granted_tables: Vec<String>,
    ports: Vec<String>,
    inject: SyncSender<Injected>,
    inject_rx: Mutex<Option<Receiver<Injected>>>,
    /// Closed when the network function stops, so a replacement can bind the same address
    /// while old versions are still being dropped.
    control: Mutex<Option<Arc<UdpSocket>>>,
    /// Counters.
    pub stats: NfStats,
}

/// Counters of one network function.
#[derive(Debug, Default)]
pub struct NfStats {
    batches: AtomicU64,
    packets_in: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    rejected_batches: AtomicU64,
    injected: AtomicU64,
    inject_dropped: AtomicU64,
    control_in: AtomicU64,
    control_out: AtomicU64,
    control_errors: AtomicU64,
    ticks: AtomicU64,
    arp_replies: AtomicU64,
    unresolved_drops: AtomicU64,
    not_for_us: AtomicU64,
}

/// A copy of [`NfStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NfStatsSnapshot {
    /// Batches handed to `process`.
    pub batches: u64,
    /// Packets in those batches.
    pub packets_in: u64,
    /// Packets the plugin forwarded.
    pub forwarded: u64,
    /// Packets the plugin dropped.
    pub dropped: u64,
    /// Batches dropped whole: the call trapped, broke a limit or returned a malformed result.
    pub rejected_batches: u64,
    /// Packets the plugin sent with `transmit`.
    pub injected: u64,
    /// `transmit` packets refused because the queue was full.
    pub inject_dropped: u64,
    /// Control datagrams received.
    pub control_in: u64,
    /// Control datagrams sent (replies and `send-control`).
    pub control_out: u64,
    /// Control calls that failed or datagrams that could not be sent.
    pub control_errors: u64,
    /// Timer calls.
    pub ticks: u64,
    /// ARP requests for a port's address the host answered.
    pub arp_replies: u64,
    /// Packets dropped because their next hop did not answer ARP in time.
    pub unresolved_drops: u64,
    /// Frames on IP ports that were neither ARP nor IPv4 for the port.
    pub not_for_us: u64,
}

impl NfStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> NfStatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NfStatsSnapshot {
            batches: r(&self.batches),
            packets_in: r(&self.packets_in),
            forwarded: r(&self.forwarded),
            dropped: r(&self.dropped),
            rejected_batches: r(&self.rejected_batches),
            injected: r(&self.injected),
            inject_dropped: r(&self.inject_dropped),
            control_in: r(&self.control_in),
            control_out: r(&self.control_out),
            control_errors: r(&self.control_errors),
            ticks: r(&self.ticks),
            arp_replies: r(&self.arp_replies),
            unresolved_drops: r(&self.unresolved_drops),
            not_for_us: r(&self.not_for_us),
        }
    }
}

impl NfIo {
    /// The I/O of network function `spec`: binds its control socket (if granted).
    pub fn new(spec: &PluginSpec, tables: Arc<TableSet>) -> Result<Arc<NfIo>, String> {
        let control = match spec.grants.nf.control {
            Some(addr) => {
                let socket = UdpSocket::bind(addr)
                    .map_err(|e| format!("grants.control: cannot bind {addr}: {e}"))?;
                socket
                    .set_nonblocking(true)
                    .map_err(|e| format!("grants.control: {addr}: {e}"))?;
                Some(Arc::new(socket))
            }
            None => None,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(INJECT_QUEUE);
        Ok(Arc::new(NfIo {
            plugin: spec.name.clone(),
            tables,
            granted_tables: spec.grants.nf.tables.clone(),
            ports: spec.grants.nf.ports.clone(),
            inject: tx,
            inject_rx: Mutex::new(Some(rx)),
            control: Mutex::new(control),
            stats: NfStats::default(),
        }))
    }

    /// The address the control socket is bound to.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_socket().and_then(|s| s.local_addr().ok())
    }

    fn control_socket(&self) -> Option<Arc<UdpSocket>> {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Closes the control socket (its address is free once the control task has stopped).
    fn close_control(&self) {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn send_control(&self, peer: &str, datagram: &[u8]) -> Result<(), String> {
        let socket = self
            .control_socket()
            .ok_or("this plugin has no control socket (grants.control), or it has stopped")?;
        let addr: SocketAddr = peer
            .parse()
            .map_err(|_| format!("`{peer}` is not an `ip:port` address"))?;
        if datagram.len() > MAX_DATAGRAM {
            return Err(format!("datagram of {} bytes is too large", datagram.len()));
        }
        match socket.send_to(datagram, addr) {
            Ok(_) => {
                NfStats::add(&self.stats.control_out, 1);
                Ok(())
            }
            Err(e) => {
                NfStats::add(&self.stats.control_errors, 1);
                Err(format!("sending to {addr}: {e}"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host side of the `tables` and `nf-io` interfaces.

impl StoreState {
    fn nf_io(&self) -> Result<&Arc<NfIo>, String> {
        self.plugin
            .nf
            .as_ref()
            .ok_or_else(|| "only network functions have tables and ports".to_string())
    }

    fn table_of(&self, handle: &Resource<TableHandle>) -> wasmtime::Result<Arc<Table>> {
        Ok(self.table.get(handle)?.table.clone())
    }
}

impl tables::Host for StoreState {
    fn open(&mut self, name: String) -> Result<Resource<TableHandle>, String> {
        let io = self.nf_io()?.clone();
        if !io.granted_tables.contains(&name) {
            return Err(format!(
                "table `{name}` is not granted to plugin `{}` (grants.tables)",
                io.plugin
            ));
        }
        let table = io
            .tables
            .open(&name)
            .ok_or_else(|| format!("table `{name}` is not declared ([tables.{name}])"))?;
        self.table
            .push(TableHandle { table })
            .map_err(|e| format!("too many open handles: {e}"))
    }
}

impl tables::HostTable for StoreState {
    fn get(&mut self, handle: Resource<TableHandle>, key: Vec<u8>) -> Option<Vec<u8>> {
        self.table_of(&handle).ok()?.get(&key)
    }

    fn get_many(&mut self, handle: Resource<TableHandle>, keys: Vec<Vec<u8>>) -> tables::Found {
        let mut found = tables::Found {
            lengths: Vec::with_capacity(keys.len()),
            data: Vec::new(),
        };
        if let Ok(table) = self.table_of(&handle) {
            for key in &keys {
                let len = table.get_with(key, |v| {
                    found.data.extend_from_slice(v);
                    v.len() as u32
                });
                found.lengths.push(len);
            }
        } else {
            found.lengths.resize(keys.len(), None);
        }
        found
    }

    fn put(
        &mut self,
        handle: Resource<TableHandle>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), String> {
        let table = self.table_of(&handle).map_err(|e| e.to_string())?;
        table.put(&key, &value).map_err(|e| e.to_string())
    }

    fn remove(&mut self, handle: Resource<TableHandle>, key: Vec<u8>) -> bool {
        self.table_of(&handle).is_ok_and(|t| t.remove(&key))
    }

    fn len(&mut self, handle: Resource<TableHandle>) -> u64 {
        self.table_of(&handle).map_or(0, |t| t.len())
    }

    fn lookup(&mut self, handle: Resource<TableHandle>, address: Vec<u8>) -> Option<Vec<u8>> {
        let table = self.table_of(&handle).ok()?;
        match table.as_lpm() {
            Some(lpm) => lpm.lookup_with(&address, |v| v.to_vec()),
            None => table.get(&address),
        }
    }

    fn count(
        &mut self,
        handle: Resource<TableHandle>,
        key: Vec<u8>,
        packets: u64,
        bytes: u64,
    ) -> Result<(u64, u64), String> {
        let table = self.table_of(&handle).map_err(|e| e.to_string())?;
        count(&table, &key, packets, bytes)
    }

    fn put_many(
        &mut self,
        handle: Resource<TableHandle>,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Vec<Result<(), String>> {
        match self.table_of(&handle) {
            Ok(table) => entries
                .iter()
                .map(|(key, value)| table.put(key, value).map_err(|e| e.to_string()))
                .collect(),
            Err(e) => entries.iter().map(|_| Err(e.to_string())).collect(),
        }
    }

    fn count_many(
        &mut self,
        handle: Resource<TableHandle>,
        entries: Vec<(Vec<u8>, u64, u64)>,
    ) -> Vec<Result<(u64, u64), String>> {
        match self.table_of(&handle) {
            Ok(table) => entries
                .iter()
                .map(|(key, packets, bytes)| count(&table, key, *packets, *bytes))
                .collect(),
            Err(e) => entries.iter().map(|_| Err(e.to_string())).collect(),
        }
    }

    fn keys(
        &mut self,
        handle: Resource<TableHandle>,
        after: Option<Vec<u8>>,
        max: u32,
    ) -> Vec<Vec<u8>> {
        match self.table_of(&handle) {
            Ok(table) => keys(&table, after.as_deref(), max),
            Err(_) => Vec::new(),
        }
    }

    fn drop(&mut self, handle: Resource<TableHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

/// `tables.count`: adds to the counter under `key` and returns its totals ([`Table::count`]).
pub fn count(table: &Table, key: &[u8], packets: u64, bytes: u64) -> Result<(u64, u64), String> {
    table.count(key, packets, bytes).map_err(|e| e.to_string())
}

/// `tables.keys`: up to `max` keys (at most 4096) after `after`, in key order.
pub fn keys(table: &Table, after: Option<&[u8]>, max: u32) -> Vec<Vec<u8>> {
    table.keys(after, max.min(MAX_KEYS_PAGE) as usize)
}

impl nf_io::Host for StoreState {
    fn transmit(&mut self, port: u16, packet: Vec<u8>) -> Result<(), String> {
        let io = self.nf_io()?.clone();
        if usize::from(port) >= io.ports.len() {
            return Err(format!(
                "port {port} does not exist (the plugin has {} ports)",
                io.ports.len()
            ));
        }
        if packet.is_empty() || packet.len() > outpost_dataplane::MAX_FRAME_LEN {
            return Err(format!("packet of {} bytes cannot be sent", packet.len()));
        }
        match io.inject.try_send((port, packet)) {
            Ok(()) => {
                NfStats::add(&io.stats.injected, 1);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                NfStats::add(&io.stats.inject_dropped, 1);
                Err("the transmit queue is full".into())
            }
            Err(TrySendError::Disconnected(_)) => Err("the data path is not running".into()),
        }
    }

    fn send_control(&mut self, peer: String, datagram: Vec<u8>) -> Result<(), String> {
        let io = self.nf_io()?.clone();
        io.send_control(&peer, &datagram)
    }

    fn ports(&mut self) -> Vec<String> {
        self.nf_io().map(|io| io.ports.clone()).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Calling the plugin.

#[derive(ComponentType, Lift)]
#[component(variant)]
enum RawVerdict {
    #[component(name = "drop")]
    Drop,
    #[component(name = "forward")]
    Forward(u16),
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct RawBatchResult {
    verdicts: Vec<RawVerdict>,
    lengths: Vec<u32>,
    data: Vec<u8>,
}

/// One instance of one version of the plugin, kept for the data path.
struct DataInstance {
    plugin: Arc<Plugin>,
    store: wasmtime::Store<StoreState>,
    instance: wasmtime::component::Instance,
}

/// A new store and instance of `plugin`, its deadline armed.
async fn instantiate(
    plugin: &Plugin,
) -> Result<(wasmtime::Store<StoreState>, wasmtime::component::Instance), CallError> {
    let mut store = plugin.new_store()?;
    arm_deadline(&mut store);
    let instance = plugin
        .instance_pre()
        .instantiate_async(&mut store)
        .await
        .map_err(|e| plugin.classify_instantiate(&e))?;
    Ok((store, instance))
}

impl DataInstance {
    async fn new(plugin: Arc<Plugin>) -> Result<DataInstance, CallError> {
        let (store, instance) = instantiate(&plugin).await?;
        Ok(DataInstance {
            plugin,
            store,
            instance,
        })
    }

    async fn process(&mut self, batch: &Batch, out: &mut BatchResult) -> Result<(), CallError> {
        let name = self.plugin.name().to_string();
        arm_deadline(&mut self.store);
        let func = self
            .instance
            .get_typed_func::<(&[u16], &[u32], &[u8]), (RawBatchResult,)>(
                &mut self.store,
                "process",
            )
            .map_err(|e| CallError::Instantiate {
                plugin: name.clone(),
                message: format!("`process` is missing or has the wrong signature: {e:#}"),
            })?;
        let called = func
            .call_async(
                &mut self.store,
                (batch.ingress(), batch.lengths(), batch.data()),
            )
            .await;
        let (result,) = called.map_err(|e| self.plugin.classify(&e))?;
        out.clear();
        out.verdicts
            .extend(result.verdicts.into_iter().map(|v| match v {
                RawVerdict::Drop => Verdict::Drop,
                RawVerdict::Forward(p) => Verdict::Forward(p),
            }));
        out.lengths = result.lengths;
        out.data = result.data;
        Ok(())
    }
}

/// One instance of a network function, called batch by batch as the data path calls it: for
/// benchmarks and tests that measure the crossing without ports.
pub struct NfInstance {
    inner: DataInstance,
}

impl NfInstance {
    /// Instantiates `plugin` (a loaded network function with its context and tables).
    pub async fn new(plugin: Arc<Plugin>) -> Result<NfInstance, CallError> {
        Ok(NfInstance {
            inner: DataInstance::new(plugin).await?,
        })
    }

    /// One `process` call on `batch`; the plugin's answer lands in `out`.
    pub async fn process(&mut self, batch: &Batch, out: &mut BatchResult) -> Result<(), CallError> {
        self.inner.process(batch, out).await
    }
}

/// Calls the plugin's `control` export on a fresh instance.
async fn call_control(
    plugin: &Plugin,
    peer: &str,
    datagram: &[u8],
) -> Result<Vec<(String, Vec<u8>)>, CallError> {
    let (mut store, instance) = instantiate(plugin).await?;
    let func = instance
        .get_typed_func::<(&str, &[u8]), (Vec<(String, Vec<u8>)>,)>(&mut store, "control")
        .map_err(|e| CallError::Instantiate {
            plugin: plugin.name().to_string(),
            message: format!("`control` is missing or has the wrong signature: {e:#}"),
        })?;
    let (out,) = func
        .call_async(&mut store, (peer, datagram))
        .await
        .map_err(|e| plugin.classify(&e))?;
    Ok(out)
}

/// Calls the plugin's `tick` export on a fresh instance.
async fn call_tick(plugin: &Plugin, now_ms: u64) -> Result<(), CallError> {
    let (mut store, instance) = instantiate(plugin).await?;
    let func = instance
        .get_typed_func::<(u64,), ()>(&mut store, "tick")
        .map_err(|e| CallError::Instantiate {
            plugin: plugin.name().to_string(),
            message: format!("`tick` is missing or has the wrong signature: {e:#}"),
        })?;
    func.call_async(&mut store, (now_ms,))
        .await
        .map_err(|e| plugin.classify(&e))
}

// ---------------------------------------------------------------------------------------------
// IP ports: ARP and Ethernet on the host's side.

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

/// The host's half of an IP port: its address, MAC, neighbours and packets waiting for one.
struct IpLink {
    /// The port's address and subnet.
    cidr: Ipv4Cidr,
    gateway: Option<Ipv4Addr>,
    mac: [u8; 6],
    neighbours: HashMap<Ipv4Addr, [u8; 6]>,
    asked: HashMap<Ipv4Addr, Instant>,
    pending: VecDeque<(Ipv4Addr, Vec<u8>)>,
}

impl IpLink {
    fn new(spec: &PortSpec) -> Option<IpLink> {
        let cidr = spec.address?;
        // A locally administered MAC derived from the port's name and address: stable across
        // restarts, and not the kernel's (so the kernel ignores the frames meant for us).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in spec.name.bytes().chain(cidr.address.octets()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let b = h.to_le_bytes();
        Some(IpLink {
            cidr,
            gateway: spec.gateway,
            mac: [0x02, b[0], b[1], b[2], b[3], b[4]],
            neighbours: HashMap::new(),
            asked: HashMap::new(),
            pending: VecDeque::new(),
        })
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(ip)
    }

    fn learn(&mut self, ip: Ipv4Addr, mac: [u8; 6]) {
        if self.on_link(ip) && ip != self.cidr.address && mac[0] & 1 == 0 {
            self.neighbours.insert(ip, mac);
        }
    }

    /// Takes one received frame: an IPv4 packet for the plugin, or nothing (ARP handled here,
    /// with any reply added to `replies`).
    fn receive<'a>(
        &mut self,
        frame: &'a [u8],
        replies: &mut Vec<Vec<u8>>,
        stats: &NfStats,
    ) -> Option<&'a [u8]> {
        if frame.len() < ETH_HEADER {
            NfStats::add(&stats.not_for_us, 1);
            return None;
        }
        let dst: [u8; 6] = frame[0..6].try_into().ok()?;
        let src: [u8; 6] = frame[6..12].try_into().ok()?;
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let body = &frame[ETH_HEADER..];
        match ethertype {
            ETHERTYPE_ARP => {
                self.arp(body, replies, stats);
                None
            }
            ETHERTYPE_IPV4 if dst == self.mac || dst == [0xff; 6] => {
                if body.len() < 20 || body[0] >> 4 != 4 {
                    NfStats::add(&stats.not_for_us, 1);
                    return None;
                }
                let total = usize::from(u16::from_be_bytes([body[2], body[3]]));
                let sender = Ipv4Addr::new(body[12], body[13], body[14], body[15]);
                self.learn(sender, src);
                // Ethernet pads short frames; the IP length says where the packet ends.
                body.get(..total.max(20)).or(Some(body))
            }
            _ => {
                NfStats::add(&stats.not_for_us, 1);
                None
            }
        }
    }

    fn arp(&mut self, body: &[u8], replies: &mut Vec<Vec<u8>>, stats: &NfStats) {
        // Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4.
        if body.len() < 28 || body[0..6] != [0, 1, 8, 0, 6, 4] {
            return;
        }
        let op = u16::from_be_bytes([body[6], body[7]]);
        let sender_mac: [u8; 6] = body[8..14].try_into().unwrap_or_default();
        let sender_ip = Ipv4Addr::new(body[14], body[15], body[16], body[17]);
        let target_ip = Ipv4Addr::new(body[24], body[25], body[26], body[27]);
        self.learn(sender_ip, sender_mac);
        if op == 1 && target_ip == self.cidr.address {
            replies.push(self.arp_frame(2, sender_mac, sender_mac, sender_ip));
            NfStats::add(&stats.arp_replies, 1);
        }
    }

    fn arp_frame(
        &self,
        op: u16,
        eth_dst: [u8; 6],
        target_mac: [u8; 6],
        target: Ipv4Addr,
    ) -> Vec<u8> {
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(&eth_dst);
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&self.cidr.address.octets());
        f.extend_from_slice(&target_mac);
        f.extend_from_slice(&target.octets());
        f
    }

    fn frame(&self, mac: [u8; 6], packet: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(ETH_HEADER + packet.len());
        f.extend_from_slice(&mac);
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.extend_from_slice(packet);
        f
    }

    /// Frames `packet` for the wire: ready frames go to `out`; a packet whose next hop is not
    /// known yet waits (and an ARP request goes to `out`).
    fn send(&mut self, packet: &[u8], out: &mut Vec<Vec<u8>>, stats: &NfStats) {
        if packet.len() < 20 {
            NfStats::add(&stats.unresolved_drops, 1);
            return;
        }
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let next_hop = if self.on_link(dst) {
            dst
        } else if let Some(gw) = self.gateway {
            gw
        } else {
            NfStats::add(&stats.unresolved_drops, 1);
            return;
        };
        if let Some(mac) = self.neighbours.get(&next_hop) {
            out.push(self.frame(*mac, packet));
            return;
        }
        if self.pending.len() >= PENDING_PER_PORT {
            self.pending.pop_front();
            NfStats::add(&stats.unresolved_drops, 1);
        }
        self.pending.push_back((next_hop, packet.to_vec()));
        self.ask(next_hop, out);
    }

    fn ask(&mut self, ip: Ipv4Addr, out: &mut Vec<Vec<u8>>) {
        let now = Instant::now();
        if self
            .asked
            .get(&ip)
            .is_some_and(|at| now.duration_since(*at) < ARP_RETRY)
        {
            return;
        }
        self.asked.insert(ip, now);
        out.push(self.arp_frame(1, [0xff; 6], [0; 6], ip));
    }

    /// Frames waiting packets whose next hop is known now; asks again for the others.
    fn flush(&mut self, out: &mut Vec<Vec<u8>>) {
        if self.pending.is_empty() {
            return;
        }
        let mut waiting = VecDeque::new();
        let mut unresolved = Vec::new();
        while let Some((hop, packet)) = self.pending.pop_front() {
            match self.neighbours.get(&hop) {
                Some(mac) => out.push(self.frame(*mac, &packet)),
                None => {
                    if !unresolved.contains(&hop) {
                        unresolved.push(hop);
                    }
                    waiting.push_back((hop, packet));
                }
            }
        }
        self.pending = waiting;
        for hop in unresolved {
            self.ask(hop, out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// One port as the data path holds it.
struct NfPort {
    port: Box<dyn Port>,
    link: Option<IpLink>,
}

/// A network function's ports, as status shows them.
#[derive(Debug, Clone, Serialize)]
pub struct NfPortStatus {
    /// Port name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its address (IP ports).
    pub address: Option<String>,
    /// Counters.
    pub stats: PortStats,
    /// The tunnel of an overlay port: this site's public key, the peer, WireGuard counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<crate::sdwan::OverlayPortStatus>,
}

/// One port as status shows it: name, kind, address, counters, and an overlay's tunnel.
type ShownPort = (
    String,
    String,
    Option<String>,
    Arc<PortCounters>,
    Option<crate::sdwan::OverlayHandle>,
);

/// Runs a network function's data path, control path and timer.
pub struct NfRunner {
    io: Arc<NfIo>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    ports: Vec<ShownPort>,
    memory: BTreeMap<String, MemoryPortHandle>,
}

impl NfRunner {
    /// Opens the plugin's ports and starts its loops. Must run inside the tokio runtime.
    pub fn start(
        slot: Arc<PluginSlot>,
        spec: &PluginSpec,
        port_specs: &BTreeMap<String, PortSpec>,
        io: Arc<NfIo>,
        keys: &crate::sdwan::OverlayKeys,
    ) -> Result<NfRunner, String> {
        let mut ports = Vec::new();
        let mut memory = BTreeMap::new();
        let mut shown = Vec::new();
        for (i, name) in spec.grants.nf.ports.iter().enumerate() {
            let ps = port_specs
                .get(name)
                .ok_or_else(|| format!("port `{name}` is not declared"))?;
            let id = u16::try_from(i).map_err(|_| "too many ports".to_string())?;
            let (port, overlay): (Box<dyn Port>, _) = match (&ps.overlay, to_dataplane(ps)) {
                (Some(spec), _) => {
                    let (port, handle) = crate::sdwan::open_overlay_port(id, name, spec, keys)?;
                    (Box::new(port), Some(handle))
                }
                (None, Some(backend)) => {
                    (open_port(id, &backend).map_err(|e| e.to_string())?, None)
                }
                (None, None) => {
                    return Err(format!("port `{name}`: an overlay port without its tunnel"));
                }
            };
            if let Some(handle) = port.memory_handle() {
                memory.insert(name.clone(), handle);
            }
            shown.push((
                name.clone(),
                ps.kind.to_string(),
                ps.address.map(|a| format!("{}/{}", a.address, a.prefix)),
                port.counters().clone(),
                overlay,
            ));
            ports.push(NfPort {
                link: IpLink::new(ps),
                port,
            });
        }
        let inject = io
            .inject_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or("the data path of this plugin is already running")?;
        let stop = Arc::new(AtomicBool::new(false));
        let batch_max = spec.limits.batch as usize;
        let thread = {
            let (slot, io, stop) = (slot.clone(), io.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("nf-{}", spec.name))
                .spawn(move || data_path(slot, ports, io, inject, stop, batch_max))
                .map_err(|e| format!("cannot start the data path thread: {e}"))?
        };
        let mut tasks = Vec::new();
        if let Some(socket) = io.control_socket() {
            let socket = socket
                .try_clone()
                .and_then(tokio::net::UdpSocket::from_std)
                .map_err(|e| format!("control socket: {e}"))?;
            tasks.push(tokio::spawn(control_path(slot.clone(), io.clone(), socket)));
        }
        tasks.push(tokio::spawn(timer(
            slot,
            io.clone(),
            Duration::from_millis(spec.limits.tick_ms),
        )));
        tracing::info!(plugin = %spec.name, ports = ?spec.grants.nf.ports, control = ?io.control_addr(), "network function started");
        Ok(NfRunner {
            io,
            stop,
            thread: Mutex::new(Some(thread)),
            tasks: Mutex::new(tasks),
            ports: shown,
            memory,
        })
    }

    /// The test handle of a memory port.
    pub fn memory_port(&self, name: &str) -> Option<MemoryPortHandle> {
        self.memory.get(name).cloned()
    }

    /// Counters.
    pub fn stats(&self) -> NfStatsSnapshot {
        self.io.stats.snapshot()
    }

    /// The ports and their counters.
    pub fn ports(&self) -> Vec<NfPortStatus> {
        self.ports
            .iter()
            .map(|(name, kind, address, counters, overlay)| NfPortStatus {
                name: name.clone(),
                kind: kind.clone(),
                address: address.clone(),
                stats: counters.snapshot(),
                overlay: overlay.as_ref().map(|o| o.status()),
            })
            .collect()
    }

    /// The control socket's address.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.io.control_addr()
    }

    /// Stops every loop and closes the ports and the control socket.
    pub async fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
            // The aborted task drops its clone of the socket when it is next polled.
            let _ = task.await;
        }
        self.io.close_control();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for NfRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The dataplane backend of a port; `None` for an overlay port, which `crate::sdwan` opens.
fn to_dataplane(spec: &PortSpec) -> Option<outpost_dataplane::PortSpec> {
    use outpost_dataplane::PortSpec as D;
    let name = spec.name.clone();
    Some(match spec.kind {
        PortKind::Memory => D::Memory {
            name,
            capacity: spec.capacity,
        },
        PortKind::Tap => D::Tap {
            name,
            interface: spec.interface.clone(),
            netns: None,
        },
        PortKind::AfPacket => D::AfPacket {
            name,
            interface: spec.interface.clone().unwrap_or_default(),
            netns: None,
            options: outpost_dataplane::AfPacketOptions {
                // IP ports use a MAC of their own, which the kernel's filter would not pass.
                promiscuous: spec.address.is_some(),
                ..Default::default()
            },
        },
        PortKind::Overlay => return None,
        PortKind::Pcap => D::Pcap {
            name,
            path: spec.path.clone(),
            output: None,
            pacing: Default::default(),
        },
    })
}

/// The data path: one thread, one reused instance per version.
fn data_path(
    slot: Arc<PluginSlot>,
    mut ports: Vec<NfPort>,
    io: Arc<NfIo>,
    inject: Receiver<Injected>,
    stop: Arc<AtomicBool>,
    batch_max: usize,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(plugin = %io.plugin, error = %e, "cannot start the data path");
            return;
        }
    };
    let stats = &io.stats;
    let mut raw = Batch::with_capacity(batch_max, batch_max * 2048);
    let mut batch = Batch::with_capacity(batch_max, batch_max * 2048);
    let mut result = BatchResult::new();
    let mut instance: Option<DataInstance> = None;
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut idle_rounds = 0u32;
    while !stop.load(Ordering::Relaxed) {
        // Packets the control path and timer asked to send.
        while let Ok((port, packet)) = inject.try_recv() {
            send_packets(
                &mut ports,
                usize::from(port),
                std::iter::once(&packet[..]),
                stats,
            );
        }
        for p in ports.iter_mut() {
            if let Some(link) = &mut p.link {
                replies.clear();
                link.flush(&mut replies);
                let _ = p.port.send_batch(&mut replies.iter().map(|f| &f[..]));
            }
        }

        // Receive: raw frames, then through the IP links.
        batch.clear();
        for p in ports.iter_mut() {
            let room = batch_max.saturating_sub(batch.len());
            if room == 0 {
                break;
            }
            match &mut p.link {
                None => {
                    let _ = p.port.recv_batch(&mut batch, room);
                }
                Some(link) => {
                    raw.clear();
                    let _ = p.port.recv_batch(&mut raw, room);
                    replies.clear();
                    let id = p.port.id();
                    for pkt in raw.iter() {
                        if let Some(ip) = link.receive(pkt.data, &mut replies, stats) {
                            batch.push(id, ip);
                        }
                    }
                    if !replies.is_empty() {
                        let _ = p.port.send_batch(&mut replies.iter().map(|f| &f[..]));
                    }
                }
            }
        }
        if batch.is_empty() {
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds > 64 {
                std::thread::sleep(Duration::from_micros(200));
            } else {
                std::thread::yield_now();
            }
            continue;
        }
        idle_rounds = 0;

        let active = slot.active();
        if instance
            .as_ref()
            .is_none_or(|i| !Arc::ptr_eq(&i.plugin, &active))
        {
            instance = match rt.block_on(DataInstance::new(active.clone())) {
                Ok(i) => Some(i),
                Err(e) => {
                    reject(&slot, &active, &e, stats, batch.len());
                    None
                }
            };
        }
        let Some(current) = instance.as_mut() else {
            continue;
        };
        NfStats::add(&stats.batches, 1);
        NfStats::add(&stats.packets_in, batch.len() as u64);
        let started = Instant::now();
        let called = rt.block_on(current.process(&batch, &mut result));
        let outcome = called.and_then(|()| {
            result
                .validate(&batch, ports.len(), outpost_dataplane::MAX_FRAME_LEN)
                .map_err(|e| CallError::Refused {
                    plugin: io.plugin.clone(),
                    message: format!("returned a malformed batch result: {e}"),
                })
        });
        current.plugin.record(started, outcome.as_ref().map(|_| ()));
        if let Err(e) = outcome {
            reject(&slot, &active, &e, stats, batch.len());
            // A trap may leave the instance broken: start the next batch on a fresh one.
            instance = None;
            continue;
        }
        let forwarded = result.forwards().count() as u64;
        NfStats::add(&stats.forwarded, forwarded);
        NfStats::add(&stats.dropped, batch.len() as u64 - forwarded);
        for (port, frame) in result.forwards() {
            send_packets(&mut ports, usize::from(port), std::iter::once(frame), stats);
        }
    }
}

fn reject(slot: &PluginSlot, plugin: &Arc<Plugin>, error: &CallError, stats: &NfStats, n: usize) {
    NfStats::add(&stats.rejected_batches, 1);
    NfStats::add(&stats.dropped, n as u64);
    tracing::warn!(plugin = %plugin.name(), error = %error, packets = n, "batch dropped");
    slot.record_failure(plugin, error);
}

fn send_packets<'a>(
    ports: &mut [NfPort],
    index: usize,
    packets: impl Iterator<Item = &'a [u8]>,
    stats: &NfStats,
) {
    let Some(p) = ports.get_mut(index) else {
        return;
    };
    match &mut p.link {
        None => {
            let _ = p.port.send_batch(&mut packets.into_iter());
        }
        Some(link) => {
            let mut frames = Vec::new();
            for packet in packets {
                link.send(packet, &mut frames, stats);
            }
            let _ = p.port.send_batch(&mut frames.iter().map(|f| &f[..]));
        }
    }
}

/// The control path: datagrams on the plugin's socket, answered by `control`.
async fn control_path(slot: Arc<PluginSlot>, io: Arc<NfIo>, socket: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(plugin = %io.plugin, error = %e, "control socket receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        NfStats::add(&io.stats.control_in, 1);
        let plugin = slot.active();
        let started = Instant::now();
        let result = call_control(&plugin, &peer.to_string(), &buf[..n]).await;
        plugin.record(started, result.as_ref().map(|_| ()));
        match result {
            Ok(replies) => {
                for (to, datagram) in replies {
                    if let Err(e) = io.send_control(&to, &datagram) {
                        tracing::warn!(plugin = %io.plugin, error = %e, "control reply not sent");
                    }
                }
            }
            Err(e) => {
                NfStats::add(&io.stats.control_errors, 1);
                tracing::warn!(plugin = %io.plugin, %peer, error = %e, "control datagram failed");
                slot.record_failure(&plugin, &e);
            }
        }
    }
}

/// The timer: `tick` every `every`, with the host's monotonic milliseconds.
async fn timer(slot: Arc<PluginSlot>, io: Arc<NfIo>, every: Duration) {
    let epoch = Instant::now();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let plugin = slot.active();
        let now_ms = epoch.elapsed().as_millis() as u64;
        let started = Instant::now();
        let result = call_tick(&plugin, now_ms).await;
        plugin.record(started, result.as_ref().map(|_| ()));
        NfStats::add(&io.stats.ticks, 1);
        if let Err(e) = result {
            tracing::warn!(plugin = %io.plugin, error = %e, "tick failed");
            slot.record_failure(&plugin, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> IpLink {
        let spec = PortSpec {
            name: "n3".into(),
            kind: PortKind::Memory,
            interface: None,
            path: None,
            address: Some(outpost_manifest::Ipv4Cidr::parse("10.0.1.1/24").unwrap()),
            gateway: Some("10.0.1.254".parse().unwrap()),
            capacity: 16,
            overlay: None,
        };
        IpLink::new(&spec).unwrap()
    }

    fn arp_request(from_mac: [u8; 6], from: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&from_mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&from_mac);
        f.extend_from_slice(&from);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p
    }

    #[test]
    fn an_ip_port_answers_arp_for_its_address_and_learns_the_asker() {
        let mut l = link();
        let stats = NfStats::default();
        let mut replies = Vec::new();
        let peer = [2, 0, 0, 0, 0, 9];
        assert!(
            l.receive(
                &arp_request(peer, [10, 0, 1, 9], [10, 0, 1, 1]),
                &mut replies,
                &stats
            )
            .is_none()
        );
        assert_eq!(replies.len(), 1);
        let r = &replies[0];
        assert_eq!(&r[0..6], &peer, "unicast back to the asker");
        assert_eq!(&r[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&r[22..28], &l.mac, "with our MAC");
        assert_eq!(&r[28..32], &[10, 0, 1, 1]);
        // ARP for someone else is not answered.
        replies.clear();
        l.receive(
            &arp_request(peer, [10, 0, 1, 9], [10, 0, 1, 7]),
            &mut replies,
            &stats,
        );
        assert!(replies.is_empty());
        // The asker is now a neighbour: a packet to it is framed at once.
        let mut out = Vec::new();
        l.send(&ipv4([10, 0, 1, 1], [10, 0, 1, 9]), &mut out, &stats);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][0..6], &peer);
        assert_eq!(&out[0][12..14], &[0x08, 0x00]);
    }

    #[test]
    fn a_packet_to_an_unknown_next_hop_waits_for_arp_and_goes_out_when_it_resolves() {
        let mut l = link();
        let stats = NfStats::default();
        let mut out = Vec::new();
        // Off-link: the gateway is the next hop.
        l.send(&ipv4([10, 0, 1, 1], [8, 8, 8, 8]), &mut out, &stats);
        assert_eq!(out.len(), 1, "an ARP request");
        assert_eq!(&out[0][0..6], &[0xff; 6]);
        assert_eq!(&out[0][38..42], &[10, 0, 1, 254]);
        let gw_mac = [2, 0, 0, 0, 0, 0xfe];
        let mut reply = vec![];
        reply.extend_from_slice(&l.mac);
        reply.extend_from_slice(&gw_mac);
        reply.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
        reply.extend_from_slice(&gw_mac);
        reply.extend_from_slice(&[10, 0, 1, 254]);
        reply.extend_from_slice(&l.mac);
        reply.extend_from_slice(&[10, 0, 1, 1]);
        let mut replies = Vec::new();
        l.receive(&reply, &mut replies, &stats);
        out.clear();
        l.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][0..6], &gw_mac);
        assert_eq!(&out[0][ETH_HEADER + 16..ETH_HEADER + 20], &[8, 8, 8, 8]);
    }

    #[test]
    fn ipv4_for_the_port_is_unwrapped_and_padding_trimmed_and_other_frames_are_not() {
        let mut l = link();
        let stats = NfStats::default();
        let mut replies = Vec::new();
        let mut frame = l.mac.to_vec();
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 5, 0x08, 0x00]);
        frame.extend_from_slice(&ipv4([10, 0, 1, 5], [10, 0, 1, 1]));
        frame.extend_from_slice(&[0; 26]); // Ethernet padding
        let ip = l.receive(&frame, &mut replies, &stats).unwrap();
        assert_eq!(ip.len(), 20);
        assert_eq!(
            l.neighbours.get(&Ipv4Addr::new(10, 0, 1, 5)),
            Some(&[2, 0, 0, 0, 0, 5])
        );
        // To another MAC: not ours.
        frame[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
        assert!(l.receive(&frame, &mut replies, &stats).is_none());
        assert!(l.receive(&[1, 2, 3], &mut replies, &stats).is_none());
        assert_eq!(stats.snapshot().not_for_us, 2);
    }
}
