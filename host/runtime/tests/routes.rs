//! Routes end to end: sources (bus topics, timers, a plugin's output) through pipelines to real
//! sinks: a mosquitto broker started by the test, and a local HTTP server as a webhook.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions, EngineSettings};

#[path = "../../services/tests/support/mqtt.rs"]
mod mqtt;
use mqtt::{Mosquitto, PATIENCE, Subscriber};

fn artifacts_dir() -> PathBuf {
    Path::new(outpost_artifacts::ECHO_PIPELINE)
        .parent()
        .unwrap()
        .to_path_buf()
}

async fn start(dir: &Path, text: &str) -> Arc<Appliance> {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs.push(artifacts_dir());
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts.engine = EngineSettings {
        instance_slots: 16,
        ..EngineSettings::default()
    };
    Appliance::start(Manifest::load(&path).unwrap(), opts)
        .await
        .unwrap()
}

const ECHO: &str = r#"
[plugins.echo]
kind = "pipeline"
component = "echo_pipeline.wasm"
config = { output-topic = "out/echo", uppercase = "true", count = "true" }
grants.bus = { publish = ["out/echo"] }
grants.kv = { quota_kb = 16 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelines_output_reaches_mosquitto_through_a_route_even_across_a_broker_restart() {
    let mut broker = Mosquitto::start_with(true);
    let mut sub = Subscriber::connect(broker.port, "site-1/#", Some("route-test-sub")).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{ECHO}
[sinks.cloud]
kind = "mqtt"
url = "mqtt://127.0.0.1:{port}"
topic_prefix = "site-1/"

[[routes]]
from = "topics/in"
to = "plugins/echo"

[[routes]]
from = "plugins/echo/out/#"
to = "sinks/cloud"
"#,
        port = broker.port
    );
    let app = start(dir.path(), &text).await;
    let ids: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    let send = |range: std::ops::Range<usize>| {
        for id in &ids[range] {
            app.bus()
                .publish("camera", "in", id.as_bytes().to_vec())
                .unwrap();
        }
    };
    let expected =
        |n: usize| -> Vec<String> { ids[..n].iter().map(|s| s.to_uppercase()).collect() };
    send(0..100);
    sub.wait_until("the first 100", |got| got.len() >= 100)
        .await;
    broker.stop();
    send(100..200);
    // While the broker is down the messages wait in the sink's spool.
    let until = Instant::now() + PATIENCE;
    loop {
        let m = app.metrics().await;
        let cloud = &m.sinks[0];
        if !cloud.connected && cloud.spool.depth > 0 {
            break;
        }
        assert!(Instant::now() < until, "never saw the backlog: {cloud:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.restart();
    send(200..300);
    let want = expected(300);
    sub.wait_until("every message at least once", |got| {
        let seen: std::collections::HashSet<&[u8]> =
            got.iter().map(|(_, p)| p.as_slice()).collect();
        want.iter().all(|w| seen.contains(w.as_bytes()))
    })
    .await;
    // Order of first arrival is the order they were sent; every topic carries the prefix.
    let mut first = Vec::new();
    for p in sub.payloads() {
        if !first.contains(&p) {
            first.push(p);
        }
    }
    assert_eq!(first, want);
    assert!(sub.got.iter().all(|(t, _)| t == "site-1/out/echo"));
    let until = Instant::now() + PATIENCE;
    loop {
        let m = app.metrics().await;
        if m.sinks[0].spool.depth == 0 {
            assert!(m.sinks[0].delivered >= 300);
            assert_eq!(m.routes[1].forwarded, 300, "{:?}", m.routes);
            break;
        }
        assert!(
            Instant::now() < until,
            "spool never drained: {:?}",
            m.sinks[0]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await;
}

/// A webhook that refuses its first `refuse` requests with 503 and records the rest.
async fn webhook(refuse: usize) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let state = got.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (got, refused) = (state.clone(), refused.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (got, refused) = (got.clone(), refused.clone());
                        async move {
                            let topic = req
                                .headers()
                                .get("x-outpost-topic")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                            let status = {
                                let mut r = refused.lock().unwrap();
                                if *r < refuse {
                                    *r += 1;
                                    503
                                } else {
                                    got.lock().unwrap().push((topic, body));
                                    200
                                }
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_drives_a_pipeline_whose_output_a_webhook_receives_in_order() {
    let (url, got) = webhook(2).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{ECHO}
[timers.tick]
every_ms = 50
payload = "tick"

[sinks.hook]
kind = "webhook"
url = "{url}"

[[routes]]
from = "timers/tick"
to = "plugins/echo"

[[routes]]
from = "plugins/echo"
to = "sinks/hook"
"#
    );
    let app = start(dir.path(), &text).await;
    let until = Instant::now() + PATIENCE;
    while got.lock().unwrap().len() < 5 {
        assert!(Instant::now() < until, "the webhook never got 5 messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = got.lock().unwrap().clone();
    assert!(
        received
            .iter()
            .all(|(t, b)| t == "out/echo" && b == b"TICK"),
        "{received:?}"
    );
    let m = app.metrics().await;
    assert_eq!(m.sinks[0].name, "hook");
    assert!(
        m.sinks[0].attempts >= m.sinks[0].delivered,
        "{:?}",
        m.sinks[0]
    );
    // The echo plugin counted every tick it handled in its kv namespace.
    let echo = app.status().into_iter().find(|p| p.name == "echo").unwrap();
    assert!(echo.stats.calls >= 5);

    // Removing the timer's route (and the timer) stops the ticks.
    let quiet = format!(
        "{ECHO}\n[sinks.hook]\nkind = \"webhook\"\nurl = \"{url}\"\n\n[[routes]]\nfrom = \"plugins/echo\"\nto = \"sinks/hook\"\n"
    );
    let path = dir.path().join("outpost.toml");
    std::fs::write(&path, &quiet).unwrap();
    let report = app
        .apply(Manifest::load(&path).unwrap(), None, false)
        .await
        .unwrap();
    assert!(report.changed && report.plugins.is_empty(), "{report:?}");
    let calls = app
        .status()
        .into_iter()
        .find(|p| p.name == "echo")
        .unwrap()
        .stats
        .calls;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = app
        .status()
        .into_iter()
        .find(|p| p.name == "echo")
        .unwrap()
        .stats
        .calls;
    assert_eq!(calls, later, "no ticks after the timer was removed");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_target_plugin_fails_counts_a_failure_not_a_forward() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[plugins.echo]
kind = "pipeline"
component = "echo_pipeline.wasm"
config = { output-topic = "out/echo", count = "true" }
grants.bus = { publish = ["out/echo"] }
grants.kv = { quota_kb = 1 }

[[routes]]
from = "topics/in"
to = "plugins/echo"
"#;
    let app = start(dir.path(), text).await;
    // A full kv namespace: the echo's count update fails, and so does its call.
    app.kv()
        .namespace("echo", 1024)
        .set("fill", &[0; 1020])
        .unwrap();
    app.bus().publish("camera", "in", b"x".to_vec()).unwrap();
    let until = Instant::now() + PATIENCE;
    let route = loop {
        let m = app.metrics().await;
        let r = m.routes[0].clone();
        if r.forwarded + r.failed > 0 {
            break r;
        }
        assert!(Instant::now() < until, "the route never took the message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((route.forwarded, route.failed), (0, 1), "{route:?}");
    let echo = app.status().into_iter().find(|p| p.name == "echo").unwrap();
    assert_eq!((echo.stats.calls, echo.stats.errors), (1, 1));
    app.shutdown().await;
}
