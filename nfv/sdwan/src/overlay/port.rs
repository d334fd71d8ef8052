//! An overlay uplink as a data-plane [`Port`]: inner IP packets in and out, WireGuard
//! (boringtun) datagrams on the wire.
//!
//! A network-function plugin (the SD-WAN plugin) forwards a packet to this port to send it to
//! the remote site over this uplink; packets the remote site sent over it arrive in the port's
//! receive batches, decrypted. The port is synchronous like every data-plane port: the socket is
//! non-blocking, `recv_batch` drains what is ready and also runs WireGuard's timers
//! (handshake retries, rekeying, keepalives), so the data path's polling loop drives it.
//! Hostile datagrams (truncated, foreign, wrong key, bad tag, replayed) are dropped and counted
//! as receive drops and in [`OverlayCounters`].
//!
//! With a rate cap ([`OverlayPort::with_rate_cap`]) the port shapes its egress with the
//! [`crate::qos::Scheduler`]: packets marked EF or CS5–CS7 (DSCP 40, 46, 48, 56) form a
//! strict-priority real-time class; AF4x and CS4 (DSCP 32–38) a weighted class of weight 3;
//! everything else a weighted class of weight 1. Packets wait in bounded queues (tail drop,
//! counted as transmit drops) until the token bucket lets them out; the data path's polling
//! drains them.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use outpost_dataplane::{Batch, Port, PortCounters, PortId};

use super::{OverlayConfig, OverlayError, SharedOverlayCounters};
use crate::qos::{QosClass, QosConfig, RateCap, Scheduler};

/// Largest datagram handled (an inner packet of up to 64 KiB plus WireGuard's overhead).
const MAX_DATAGRAM: usize = 65_536 + 64;
/// How often WireGuard's timers run at most.
const TIMER_EVERY: Duration = Duration::from_millis(50);

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One uplink's WireGuard tunnel as a packet port.
pub struct OverlayPort {
    id: PortId,
    name: String,
    socket: UdpSocket,
    remote: SocketAddr,
    tunn: Tunn,
    counters: Arc<PortCounters>,
    overlay: Arc<SharedOverlayCounters>,
    rx_buf: Vec<u8>,
    work: Vec<u8>,
    last_timers: Instant,
    qos: Option<Scheduler>,
}

/// The egress class of an IPv4/IPv6 packet by its DSCP: 0 real-time, 1 interactive, 2 bulk.
fn egress_class(packet: &[u8]) -> usize {
    let dscp = match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(1).map_or(0, |tos| tos >> 2),
        Some(6) => match (packet.first(), packet.get(1)) {
            (Some(a), Some(b)) => ((a & 0x0f) << 2) | (b >> 6),
            _ => 0,
        },
        _ => 0,
    };
    match dscp {
        40 | 46 | 48 | 56 => 0,
        32..=38 => 1,
        _ => 2,
    }
}

impl std::fmt::Debug for OverlayPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayPort")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl OverlayPort {
    /// Binds `local` and sets up the tunnel to the peer at `remote`.
    pub fn open(
        id: PortId,
        name: &str,
        local: SocketAddr,
        remote: SocketAddr,
        config: OverlayConfig,
    ) -> Result<Self, OverlayError> {
        let socket = UdpSocket::bind(local)?;
        Self::with_socket(id, name, socket, remote, config)
    }

    /// Uses an already-bound socket (for instance one opened inside a network namespace).
    pub fn with_socket(
        id: PortId,
        name: &str,
        socket: UdpSocket,
        remote: SocketAddr,
        config: OverlayConfig,
    ) -> Result<Self, OverlayError> {
        socket.set_nonblocking(true)?;
        let tunn = config.clone_tunnel()?;
        Ok(Self {
            id,
            name: name.to_owned(),
            socket,
            remote,
            tunn,
            counters: PortCounters::new_shared(),
            overlay: Arc::new(SharedOverlayCounters::default()),
            rx_buf: vec![0; MAX_DATAGRAM],
            work: vec![0; MAX_DATAGRAM],
            last_timers: Instant::now() - TIMER_EVERY,
            qos: None,
        })
    }

    /// Shapes the port's egress to `bytes_per_sec` (inner bytes), real-time traffic first; see
    /// the module documentation.
    pub fn with_rate_cap(mut self, bytes_per_sec: u64) -> Result<Self, OverlayError> {
        let config = QosConfig {
            rate: Some(RateCap {
                bytes_per_sec,
                // 10 ms worth, at least two full-size packets.
                burst_bytes: (bytes_per_sec / 100).max(3000),
            }),
            ..QosConfig::new(vec![
                QosClass::realtime("realtime"),
                QosClass::weighted("interactive", 3),
                QosClass::weighted("bulk", 1),
            ])
        };
        self.qos = Some(Scheduler::new(config).map_err(|e| OverlayError::Qos(e.to_string()))?);
        Ok(self)
    }

    /// Encrypts and sends one inner packet; whether it was accepted.
    fn encapsulate_and_send(&mut self, packet: &[u8]) -> bool {
        match self.tunn.encapsulate(packet, &mut self.work) {
            TunnResult::WriteToNetwork(d) => {
                let d = d.to_vec();
                self.send_datagram(&d);
                bump(&self.overlay.tx_packets);
                true
            }
            // Queued inside the tunnel until the handshake completes.
            TunnResult::Done => {
                bump(&self.overlay.tx_packets);
                true
            }
            _ => false,
        }
    }

    /// Sends what the shaper lets out now.
    fn drain_shaper(&mut self) {
        let Some(mut qos) = self.qos.take() else {
            return;
        };
        let now = Instant::now();
        let (mut sent, mut bytes, mut drops) = (0u64, 0u64, 0u64);
        while let Some((_, packet)) = qos.dequeue(now) {
            if self.encapsulate_and_send(&packet) {
                sent += 1;
                bytes += packet.len() as u64;
            } else {
                drops += 1;
            }
        }
        self.qos = Some(qos);
        self.counters.add_tx(sent, bytes);
        self.counters.add_tx_drops(drops);
    }

    /// The local address the tunnel's datagrams leave from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The overlay counters, shared (read them while the data path owns the port).
    pub fn overlay_counters(&self) -> Arc<SharedOverlayCounters> {
        Arc::clone(&self.overlay)
    }

    fn send_datagram(&self, d: &[u8]) {
        match self.socket.send_to(d, self.remote) {
            Ok(_) => bump(&self.overlay.tx_datagrams),
            // The uplink is down or the peer unreachable: the probes say so, and WireGuard
            // retransmits handshakes by itself.
            Err(e) => tracing::trace!(port = %self.name, error = %e, "overlay send failed"),
        }
    }

    fn run_timers(&mut self) {
        if self.last_timers.elapsed() < TIMER_EVERY {
            return;
        }
        self.last_timers = Instant::now();
        match self.tunn.update_timers(&mut self.work) {
            TunnResult::WriteToNetwork(d) => {
                let d = d.to_vec();
                self.send_datagram(&d);
            }
            TunnResult::Err(WireGuardError::ConnectionExpired) => {
                // Session gone after long silence: the next packet starts a new handshake.
            }
            _ => {}
        }
    }

    /// Sends what the tunnel queued (packets held while a handshake was in flight).
    fn drain_queued(&mut self) {
        while let TunnResult::WriteToNetwork(d) = self.tunn.decapsulate(None, &[], &mut self.work) {
            let d = d.to_vec();
            self.send_datagram(&d);
        }
    }
}

impl Port for OverlayPort {
    fn id(&self) -> PortId {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv_batch(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        self.run_timers();
        self.drain_shaper();
        let (mut n, mut bytes, mut drops) = (0usize, 0u64, 0u64);
        while n < max {
            let (len, from) = match self.socket.recv_from(&mut self.rx_buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors reported on the socket (port unreachable): not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let datagram = &self.rx_buf[..len];
            match self
                .tunn
                .decapsulate(Some(from.ip()), datagram, &mut self.work)
            {
                TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                    bump(&self.overlay.rx_ok);
                    bytes += p.len() as u64;
                    batch.push(self.id, p);
                    n += 1;
                }
                TunnResult::WriteToNetwork(d) => {
                    bump(&self.overlay.rx_control);
                    let d = d.to_vec();
                    self.send_datagram(&d);
                    self.drain_queued();
                }
                TunnResult::Done => {
                    bump(&self.overlay.rx_control);
                    self.drain_queued();
                }
                TunnResult::Err(e) => {
                    drops += 1;
                    if super::is_replay(&e) {
                        bump(&self.overlay.rx_dropped_replay);
                    } else {
                        bump(&self.overlay.rx_dropped_invalid);
                    }
                    tracing::debug!(port = %self.name, error = ?e, %from, len, "overlay datagram dropped");
                }
            }
        }
        self.counters.add_rx(n as u64, bytes);
        self.counters.add_rx_drops(drops);
        Ok(n)
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = &[u8]>) -> io::Result<usize> {
        let (mut accepted, mut bytes, mut drops) = (0usize, 0u64, 0u64);
        for packet in frames {
            if packet.is_empty() || packet.len() + 32 > self.work.len() {
                drops += 1;
                continue;
            }
            if let Some(qos) = &mut self.qos {
                // Counted as transmitted when the shaper lets it out.
                match qos.enqueue(egress_class(packet), packet.to_vec()) {
                    Ok(()) => accepted += 1,
                    Err(_) => drops += 1,
                }
                continue;
            }
            if self.encapsulate_and_send(packet) {
                accepted += 1;
                bytes += packet.len() as u64;
            } else {
                drops += 1;
            }
        }
        if self.qos.is_none() {
            self.counters.add_tx(accepted as u64, bytes);
        }
        self.counters.add_tx_drops(drops);
        self.drain_shaper();
        Ok(accepted)
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        Some(self.socket.as_raw_fd())
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        // Blocking peek with a timeout (safe code; the data path polls instead).
        self.socket.set_nonblocking(false)?;
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut probe = [0u8; 1];
        let ready = match self.socket.peek_from(&mut probe) {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            // A pending ICMP error is something to read (and skip) too.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(true),
            Err(e) => Err(e),
        };
        self.socket.set_nonblocking(true)?;
        ready
    }
}
