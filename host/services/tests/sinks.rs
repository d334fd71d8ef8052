//! Sinks against real peers: a mosquitto broker started by the tests (no mocks) and a local
//! hyper server standing in for a webhook.
//!
//! Needs the `mosquitto` binary (Debian package `mosquitto`); set `OUTPOST_MOSQUITTO` to use
//! another path. Without it these tests fail and say what to install.

use std::collections::HashSet;
use std::convert::Infallible;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use outpost_services::{Sink, SinkConfig, SinkStats, SinkTarget, Spool, SpoolError, SpoolLimits};
use tokio::sync::watch;

#[path = "support/mqtt.rs"]
mod mqtt;
use mqtt::{Mosquitto, PATIENCE, Subscriber, free_port};

/// Distinct payloads in order of first arrival.
fn first_arrivals(payloads: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    payloads
        .iter()
        .filter(|p| seen.insert(p.as_str()))
        .cloned()
        .collect()
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("id-{i:05}")).collect()
}

// ---------------------------------------------------------------------------------------------
// sinks

fn mqtt_config(name: &str, port: u16, qos: u8) -> SinkConfig {
    let mut config = SinkConfig::new(
        name,
        SinkTarget::Mqtt {
            host: "127.0.0.1".into(),
            port,
            client_id: format!("{name}-{}", std::process::id()),
            topic_prefix: "site/".into(),
            qos,
            keep_alive: Duration::from_secs(30),
        },
    );
    config.retry_initial = Duration::from_millis(50);
    config.retry_max = Duration::from_millis(400);
    config
}

fn open_spool(dir: &Path, limits: SpoolLimits) -> Spool {
    Spool::open(&dir.join("spool.redb"), limits).unwrap()
}

/// Polls the sink's stats until `done` holds.
async fn wait_for_stats(sink: &Sink, what: &str, done: impl Fn(&SinkStats) -> bool) -> SinkStats {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = sink.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stats: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn send_all(sink: &Sink, payloads: &[String]) {
    for p in payloads {
        sink.send("readings/t1", p.as_bytes()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_sent_to_the_mqtt_sink_reaches_a_subscriber() {
    let broker = Mosquitto::start();
    let mut sub = Subscriber::connect(broker.port, "site/#", None).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(
        mqtt_config("every", broker.port, 1),
        open_spool(dir.path(), SpoolLimits::default()),
    )
    .unwrap();
    let sent = ids(0..500);
    let started = Instant::now();
    send_all(&sink, &sent);
    sub.wait_until("500 messages", |got| got.len() >= sent.len())
        .await;
    let elapsed = started.elapsed();
    assert_eq!(sub.payloads(), sent, "every message once, in order");
    assert!(sub.got.iter().all(|(topic, _)| topic == "site/readings/t1"));
    let stats = wait_for_stats(&sink, "an empty spool", |s| s.spool.depth == 0).await;
    assert!(stats.connected);
    assert_eq!(
        (stats.delivered, stats.rejected, stats.spool.delivered),
        (500, 0, 500)
    );
    assert!(stats.attempts >= 500);
    assert!(stats.last_delivery_ms.is_some());
    println!(
        "500 messages spooled one by one and delivered with QoS 1 in {elapsed:?} ({:.0} msg/s)",
        500.0 / elapsed.as_secs_f64()
    );
    sink.shutdown().await;
    assert!(!sink.stats().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_sink_delivers_to_a_subscriber_too() {
    let broker = Mosquitto::start();
    let mut sub = Subscriber::connect(broker.port, "site/#", None).await;
    let sink = Sink::start(
        mqtt_config("qos0", broker.port, 0),
        Spool::in_memory(SpoolLimits::default()).unwrap(),
    )
    .unwrap();
    let sent = ids(0..100);
    send_all(&sink, &sent);
    sub.wait_until("100 messages", |got| got.len() >= sent.len())
        .await;
    assert_eq!(sub.payloads(), sent);
    let stats = wait_for_stats(&sink, "an empty spool", |s| s.spool.depth == 0).await;
    assert_eq!(stats.delivered, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_the_broker_going_down() {
    // The broker keeps what it acknowledged (persistence, a persistent subscriber session, a
    // graceful stop): whatever goes missing would be the sink's fault. For the sink the outage
    // is the same as a crash: its connection drops and reconnects are refused until restart.
    let mut broker = Mosquitto::start_with(true);
    let session = format!("outage-sub-{}", std::process::id());
    let mut sub = Subscriber::connect(broker.port, "site/#", Some(&session)).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(
        mqtt_config("outage", broker.port, 1),
        open_spool(dir.path(), SpoolLimits::default()),
    )
    .unwrap();

    const TOTAL: usize = 1200;
    let sent = ids(0..TOTAL);
    let (sent_tx, mut sent_count) = watch::channel(0usize);
    let sender = {
        let sink = sink.clone();
        let sent = sent.clone();
        std::thread::spawn(move || {
            for (i, p) in sent.iter().enumerate() {
                sink.send("readings/t1", p.as_bytes()).unwrap();
                let _ = sent_tx.send(i + 1);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    // mid-stream: some delivered, more to come
    sub.wait_until("the first 150 messages", |got| got.len() >= 150)
        .await;
    broker.stop();
    wait_for_stats(&sink, "the sink to notice the outage", |s| !s.connected).await;
    let pushed_at_outage = sink.stats().spool.pushed;
    // keep sending while the broker is down
    tokio::time::timeout(
        PATIENCE,
        sent_count.wait_for(|n| *n as u64 >= (pushed_at_outage + 200).min(TOTAL as u64)),
    )
    .await
    .expect("the sender stalled")
    .unwrap();
    let down = sink.stats();
    assert!(!down.connected, "{down:#?}");
    assert!(
        down.spool.depth >= 100,
        "the spool holds the backlog: {down:#?}"
    );
    assert!(down.last_error.is_some());

    broker.restart();
    sub.wait_until("every message after the restart", |got| {
        let distinct: HashSet<&[u8]> = got.iter().map(|(_, p)| p.as_slice()).collect();
        distinct.len() >= TOTAL
    })
    .await;
    sender.join().unwrap();
    assert_eq!(
        first_arrivals(&sub.payloads()),
        sent,
        "every id at least once, in order of first arrival"
    );
    let stats = wait_for_stats(&sink, "the backlog to drain", |s| {
        s.spool.depth == 0 && s.connected
    })
    .await;
    assert_eq!(stats.delivered, TOTAL as u64);
    assert_eq!(stats.spool.pushed, TOTAL as u64);
    assert_eq!(stats.spool.overflowed + stats.spool.expired, 0);
    println!(
        "outage: {} duplicates at the subscriber, {} publish attempts for {TOTAL} messages, \
         backlog peaked at >= {}",
        sub.got.len() - TOTAL,
        stats.attempts,
        down.spool.depth
    );
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_keeps_undelivered_messages_across_a_reopen() {
    let port = free_port(); // nothing listens yet
    let dir = tempfile::tempdir().unwrap();
    let first = Sink::start(
        mqtt_config("reopen", port, 1),
        open_spool(dir.path(), SpoolLimits::default()),
    )
    .unwrap();
    let before = ids(0..100);
    send_all(&first, &before);
    let stats = wait_for_stats(&first, "a failed connection attempt", |s| {
        s.last_error.is_some()
    })
    .await;
    assert!(!stats.connected);
    assert_eq!(stats.spool.depth, 100);
    let bytes = stats.spool.bytes;
    first.shutdown().await;
    drop(first); // the last handle on the spool file

    let spool = open_spool(dir.path(), SpoolLimits::default());
    let reopened = spool.stats();
    assert_eq!((reopened.depth, reopened.bytes), (100, bytes));

    let _broker = Mosquitto::on_port(port);
    let mut sub = Subscriber::connect(port, "site/#", None).await;
    let second = Sink::start(mqtt_config("reopen", port, 1), spool).unwrap();
    let after = ids(100..120);
    send_all(&second, &after);
    sub.wait_until("120 messages", |got| got.len() >= 120).await;
    assert_eq!(sub.payloads(), ids(0..120));
    wait_for_stats(&second, "an empty spool", |s| s.spool.depth == 0).await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_older_than_the_ttl_are_expired_and_counted_not_delivered() {
    let port = free_port();
    let limits = SpoolLimits {
        ttl: Duration::from_millis(500),
        ..SpoolLimits::default()
    };
    let sink = Sink::start(
        mqtt_config("ttl", port, 1),
        Spool::in_memory(limits).unwrap(),
    )
    .unwrap();
    for i in 0..10 {
        sink.send("readings/t1", format!("old-{i}").as_bytes())
            .unwrap();
    }
    // the sink expires while it retries the connection
    let stats = wait_for_stats(&sink, "10 expired messages", |s| s.spool.expired == 10).await;
    assert_eq!((stats.spool.depth, stats.spool.bytes), (0, 0));

    let _broker = Mosquitto::on_port(port);
    let mut sub = Subscriber::connect(port, "site/#", None).await;
    sink.send("readings/t1", b"fresh").unwrap();
    sub.wait_until("the fresh message", |got| !got.is_empty())
        .await;
    let stats = wait_for_stats(&sink, "an empty spool", |s| {
        s.spool.depth == 0 && s.delivered == 1
    })
    .await;
    // give a stray old message time to show up, if one was going to
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.drain();
    assert_eq!(sub.payloads(), vec!["fresh".to_string()]);
    assert_eq!((stats.spool.expired, stats.delivered), (10, 1));
    sink.shutdown().await;
}

/// A persistent broker that already knows a subscriber's session (so messages published while
/// the subscriber is still reconnecting are kept for it), stopped: start it with `restart`.
async fn stopped_broker_with_a_subscriber(tag: &str) -> (Mosquitto, Subscriber) {
    let mut broker = Mosquitto::start_with(true);
    let session = format!("{tag}-sub-{}", std::process::id());
    let sub = Subscriber::connect(broker.port, "site/#", Some(&session)).await;
    broker.stop();
    (broker, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_messages_and_counts_the_overflow() {
    let (mut broker, mut sub) = stopped_broker_with_a_subscriber("full").await;
    let port = broker.port;
    let limits = SpoolLimits {
        max_messages: 10,
        ..SpoolLimits::default()
    };
    let sink = Sink::start(
        mqtt_config("full", port, 1),
        Spool::in_memory(limits).unwrap(),
    )
    .unwrap();
    let sent = ids(0..15);
    let results: Vec<_> = sent
        .iter()
        .map(|p| sink.send("readings/t1", p.as_bytes()))
        .collect();
    assert!(results[..10].iter().all(Result::is_ok));
    for r in &results[10..] {
        assert!(
            matches!(r, Err(SpoolError::Full { depth: 10, .. })),
            "{r:?}"
        );
    }
    let stats = sink.stats();
    assert_eq!((stats.spool.depth, stats.spool.overflowed), (10, 5));

    // the ten that were accepted still arrive, the refused five never do
    broker.restart();
    sub.wait_until("10 messages", |got| got.len() >= 10).await;
    wait_for_stats(&sink, "an empty spool", |s| s.spool.depth == 0).await;
    sink.send("readings/t1", b"room again").unwrap();
    sub.wait_until("11 messages", |got| got.len() >= 11).await;
    let mut expected = ids(0..10);
    expected.push("room again".into());
    assert_eq!(sub.payloads(), expected);
    assert_eq!(sink.stats().spool.overflowed, 5);
    sink.shutdown().await;
}

/// Delivery throughput from a pre-filled spool (`cargo test -p outpost-services --test sinks
/// -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn mqtt_sink_throughput_is_reported() {
    let broker = Mosquitto::start();
    let mut sub = Subscriber::connect(broker.port, "site/#", None).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), SpoolLimits::default());
    const TOTAL: usize = 20_000;
    let payloads: Vec<Vec<u8>> = (0..TOTAL).map(|i| vec![(i % 251) as u8; 100]).collect();
    let started = Instant::now();
    for chunk in payloads.chunks(100) {
        let batch: Vec<(&str, &[u8])> = chunk.iter().map(|p| ("bench", &p[..])).collect();
        spool.push_batch(&batch).unwrap();
    }
    let spooled = started.elapsed();
    let started = Instant::now();
    let sink = Sink::start(mqtt_config("throughput", broker.port, 1), spool).unwrap();
    wait_for_stats(&sink, "an empty spool", |s| s.spool.depth == 0).await;
    let drained = started.elapsed();
    sub.wait_until("every message", |got| got.len() >= TOTAL)
        .await;
    let received = started.elapsed();
    println!(
        "{TOTAL} x 100-byte messages spooled with push_batch(100) in {spooled:?} ({:.0} msg/s); \
         delivered from the spool (QoS 1, PUBACKed, removed from the spool) in {drained:?} \
         ({:.0} msg/s); all at the subscriber after {received:?}",
        TOTAL as f64 / spooled.as_secs_f64(),
        TOTAL as f64 / drained.as_secs_f64(),
    );
    sink.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// webhooks

#[derive(Default)]
struct Hook {
    /// Requests seen.
    requests: usize,
    /// Answer 503 to this many first requests.
    fail_first: usize,
    /// Answer 400 to this payload.
    poison: Option<Vec<u8>>,
    /// Accepted (topic header, payload), in order.
    accepted: Vec<(String, Vec<u8>)>,
    /// (path, authorization header) of the last request.
    last: Option<(String, Option<String>)>,
}

/// A local HTTP server acting as a webhook; returns its URL and state.
async fn webhook_server(hook: Hook) -> (String, Arc<Mutex<Hook>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    (url, serve_hook(listener, hook))
}

/// Serves `hook` on `listener` until the test ends.
fn serve_hook(listener: tokio::net::TcpListener, hook: Hook) -> Arc<Mutex<Hook>> {
    let hook = Arc::new(Mutex::new(hook));
    let state = hook.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let status = answer(&state, req).await;
                            let response = hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    hook
}

async fn answer(state: &Mutex<Hook>, req: hyper::Request<hyper::body::Incoming>) -> u16 {
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let topic = header("x-outpost-topic").unwrap_or_default();
    let auth = header("authorization");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut hook = state.lock().unwrap();
    hook.requests += 1;
    hook.last = Some((path, auth));
    if hook.requests <= hook.fail_first {
        503
    } else if hook.poison.as_deref() == Some(&body[..]) {
        400
    } else {
        hook.accepted.push((topic, body.to_vec()));
        200
    }
}

fn webhook_config(name: &str, url: &str) -> SinkConfig {
    let mut config = SinkConfig::new(
        name,
        SinkTarget::Webhook {
            url: url.into(),
            headers: vec![("authorization".into(), "Bearer test-token".into())],
            timeout: Duration::from_secs(20),
        },
    );
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    config
}

async fn wait_for_accepted(hook: &Mutex<Hook>, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while hook.lock().unwrap().accepted.len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} accepted webhook requests"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_503_at_first_receives_every_message_exactly_once_in_order() {
    let (url, hook) = webhook_server(Hook {
        fail_first: 5,
        ..Hook::default()
    })
    .await;
    let sink = Sink::start(
        webhook_config("hook", &url),
        Spool::in_memory(SpoolLimits::default()).unwrap(),
    )
    .unwrap();
    let sent = ids(0..50);
    for (i, p) in sent.iter().enumerate() {
        sink.send(&format!("readings/{}", i % 3), p.as_bytes())
            .unwrap();
    }
    wait_for_accepted(&hook, 50).await;
    let stats = wait_for_stats(&sink, "an empty spool", |s| s.spool.depth == 0).await;
    let (accepted, requests, last) = {
        let hook = hook.lock().unwrap();
        let accepted: Vec<(String, String)> = hook
            .accepted
            .iter()
            .map(|(t, p)| (t.clone(), String::from_utf8(p.clone()).unwrap()))
            .collect();
        (accepted, hook.requests, hook.last.clone())
    };
    let expected: Vec<(String, String)> = sent
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("readings/{}", i % 3), p.clone()))
        .collect();
    assert_eq!(accepted, expected);
    assert_eq!(
        last,
        Some(("/ingest".into(), Some("Bearer test-token".into())))
    );
    assert_eq!(requests, 55);
    assert_eq!(
        (stats.delivered, stats.rejected, stats.attempts),
        (50, 0, 55)
    );
    assert!(stats.connected);
    assert!(
        stats.last_error.as_deref().unwrap().contains("503"),
        "{stats:#?}"
    );
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_400_rejects_the_poison_message_and_the_rest_still_arrive() {
    let (url, hook) = webhook_server(Hook {
        poison: Some(b"poison".to_vec()),
        ..Hook::default()
    })
    .await;
    let sink = Sink::start(
        webhook_config("poison", &url),
        Spool::in_memory(SpoolLimits::default()).unwrap(),
    )
    .unwrap();
    for p in ["a", "b", "poison", "c", "d"] {
        sink.send("t", p.as_bytes()).unwrap();
    }
    wait_for_accepted(&hook, 4).await;
    let stats = wait_for_stats(&sink, "an empty spool", |s| s.spool.depth == 0).await;
    let accepted: Vec<Vec<u8>> = hook
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(accepted, [&b"a"[..], b"b", b"c", b"d"]);
    assert_eq!((stats.delivered, stats.rejected), (4, 1));
    assert_eq!(
        stats.spool.delivered, 5,
        "the poison message left the spool"
    );
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_is_down_gets_the_backlog_once_it_is_up() {
    // reserve a port, start the sink against it while nothing listens
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/ingest");
    let sink = Sink::start(
        webhook_config("late", &url),
        Spool::in_memory(SpoolLimits::default()).unwrap(),
    )
    .unwrap();
    sink.send("t", b"early").unwrap();
    let stats = wait_for_stats(&sink, "a failed request", |s| s.last_error.is_some()).await;
    assert!(!stats.connected);
    assert_eq!(stats.spool.depth, 1);
    // now bring the webhook up on that address
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let hook = serve_hook(listener, Hook::default());
    sink.send("t", b"late").unwrap();
    wait_for_accepted(&hook, 2).await;
    let stats = wait_for_stats(&sink, "connected and drained", |s| {
        s.connected && s.spool.depth == 0
    })
    .await;
    assert_eq!(stats.delivered, 2);
    let accepted: Vec<Vec<u8>> = hook
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(accepted, [&b"early"[..], b"late"]);
    sink.shutdown().await;
}
