//! The [`Port`] trait every packet I/O backend implements, and the counters ports keep.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::batch::{Batch, PortId};
use crate::memory::MemoryPortHandle;

/// A packet port: frames in, frames out, counters, and a way to wait for frames.
///
/// Ports are non-blocking: `recv_batch` returns what is ready now and `send_batch` never waits
/// for room (a frame that does not fit is counted as a transmit drop, like a full NIC queue).
/// To wait, poll [`Port::readiness_fd`] (epoll, tokio `AsyncFd`) where the port has one, or call
/// [`Port::wait_readable`].
pub trait Port: Send {
    /// The port's index in the host's port list; received packets carry it as their ingress.
    fn id(&self) -> PortId;

    /// The port's name (from its spec).
    fn name(&self) -> &str;

    /// Appends up to `max` ready frames to `batch`, each with this port's id as ingress; returns
    /// how many were appended (0 when nothing is ready).
    fn recv_batch(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize>;

    /// Transmits `frames`; returns how many were accepted. The others (no room, too long,
    /// empty) are counted as transmit drops.
    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = &[u8]>) -> io::Result<usize>;

    /// Transmits `frames` (the generic form of [`Port::send_batch`]).
    fn send<'a, I>(&mut self, frames: I) -> io::Result<usize>
    where
        I: IntoIterator<Item = &'a [u8]>,
        Self: Sized,
    {
        self.send_batch(&mut frames.into_iter())
    }

    /// The port's counters, shared so a metrics task can read them while a worker owns the port.
    fn counters(&self) -> &Arc<PortCounters>;

    /// A snapshot of the port's counters.
    fn stats(&self) -> PortStats {
        self.counters().snapshot()
    }

    /// A file descriptor that polls readable when `recv_batch` will find frames, if the port has
    /// one (memory and pcap ports do not).
    fn readiness_fd(&self) -> Option<RawFd>;

    /// Waits up to `timeout` for frames; returns whether some are ready.
    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool>;

    /// Whether the port will never receive again (a pcap replay that reached its end).
    fn is_exhausted(&self) -> bool {
        false
    }

    /// The test handle of a memory port opened from a spec, to inject and collect frames.
    fn memory_handle(&self) -> Option<MemoryPortHandle> {
        None
    }
}

impl std::fmt::Debug for dyn Port + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id())
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// A port's packet and byte counters, updated once per batch with relaxed atomics.
#[derive(Debug, Default)]
pub struct PortCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_drops: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_drops: AtomicU64,
}

/// A point-in-time copy of a port's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames lost on receive (queue or ring full, truncated, oversize).
    pub rx_drops: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Frames not transmitted (no room, too long, empty).
    pub tx_drops: u64,
}

impl PortCounters {
    /// New counters, all zero, ready to share.
    pub fn new_shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts `packets` received frames totalling `bytes`.
    pub fn add_rx(&self, packets: u64, bytes: u64) {
        if packets > 0 {
            self.rx_packets.fetch_add(packets, Ordering::Relaxed);
            self.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts `packets` transmitted frames totalling `bytes`.
    pub fn add_tx(&self, packets: u64, bytes: u64) {
        if packets > 0 {
            self.tx_packets.fetch_add(packets, Ordering::Relaxed);
            self.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts `packets` frames lost on receive.
    pub fn add_rx_drops(&self, packets: u64) {
        if packets > 0 {
            self.rx_drops.fetch_add(packets, Ordering::Relaxed);
        }
    }

    /// Counts `packets` frames not transmitted.
    pub fn add_tx_drops(&self, packets: u64) {
        if packets > 0 {
            self.tx_drops.fetch_add(packets, Ordering::Relaxed);
        }
    }

    /// A point-in-time copy.
    pub fn snapshot(&self) -> PortStats {
        PortStats {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            rx_drops: self.rx_drops.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            tx_drops: self.tx_drops.load(Ordering::Relaxed),
        }
    }
}

/// Tallies one batch's transmit outcome, so a backend updates the shared counters once.
#[derive(Debug, Default)]
pub(crate) struct TxTally {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) drops: u64,
}

impl TxTally {
    pub(crate) fn sent(&mut self, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
    }

    pub(crate) fn commit(&self, counters: &PortCounters) -> usize {
        counters.add_tx(self.packets, self.bytes);
        counters.add_tx_drops(self.drops);
        self.packets as usize
    }
}

/// Waits up to `timeout` for `events` on `fd`; returns whether they are ready.
pub(crate) fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    crate::sys::poll_one(fd, events, timeout)
}
