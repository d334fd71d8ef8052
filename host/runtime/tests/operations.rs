//! Operating a running host: the management API (TLS, tokens, roles, OpenAPI), desired-state
//! applies, rollback, metrics, and the restart policy of jobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use outpost_manifest::Manifest;
use outpost_runtime::api::{ApiInfo, ENDPOINTS};
use outpost_runtime::{Appliance, ApplianceOptions, EngineSettings};
use outpost_security::{Access, ApiClient, Role, TOKENS_FILE, TokenStore};

fn artifacts_dir() -> PathBuf {
    Path::new(outpost_artifacts::ECHO_PIPELINE)
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Host {
    app: Arc<Appliance>,
    api: ApiInfo,
    dir: tempfile::TempDir,
}

impl Host {
    async fn start(text: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outpost.toml");
        std::fs::write(&path, text).unwrap();
        let manifest = Manifest::load(&path).unwrap();
        let mut opts = ApplianceOptions::new(dir.path().join("data"));
        opts.plugin_dirs.push(artifacts_dir());
        opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
        opts.engine = EngineSettings {
            instance_slots: 64,
            ..EngineSettings::default()
        };
        opts.manifest_text = Some(text.to_string());
        let app = Appliance::start(manifest, opts).await.unwrap();
        let api = outpost_runtime::api::start(app.clone(), "127.0.0.1:0".parse().unwrap(), true)
            .await
            .unwrap();
        Host { app, api, dir }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn client(&self, token: Option<String>) -> ApiClient {
        ApiClient::new(
            &format!("https://{}", self.api.addr),
            token,
            self.api.ca_pem.clone(),
        )
        .unwrap()
    }

    fn admin(&self) -> ApiClient {
        self.client(self.api.new_admin_token.clone())
    }

    fn token(&self, name: &str, role: Role) -> String {
        let mut store = TokenStore::open(&self.data_dir().join(TOKENS_FILE)).unwrap();
        store.add(name, role).unwrap()
    }

    /// Writes `text` next to the first manifest and applies it through the API.
    async fn apply(&self, text: &str) -> serde_json::Value {
        let resp = self
            .admin()
            .put("/v1/manifest", text.as_bytes().to_vec(), "application/toml")
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        serde_json::from_slice(&resp.body).unwrap()
    }

    async fn status(&self) -> serde_json::Value {
        self.admin().get_json("/v1/status").await.unwrap()
    }
}

fn plugin<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {status:#}"))
}

const BASE: &str = r#"
[plugins.svc]
kind = "pipeline"
component = "versioned.wasm"
version = "1"
config = { version = "v1" }
grants.bus = { subscribe = ["in"], publish = ["reply"] }
grants.kv = { namespace = "svc", quota_kb = 64 }
health = { topic = "health" }
rollback = { max_failures = 2, window_ms = 60000 }

[plugins.hello]
kind = "http"
component = "hello_http.wasm"
route = "/hello"
"#;

/// A concrete path for a route template.
fn concrete(path: &str) -> String {
    path.replace("{name}", "svc").replace("{topic}", "in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_refuses_no_token_with_401_and_a_viewer_writing_with_403() {
    let host = Host::start(BASE).await;
    let viewer = host.client(Some(host.token("grafana", Role::Viewer)));
    let ingest = host.client(Some(host.token("camera", Role::Ingest)));
    let anonymous = host.client(None);
    let forged = host.client(Some("opt_not-a-real-token".into()));
    let mut checked = 0;
    for ep in ENDPOINTS {
        let method = Method::from_bytes(ep.method.as_bytes()).unwrap();
        let path = concrete(ep.path);
        let body = ep.consumes.map(|ct| (b"x".to_vec(), ct));
        let Some(access) = ep.access else {
            let resp = anonymous.request(method, &path, body).await.unwrap();
            assert_eq!(resp.status, 200, "{} {path} is open", ep.method);
            continue;
        };
        for client in [&anonymous, &forged] {
            let resp = client
                .request(method.clone(), &path, body.clone())
                .await
                .unwrap();
            assert_eq!(
                resp.status, 401,
                "{} {path} without a valid token",
                ep.method
            );
        }
        let by_viewer = viewer
            .request(method.clone(), &path, body.clone())
            .await
            .unwrap();
        match access {
            // Authorised: whatever the route answers (a route may have nothing to show, 404),
            // it is not an authorisation refusal.
            Access::Read => assert!(
                ![401, 403].contains(&by_viewer.status),
                "viewer reads {path}: {}",
                by_viewer.status
            ),
            Access::Write | Access::Ingest => {
                assert_eq!(by_viewer.status, 403, "viewer may not {} {path}", ep.method)
            }
        }
        let by_ingest = ingest.request(method, &path, body).await.unwrap();
        match access {
            Access::Ingest => assert!(
                ![401, 403].contains(&by_ingest.status),
                "ingest token writes {path}: {}",
                by_ingest.status
            ),
            _ => assert_eq!(
                by_ingest.status, 403,
                "ingest token may not {} {path}",
                ep.method
            ),
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} authenticated routes");
    // The refused writes changed nothing.
    assert_eq!(plugin(&host.status().await, "svc")["rollbacks"], 0);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_lists_every_route() {
    let host = Host::start(BASE).await;
    let resp = host
        .admin()
        .request(Method::GET, "/v1/openapi.json", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let doc: openapiv3::OpenAPI = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("not an OpenAPI 3.0 document: {e}"));
    assert!(doc.openapi.starts_with("3.0"));
    let mut listed = 0;
    for (path, item) in doc.paths.iter() {
        let item = item.as_item().unwrap();
        for (method, op) in item.iter() {
            listed += 1;
            let ep = ENDPOINTS
                .iter()
                .find(|e| e.path == path && e.method.eq_ignore_ascii_case(method))
                .unwrap_or_else(|| panic!("{method} {path} is documented but not served"));
            assert!(op.operation_id.is_some() && op.summary.is_some());
            if ep.access.is_some() {
                assert!(
                    op.responses
                        .responses
                        .contains_key(&openapiv3::StatusCode::Code(401))
                );
            }
            // Every documented path parameter is in the path template.
            for p in &op.parameters {
                if let openapiv3::ReferenceOr::Item(openapiv3::Parameter::Path {
                    parameter_data,
                    ..
                }) = p
                {
                    assert!(path.contains(&format!("{{{}}}", parameter_data.name)));
                }
            }
        }
    }
    assert_eq!(listed, ENDPOINTS.len(), "every served route is documented");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_same_manifest_twice_changes_nothing() {
    let host = Host::start(BASE).await;
    let before = host.status().await;
    let report = host.apply(BASE).await;
    assert_eq!(report["changed"], false, "{report:#}");
    assert_eq!(report["plugins"].as_array().unwrap().len(), 0);
    assert_eq!(report["unchanged"].as_array().unwrap().len(), 2);
    let report = host.apply(BASE).await;
    assert_eq!(report["changed"], false, "{report:#}");
    let after = host.status().await;
    for name in ["svc", "hello"] {
        let (b, a) = (plugin(&before, name), plugin(&after, name));
        assert_eq!(a["actual"], b["actual"]);
        assert_eq!(a["swaps"], 0);
        assert_eq!(a["state"], "running");
    }
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_manifest_changes_nothing_and_the_error_names_the_field() {
    let host = Host::start(BASE).await;
    let bad = BASE.replace("quota_kb = 64", "quota_kb = \"lots\"");
    let resp = host
        .admin()
        .put("/v1/manifest", bad.into_bytes(), "application/toml")
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    let err: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(err["line"], 8, "{err:#}");
    assert!(
        err["error"].as_str().unwrap().contains("\"lots\""),
        "{err:#}"
    );
    let bad = BASE.replace("route = \"/hello\"", "route = \"hello\"");
    let resp = host
        .admin()
        .put("/v1/manifest", bad.into_bytes(), "application/toml")
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    assert!(String::from_utf8_lossy(&resp.body).contains("plugins.hello.route"));
    let status = host.status().await;
    assert_eq!(plugin(&status, "svc")["swaps"], 0);
    assert_eq!(plugin(&status, "hello")["state"], "running");
    let served = host
        .admin()
        .request(Method::GET, "/v1/manifest", None)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&served.body),
        BASE,
        "the running manifest is unchanged"
    );
    host.app.shutdown().await;
}

async fn ask(app: &Appliance, topic: &str, payload: &str) -> String {
    let slot = app.slot("svc").unwrap();
    let out = slot.handle(topic, payload.as_bytes()).await.unwrap();
    String::from_utf8(out.into_iter().next().unwrap().payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_adds_removes_and_reconfigures_with_the_fewest_changes_keeping_state() {
    let host = Host::start(BASE).await;
    assert_eq!(ask(&host.app, "remember", "state-1").await, "v1");
    let next = BASE
        .replace("version = \"1\"", "version = \"2\"")
        .replace("config = { version = \"v1\" }", "config = { version = \"v2\" }")
        .replace(
            "[plugins.hello]\nkind = \"http\"\ncomponent = \"hello_http.wasm\"\nroute = \"/hello\"\n",
            "[plugins.echo]\nkind = \"pipeline\"\ncomponent = \"echo_pipeline.wasm\"\ngrants.kv = { quota_kb = 16 }\n",
        );
    let plan = host
        .admin()
        .put(
            "/v1/manifest?dry_run=true",
            next.clone().into_bytes(),
            "application/toml",
        )
        .await
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["changed"], true);
    assert_eq!(
        ask(&host.app, "call", "x").await,
        "v1:x",
        "a dry run changes nothing"
    );

    let report = host.apply(&next).await;
    assert_eq!(report["succeeded"], true, "{report:#}");
    let actions: Vec<(String, String)> = report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["plugin"].as_str().unwrap().into(),
                c["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("hello".to_string(), "remove".to_string()),
            ("echo".into(), "add".into()),
            ("svc".into(), "update".into())
        ]
    );
    let svc_fields = &report["plugins"][2]["fields"];
    assert_eq!(*svc_fields, serde_json::json!(["version", "config"]));
    // The new version starts with the old one's state.
    assert_eq!(ask(&host.app, "recall", "").await, "v2:state-1");
    let status = host.status().await;
    assert_eq!(plugin(&status, "svc")["actual"]["version"], "2");
    assert_eq!(plugin(&status, "svc")["swaps"], 1);
    assert_eq!(plugin(&status, "echo")["state"], "running");
    assert!(
        status["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "hello")
    );
    let addr = host.app.http_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 404"),
        "a removed route is gone: {resp}"
    );

    // Taking the kv grant away is refused at load, so the old version keeps serving.
    let regrant = next.replace("grants.kv = { namespace = \"svc\", quota_kb = 64 }\n", "");
    let report = host.apply(&regrant).await;
    assert_eq!(report["succeeded"], false, "{report:#}");
    let change = &report["plugins"][0];
    assert_eq!(change["plugin"], "svc");
    assert!(
        change["fields"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("grants"))
    );
    assert!(
        change["error"].as_str().unwrap().contains("kv"),
        "{change:#}"
    );
    let status = host.status().await;
    assert_eq!(plugin(&status, "svc")["state"], "degraded");
    assert_eq!(ask(&host.app, "recall", "").await, "v2:state-1");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_applies_under_sustained_load_fail_no_call_and_keep_the_state() {
    let host = Arc::new(Host::start(BASE).await);
    assert_eq!(ask(&host.app, "remember", "kept").await, "v1");
    let v2 = BASE.replace("version = \"1\"", "version = \"2\"").replace(
        "config = { version = \"v1\" }",
        "config = { version = \"v2\" }",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, from_v1, from_v2) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut drivers = Vec::new();
    for d in 0..6 {
        let (host, stop, ok, a1, a2) = (
            host.clone(),
            stop.clone(),
            ok.clone(),
            from_v1.clone(),
            from_v2.clone(),
        );
        drivers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("{d}-{i}");
                // Look the slot up per call, as the bus consumer and http front door do.
                let reply = ask(&host.app, "call", &payload).await;
                match reply.split_once(':') {
                    Some(("v1", p)) if p == payload => a1.fetch_add(1, Ordering::Relaxed),
                    Some(("v2", p)) if p == payload => a2.fetch_add(1, Ordering::Relaxed),
                    _ => panic!("reply {reply:?} is not from exactly one version"),
                };
                ok.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let started = Instant::now();
    let mut apply_ms = Vec::new();
    for n in 0..20 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let text = if n % 2 == 0 { v2.as_str() } else { BASE };
        let t = Instant::now();
        let report = host.apply(text).await;
        apply_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(report["succeeded"], true, "{report:#}");
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        d.await.expect("no call failed");
    }
    let secs = started.elapsed().as_secs_f64();
    let calls = ok.load(Ordering::Relaxed);
    apply_ms.sort_by(f64::total_cmp);
    println!(
        "{calls} calls in {secs:.2} s ({:.0}/s) across 20 applies (median apply {:.1} ms over the API), 0 failed",
        calls as f64 / secs,
        apply_ms[10]
    );
    assert!(from_v1.load(Ordering::Relaxed) > 0 && from_v2.load(Ordering::Relaxed) > 0);
    let status = host.status().await;
    assert_eq!(plugin(&status, "svc")["swaps"], 20);
    assert_eq!(ask(&host.app, "recall", "").await, "v1:kept");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_version_is_rolled_back_automatically_and_status_and_metrics_show_it() {
    let host = Host::start(BASE).await;
    let bad = BASE.replace("version = \"1\"", "version = \"2\"").replace(
        "config = { version = \"v1\" }",
        "config = { version = \"v2\", trap-every = \"10\" }",
    );
    assert_eq!(host.apply(&bad).await["succeeded"], true);
    let mut rolled_back_after = None;
    for i in 1..=40 {
        let slot = host.app.slot("svc").unwrap();
        let _ = slot.handle("call", b"x").await;
        if slot.active().version() == Some("1") {
            rolled_back_after = Some(i);
            break;
        }
    }
    // The health probe was call 1 of the kv counter, so the traps land on our calls 9, 19 and
    // 29; max_failures = 2 tolerates two and the third rolls back.
    assert_eq!(rolled_back_after, Some(29));
    let status = host.status().await;
    let svc = plugin(&status, "svc");
    assert_eq!(svc["state"], "rolled-back", "{svc:#}");
    assert_eq!(svc["actual"]["version"], "1");
    assert_eq!(svc["desired"]["version"], "2");
    let last = svc["events"].as_array().unwrap().last().unwrap();
    assert_eq!(last["event"], "rolled-back");
    assert_eq!(last["automatic"], true);
    let metrics = host
        .admin()
        .request(Method::GET, "/metrics", None)
        .await
        .unwrap();
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("outpost_plugin_rollbacks_total{plugin=\"svc\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("outpost_plugin_swaps_total{plugin=\"svc\"} 1"),
        "{text}"
    );
    assert!(text.contains("state=\"rolled-back\""), "{text}");

    // A version that fails its health check never serves.
    let sick = BASE.replace("version = \"1\"", "version = \"3\"").replace(
        "config = { version = \"v1\" }",
        "config = { version = \"v3\", healthy = \"false\" }",
    );
    let report = host.apply(&sick).await;
    assert_eq!(report["succeeded"], false);
    assert!(
        report["plugins"][0]["error"]
            .as_str()
            .unwrap()
            .contains("health check")
    );
    assert_eq!(ask(&host.app, "call", "y").await, "v1:y");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_endpoint_restores_the_previous_version_or_says_there_is_none() {
    let host = Host::start(BASE).await;
    let resp = host
        .admin()
        .request(Method::POST, "/v1/plugins/svc/rollback", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 409, "nothing to roll back to yet");
    let v2 = BASE.replace(
        "config = { version = \"v1\" }",
        "config = { version = \"v2\" }",
    );
    host.apply(&v2).await;
    assert_eq!(ask(&host.app, "call", "a").await, "v2:a");
    let resp = host
        .admin()
        .request(Method::POST, "/v1/plugins/svc/rollback", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(ask(&host.app, "call", "b").await, "v1:b");
    let resp = host
        .admin()
        .request(Method::POST, "/v1/plugins/nope/rollback", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 404);
    let one: serde_json::Value = host.admin().get_json("/v1/plugins/svc").await.unwrap();
    assert_eq!(one["state"], "rolled-back");
    assert_eq!(one["rollbacks"], 1);
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_publishes_on_the_bus_and_bad_topics_are_refused() {
    let host = Host::start(BASE).await;
    let ingest = host.client(Some(host.token("sensor", Role::Ingest)));
    let mut replies = host.app.bus().subscribe(
        "test",
        vec![outpost_manifest::TopicPattern::parse("reply").unwrap()],
        4,
    );
    let resp = ingest
        .post("/v1/ingest/in", b"hi".to_vec(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(resp.status, 202, "{}", String::from_utf8_lossy(&resp.body));
    let msg = tokio::time::timeout(Duration::from_secs(10), replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.payload, b"v1:hi");
    let resp = ingest
        .post("/v1/ingest/in/%23", Vec::new(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(resp.status, 400, "a wildcard is not a topic to publish on");
    host.app.shutdown().await;
}

fn job_manifest(policy: &str, code: &str) -> String {
    format!(
        r#"
[plugins.task]
kind = "job"
component = "hello-job.wasm"
args = ["exit", "{code}"]
grants.dirs = [{{ host = ".", guest = "/config", mode = "ro" }}]
restart = {{ policy = "{policy}", backoff_ms = 50, max_backoff_ms = 400 }}
"#
    )
}

async fn wait_for(
    host: &Host,
    name: &str,
    what: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let status = host.status().await;
        let p = plugin(&status, name).clone();
        if what(&p) {
            return p;
        }
        assert_ne!(p["state"], "failed", "{p:#}");
        assert!(Instant::now() < until, "timed out; last status {p:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_restarted_with_growing_backoff_and_a_successful_one_is_not() {
    // Measured from before the start: the job's first run begins while the host starts.
    let started = Instant::now();
    let host = Host::start(&job_manifest("on-failure", "3")).await;
    let p = wait_for(&host, "task", |p| p["restarts"].as_u64().unwrap() >= 4).await;
    // Backoff 50, 100, 200, 400 ms: four restarts take at least 750 ms, never a hot loop.
    assert!(
        started.elapsed() >= Duration::from_millis(750),
        "{:?}",
        started.elapsed()
    );
    // wasi:cli/exit@0.2 carries only success or failure, so every failure reads as 1.
    assert_eq!(p["exit_code"], 1);

    let report = host.apply(&job_manifest("on-failure", "0")).await;
    assert_eq!(report["plugins"][0]["action"], "replace");
    let p = wait_for(&host, "task", |p| p["state"] == "completed").await;
    assert_eq!(p["restarts"], 0);

    host.apply(&job_manifest("never", "5")).await;
    let p = wait_for(&host, "task", |p| p["state"] == "exited").await;
    assert_eq!(
        (p["exit_code"].as_i64(), p["restarts"].as_u64()),
        (Some(1), Some(0))
    );

    host.apply(&job_manifest("always", "0")).await;
    wait_for(&host, "task", |p| p["restarts"].as_u64().unwrap() >= 2).await;
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_restarts_in_place_and_the_log_diagnostics_and_host_restart_endpoints_work() {
    use std::io::Read;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // What the binary installs: the host's recent log at info, kept for /v1/logs and bundles.
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(outpost_runtime::logs::layer())
        .try_init();
    let text = BASE.replace(
        "config = { version = \"v1\" }",
        "config = { version = \"v1\", api-token = \"hunter2\" }",
    );
    let host = Host::start(&text).await;
    let admin = host.admin();

    // A restart swaps in a fresh instance of the same version; calls go on being answered.
    assert_eq!(ask(&host.app, "call", "a").await, "v1:a");
    let resp = admin
        .request(Method::POST, "/v1/plugins/svc/restart", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let svc: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(svc["swaps"], 1);
    assert_eq!(svc["state"], "running");
    assert_eq!(ask(&host.app, "call", "b").await, "v1:b");
    let resp = admin
        .request(Method::POST, "/v1/plugins/nope/restart", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 404);

    // The log: filtered by plugin, and a level that does not exist is a 400 naming it.
    let records: serde_json::Value = admin.get_json("/v1/logs?plugin=svc").await.unwrap();
    let records = records.as_array().unwrap();
    assert!(
        records.iter().any(|r| r["message"] == "plugin restarted"),
        "{records:?}"
    );
    assert!(records.iter().all(|r| r["plugin"] == "svc"));
    let resp = admin
        .request(Method::GET, "/v1/logs?level=loud", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    assert!(String::from_utf8_lossy(&resp.body).contains("`loud`"));

    // The support bundle: every file, and the manifest without its secret.
    let resp = admin
        .request(Method::GET, "/v1/diagnostics", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_type.as_deref(), Some("application/gzip"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(resp.body.as_slice()));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry
            .path()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut body = String::new();
        entry.read_to_string(&mut body).unwrap();
        files.insert(name, body);
    }
    for name in outpost_runtime::diagnostics::BUNDLE_FILES {
        assert!(
            files.contains_key(*name),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    assert!(!files["manifest.toml"].contains("hunter2"));
    assert!(files["manifest.toml"].contains("versioned.wasm"));
    assert!(files["logs.jsonl"].contains("plugin restarted"));

    // A host restart is asked of whoever runs the appliance, naming who asked.
    let resp = admin
        .request(Method::POST, "/v1/restart", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 202);
    let who = tokio::time::timeout(Duration::from_secs(5), host.app.restart_requested())
        .await
        .expect("the restart request reaches the appliance");
    assert!(who.contains("admin"), "{who}");
    host.app.shutdown().await;
}
