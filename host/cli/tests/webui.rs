//! The web UI in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver) by fantoccini, against an `outpost up` started by the test. Screenshots of every
//! page land in `target/tmp/webui-screenshots/`.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

fn outpost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outpost"));
    c.env("RUST_LOG", "info,cranelift=warn,wasmtime=warn");
    c
}

const MANIFEST: &str = r#"
[host]
name = "store-42"

[host.encryption]
provider = "none"

[plugins.echo]
kind = "pipeline"
component = "echo-pipeline.wasm"
version = "VERSION"
config = { output-topic = "demo/out", uppercase = "UPPER", api-key = "sekrit-123" }
grants.bus = { subscribe = ["demo/in"], publish = ["demo/out"] }
grants.kv = { quota_kb = 64 }

[plugins.hello]
kind = "http"
component = "hello-http.wasm"
version = "0.1.0"
route = "/hello"

[shares.local]
path = "local"
kind = "edge-local"
quota_mb = 1
"#;

/// A running `outpost up` and what its banner said.
struct Host {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    dir: tempfile::TempDir,
    api: String,
    ui: String,
    password: Option<String>,
}

impl Host {
    fn start() -> Host {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), "0.1.0", "false");
        let mut child = outpost()
            .args(["up", "--no-fetch", "--http-listen", "127.0.0.1:0"])
            .args(["--api-listen", "127.0.0.1:0", "--manifest", "outpost.toml"])
            .args(["--data-dir", "data"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut host = Host {
            child,
            lines,
            dir,
            api: String::new(),
            ui: String::new(),
            password: None,
        };
        host.read_banner();
        host
    }

    /// Reads `outpost up`'s banner (again after a restart).
    fn read_banner(&mut self) {
        let mut banner = String::new();
        let started = Instant::now();
        while !banner.contains("stop with ctrl-c") {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "no banner: {banner}"
            );
            match self.lines.next() {
                Some(line) => {
                    banner.push_str(&line.unwrap());
                    banner.push('\n');
                }
                None => panic!("outpost exited; it printed: {banner}"),
            }
        }
        let after = |key: &str| {
            banner
                .split(key)
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {key} in {banner}"))
                .trim_end_matches(';')
                .to_string()
        };
        self.api = after("api:");
        self.ui = after("web ui:");
        self.password = banner
            .contains("first-login password")
            .then(|| after("first-login password"));
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = outpost()
            .args(args)
            .args(["--api", &self.api, "--host-data-dir"])
            .arg(self.data())
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The host's status, through the API.
    fn status(&self) -> serde_json::Value {
        let (ok, out) = self.cli(&["status", "--json"]);
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn plugin(&self, name: &str) -> serde_json::Value {
        self.status()["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    }

    /// Applies echo version 0.2.0, so it has a previous version to roll back to.
    fn upgrade_echo(&self) {
        write_manifest(self.dir.path(), "0.2.0", "true");
        let (ok, out) = self.cli(&["apply", "outpost.toml"]);
        assert!(ok, "{out}");
        assert_eq!(self.plugin("echo")["actual"]["version"], "0.2.0");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_manifest(dir: &Path, version: &str, upper: &str) {
    let text = MANIFEST.replace("VERSION", version).replace("UPPER", upper);
    std::fs::write(dir.join("outpost.toml"), text).unwrap();
}

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    driver: Child,
    client: Option<Client>,
    downloads: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    async fn start(test: &str) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is installed (scripts/test.sh installs Debian's chromium-driver)",
            );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let downloads = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false
                }
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("webui-screenshots")
            .join(test);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver,
            client: Some(client),
            downloads,
            shots,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn shot(&self, name: &str) {
        // The pages send a strict CSP (no inline styles or scripts): nothing may rely on them.
        let inline = self
            .c()
            .execute(
                "return document.querySelectorAll('[style], script:not([src])').length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(inline, 0, "inline style or script on {}", self.path().await);
        let png = self.c().screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await;
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn exists(&self, css: &str) -> bool {
        !self
            .c()
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Waits until the browser shows `path` (a click on a submit button returns before the
    /// navigation it starts has finished).
    async fn wait_path(&self, path: &str) {
        let started = Instant::now();
        loop {
            let now = self.path().await;
            if now == path
                && self
                    .c()
                    .execute("return document.readyState", vec![])
                    .await
                    .unwrap()
                    == "complete"
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "still on {now}, expected {path}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn path(&self) -> String {
        self.c().current_url().await.unwrap().path().to_string()
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.c().find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks a button whose form asks for confirmation, and confirms.
    async fn click_and_confirm(&self, css: &str) {
        self.click(css).await;
        let started = Instant::now();
        loop {
            match self.c().accept_alert().await {
                Ok(()) => break,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "no confirmation dialog: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Waits until `css` exists on the page.
    async fn wait_for(&self, css: &str) {
        let started = Instant::now();
        while !self.exists(css).await {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{css} never appeared on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A form POST from inside the page (same origin, with the session cookie); status and text.
    async fn post(&self, url: &str, body: &str) -> (u64, String) {
        let out = self
            .c()
            .execute_async(
                "const [url, body, done] = arguments;
                 fetch(url, { method: 'POST', body: body, credentials: 'same-origin',
                              headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })
                   .then(r => r.text().then(t => done([r.status, t])))
                   .catch(e => done([0, String(e)]));",
                vec![json!(url), json!(body)],
            )
            .await
            .unwrap();
        (
            out[0].as_u64().unwrap(),
            out[1].as_str().unwrap_or("").to_string(),
        )
    }

    async fn csrf(&self) -> String {
        self.c()
            .find(Locator::Css("#logout input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap()
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn login_with_password(b: &Browser, password: &str) {
    b.fill("#password", password).await;
    b.click("#login-password").await;
}

fn untar(bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            (name, text)
        })
        .collect()
}

fn bundle_file<'a>(files: &'a [(String, String)], name: &str) -> &'a str {
    files
        .iter()
        .find(|(n, _)| n.ends_with(&format!("/{name}")))
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| panic!("{name} missing from the bundle"))
}

fn check_bundle(bytes: &[u8]) {
    let files = untar(bytes);
    for name in outpost_runtime::diagnostics::BUNDLE_FILES {
        bundle_file(&files, name);
    }
    let manifest = bundle_file(&files, "manifest.toml");
    assert!(
        manifest.contains("store-42") && manifest.contains("echo-pipeline.wasm"),
        "{manifest}"
    );
    assert!(
        !manifest.contains("sekrit-123") && manifest.contains("[redacted]"),
        "{manifest}"
    );
    let status: serde_json::Value =
        serde_json::from_str(bundle_file(&files, "status.json")).unwrap();
    assert_eq!(status["host"], "store-42");
    assert!(bundle_file(&files, "metrics.txt").contains("outpost_"));
    assert!(bundle_file(&files, "logs.jsonl").contains("management API listening"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_logs_in_changes_the_first_password_rolls_back_downloads_diagnostics_and_restarts_the_host()
 {
    let mut host = Host::start();
    let first = host
        .password
        .clone()
        .expect("the first start shows the first-login password");
    host.upgrade_echo();
    let b = Browser::start("operator").await;

    // Every page asks for a login first.
    b.c().goto(&format!("{}plugins", host.ui)).await.unwrap();
    b.wait_path("/ui/login").await;
    b.shot("login").await;
    login_with_password(&b, "not-the-password").await;
    assert!(
        b.text("#login-error")
            .await
            .contains("wrong user, password or token")
    );

    // The first-login password works once, and only to choose a new one.
    login_with_password(&b, &first).await;
    b.wait_path("/ui/password").await;
    assert!(b.exists("#must-change").await);
    b.c().goto(&format!("{}plugins", host.ui)).await.unwrap();
    assert_eq!(
        b.path().await,
        "/ui/password",
        "nothing else opens before the change"
    );
    b.fill("#current", &first).await;
    b.fill("#new", "short").await;
    b.fill("#repeat", "short").await;
    b.click("#change-password").await;
    assert!(b.text("#password-error").await.contains("at least 12"));
    b.fill("#current", &first).await;
    b.fill("#new", "a long new secret").await;
    b.fill("#repeat", "a long new secret").await;
    b.click("#change-password").await;
    b.wait_path("/ui/").await;
    assert!(
        !host.data().join("ui-initial-password").exists(),
        "the plaintext is gone"
    );

    // Overview: who and what this box is, refreshing without a reload.
    let cards = b.text("#cards").await;
    for want in [
        "store-42",
        "UPTIME",
        "CPU",
        "MEMORY",
        "DISK",
        "GPU",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(
            cards.to_uppercase().contains(&want.to_uppercase()),
            "{want} not in {cards}"
        );
    }
    // The live section refreshes every 2 s: wait for the first refresh (the deadline only
    // catches a page that never refreshes), and the page must still be the same document.
    b.c()
        .execute("window.sameDocument = true; return null;", vec![])
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let state = b
            .c()
            .execute(
                "return [window.sameDocument === true, window.outpostLiveUpdates || 0];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(state[0], true, "the page was reloaded instead of refreshed");
        if state[1].as_u64().unwrap() >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the live section never refreshed: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        b.exists("#cards").await,
        "the refreshed live section still shows the cards"
    );
    b.shot("overview").await;

    // Plugins: roll echo back from the browser; the host really serves the old version.
    b.click("nav a[href='/ui/plugins']").await;
    let row = b.text("tr[data-plugin=echo]").await;
    assert!(row.contains("0.2.0") && row.contains("running"), "{row}");
    assert!(b.exists("#chart-throughput").await && b.exists("#chart-latency").await);
    b.shot("plugins").await;
    b.click_and_confirm("#rollback-echo").await;
    b.wait_for("#flash").await;
    assert!(
        b.text("#flash").await.contains("rolled back"),
        "{}",
        b.text("#flash").await
    );
    let row = b.text("tr[data-plugin=echo]").await;
    assert!(
        row.contains("rolled-back") && row.contains("0.1.0 (desired 0.2.0)"),
        "{row}"
    );
    assert!(b.text("#swap-history").await.contains("rolled-back"));
    let echo = host.plugin("echo");
    assert_eq!(echo["state"], "rolled-back");
    assert_eq!(echo["actual"]["version"], "0.1.0");
    b.shot("plugins-rolled-back").await;
    // A restart replaces hello's instance; its swap is in the history.
    b.click_and_confirm("#restart-hello").await;
    b.wait_for("#flash").await;
    assert!(b.text("#flash").await.contains("`hello` restarted"));
    assert_eq!(host.plugin("hello")["swaps"], 1);

    // The other pages.
    b.click("nav a[href='/ui/network']").await;
    assert!(b.exists("#no-nf").await);
    assert!(b.exists("#no-sdwan").await);
    b.shot("network").await;
    b.click("nav a[href='/ui/shares']").await;
    let shares = b.text("#shares").await;
    assert!(
        shares.contains("local") && shares.contains("edge-local"),
        "{shares}"
    );
    b.shot("shares").await;
    b.click("nav a[href='/ui/security']").await;
    let certs = b.text("#certificates").await;
    assert!(
        certs.contains("device-ca") && certs.contains("endpoint"),
        "{certs}"
    );
    assert!(b.exists("#no-keys").await);
    b.shot("security").await;
    b.click("nav a[href='/ui/logs']").await;
    assert!(b.text("#log").await.contains("management API listening"));
    b.shot("logs").await;
    // The level filter, from its own form: the failed login above was logged at WARN, the
    // API's start at INFO. Under "warn" the first is listed and the second is not, and every
    // row is WARN or ERROR.
    b.wait_for("#log-filters select#level").await;
    b.c()
        .find(Locator::Css("#log-filters select#level"))
        .await
        .unwrap()
        .select_by_value("warn")
        .await
        .unwrap();
    b.click("#log-filters button").await;
    let started = Instant::now();
    while !b
        .c()
        .current_url()
        .await
        .unwrap()
        .query()
        .is_some_and(|q| q.contains("level=warn"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the filter form did not load level=warn"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.wait_path("/ui/logs").await;
    assert_eq!(
        b.c()
            .find(Locator::Css("#level"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("warn"),
        "the form shows the level in force"
    );
    let warn_log = b.text("#log").await;
    assert!(
        warn_log.contains("web UI login failed"),
        "the WARN record is listed under level warn: {warn_log}"
    );
    assert!(
        !warn_log.contains("management API listening"),
        "an INFO record is listed under level warn: {warn_log}"
    );
    let levels = b
        .c()
        .find_all(Locator::Css("#log td:nth-child(2)"))
        .await
        .unwrap();
    assert!(!levels.is_empty(), "no rows under level warn");
    for l in levels {
        let l = l.text().await.unwrap();
        assert!(l == "WARN" || l == "ERROR", "{l} shown under level warn");
    }
    b.shot("logs-warn").await;

    // Diagnostics: one click downloads the bundle, with the manifest's secret redacted.
    b.click("nav a[href='/ui/diagnostics']").await;
    b.shot("diagnostics").await;
    b.click("#bundle").await;
    let started = Instant::now();
    let bundle = loop {
        let done = std::fs::read_dir(b.downloads.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz"));
        if let Some(p) = done {
            break std::fs::read(p).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no bundle downloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    check_bundle(&bundle);
    // The same bundle from a shell.
    let (ok, out) = host.cli(&["diagnostics", "-o", "bundle.tar.gz"]);
    assert!(
        ok && out.contains("support bundle written to bundle.tar.gz"),
        "{out}"
    );
    check_bundle(&std::fs::read(host.dir.path().join("bundle.tar.gz")).unwrap());

    // Power: nothing happens without the tick; with it the host restarts for real.
    let before = host.status();
    let started = |s: &serde_json::Value| s["started_at_ms"].as_u64().unwrap();
    b.click("nav a[href='/ui/power']").await;
    b.shot("power").await;
    b.click_and_confirm("#restart-host").await;
    b.wait_for("#flash").await;
    assert!(b.text("#flash").await.contains("tick the confirmation box"));
    assert_eq!(
        started(&host.status()),
        started(&before),
        "nothing restarted"
    );
    b.click("#confirm").await;
    b.click_and_confirm("#restart-host").await;
    b.wait_for("#restarting").await;
    host.read_banner();
    assert!(
        host.password.is_none(),
        "the changed password is kept: {:?}",
        host.password
    );
    let status = host.status();
    // The program was replaced in place (same pid) and the host started again.
    assert_eq!(status["pid"], before["pid"]);
    assert!(started(&status) > started(&before), "{status}");
    assert!(status["uptime_secs"].as_u64().unwrap() < before["uptime_secs"].as_u64().unwrap() + 5);
    // Sessions lived in the old process; the new password logs in.
    b.c().goto(&host.ui).await.unwrap();
    b.wait_path("/ui/login").await;
    login_with_password(&b, "a long new secret").await;
    b.wait_path("/ui/").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_operator_buttons_and_forged_or_tokenless_posts_change_nothing() {
    let host = Host::start();
    host.upgrade_echo();
    let token = |name: &str, role: &str| {
        let out = outpost()
            .args(["token", "add", name, "--role", role, "--data-dir"])
            .arg(host.data())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let viewer = token("kiosk", "viewer");
    let ingest = token("camera", "ingest");
    let operator = std::fs::read_to_string(host.data().join("admin.token")).unwrap();
    let b = Browser::start("viewer").await;

    // An ingest token does not open the UI.
    b.c().goto(&host.ui).await.unwrap();
    b.fill("#token", &ingest).await;
    b.click("#login-token").await;
    assert!(b.text("#login-error").await.contains("ingest tokens"));

    // A viewer sees the plugins but no button to change them, and its POSTs are refused.
    b.fill("#token", &viewer).await;
    b.click("#login-token").await;
    b.wait_path("/ui/").await;
    assert!(b.text("#who").await.contains("kiosk (viewer)"));
    b.click("nav a[href='/ui/plugins']").await;
    assert!(b.text("tr[data-plugin=echo]").await.contains("0.2.0"));
    assert!(!b.exists("#rollback-echo").await && !b.exists("#restart-echo").await);
    b.shot("viewer-plugins").await;
    let csrf = b.csrf().await;
    let (status, text) = b
        .post("/ui/plugins/echo/rollback", &format!("csrf={csrf}"))
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("may only look"), "{text}");
    let (status, _) = b
        .post("/ui/power/restart", &format!("csrf={csrf}&confirm=restart"))
        .await;
    assert_eq!(status, 403);
    b.click("nav a[href='/ui/power']").await;
    assert!(b.exists("#viewer-power").await && !b.exists("#restart-host").await);
    b.click("#logout button").await;
    b.wait_path("/ui/login").await;

    // An operator's session refuses a POST without its CSRF token, or with a wrong one.
    b.fill("#token", operator.trim()).await;
    b.click("#login-token").await;
    b.wait_path("/ui/").await;
    let (status, text) = b.post("/ui/plugins/echo/rollback", "").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("CSRF"), "{text}");
    let (status, _) = b.post("/ui/plugins/echo/rollback", "csrf=guessed").await;
    assert_eq!(status, 403);

    // A page on another site that submits a form to the host gets nothing done.
    let forged = format!(
        "data:text/html,<form id=f method=post action='{}plugins/echo/rollback'><input name=csrf value=guessed></form><script>document.getElementById('f').submit()</script>",
        host.ui
    );
    b.c().goto(&forged).await.unwrap();
    let started = Instant::now();
    while !b
        .c()
        .source()
        .await
        .unwrap()
        .contains("Nothing was changed")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            b.c().source().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.shot("forged-post").await;
    let echo = host.plugin("echo");
    assert_eq!(echo["state"], "running", "{echo}");
    assert_eq!(echo["actual"]["version"], "0.2.0");
    assert_eq!(echo["rollbacks"], 0);

    // Guessing passwords: after ten failures this address waits, even with the right secret.
    b.c().goto(&format!("{}login", host.ui)).await.unwrap();
    // The refused ingest token was the first failure.
    for _ in 0..9 {
        let (status, _) = b.post("/ui/login", "user=admin&password=guess").await;
        assert_eq!(status, 401);
    }
    let (status, text) = b
        .post("/ui/login", &format!("token={}", operator.trim()))
        .await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("Too many failed logins"), "{text}");
    b.close().await;
}
