//! The appliance end to end: a manifest with real plugins, driven through the bus and HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_manifest::{Manifest, TopicPattern};
use outpost_runtime::{Appliance, ApplianceOptions, EngineSettings};

fn manifest(dir: &Path, text: &str) -> Manifest {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    Manifest::load(&path).unwrap()
}

fn artifacts_dir() -> std::path::PathBuf {
    Path::new(outpost_artifacts::ECHO_PIPELINE)
        .parent()
        .unwrap()
        .to_path_buf()
}

async fn start(dir: &Path, text: &str) -> Arc<Appliance> {
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs.push(artifacts_dir());
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts.engine = EngineSettings {
        instance_slots: 16,
        ..EngineSettings::default()
    };
    Appliance::start(manifest(dir, text), opts).await.unwrap()
}

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

const DEMO: &str = r#"
[plugins.echo]
kind = "pipeline"
component = "echo_pipeline.wasm"
config = { output-topic = "out/echo", uppercase = "true", count = "true" }
grants.bus = { subscribe = ["in/#"], publish = ["out/echo"] }
grants.kv = { quota_kb = 16 }

[plugins.hello]
kind = "http"
component = "hello_http.wasm"
route = "/hello"

[plugins.greeter]
kind = "job"
component = "hello-job.wasm"
args = ["ls", "/config"]
grants.dirs = [{ host = ".", guest = "/config", mode = "ro" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_receives_bus_messages_and_publishes_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), DEMO).await;
    let mut out = app
        .bus()
        .subscribe("test", vec![TopicPattern::parse("out/#").unwrap()], 16);
    for word in ["one", "two", "three"] {
        app.bus()
            .publish("test", "in/words", word.as_bytes().to_vec())
            .unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), out.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.topic, "out/echo");
        assert_eq!(msg.source, "echo");
        assert_eq!(msg.payload, word.to_uppercase().as_bytes());
    }
    // The plugin's counter lives in the host's kv, not in the (per-call) instance.
    let count = app
        .kv()
        .namespace("echo", 16 << 10)
        .get("count")
        .unwrap()
        .unwrap();
    assert_eq!(u64::from_le_bytes(count.try_into().unwrap()), 3);
    let status = app.status();
    let echo = status.iter().find(|p| p.name == "echo").unwrap();
    assert_eq!(
        (echo.state.as_str(), echo.stats.calls, echo.stats.errors),
        ("running", 3, 0)
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_plugins_answer_under_their_route_and_nothing_else_is_served_there() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), DEMO).await;
    let addr = app.http_addr().unwrap();
    let resp = http(
        addr,
        "GET /hello/world?x=1 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("hello from outpost: GET /hello/world?x=1\n"),
        "{resp}"
    );
    let resp = http(
        addr,
        "GET /hello/missing HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "a /hello/... path is the plugin's to answer: {resp}"
    );
    let resp = http(
        addr,
        "GET /nothing HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    // The management API lives on its own authenticated listener, not next to the plugins.
    let resp = http(
        addr,
        "GET /v1/status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_once_and_reports_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), DEMO).await;
    let mut state = String::new();
    for _ in 0..200 {
        let s = app
            .status()
            .into_iter()
            .find(|p| p.name == "greeter")
            .unwrap();
        state = s.state.clone();
        assert_ne!(state, "failed", "{:?}", s.stats.last_error);
        if state != "running" {
            assert_eq!(s.exit_code, Some(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "completed");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_cannot_load_is_reported_failed_while_the_others_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[plugins.greedy]
kind = "pipeline"
component = "echo_pipeline.wasm"
grants.bus = { subscribe = ["in"] }

[plugins.missing]
kind = "pipeline"
component = "no-such-plugin.wasm"

[plugins.wrong-kind]
kind = "http"
component = "echo_pipeline.wasm"
route = "/x"

[plugins.fine]
kind = "http"
component = "hello_http.wasm"
route = "/"
"#;
    let app = start(dir.path(), text).await;
    let status: std::collections::BTreeMap<_, _> = app
        .status()
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let err = |n: &str| status[n].last_error.clone().unwrap_or_default();
    assert_eq!(status["greedy"].state, "failed");
    assert!(
        err("greedy")
            .contains("imports `outpost:plugin/kv@0.1.0` but is not granted a kv namespace"),
        "{}",
        err("greedy")
    );
    assert_eq!(status["missing"].state, "failed");
    assert!(
        err("missing").contains("no-such-plugin.wasm` not found"),
        "{}",
        err("missing")
    );
    assert_eq!(status["wrong-kind"].state, "failed");
    assert!(
        err("wrong-kind").contains("implements the pipeline world"),
        "{}",
        err("wrong-kind")
    );
    assert_eq!(status["fine"].state, "running");
    let resp = http(
        app.http_addr().unwrap(),
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pipeline_is_swapped_health_checked_and_rolled_back_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[plugins.svc]
kind = "pipeline"
component = "versioned.wasm"
version = "1"
config = { version = "v1" }
grants.bus = { subscribe = ["in"], publish = ["reply"] }
grants.kv = { quota_kb = 16 }
health = { topic = "health" }
"#;
    let app = start(dir.path(), text).await;
    let mut replies = app
        .bus()
        .subscribe("test", vec![TopicPattern::parse("reply").unwrap()], 16);
    let mut ask = async |payload: &str| {
        app.bus()
            .publish("test", "in", payload.as_bytes().to_vec())
            .unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), replies.recv())
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(msg.payload).unwrap()
    };
    assert_eq!(ask("a").await, "v1:a");

    let component = artifacts_dir().join("versioned.wasm");
    let config = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    app.swap(
        "svc",
        &component,
        Some("2".into()),
        config(&[("version", "v2")]),
    )
    .await
    .unwrap();
    assert_eq!(ask("b").await, "v2:b");

    let err = app
        .swap(
            "svc",
            &component,
            Some("3".into()),
            config(&[("version", "v3"), ("healthy", "false")]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("failed its health check"), "{err}");
    assert_eq!(ask("c").await, "v2:c");

    let status = app.status().into_iter().find(|p| p.name == "svc").unwrap();
    assert_eq!(
        (
            status.actual.version.as_deref(),
            status.swaps,
            status.rollbacks
        ),
        (Some("2"), 1, 0)
    );
    assert_eq!(status.desired.version.as_deref(), Some("3"));
    assert_eq!(
        status.state, "degraded",
        "the desired version is not serving"
    );
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("health check")),
        "{:?}",
        status.last_error
    );

    app.rollback("svc").unwrap();
    assert_eq!(ask("d").await, "v1:d");
    let status = app.status().into_iter().find(|p| p.name == "svc").unwrap();
    assert_eq!(
        (
            status.actual.version.as_deref(),
            status.state.as_str(),
            status.rollbacks
        ),
        (Some("1"), "rolled-back", 1)
    );
    app.shutdown().await;
}

/// Sends this test binary's log to the host's in-memory log (what the web UI and `/v1/logs`
/// read), as the `outpost` binary does.
fn capture_host_log() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(outpost_runtime::logs::layer())
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_log_topics_are_written_to_the_host_log_from_the_first_start() {
    capture_host_log();
    let dir = tempfile::tempdir().unwrap();
    // The demo's shape: log topics and a pipeline, but no routes, timers or sinks.
    let text = r#"
[host]
log_topics = ["logged/out"]

[plugins.echo]
kind = "pipeline"
component = "echo_pipeline.wasm"
config = { output-topic = "logged/out", uppercase = "true" }
grants.bus = { subscribe = ["logged/in"], publish = ["logged/out"] }
grants.kv = { quota_kb = 16 }
"#;
    let app = start(dir.path(), text).await;
    let subscribers = app.metrics().await.subscribers;
    assert!(
        subscribers.iter().any(|s| s.name == "host-log"),
        "no host-log subscriber: {subscribers:?}"
    );
    app.bus()
        .publish("test", "logged/in", b"hello log topics".to_vec())
        .unwrap();
    let logged = |r: &outpost_runtime::logs::LogRecord| {
        r.message == "bus message"
            && r.fields.contains("topic=logged/out")
            && r.fields.contains("source=echo")
            && r.fields.contains("payload=HELLO LOG TOPICS")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !outpost_runtime::logs::buffer()
        .query(&Default::default())
        .iter()
        .any(logged)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the echo's output never reached the host log: {:?}",
            app.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_subscribed_to_its_own_output_topic_is_not_called_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    // `loop/#` matches the echo's own output topic `loop/out`.
    let text = r#"
[plugins.echo]
kind = "pipeline"
component = "echo_pipeline.wasm"
config = { output-topic = "loop/out", count = "true" }
grants.bus = { subscribe = ["loop/#"], publish = ["loop/out"] }
grants.kv = { quota_kb = 16 }
"#;
    let app = start(dir.path(), text).await;
    let mut out = app
        .bus()
        .subscribe("test", vec![TopicPattern::parse("loop/out").unwrap()], 16);
    // The echo handles its queue in order: once the second input's output is here, its own
    // first output (queued before the second input) has been dealt with too.
    for word in ["one", "two"] {
        app.bus()
            .publish("test", "loop/in", word.as_bytes().to_vec())
            .unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), out.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((msg.source.as_str(), msg.payload), ("echo", word.into()));
    }
    let echo = app.status().into_iter().find(|p| p.name == "echo").unwrap();
    assert_eq!(echo.stats.calls, 2, "called on its own output");
    let count = app
        .kv()
        .namespace("echo", 16 << 10)
        .get("count")
        .unwrap()
        .unwrap();
    assert_eq!(u64::from_le_bytes(count.try_into().unwrap()), 2);
    app.shutdown().await;
}
