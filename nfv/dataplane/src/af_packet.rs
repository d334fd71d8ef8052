//! AF_PACKET ports: Ethernet frames on a real interface through memory-mapped rings.
//!
//! One `AF_PACKET` socket bound to the interface carries both rings, in one mapping:
//!
//! - **RX: `TPACKET_V3`**, a ring of large blocks that the kernel fills with many frames and
//!   hands over whole, when full or when the block retire timeout expires. One block handover
//!   covers hundreds of small frames, and `poll` wakes once per block, not per frame.
//! - **TX: a `TPACKET_V3` frame ring** (since Linux 4.11 the V3 TX ring is a fixed-size frame ring
//!   like V2's, with the V3 header). A batch is written into consecutive slots and handed to the
//!   kernel with one `send()`, instead of one `sendmmsg` iovec per frame; and one socket version
//!   serves both rings, so a single socket (and `PACKET_IGNORE_OUTGOING` on it) suffices.
//!   `PACKET_LOSS` is set so that a frame the kernel rejects is skipped instead of stalling the
//!   ring; frames longer than the interface MTU allows are counted as drops before they reach it.
//!
//! The port does not see its own transmissions, nor anything else leaving the interface:
//! `PACKET_IGNORE_OUTGOING` is set (Linux 4.20+), and outgoing frames are filtered by packet type
//! as well in case the option is unavailable. VLAN tags the NIC stripped are put back in the frame.
//!
//! Offloads: frames from a local stack through a veth may carry partial checksums, and GRO/TSO
//! can produce frames above the MTU (counted as receive drops beyond [`MAX_FRAME_LEN`]); on data
//! plane interfaces turn those offloads off (`ethtool -K IFACE gro off tso off tx off`).
//!
//! This module needs `unsafe` for `mmap` and for reading and writing the rings it maps, which
//! the kernel reads and writes concurrently. All ring access goes through `Region`, whose
//! accessors check bounds; the ring protocol (status words with acquire/release ordering) decides
//! who owns which block or slot.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::batch::{Batch, MAX_FRAME_LEN, PortId};
use crate::port::{Port, PortCounters, TxTally, poll_fd};
use crate::sys;

/// Offsets in `struct tpacket_block_desc` (the V3 RX block header).
mod block {
    pub const STATUS: usize = 8;
    pub const NUM_PKTS: usize = 12;
    pub const OFFSET_TO_FIRST_PKT: usize = 16;
    pub const HEADER_LEN: usize = 48;
}

/// Offsets in `struct tpacket3_hdr` (per-frame header, RX and TX), and what follows it.
mod frame {
    pub const NEXT_OFFSET: usize = 0;
    pub const SNAPLEN: usize = 12;
    pub const LEN: usize = 16;
    pub const STATUS: usize = 20;
    pub const MAC: usize = 24;
    pub const VLAN_TCI: usize = 32;
    pub const VLAN_TPID: usize = 36;
    /// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where `sockaddr_ll` (RX) or the frame (TX)
    /// starts.
    pub const HEADER_LEN: usize = 48;
    /// `sll_pkttype` inside the `sockaddr_ll` that follows the header on RX.
    pub const PKTTYPE: usize = HEADER_LEN + 10;
}

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_8021Q: u16 = 0x8100;
/// Room for one VLAN tag on top of the MTU and the Ethernet header.
const ETH_OVERHEAD: usize = 14 + 4;

/// Ring sizes and socket options of an AF_PACKET port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AfPacketOptions {
    /// Receive frames not addressed to the interface too.
    pub promiscuous: bool,
    /// Size of one RX block in bytes (a multiple of the page size).
    pub rx_block_size: usize,
    /// Number of RX blocks.
    pub rx_block_count: usize,
    /// Milliseconds after which the kernel hands over a partly filled RX block (latency bound
    /// at low rates).
    pub rx_block_timeout_ms: u32,
    /// Size of one TX slot in bytes, header included (a multiple of 16); the largest frame is 48
    /// bytes less.
    pub tx_frame_size: usize,
    /// Number of TX slots.
    pub tx_frame_count: usize,
    /// Hand frames straight to the driver, skipping the interface's queueing discipline.
    pub qdisc_bypass: bool,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        Self {
            promiscuous: false,
            rx_block_size: 256 * 1024,
            rx_block_count: 16,
            rx_block_timeout_ms: 1,
            tx_frame_size: 2048,
            tx_frame_count: 1024,
            qdisc_bypass: false,
        }
    }
}

/// A port on a network interface through AF_PACKET mmap rings.
pub struct AfPacketPort {
    id: PortId,
    name: String,
    interface: String,
    rx: RxRing,
    tx: TxRing,
    max_tx_frame: usize,
    counters: Arc<PortCounters>,
    // Declared after the rings so the mapping they point into is unmapped after them (it is
    // the last user), and before the socket so the socket closes last.
    _mapping: Mapping,
    fd: OwnedFd,
}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers inside point into the port's own mapping, which the port owns
// exclusively (no other Rust value aliases it) and unmaps on drop; moving the port to another
// thread moves that ownership with it.
unsafe impl Send for AfPacketPort {}

impl AfPacketPort {
    /// Opens port `id` named `name` on interface `interface` of the calling thread's network
    /// namespace.
    pub fn open(
        id: PortId,
        name: &str,
        interface: &str,
        options: &AfPacketOptions,
    ) -> io::Result<Self> {
        Self::open_inner(id, name, interface, options)
            .map_err(|e| io::Error::new(e.kind(), format!("AF_PACKET on {interface:?}: {e}")))
    }

    /// Opens the port inside network namespace `netns` (see [`crate::netns`]).
    pub fn open_in_netns(
        id: PortId,
        name: &str,
        interface: &str,
        netns: &str,
        options: &AfPacketOptions,
    ) -> io::Result<Self> {
        crate::netns::run_in_netns(netns, || Self::open(id, name, interface, options))?
    }

    fn open_inner(
        id: PortId,
        name: &str,
        interface: &str,
        options: &AfPacketOptions,
    ) -> io::Result<Self> {
        let geometry = Geometry::new(options)?;
        let ifindex = sys::interface_index(interface)?;
        let mtu = sys::interface_mtu(interface)? as usize;
        // Protocol 0: the socket receives nothing until it is bound, after the rings exist.
        let fd = sys::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )?;
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        // Like the version, PACKET_LOSS must be set before the rings exist.
        let one: libc::c_int = 1;
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_LOSS, &one)?;
        let rx_req = libc::tpacket_req3 {
            tp_block_size: geometry.rx_block_size as u32,
            tp_block_nr: geometry.rx_block_count as u32,
            tp_frame_size: geometry.rx_frame_size as u32,
            tp_frame_nr: geometry.rx_frame_count() as u32,
            tp_retire_blk_tov: options.rx_block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx_req)?;
        let tx_req = libc::tpacket_req3 {
            tp_block_size: geometry.tx_block_size as u32,
            tp_block_nr: geometry.tx_block_count as u32,
            tp_frame_size: geometry.tx_frame_size as u32,
            tp_frame_nr: geometry.tx_frame_count as u32,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx_req)?;
        if let Err(e) = sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one) {
            // Older kernels: outgoing frames are filtered by packet type in `recv_batch`.
            tracing::debug!(interface, error = %e, "PACKET_IGNORE_OUTGOING unavailable");
        }
        if options.qdisc_bypass {
            sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)?;
        }
        let mapping = Mapping::new(&fd, geometry.rx_len() + geometry.tx_len())?;
        let rx = RxRing {
            region: mapping.region(0, geometry.rx_len()),
            block_size: geometry.rx_block_size,
            block_count: geometry.rx_block_count,
            block: 0,
            cursor: None,
        };
        let tx = TxRing {
            region: mapping.region(geometry.rx_len(), geometry.tx_len()),
            block_size: geometry.tx_block_size,
            frames_per_block: geometry.tx_block_size / geometry.tx_frame_size,
            frame_size: geometry.tx_frame_size,
            frame_count: geometry.tx_frame_count,
            head: 0,
        };
        if options.promiscuous {
            // SAFETY: packet_mreq is plain data; all zeroes is a valid value.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = ifindex as libc::c_int;
            mreq.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
            // Membership ends with the socket, so promiscuous mode needs no cleanup.
            sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
        }
        bind(&fd, ifindex)?;
        tracing::debug!(port = name, interface, ifindex, mtu, "AF_PACKET port open");
        Ok(Self {
            id,
            name: name.to_owned(),
            interface: interface.to_owned(),
            rx,
            tx,
            max_tx_frame: (geometry.tx_frame_size - frame::HEADER_LEN)
                .min(mtu + ETH_OVERHEAD)
                .min(MAX_FRAME_LEN),
            counters: PortCounters::new_shared(),
            _mapping: mapping,
            fd,
        })
    }

    /// The interface the port is bound to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The longest frame the port transmits (TX slot size and interface MTU).
    pub fn max_tx_frame(&self) -> usize {
        self.max_tx_frame
    }

    /// How many of the next `want` TX slots are free, so a sender that must not drop can pace
    /// itself (frames sent beyond that are counted as drops).
    pub fn tx_room(&self, want: usize) -> usize {
        self.tx.room(want.min(self.tx.frame_count))
    }

    /// Waits up to `timeout` until a TX slot is free.
    pub fn wait_writable(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.tx_room(1) > 0 {
            return Ok(true);
        }
        self.kick_tx()?;
        poll_fd(self.fd.as_raw_fd(), libc::POLLOUT, timeout)
    }

    /// Asks the kernel to transmit every queued TX slot, without waiting.
    fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length send with a null buffer is how the TX ring is flushed; the kernel
        // reads the frames from the ring, not from the buffer.
        let ret =
            unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => {}
                _ => return Err(err),
            }
        }
        Ok(())
    }

    /// Adds the kernel's count of frames lost to a full RX ring (reading it resets it).
    fn collect_kernel_drops(&self) {
        if let Ok(stats) =
            sys::getsockopt::<StatsV3>(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS)
        {
            self.counters.add_rx_drops(u64::from(stats.drops));
        }
    }
}

impl Port for AfPacketPort {
    fn id(&self) -> PortId {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv_batch(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let tally = self.rx.read_into(batch, self.id, max);
        self.counters.add_rx(tally.packets, tally.bytes);
        self.counters.add_rx_drops(tally.drops);
        if tally.packets == 0 {
            self.collect_kernel_drops();
        }
        Ok(tally.packets as usize)
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = &[u8]>) -> io::Result<usize> {
        let mut tally = TxTally::default();
        let mut kicked = false;
        for frame in frames {
            if frame.is_empty() || frame.len() > self.max_tx_frame {
                tally.drops += 1;
                continue;
            }
            if self.tx.room(1) == 0 && !kicked {
                // Slots already handed over may be free once the kernel has sent them.
                self.kick_tx()?;
                kicked = true;
            }
            if self.tx.push(frame) {
                tally.sent(frame.len());
            } else {
                tally.drops += 1;
            }
        }
        let kick = if tally.packets > 0 {
            self.kick_tx()
        } else {
            Ok(())
        };
        let sent = tally.commit(&self.counters);
        kick.map(|()| sent)
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.rx.ready() {
            return Ok(true);
        }
        Ok(poll_fd(self.fd.as_raw_fd(), libc::POLLIN, timeout)? && self.rx.ready())
    }
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct StatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

fn bind(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    sys::check(ret).map(drop)
}

/// Ring sizes derived from the options, checked against the kernel's rules.
struct Geometry {
    rx_block_size: usize,
    rx_block_count: usize,
    rx_frame_size: usize,
    tx_block_size: usize,
    tx_block_count: usize,
    tx_frame_size: usize,
    tx_frame_count: usize,
}

impl Geometry {
    fn new(options: &AfPacketOptions) -> io::Result<Self> {
        let page = page_size();
        let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        if options.rx_block_size == 0
            || !options.rx_block_size.is_multiple_of(page)
            || options.rx_block_size > 1 << 30
        {
            return invalid(format!(
                "rx-block-size {} must be a non-zero multiple of the page size ({page}), at most 1 GiB",
                options.rx_block_size
            ));
        }
        if options.rx_block_count == 0 || options.rx_block_count > 1 << 16 {
            return invalid(format!(
                "rx-block-count {} must be between 1 and 65536",
                options.rx_block_count
            ));
        }
        let frame_ok = |size: usize| size.is_multiple_of(16) && (128..=64 * 1024).contains(&size);
        if !frame_ok(options.tx_frame_size) {
            return invalid(format!(
                "tx-frame-size {} must be a multiple of 16 between 128 and 65536",
                options.tx_frame_size
            ));
        }
        if options.tx_frame_count == 0 || options.tx_frame_count > 1 << 20 {
            return invalid(format!(
                "tx-frame-count {} must be between 1 and 1048576",
                options.tx_frame_count
            ));
        }
        // TX blocks hold whole slots: about 64 KiB worth, rounded up to a page multiple.
        let per_block = (64 * 1024 / options.tx_frame_size).max(1);
        let tx_block_size = (per_block * options.tx_frame_size).div_ceil(page) * page;
        let frames_per_block = tx_block_size / options.tx_frame_size;
        let tx_block_count = options.tx_frame_count.div_ceil(frames_per_block);
        let rx_frame_size = 2048.min(options.rx_block_size);
        Ok(Self {
            rx_block_size: options.rx_block_size,
            rx_block_count: options.rx_block_count,
            rx_frame_size,
            tx_block_size,
            tx_block_count,
            tx_frame_size: options.tx_frame_size,
            tx_frame_count: tx_block_count * frames_per_block,
        })
    }

    fn rx_frame_count(&self) -> usize {
        self.rx_block_size / self.rx_frame_size * self.rx_block_count
    }

    fn rx_len(&self) -> usize {
        self.rx_block_size * self.rx_block_count
    }

    fn tx_len(&self) -> usize {
        self.tx_block_size * self.tx_block_count
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// The socket's rings, mapped shared with the kernel.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize) -> io::Result<Self> {
        // SAFETY: maps `len` bytes of the packet socket's rings (which the kernel sized to
        // exactly the RX plus TX ring) at an address the kernel chooses.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { base, len })
    }

    /// The `len` bytes at `offset` (within the mapping, checked by the caller's geometry).
    fn region(&self, offset: usize, len: usize) -> Region {
        assert!(offset + len <= self.len, "ring region outside the mapping");
        Region {
            // SAFETY: offset + len is within the mapping, as asserted above.
            base: unsafe { self.base.add(offset) },
            len,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no Region outlives the port owning this.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// A bounds-checked window of a ring mapping. Every access checks `offset + size <= len`.
struct Region {
    base: NonNull<u8>,
    len: usize,
}

impl Region {
    fn fits(&self, offset: usize, size: usize) -> bool {
        offset.checked_add(size).is_some_and(|end| end <= self.len)
    }

    /// The status word at `offset`, shared with the kernel.
    fn status(&self, offset: usize) -> Option<&AtomicU32> {
        if !self.fits(offset, 4) || !offset.is_multiple_of(4) {
            return None;
        }
        // SAFETY: in bounds and 4-byte aligned (the mapping is page aligned); the kernel only
        // accesses status words atomically or behind barriers, which is AtomicU32's contract.
        Some(unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast()) })
    }

    fn u32_at(&self, offset: usize) -> Option<u32> {
        if !self.fits(offset, 4) {
            return None;
        }
        // SAFETY: in bounds; read_unaligned has no alignment requirement.
        Some(unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .read_unaligned()
        })
    }

    fn u16_at(&self, offset: usize) -> Option<u16> {
        if !self.fits(offset, 2) {
            return None;
        }
        // SAFETY: in bounds; read_unaligned has no alignment requirement.
        Some(unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<u16>()
                .read_unaligned()
        })
    }

    fn u8_at(&self, offset: usize) -> Option<u8> {
        self.bytes(offset, 1).map(|b| b[0])
    }

    /// The bytes at `offset`; only for a block or slot this side owns (status handed over).
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        if !self.fits(offset, len) {
            return None;
        }
        // SAFETY: in bounds; the caller owns this part of the ring per the status protocol, so
        // the kernel does not write it while the slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) })
    }

    /// Copies `data` to `offset`; only for a slot this side owns.
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        if !self.fits(offset, data.len()) {
            return false;
        }
        // SAFETY: in bounds; the slot is owned by this side (status AVAILABLE), so the kernel
        // does not read or write it until the status is set to SEND_REQUEST.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base.as_ptr().add(offset),
                data.len(),
            );
        }
        true
    }

    fn write_u32(&mut self, offset: usize, value: u32) -> bool {
        self.write(offset, &value.to_ne_bytes())
    }
}

/// Receive-side tally for one batch.
#[derive(Default)]
struct RxTally {
    packets: u64,
    bytes: u64,
    drops: u64,
}

/// Where reading stopped inside a block handed over by the kernel.
#[derive(Clone, Copy)]
struct BlockCursor {
    remaining: u32,
    offset: usize,
}

/// The TPACKET_V3 receive ring.
struct RxRing {
    region: Region,
    block_size: usize,
    block_count: usize,
    block: usize,
    cursor: Option<BlockCursor>,
}

impl RxRing {
    fn block_start(&self) -> usize {
        self.block * self.block_size
    }

    /// Whether the current block is ours to read.
    fn ready(&self) -> bool {
        self.cursor.is_some()
            || self
                .region
                .status(self.block_start() + block::STATUS)
                .is_some_and(|s| s.load(Ordering::Acquire) & libc::TP_STATUS_USER != 0)
    }

    /// Returns the current block to the kernel and moves to the next one.
    fn release_block(&mut self) {
        if let Some(status) = self.region.status(self.block_start() + block::STATUS) {
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        self.cursor = None;
        self.block = (self.block + 1) % self.block_count;
    }

    fn read_into(&mut self, batch: &mut Batch, ingress: PortId, max: usize) -> RxTally {
        let mut tally = RxTally::default();
        while tally.packets < max as u64 {
            let cursor = match self.cursor {
                Some(cursor) => cursor,
                None => {
                    let start = self.block_start();
                    let Some(status) = self.region.status(start + block::STATUS) else {
                        break;
                    };
                    if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                        break;
                    }
                    let remaining = self.region.u32_at(start + block::NUM_PKTS).unwrap_or(0);
                    let first = self
                        .region
                        .u32_at(start + block::OFFSET_TO_FIRST_PKT)
                        .unwrap_or(0) as usize;
                    let cursor = BlockCursor {
                        remaining,
                        offset: first.max(block::HEADER_LEN),
                    };
                    self.cursor = Some(cursor);
                    cursor
                }
            };
            if cursor.remaining == 0 {
                self.release_block();
                continue;
            }
            match self.read_frame(cursor.offset, batch, ingress, &mut tally) {
                Some(next) if next > 0 => {
                    self.cursor = Some(BlockCursor {
                        remaining: cursor.remaining - 1,
                        offset: cursor.offset + next,
                    });
                }
                // The last frame of a block has next offset 0; a malformed header abandons the
                // rest of the block rather than read outside it.
                Some(_) if cursor.remaining == 1 => self.release_block(),
                _ => {
                    tally.drops += u64::from(cursor.remaining.saturating_sub(1));
                    self.release_block();
                }
            }
        }
        tally
    }

    /// Copies the frame whose header is at `offset` in the current block into `batch`; returns
    /// the header's next offset, or None when the header does not fit in the block.
    fn read_frame(
        &self,
        offset: usize,
        batch: &mut Batch,
        ingress: PortId,
        tally: &mut RxTally,
    ) -> Option<usize> {
        if offset.checked_add(frame::HEADER_LEN + 20)? > self.block_size {
            tally.drops += 1;
            return None;
        }
        let hdr = self.block_start() + offset;
        let region = &self.region;
        let next = region.u32_at(hdr + frame::NEXT_OFFSET)? as usize;
        let snaplen = region.u32_at(hdr + frame::SNAPLEN)? as usize;
        let len = region.u32_at(hdr + frame::LEN)? as usize;
        let status = region.u32_at(hdr + frame::STATUS)?;
        let mac = usize::from(region.u16_at(hdr + frame::MAC)?);
        let pkttype = region.u8_at(hdr + frame::PKTTYPE)?;
        if pkttype == libc::PACKET_OUTGOING {
            return Some(next);
        }
        let in_block = offset + mac + snaplen <= self.block_size;
        let Some(data) = region.bytes(hdr + mac, snaplen).filter(|_| in_block) else {
            tally.drops += 1;
            return None;
        };
        let vlan = status & libc::TP_STATUS_VLAN_VALID != 0;
        let full_len = snaplen + if vlan { 4 } else { 0 };
        if snaplen < len || snaplen < 14 || full_len > MAX_FRAME_LEN {
            tally.drops += 1;
            return Some(next);
        }
        if vlan {
            let tci = region.u32_at(hdr + frame::VLAN_TCI)? as u16;
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                region.u16_at(hdr + frame::VLAN_TPID)?
            } else {
                ETH_P_8021Q
            };
            let tag = [tpid.to_be_bytes(), tci.to_be_bytes()].concat();
            batch.push_parts(ingress, &[&data[..12], &tag, &data[12..]]);
        } else {
            batch.push(ingress, data);
        }
        tally.packets += 1;
        tally.bytes += full_len as u64;
        Some(next)
    }
}

/// The V3 transmit ring: fixed-size slots, each a `tpacket3_hdr` followed by the frame.
struct TxRing {
    region: Region,
    block_size: usize,
    frames_per_block: usize,
    frame_size: usize,
    frame_count: usize,
    head: usize,
}

impl TxRing {
    fn slot(&self, index: usize) -> usize {
        (index / self.frames_per_block) * self.block_size
            + (index % self.frames_per_block) * self.frame_size
    }

    fn slot_free(&self, index: usize) -> bool {
        self.region
            .status(self.slot(index) + frame::STATUS)
            .is_some_and(|s| {
                let status = s.load(Ordering::Acquire);
                status == libc::TP_STATUS_AVAILABLE || status & libc::TP_STATUS_WRONG_FORMAT != 0
            })
    }

    fn room(&self, want: usize) -> usize {
        (0..want)
            .take_while(|i| self.slot_free((self.head + i) % self.frame_count))
            .count()
    }

    /// Writes `frame` into the head slot and hands it to the kernel; false when the slot is busy.
    fn push(&mut self, frame: &[u8]) -> bool {
        if !self.slot_free(self.head) {
            return false;
        }
        let slot = self.slot(self.head);
        let written = self.region.write(slot + frame::HEADER_LEN, frame)
            && self.region.write_u32(slot + frame::NEXT_OFFSET, 0)
            && self.region.write_u32(slot + frame::LEN, frame.len() as u32)
            && self
                .region
                .write_u32(slot + frame::SNAPLEN, frame.len() as u32);
        if !written {
            return false;
        }
        let Some(status) = self.region.status(slot + frame::STATUS) else {
            return false;
        };
        status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.head = (self.head + 1) % self.frame_count;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_geometry_is_accepted() {
        let g = Geometry::new(&AfPacketOptions::default()).unwrap();
        assert_eq!(g.rx_len(), 4 * 1024 * 1024);
        assert_eq!(g.tx_frame_count, 1024);
        assert_eq!(g.tx_len(), 1024 * 2048);
    }

    #[test]
    fn tx_slot_count_rounds_up_to_whole_blocks() {
        let options = AfPacketOptions {
            tx_frame_size: 1536,
            tx_frame_count: 100,
            ..AfPacketOptions::default()
        };
        let g = Geometry::new(&options).unwrap();
        assert!(g.tx_frame_count >= 100);
        assert_eq!(g.tx_block_size % page_size(), 0);
        assert_eq!(g.tx_frame_count % (g.tx_block_size / 1536), 0);
    }

    #[test]
    fn ring_sizes_the_kernel_would_refuse_are_errors() {
        for options in [
            AfPacketOptions {
                rx_block_size: 1000,
                ..AfPacketOptions::default()
            },
            AfPacketOptions {
                rx_block_count: 0,
                ..AfPacketOptions::default()
            },
            AfPacketOptions {
                tx_frame_size: 100,
                ..AfPacketOptions::default()
            },
            AfPacketOptions {
                tx_frame_count: 0,
                ..AfPacketOptions::default()
            },
        ] {
            assert!(Geometry::new(&options).is_err(), "{options:?}");
        }
    }

    #[test]
    fn a_missing_interface_is_an_error_naming_it() {
        let err = AfPacketPort::open(0, "p", "nosuchif0", &AfPacketOptions::default()).unwrap_err();
        assert!(err.to_string().contains("nosuchif0"), "{err}");
    }
}
