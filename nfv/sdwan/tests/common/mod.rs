//! Test support: an impairment relay on 127.0.0.1.
//!
//! The relay sits between a client (prober, overlay peer) and a target (reflector, other
//! peer). Clients send to [`Relay::front`]; the relay forwards from its back socket to the
//! target and forwards the target's answers back to the last client seen. At run time it can
//! drop everything (a cut link), drop a fraction, add delay in each direction, capture every
//! datagram it forwards, and inject datagrams of the test's choosing.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Direction of a captured datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to target.
    ToTarget,
    /// Target to client.
    ToClient,
}

#[derive(Default)]
struct Impair {
    drop_all: AtomicBool,
    drop_per_mille: AtomicU32,
    delay_ms: AtomicU64,
    capture: AtomicBool,
    captured: Mutex<Vec<(Dir, Vec<u8>)>>,
    client: Mutex<Option<SocketAddr>>,
    rng: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

impl Impair {
    fn should_drop(&self) -> bool {
        if self.drop_all.load(Ordering::Relaxed) {
            return true;
        }
        let per_mille = self.drop_per_mille.load(Ordering::Relaxed);
        if per_mille == 0 {
            return false;
        }
        // xorshift64: deterministic, good enough for loss patterns.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x % 1000) < u64::from(per_mille)
    }
}

/// A running relay; dropping it stops it.
pub struct Relay {
    front: Arc<UdpSocket>,
    back: Arc<UdpSocket>,
    target: SocketAddr,
    impair: Arc<Impair>,
    tasks: Vec<JoinHandle<()>>,
}

async fn forward(
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    impair: Arc<Impair>,
    dir: Dir,
    target: SocketAddr,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((len, src)) = from.recv_from(&mut buf).await else {
            continue;
        };
        let data = buf[..len].to_vec();
        let dest = match dir {
            Dir::ToTarget => {
                *impair.client.lock().expect("lock") = Some(src);
                target
            }
            Dir::ToClient => match *impair.client.lock().expect("lock") {
                Some(c) => c,
                None => continue,
            },
        };
        if impair.should_drop() {
            impair.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if impair.capture.load(Ordering::Relaxed) {
            impair
                .captured
                .lock()
                .expect("lock")
                .push((dir, data.clone()));
        }
        impair.forwarded.fetch_add(1, Ordering::Relaxed);
        let delay = impair.delay_ms.load(Ordering::Relaxed);
        if delay == 0 {
            let _ = to.send_to(&data, dest).await;
        } else {
            let to = Arc::clone(&to);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = to.send_to(&data, dest).await;
            });
        }
    }
}

impl Relay {
    /// Starts a relay in front of `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind front"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind back"));
        let impair = Arc::new(Impair {
            rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            ..Impair::default()
        });
        let tasks = vec![
            tokio::spawn(forward(
                Arc::clone(&front),
                Arc::clone(&back),
                Arc::clone(&impair),
                Dir::ToTarget,
                target,
            )),
            tokio::spawn(forward(
                Arc::clone(&back),
                Arc::clone(&front),
                Arc::clone(&impair),
                Dir::ToClient,
                target,
            )),
        ];
        Relay {
            front,
            back,
            target,
            impair,
            tasks,
        }
    }

    /// Where clients send.
    pub fn front(&self) -> SocketAddr {
        self.front.local_addr().expect("front addr")
    }

    /// Where the target sees the relay's datagrams come from (and should send answers).
    pub fn back(&self) -> SocketAddr {
        self.back.local_addr().expect("back addr")
    }

    /// Drops everything from now on; returns the moment of the cut.
    pub fn cut(&self) -> Instant {
        self.impair.drop_all.store(true, Ordering::SeqCst);
        Instant::now()
    }

    /// Stops dropping everything; returns the moment of the repair.
    pub fn restore(&self) -> Instant {
        self.impair.drop_all.store(false, Ordering::SeqCst);
        Instant::now()
    }

    /// Drops this fraction (0..=1) of datagrams.
    pub fn set_loss(&self, fraction: f64) {
        let per_mille = (fraction.clamp(0.0, 1.0) * 1000.0).round() as u32;
        self.impair
            .drop_per_mille
            .store(per_mille, Ordering::SeqCst);
    }

    /// Adds this one-way delay in each direction.
    pub fn set_delay(&self, delay: Duration) {
        self.impair
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Starts capturing forwarded datagrams.
    pub fn capture(&self, on: bool) {
        self.impair.capture.store(on, Ordering::SeqCst);
    }

    /// Datagrams captured so far.
    pub fn captured(&self) -> Vec<(Dir, Vec<u8>)> {
        self.impair.captured.lock().expect("lock").clone()
    }

    /// Sends `bytes` to the target from the relay's back socket (as if the client sent it).
    pub async fn inject_to_target(&self, bytes: &[u8]) {
        self.back
            .send_to(bytes, self.target)
            .await
            .expect("inject to target");
    }

    /// Datagrams forwarded / dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.impair.forwarded.load(Ordering::Relaxed),
            self.impair.dropped.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
