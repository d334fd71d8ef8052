//! Egress scheduling for one uplink: strict priority, deficit round robin and a rate cap.
//!
//! A [`Scheduler`] holds one bounded FIFO per traffic class and decides which packet leaves the
//! uplink next:
//!
//! * **Real-time classes** ([`ClassKind::RealTime`]) are served first, strictly, in class order.
//!   Anything queued there leaves before any weighted packet.
//! * **Weighted classes** ([`ClassKind::Weighted`]) share what is left by deficit round robin
//!   (Shreedhar & Varghese) counted in bytes: each turn a backlogged class earns
//!   `weight × quantum` bytes of credit and sends head packets while its credit covers them, so
//!   under saturation classes get bytes in proportion to their weights whatever their packet
//!   sizes.
//! * **Queues are bounded** (packets and bytes); a packet that does not fit is dropped at the
//!   tail and counted ([`Dropped`], [`ClassCounters::dropped`]).
//! * **An optional rate cap** ([`RateCap`]) is a token bucket in bytes: tokens accrue at
//!   `bytes_per_sec` up to `burst_bytes`; a packet may leave while the bucket is not in debt and
//!   its size is then taken from the bucket (which may go negative by at most one packet). The
//!   long-run rate is therefore exactly the configured rate, and [`Scheduler::next_ready_at`]
//!   says when the bucket will allow the next packet.
//!
//! The scheduler is a pure data structure driven by the caller's clock (`Instant`s passed in),
//! so it is tested with synthetic time and used by the gateway's per-uplink sender task.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Index of a class in [`QosConfig::classes`].
pub type ClassIdx = usize;

/// How a class is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClassKind {
    /// Strict priority, served before every weighted class.
    RealTime,
    /// Deficit round robin with this weight (≥ 1).
    Weighted {
        /// Relative share of bytes under saturation.
        weight: u32,
    },
}

/// One traffic class of the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosClass {
    /// Class name (matched against [`crate::policy::ClassPolicy::name`] by the gateway).
    pub name: String,
    /// Scheduling discipline.
    pub kind: ClassKind,
    /// Most packets the queue holds.
    pub max_packets: usize,
    /// Most bytes the queue holds.
    pub max_bytes: usize,
}

impl QosClass {
    /// A real-time class with the default queue bounds (256 packets, 256 KiB).
    pub fn realtime(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ClassKind::RealTime,
            max_packets: 256,
            max_bytes: 256 * 1024,
        }
    }

    /// A weighted class with the default queue bounds (1024 packets, 1 MiB).
    pub fn weighted(name: impl Into<String>, weight: u32) -> Self {
        Self {
            name: name.into(),
            kind: ClassKind::Weighted { weight },
            max_packets: 1024,
            max_bytes: 1024 * 1024,
        }
    }
}

/// A per-uplink rate cap (token bucket, bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCap {
    /// Sustained rate, bytes per second (> 0).
    pub bytes_per_sec: u64,
    /// Bucket depth, bytes: how much may leave back to back after an idle period.
    pub burst_bytes: u64,
}

/// Scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosConfig {
    /// Classes, indexed by [`ClassIdx`].
    pub classes: Vec<QosClass>,
    /// Rate cap of the uplink; `None` = unlimited.
    pub rate: Option<RateCap>,
    /// DRR credit per unit of weight per turn, bytes (≥ 64; default 1500).
    pub quantum: u32,
}

impl QosConfig {
    /// Classes with the default quantum and no rate cap.
    pub fn new(classes: Vec<QosClass>) -> Self {
        Self {
            classes,
            rate: None,
            quantum: 1500,
        }
    }

    /// The index of the class called `name`.
    pub fn class_index(&self, name: &str) -> Option<ClassIdx> {
        self.classes.iter().position(|c| c.name == name)
    }
}

/// Invalid scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QosError {
    /// No classes at all.
    #[error("a scheduler needs at least one class")]
    NoClasses,
    /// A weighted class has weight 0.
    #[error("class {0:?} has weight 0")]
    ZeroWeight(String),
    /// A class queue cannot hold anything.
    #[error("class {0:?} has a zero queue bound")]
    ZeroQueue(String),
    /// The rate cap's rate is 0.
    #[error("rate cap must be > 0 bytes/s")]
    ZeroRate,
    /// The DRR quantum is too small.
    #[error("quantum must be >= 64 bytes")]
    SmallQuantum,
}

/// Why [`Scheduler::enqueue`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The class queue was full (drop-tail).
    QueueFull,
    /// No such class.
    UnknownClass,
}

/// A refused packet, handed back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packet of {} bytes for class {class} dropped: {reason:?}", packet.len())]
pub struct Dropped {
    /// Class it was offered to.
    pub class: ClassIdx,
    /// Why.
    pub reason: DropReason,
    /// The packet.
    pub packet: Vec<u8>,
}

/// Counters of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounters {
    /// Packets accepted into the queue.
    pub enqueued: u64,
    /// Bytes accepted into the queue.
    pub enqueued_bytes: u64,
    /// Packets dequeued (sent).
    pub sent: u64,
    /// Bytes dequeued (sent).
    pub sent_bytes: u64,
    /// Packets dropped because the queue was full.
    pub dropped: u64,
    /// Bytes dropped because the queue was full.
    pub dropped_bytes: u64,
    /// Packets waiting now.
    pub queued: u64,
    /// Bytes waiting now.
    pub queued_bytes: u64,
}

#[derive(Debug)]
struct ClassQueue {
    spec: QosClass,
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    deficit: u64,
    counters: ClassCounters,
}

#[derive(Debug)]
struct Bucket {
    cap: RateCap,
    /// Tokens in bytes; negative means debt.
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let burst = self.cap.burst_bytes as f64;
        match self.last {
            None => self.tokens = burst,
            Some(last) if now > last => {
                let earned = now.duration_since(last).as_secs_f64() * self.cap.bytes_per_sec as f64;
                self.tokens = (self.tokens + earned).min(burst);
            }
            Some(_) => return,
        }
        self.last = Some(now);
    }
}

/// The egress scheduler of one uplink; see the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    classes: Vec<ClassQueue>,
    /// Backlogged weighted classes in round-robin order.
    active: VecDeque<ClassIdx>,
    /// Whether the class at the front of `active` has had its credit for this turn.
    turn_started: bool,
    quantum: u64,
    bucket: Option<Bucket>,
}

impl Scheduler {
    /// A scheduler with empty queues.
    pub fn new(config: QosConfig) -> Result<Self, QosError> {
        if config.classes.is_empty() {
            return Err(QosError::NoClasses);
        }
        if config.quantum < 64 {
            return Err(QosError::SmallQuantum);
        }
        for c in &config.classes {
            if c.kind == (ClassKind::Weighted { weight: 0 }) {
                return Err(QosError::ZeroWeight(c.name.clone()));
            }
            if c.max_packets == 0 || c.max_bytes == 0 {
                return Err(QosError::ZeroQueue(c.name.clone()));
            }
        }
        if let Some(rate) = config.rate
            && rate.bytes_per_sec == 0
        {
            return Err(QosError::ZeroRate);
        }
        Ok(Self {
            classes: config
                .classes
                .into_iter()
                .map(|spec| ClassQueue {
                    spec,
                    queue: VecDeque::new(),
                    bytes: 0,
                    deficit: 0,
                    counters: ClassCounters::default(),
                })
                .collect(),
            active: VecDeque::new(),
            turn_started: false,
            quantum: u64::from(config.quantum),
            bucket: config.rate.map(|cap| Bucket {
                cap,
                tokens: 0.0,
                last: None,
            }),
        })
    }

    /// Queues `packet` in `class`, or hands it back when the queue is full (drop-tail).
    pub fn enqueue(&mut self, class: ClassIdx, packet: Vec<u8>) -> Result<(), Dropped> {
        let Some(q) = self.classes.get_mut(class) else {
            return Err(Dropped {
                class,
                reason: DropReason::UnknownClass,
                packet,
            });
        };
        let len = packet.len();
        if q.queue.len() >= q.spec.max_packets || q.bytes.saturating_add(len) > q.spec.max_bytes {
            q.counters.dropped += 1;
            q.counters.dropped_bytes += len as u64;
            return Err(Dropped {
                class,
                reason: DropReason::QueueFull,
                packet,
            });
        }
        let was_empty = q.queue.is_empty();
        q.queue.push_back(packet);
        q.bytes += len;
        q.counters.enqueued += 1;
        q.counters.enqueued_bytes += len as u64;
        if was_empty && matches!(q.spec.kind, ClassKind::Weighted { .. }) {
            q.deficit = 0;
            self.active.push_back(class);
        }
        Ok(())
    }

    /// The next packet to send at `now`, if any is queued and the rate cap allows it.
    pub fn dequeue(&mut self, now: Instant) -> Option<(ClassIdx, Vec<u8>)> {
        if let Some(bucket) = &mut self.bucket {
            bucket.refill(now);
            if bucket.tokens < 0.0 {
                return None;
            }
        }
        let (class, packet) = self.pick()?;
        if let Some(bucket) = &mut self.bucket {
            bucket.tokens -= packet.len() as f64;
        }
        Some((class, packet))
    }

    fn pop(&mut self, class: ClassIdx) -> Option<Vec<u8>> {
        let q = self.classes.get_mut(class)?;
        let packet = q.queue.pop_front()?;
        q.bytes -= packet.len();
        q.counters.sent += 1;
        q.counters.sent_bytes += packet.len() as u64;
        Some(packet)
    }

    fn pick(&mut self) -> Option<(ClassIdx, Vec<u8>)> {
        // Strict priority first.
        let rt = self
            .classes
            .iter()
            .position(|q| q.spec.kind == ClassKind::RealTime && !q.queue.is_empty());
        if let Some(class) = rt {
            return self.pop(class).map(|p| (class, p));
        }
        // Deficit round robin over backlogged weighted classes.
        loop {
            let class = *self.active.front()?;
            let quantum = self.quantum;
            let q = self.classes.get_mut(class)?;
            let ClassKind::Weighted { weight } = q.spec.kind else {
                self.active.pop_front();
                continue;
            };
            if !self.turn_started {
                q.deficit = q.deficit.saturating_add(quantum * u64::from(weight));
                self.turn_started = true;
            }
            let Some(head) = q.queue.front().map(Vec::len) else {
                q.deficit = 0;
                self.active.pop_front();
                self.turn_started = false;
                continue;
            };
            if head as u64 <= q.deficit {
                q.deficit -= head as u64;
                let packet = self.pop(class)?;
                if self.classes.get(class).is_some_and(|q| q.queue.is_empty()) {
                    if let Some(q) = self.classes.get_mut(class) {
                        q.deficit = 0;
                    }
                    self.active.pop_front();
                    self.turn_started = false;
                }
                return Some((class, packet));
            }
            // Credit exhausted: keep the remainder and go to the back of the round.
            self.active.pop_front();
            self.active.push_back(class);
            self.turn_started = false;
        }
    }

    /// When [`Self::dequeue`] will next return a packet: `None` if nothing is queued, `now` if it
    /// would right away, or the moment the rate cap's bucket is out of debt.
    pub fn next_ready_at(&mut self, now: Instant) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        let Some(bucket) = &mut self.bucket else {
            return Some(now);
        };
        bucket.refill(now);
        if bucket.tokens >= 0.0 {
            return Some(now);
        }
        let wait = -bucket.tokens / bucket.cap.bytes_per_sec as f64;
        // Round up to a whole microsecond so the bucket is really out of debt then.
        let micros = (wait * 1e6).ceil();
        Some(now + Duration::from_micros(micros as u64))
    }

    /// Packets waiting in all classes.
    pub fn len(&self) -> usize {
        self.classes.iter().map(|q| q.queue.len()).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(|q| q.queue.is_empty())
    }

    /// Number of classes.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Name of a class.
    pub fn class_name(&self, class: ClassIdx) -> Option<&str> {
        self.classes.get(class).map(|q| q.spec.name.as_str())
    }

    /// Counters of every class, by index.
    pub fn counters(&self) -> Vec<ClassCounters> {
        self.classes
            .iter()
            .map(|q| ClassCounters {
                queued: q.queue.len() as u64,
                queued_bytes: q.bytes as u64,
                ..q.counters
            })
            .collect()
    }

    /// Drops everything queued (counted as dropped); returns how many packets.
    pub fn clear(&mut self) -> usize {
        let mut n = 0;
        for q in &mut self.classes {
            for p in q.queue.drain(..) {
                q.counters.dropped += 1;
                q.counters.dropped_bytes += p.len() as u64;
                n += 1;
            }
            q.bytes = 0;
            q.deficit = 0;
        }
        self.active.clear();
        self.turn_started = false;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(classes: Vec<QosClass>, rate: Option<RateCap>) -> QosConfig {
        QosConfig {
            classes,
            rate,
            quantum: 1500,
        }
    }

    #[test]
    fn realtime_packets_always_leave_before_weighted_ones() {
        let mut s = Scheduler::new(config(
            vec![
                QosClass::weighted("bulk", 10),
                QosClass::realtime("voice"),
                QosClass::weighted("web", 1),
            ],
            None,
        ))
        .unwrap();
        let now = Instant::now();
        for i in 0..20u8 {
            s.enqueue(0, vec![i; 1000]).unwrap();
            s.enqueue(2, vec![i; 1000]).unwrap();
        }
        // Interleave: every realtime packet enqueued is the very next one out.
        for i in 0..10u8 {
            s.enqueue(1, vec![i; 100]).unwrap();
            let (class, p) = s.dequeue(now).unwrap();
            assert_eq!(class, 1);
            assert_eq!(p, vec![i; 100]);
            let (class, _) = s.dequeue(now).unwrap();
            assert_ne!(class, 1);
        }
        for i in 0..5u8 {
            s.enqueue(1, vec![i; 100]).unwrap();
        }
        for _ in 0..5 {
            assert_eq!(s.dequeue(now).unwrap().0, 1);
        }
        assert_ne!(s.dequeue(now).unwrap().0, 1);
    }

    #[test]
    fn weights_three_to_one_share_bytes_three_to_one_under_saturation() {
        let mut classes = vec![QosClass::weighted("a", 3), QosClass::weighted("b", 1)];
        for c in &mut classes {
            c.max_packets = 100_000;
            c.max_bytes = usize::MAX;
        }
        let mut s = Scheduler::new(config(classes, None)).unwrap();
        // Different packet sizes per class: DRR must share bytes, not packets.
        for i in 0..20_000usize {
            s.enqueue(0, vec![0; 200 + (i % 7) * 150]).unwrap();
            s.enqueue(1, vec![1; 1400]).unwrap();
        }
        let now = Instant::now();
        let mut bytes = [0u64; 2];
        for _ in 0..10_000 {
            let (class, p) = s.dequeue(now).unwrap();
            bytes[class] += p.len() as u64;
        }
        let ratio = bytes[0] as f64 / bytes[1] as f64;
        assert!((2.7..=3.3).contains(&ratio), "ratio {ratio} ({bytes:?})");
    }

    #[test]
    fn the_rate_cap_holds_the_dequeued_byte_rate_within_five_percent_over_a_second() {
        let rate = 1_000_000u64;
        let mut classes = vec![QosClass::realtime("rt"), QosClass::weighted("bulk", 1)];
        for c in &mut classes {
            c.max_packets = 100_000;
            c.max_bytes = usize::MAX;
        }
        let mut s = Scheduler::new(config(
            classes,
            Some(RateCap {
                bytes_per_sec: rate,
                burst_bytes: 3000,
            }),
        ))
        .unwrap();
        for i in 0..5000usize {
            s.enqueue(i % 2, vec![0; 500 + (i % 3) * 400]).unwrap();
        }
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(1);
        let mut now = t0;
        let mut sent = 0u64;
        let mut wakeups = 0;
        while now < end {
            while let Some((_, p)) = s.dequeue(now) {
                sent += p.len() as u64;
            }
            now = s.next_ready_at(now).unwrap();
            assert!(now > t0, "scheduler must ask to wait while in debt");
            wakeups += 1;
        }
        let lo = rate as f64 * 0.95;
        let hi = rate as f64 * 1.05;
        assert!(
            (lo..=hi).contains(&(sent as f64)),
            "sent {sent} bytes in a simulated second at cap {rate}"
        );
        assert!(wakeups > 100, "{wakeups}");
    }

    #[test]
    fn without_a_rate_cap_queued_packets_are_ready_now() {
        let mut s = Scheduler::new(QosConfig::new(vec![QosClass::weighted("a", 1)])).unwrap();
        let now = Instant::now();
        assert_eq!(s.next_ready_at(now), None);
        s.enqueue(0, vec![0; 10]).unwrap();
        assert_eq!(s.next_ready_at(now), Some(now));
        assert!(s.dequeue(now).is_some());
        assert!(s.dequeue(now).is_none());
    }

    #[test]
    fn a_full_queue_drops_at_the_tail_and_counts() {
        let mut class = QosClass::weighted("a", 1);
        class.max_packets = 3;
        class.max_bytes = 10_000;
        let mut s = Scheduler::new(QosConfig::new(vec![class])).unwrap();
        for i in 0..3u8 {
            s.enqueue(0, vec![i; 100]).unwrap();
        }
        let err = s.enqueue(0, vec![9; 100]).unwrap_err();
        assert_eq!(err.reason, DropReason::QueueFull);
        assert_eq!(err.packet, vec![9; 100]);
        // The byte bound drops too.
        assert!(s.dequeue(Instant::now()).is_some());
        let err = s.enqueue(0, vec![8; 20_000]).unwrap_err();
        assert_eq!(err.reason, DropReason::QueueFull);
        let c = s.counters()[0];
        assert_eq!(c.enqueued, 3);
        assert_eq!(c.sent, 1);
        assert_eq!(c.dropped, 2);
        assert_eq!(c.dropped_bytes, 20_100);
        assert_eq!(c.queued, 2);
        assert_eq!(c.queued_bytes, 200);
        // FIFO order of what stayed.
        assert_eq!(s.dequeue(Instant::now()).unwrap().1, vec![1; 100]);
        assert_eq!(
            s.enqueue(7, vec![]).unwrap_err().reason,
            DropReason::UnknownClass
        );
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert_eq!(
            Scheduler::new(QosConfig::new(vec![])).unwrap_err(),
            QosError::NoClasses
        );
        assert!(matches!(
            Scheduler::new(QosConfig::new(vec![QosClass::weighted("z", 0)])).unwrap_err(),
            QosError::ZeroWeight(_)
        ));
        let mut c = QosConfig::new(vec![QosClass::realtime("rt")]);
        c.rate = Some(RateCap {
            bytes_per_sec: 0,
            burst_bytes: 1,
        });
        assert_eq!(Scheduler::new(c).unwrap_err(), QosError::ZeroRate);
    }
}
