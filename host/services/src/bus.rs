//! An in-process publish/subscribe bus with MQTT-style topic filters.
//!
//! Each subscription has a bounded queue: a slow subscriber loses messages (counted) rather than
//! stalling publishers or growing without bound.
//!
//! ```
//! use outpost_services::Bus;
//! use outpost_manifest::TopicPattern;
//!
//! let bus = Bus::new(1 << 20);
//! let mut sub = bus.subscribe("reader", vec![TopicPattern::parse("sensors/#").unwrap()], 16);
//! bus.publish("writer", "sensors/t1", b"21.5".to_vec()).unwrap();
//! let msg = sub.try_recv().unwrap();
//! assert_eq!((msg.topic.as_str(), msg.payload.as_slice()), ("sensors/t1", &b"21.5"[..]));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use outpost_manifest::TopicPattern;
use tokio::sync::mpsc;

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// Concrete topic it was published on.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Who published it (a plugin name or a host source such as `http-ingest`).
    pub source: String,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The payload exceeds the bus's size limit.
    #[error("payload of {size} bytes exceeds the bus limit of {limit} bytes")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The topic is not a valid concrete topic.
    #[error("invalid topic `{0}`: {1}")]
    BadTopic(String, String),
}

/// What happened to a published message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscriptions that queued it.
    pub delivered: usize,
    /// Subscriptions whose queue was full (the message was dropped for them).
    pub dropped: usize,
}

struct Subscriber {
    id: u64,
    name: String,
    patterns: Vec<TopicPattern>,
    tx: mpsc::Sender<BusMessage>,
    dropped: Arc<AtomicU64>,
}

/// The host's message bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    next_id: Arc<AtomicU64>,
    max_payload: usize,
    published: Arc<AtomicU64>,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    name: String,
    rx: mpsc::Receiver<BusMessage>,
    dropped: Arc<AtomicU64>,
    bus: Bus,
}

impl Subscription {
    /// Waits for the next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        self.rx.recv().await
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<BusMessage> {
        self.rx.try_recv().ok()
    }

    /// Messages dropped because this subscription's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The counter behind [`Subscription::dropped`], readable after the subscription moved.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What the bus reports about one subscription (for metrics).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubscriberStats {
    /// Subscriber name.
    pub name: String,
    /// Messages waiting in its queue.
    pub depth: usize,
    /// Its queue's capacity.
    pub capacity: usize,
    /// Messages dropped because its queue was full.
    pub dropped: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.bus.subscribers.lock() {
            subs.retain(|s| s.id != self.id);
        }
    }
}

impl Bus {
    /// Queue depth and drops of every live subscription.
    pub fn subscriber_stats(&self) -> Vec<SubscriberStats> {
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.iter()
            .map(|s| SubscriberStats {
                name: s.name.clone(),
                depth: s.tx.max_capacity() - s.tx.capacity(),
                capacity: s.tx.max_capacity(),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// A bus that refuses payloads larger than `max_payload` bytes.
    pub fn new(max_payload: usize) -> Bus {
        Bus {
            subscribers: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            max_payload,
            published: Arc::default(),
        }
    }

    /// The payload size limit.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Subscribes `name` to every topic matching one of `patterns`, with a queue of `capacity`.
    pub fn subscribe(
        &self,
        name: &str,
        patterns: Vec<TopicPattern>,
        capacity: usize,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subscribers
            .lock()
            .expect("bus lock is never poisoned: no code panics while holding it")
            .push(Subscriber {
                id,
                name: name.to_string(),
                patterns,
                tx,
                dropped: dropped.clone(),
            });
        Subscription {
            id,
            name: name.to_string(),
            rx,
            dropped,
            bus: self.clone(),
        }
    }

    /// Publishes a message to every matching subscription without waiting.
    pub fn publish(
        &self,
        source: &str,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<Delivery, PublishError> {
        if payload.len() > self.max_payload {
            return Err(PublishError::TooLarge {
                size: payload.len(),
                limit: self.max_payload,
            });
        }
        let parsed =
            TopicPattern::parse(topic).map_err(|why| PublishError::BadTopic(topic.into(), why))?;
        if parsed.is_wildcard() {
            return Err(PublishError::BadTopic(
                topic.into(),
                "wildcards are for subscriptions, not for publishing".into(),
            ));
        }
        self.published.fetch_add(1, Ordering::Relaxed);
        let subs = self
            .subscribers
            .lock()
            .expect("bus lock is never poisoned: no code panics while holding it");
        let mut delivery = Delivery::default();
        for sub in subs
            .iter()
            .filter(|s| s.patterns.iter().any(|p| p.matches(topic)))
        {
            let msg = BusMessage {
                topic: topic.to_string(),
                payload: payload.clone(),
                source: source.to_string(),
            };
            match sub.tx.try_send(msg) {
                Ok(()) => delivery.delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(subscriber = %sub.name, topic, "bus queue full, message dropped");
                    delivery.dropped += 1;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        Ok(delivery)
    }

    /// Messages accepted since the bus started.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Vec<TopicPattern> {
        vec![TopicPattern::parse(p).unwrap()]
    }

    #[test]
    fn messages_reach_only_matching_subscribers() {
        let bus = Bus::new(1024);
        let mut a = bus.subscribe("a", pat("x/+"), 4);
        let mut b = bus.subscribe("b", pat("y/#"), 4);
        let d = bus.publish("t", "x/1", b"one".to_vec()).unwrap();
        assert_eq!(
            d,
            Delivery {
                delivered: 1,
                dropped: 0
            }
        );
        assert_eq!(a.try_recv().unwrap().payload, b"one");
        assert!(b.try_recv().is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let bus = Bus::new(1024);
        let sub = bus.subscribe("slow", pat("t"), 2);
        for _ in 0..5 {
            bus.publish("p", "t", vec![1]).unwrap();
        }
        assert_eq!(sub.dropped(), 3);
    }

    #[test]
    fn oversized_payloads_and_wildcard_topics_are_refused() {
        let bus = Bus::new(4);
        assert_eq!(
            bus.publish("p", "t", vec![0; 5]).unwrap_err(),
            PublishError::TooLarge { size: 5, limit: 4 }
        );
        assert!(matches!(
            bus.publish("p", "t/#", vec![]),
            Err(PublishError::BadTopic(..))
        ));
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let bus = Bus::new(16);
        let sub = bus.subscribe("s", pat("t"), 2);
        drop(sub);
        assert_eq!(bus.publish("p", "t", vec![]).unwrap().delivered, 0);
    }
}
