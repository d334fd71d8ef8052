//! In-memory ports for tests and benchmarks: bounded frame queues instead of a wire.
//!
//! [`MemoryPort::new`] gives a port and a [`MemoryPortHandle`]: the handle injects frames the port
//! will receive and collects the frames the port sent. [`MemoryPort::pair`] connects two ports
//! back to back, like a cable. Queues are bounded; a frame that does not fit is dropped and
//! counted (a receive drop when injected, a transmit drop when sent), never queued without limit.
//!
//! ```
//! use outpost_dataplane::{Batch, MemoryPort, Port};
//!
//! let (mut port, handle) = MemoryPort::new(0, "mem0", 16);
//! assert!(handle.inject(b"hello"));
//! let mut batch = Batch::new();
//! assert_eq!(port.recv_batch(&mut batch, 32).unwrap(), 1);
//! port.send([&b"world"[..]]).unwrap();
//! assert_eq!(handle.take_sent(), vec![b"world".to_vec()]);
//! ```

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::batch::{Batch, MAX_FRAME_LEN, PortId};
use crate::port::{Port, PortCounters, TxTally};

/// A bounded queue of frames shared by the two ends of an in-memory link. Frame buffers are
/// recycled, so a warmed-up queue does not allocate.
#[derive(Debug)]
struct FrameQueue {
    state: Mutex<QueueState>,
    became_non_empty: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    frames: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl FrameQueue {
    fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState::default()),
            became_non_empty: Condvar::new(),
            capacity,
        })
    }

    /// Queues frames until the queue is full; returns (accepted, accepted bytes, rejected).
    fn push_all(&self, frames: &mut dyn Iterator<Item = &[u8]>) -> TxTally {
        let mut tally = TxTally::default();
        let mut state = self.state.lock();
        let was_empty = state.frames.is_empty();
        for frame in frames {
            if state.frames.len() >= self.capacity
                || frame.is_empty()
                || frame.len() > MAX_FRAME_LEN
            {
                tally.drops += 1;
                continue;
            }
            let mut buf = state.spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(frame);
            state.frames.push_back(buf);
            tally.sent(frame.len());
        }
        if was_empty && tally.packets > 0 {
            self.became_non_empty.notify_all();
        }
        tally
    }

    /// Moves up to `max` frames into `batch`; returns (frames, bytes).
    fn pop_into(&self, batch: &mut Batch, ingress: PortId, max: usize) -> (u64, u64) {
        let mut state = self.state.lock();
        let (mut packets, mut bytes) = (0, 0);
        while packets < max as u64 {
            let Some(frame) = state.frames.pop_front() else {
                break;
            };
            batch.push(ingress, &frame);
            packets += 1;
            bytes += frame.len() as u64;
            state.spare.push(frame);
        }
        (packets, bytes)
    }

    fn drain(&self) -> Vec<Vec<u8>> {
        self.state.lock().frames.drain(..).collect()
    }

    fn len(&self) -> usize {
        self.state.lock().frames.len()
    }

    fn wait_non_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while state.frames.is_empty() {
            if self
                .became_non_empty
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return !state.frames.is_empty();
            }
        }
        true
    }

    fn wait_len(&self, len: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while state.frames.len() < len {
            // Woken on the empty→non-empty edge only; poll at a short interval for the rest.
            let step = (Instant::now() + Duration::from_millis(5)).min(deadline);
            self.became_non_empty.wait_until(&mut state, step);
            if Instant::now() >= deadline {
                return state.frames.len() >= len;
            }
        }
        true
    }
}

/// A port backed by in-memory queues.
#[derive(Debug)]
pub struct MemoryPort {
    id: PortId,
    name: String,
    rx: Arc<FrameQueue>,
    tx: Arc<FrameQueue>,
    counters: Arc<PortCounters>,
    handle: Option<MemoryPortHandle>,
}

/// The test side of a [`MemoryPort`]: injects frames the port receives, collects frames it sent.
#[derive(Debug, Clone)]
pub struct MemoryPortHandle {
    to_port: Arc<FrameQueue>,
    from_port: Arc<FrameQueue>,
    counters: Arc<PortCounters>,
}

impl MemoryPort {
    /// A port with id `id` whose receive and transmit queues each hold up to `capacity` frames,
    /// and the handle that feeds and drains it.
    pub fn new(id: PortId, name: &str, capacity: usize) -> (Self, MemoryPortHandle) {
        let counters = PortCounters::new_shared();
        let handle = MemoryPortHandle {
            to_port: FrameQueue::new(capacity),
            from_port: FrameQueue::new(capacity),
            counters: counters.clone(),
        };
        let port = Self {
            id,
            name: name.to_owned(),
            rx: handle.to_port.clone(),
            tx: handle.from_port.clone(),
            counters,
            handle: Some(handle.clone()),
        };
        (port, handle)
    }

    /// Two ports connected back to back: what one sends, the other receives. Each direction
    /// queues up to `capacity` frames; the sender counts a transmit drop when it is full.
    pub fn pair(a: (PortId, &str), b: (PortId, &str), capacity: usize) -> (Self, Self) {
        let a_to_b = FrameQueue::new(capacity);
        let b_to_a = FrameQueue::new(capacity);
        let port_a = Self {
            id: a.0,
            name: a.1.to_owned(),
            rx: b_to_a.clone(),
            tx: a_to_b.clone(),
            counters: PortCounters::new_shared(),
            handle: None,
        };
        let port_b = Self {
            id: b.0,
            name: b.1.to_owned(),
            rx: a_to_b,
            tx: b_to_a,
            counters: PortCounters::new_shared(),
            handle: None,
        };
        (port_a, port_b)
    }
}

impl Port for MemoryPort {
    fn id(&self) -> PortId {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv_batch(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let (packets, bytes) = self.rx.pop_into(batch, self.id, max);
        self.counters.add_rx(packets, bytes);
        Ok(packets as usize)
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = &[u8]>) -> io::Result<usize> {
        Ok(self.tx.push_all(frames).commit(&self.counters))
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        None
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        Ok(self.rx.wait_non_empty(timeout))
    }

    fn memory_handle(&self) -> Option<MemoryPortHandle> {
        self.handle.clone()
    }
}

impl MemoryPortHandle {
    /// Queues `frame` for the port to receive; false (and a receive drop on the port) when the
    /// queue is full or the frame is empty or longer than [`MAX_FRAME_LEN`].
    pub fn inject(&self, frame: &[u8]) -> bool {
        self.inject_all([frame]) == 1
    }

    /// Queues `frames` for the port to receive; returns how many fit (the rest are counted as
    /// receive drops on the port).
    pub fn inject_all<'a>(&self, frames: impl IntoIterator<Item = &'a [u8]>) -> usize {
        let tally = self.to_port.push_all(&mut frames.into_iter());
        self.counters.add_rx_drops(tally.drops);
        tally.packets as usize
    }

    /// Takes every frame the port has sent so far, oldest first.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        self.from_port.drain()
    }

    /// Number of sent frames waiting to be taken.
    pub fn sent_len(&self) -> usize {
        self.from_port.len()
    }

    /// Waits up to `timeout` until at least `count` sent frames wait to be taken.
    pub fn wait_sent(&self, count: usize, timeout: Duration) -> bool {
        self.from_port.wait_len(count, timeout)
    }

    /// Number of injected frames the port has not received yet.
    pub fn pending_len(&self) -> usize {
        self.to_port.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_frames_arrive_in_order_with_the_port_id() {
        let (mut port, handle) = MemoryPort::new(7, "m", 8);
        assert_eq!(handle.inject_all([&b"one"[..], b"two", b"three"]), 3);
        let mut batch = Batch::new();
        assert_eq!(port.recv_batch(&mut batch, 2).unwrap(), 2);
        assert_eq!(port.recv_batch(&mut batch, 2).unwrap(), 1);
        assert_eq!(port.recv_batch(&mut batch, 2).unwrap(), 0);
        assert_eq!(batch.data(), b"onetwothree");
        assert_eq!(batch.ingress(), &[7, 7, 7]);
        let stats = port.stats();
        assert_eq!((stats.rx_packets, stats.rx_bytes), (3, 11));
    }

    #[test]
    fn a_full_receive_queue_drops_and_counts() {
        let (port, handle) = MemoryPort::new(0, "m", 2);
        assert_eq!(handle.inject_all([&b"a"[..], b"b", b"c", b"d"]), 2);
        assert!(!handle.inject(b"e"));
        assert_eq!(port.stats().rx_drops, 3);
        assert_eq!(handle.pending_len(), 2);
    }

    #[test]
    fn a_full_transmit_queue_drops_and_counts() {
        let (mut port, handle) = MemoryPort::new(0, "m", 2);
        assert_eq!(port.send([&b"a"[..], b"b", b"c"]).unwrap(), 2);
        let stats = port.stats();
        assert_eq!(
            (stats.tx_packets, stats.tx_bytes, stats.tx_drops),
            (2, 2, 1)
        );
        assert_eq!(handle.take_sent(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(port.send([&b"d"[..]]).unwrap(), 1);
    }

    #[test]
    fn empty_and_oversize_frames_are_not_sent() {
        let (mut port, handle) = MemoryPort::new(0, "m", 8);
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(port.send([&b""[..], &big]).unwrap(), 0);
        assert_eq!(port.stats().tx_drops, 2);
        assert_eq!(handle.sent_len(), 0);
    }

    #[test]
    fn a_pair_carries_frames_both_ways() {
        let (mut a, mut b) = MemoryPort::pair((0, "a"), (1, "b"), 4);
        a.send([&b"to b"[..]]).unwrap();
        b.send([&b"to a"[..]]).unwrap();
        let mut batch = Batch::new();
        b.recv_batch(&mut batch, 8).unwrap();
        a.recv_batch(&mut batch, 8).unwrap();
        let got: Vec<_> = batch.iter().map(|p| (p.ingress, p.data)).collect();
        assert_eq!(got, vec![(1, &b"to b"[..]), (0, &b"to a"[..])]);
        assert!(a.memory_handle().is_none());
    }

    #[test]
    fn wait_readable_wakes_when_a_frame_is_injected() {
        let (mut port, handle) = MemoryPort::new(0, "m", 4);
        assert!(!port.wait_readable(Duration::from_millis(10)).unwrap());
        let injector = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            handle.inject(b"late");
        });
        assert!(port.wait_readable(Duration::from_secs(5)).unwrap());
        injector.join().unwrap();
    }
}
