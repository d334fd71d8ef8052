//! The host's security services as an operator meets them through the appliance and the
//! management API: plugin state encrypted at rest under the device key, key rotation without
//! downtime, a disabled key as an alert, and certificate uploads served on the next handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_manifest::Manifest;
use outpost_runtime::api::ApiInfo;
use outpost_runtime::{Appliance, ApplianceOptions, EngineSettings};
use outpost_security::ApiClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const MARKER: &[u8] = b"MARKER-c41e-plugin-state-must-not-reach-the-disk";

fn artifacts_dir() -> PathBuf {
    Path::new(outpost_artifacts::ECHO_PIPELINE)
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Host {
    app: Arc<Appliance>,
    api: ApiInfo,
}

async fn start(dir: &Path, text: &str) -> Host {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let manifest = Manifest::load(&path).unwrap();
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs.push(artifacts_dir());
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts.engine = EngineSettings {
        instance_slots: 16,
        ..EngineSettings::default()
    };
    let app = Appliance::start(manifest, opts).await.unwrap();
    let api = outpost_runtime::api::start(app.clone(), "127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap();
    Host { app, api }
}

impl Host {
    fn admin(&self) -> ApiClient {
        self.client(self.api.ca_pem.clone().unwrap())
    }

    fn client(&self, ca_pem: String) -> ApiClient {
        let token = std::fs::read_to_string(
            self.app
                .options()
                .data_dir
                .join(outpost_security::ADMIN_TOKEN_FILE),
        )
        .unwrap();
        ApiClient::new(
            &format!("https://{}", self.api.addr),
            Some(token),
            Some(ca_pem),
        )
        .unwrap()
    }
}

/// Waits until no task of a stopped host holds the kv store (API connections wind down after
/// shutdown, each holding the appliance until its client hangs up).
async fn wait_released(data: &Path) {
    let kv = data.join("kv.redb");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while outpost_services::KvStore::open_raw_check(&kv).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped host still holds its kv store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_state_is_encrypted_at_rest_and_survives_a_key_rotation_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), "").await;
    let ns = host.app.kv().namespace("svc", 1 << 20);
    for i in 0..50 {
        ns.set(&format!("k{i}"), MARKER).unwrap();
    }
    let keys: serde_json::Value = host.admin().get_json("/v1/keys").await.unwrap();
    assert_eq!(keys["provider"], "device");
    assert_eq!(keys["version"], 1);
    assert_eq!(keys["available"], true, "{keys}");

    // Rotation while a reader keeps reading: no read fails.
    let reader = {
        let ns = ns.clone();
        tokio::task::spawn_blocking(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
            let mut reads = 0;
            while std::time::Instant::now() < until {
                assert_eq!(ns.get("k7").unwrap().as_deref(), Some(MARKER));
                reads += 1;
            }
            reads
        })
    };
    let resp = host
        .admin()
        .post("/v1/keys/rotate", Vec::new(), "application/json")
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let after: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(after["version"], 2);
    assert_eq!(after["rotations"], 1);
    assert!(reader.await.unwrap() > 0);
    let metrics = host
        .admin()
        .request(http::Method::GET, "/metrics", None)
        .await
        .unwrap()
        .text();
    assert!(
        metrics
            .contains("outpost_encryption_key_version{provider=\"device\",key=\"outpost-kek\"} 2"),
        "{metrics}"
    );
    host.app.shutdown().await;
    drop((host, ns));
    wait_released(&dir.path().join("data")).await;

    for (path, bytes) in files(dir.path()) {
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext plugin state in {}",
            path.display()
        );
    }

    // After a restart the state reads back under the rotated key; version 1 is not needed.
    let keys =
        outpost_keys::DeviceKeyStore::open(dir.path().join("data/keys"), "outpost-kek").unwrap();
    keys.disable_version(1).unwrap();
    let host = start(dir.path(), "").await;
    let ns = host.app.kv().namespace("svc", 1 << 20);
    assert_eq!(ns.get("k49").unwrap().as_deref(), Some(MARKER));

    // The key in use disabled (a revoked customer key): an alert, not plaintext.
    keys.disable_version(2).unwrap();
    let status: serde_json::Value = host.admin().get_json("/v1/keys").await.unwrap();
    assert_eq!(status["available"], false, "{status}");
    let why = status["error"].as_str().unwrap();
    assert!(
        why.contains("outpost-kek") && why.contains("disabled"),
        "{why}"
    );
    let metrics = host
        .admin()
        .request(http::Method::GET, "/metrics", None)
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains(
            "outpost_encryption_key_available{provider=\"device\",key=\"outpost-kek\"} 0"
        ),
        "{metrics}"
    );
    host.app.shutdown().await;
    drop((host, ns));
    wait_released(&dir.path().join("data")).await;
    let path = dir.path().join("outpost.toml");
    let manifest = Manifest::load(&path).unwrap();
    let err = Appliance::start(manifest, ApplianceOptions::new(dir.path().join("data")))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("disabled"), "{err}");
}

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn test_ca() -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "Site CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for `names` from `ca`, as PEM chain plus key.
fn leaf(ca: &TestCa, names: &[&str], days: i64) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(2);
    params.not_after = now + time::Duration::days(days);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    format!("{}{}{}", cert.pem(), ca.pem, key.serialize_pem()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_certificate_is_served_on_the_next_handshake_and_a_bad_one_is_refused_with_its_reason()
 {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    std::fs::write(dir.path().join("site-ca.pem"), &ca.pem).unwrap();
    let host = start(
        dir.path(),
        "[host.tls]\nnames = [\"127.0.0.1\"]\nca_bundle = \"site-ca.pem\"\nalert_days = [30, 7]\n",
    )
    .await;
    let device_ca = host.api.ca_pem.clone().unwrap();
    let admin = host.admin();

    // Refusals name the reason; the device certificate keeps being served.
    let wrong_host = leaf(&ca, &["other.example"], 90);
    let resp = admin
        .put("/v1/certificates", wrong_host, "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().contains("other.example") || resp.text().contains("127.0.0.1"),
        "{}",
        resp.text()
    );
    let stranger = test_ca();
    let resp = admin
        .put(
            "/v1/certificates",
            leaf(&stranger, &["127.0.0.1"], 90),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.text());
    let resp = admin
        .put(
            "/v1/certificates",
            b"not a certificate".to_vec(),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        host.client(device_ca.clone())
            .request(http::Method::GET, "/healthz", None)
            .await
            .is_ok()
    );

    // A good one, expiring in 5 days: served from the next handshake, with a critical alert.
    let resp = admin
        .put(
            "/v1/certificates",
            leaf(&ca, &["127.0.0.1"], 5),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let site = host.client(ca.pem.clone());
    let certs: serde_json::Value = site.get_json("/v1/certificates").await.unwrap();
    let served = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "served")
        .unwrap_or_else(|| panic!("{certs:#}"));
    assert_eq!(served["source"], "upload");
    assert_ne!(served["alert"], "ok", "{served}");
    // A client that pins only the device CA no longer trusts the endpoint.
    assert!(
        host.client(device_ca)
            .request(http::Method::GET, "/healthz", None)
            .await
            .is_err()
    );
    let metrics = site
        .request(http::Method::GET, "/metrics", None)
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("outpost_certificate_expiry_seconds{role=\"served\""),
        "{metrics}"
    );
    host.app.shutdown().await;
}

/// A client certificate for `cn` from `ca`, as (certificate PEM, key PEM).
fn client_certificate(ca: &TestCa, cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Host {
    /// A client with no token that presents a certificate for `cn` from `ca`.
    fn with_certificate(&self, ca: &TestCa, cn: &str) -> ApiClient {
        let (cert, key) = client_certificate(ca, cn);
        ApiClient::new(
            &format!("https://{}", self.api.addr),
            None,
            self.api.ca_pem.clone(),
        )
        .unwrap()
        .with_client_certificate(&cert, &key)
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_with_their_mapped_role_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let clients = test_ca();
    std::fs::write(dir.path().join("clients.pem"), &clients.pem).unwrap();
    let host = start(
        dir.path(),
        "[host.tls.client_auth]\nca = \"clients.pem\"\nroles = { \"ops-laptop\" = \"operator\", \"grafana\" = \"viewer\" }\n",
    )
    .await;

    // A viewer certificate reads, and may not write; the refusal names the certificate.
    let viewer = host.with_certificate(&clients, "grafana");
    let resp = viewer
        .request(http::Method::GET, "/v1/status", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = viewer
        .request(http::Method::POST, "/v1/plugins/none/rollback", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(resp.text().contains("cert:grafana"), "{}", resp.text());

    // An operator certificate gets past authorisation to the handler (no such plugin: 404).
    let operator = host.with_certificate(&clients, "ops-laptop");
    let resp = operator
        .request(http::Method::POST, "/v1/plugins/none/rollback", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 404, "{}", resp.text());

    // A certificate from the right CA whose name maps to no role authenticates nobody.
    let resp = host
        .with_certificate(&clients, "stranger")
        .request(http::Method::GET, "/v1/status", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert!(resp.text().contains("stranger"), "{}", resp.text());

    // A certificate from another CA, even with a mapped name, fails the handshake.
    let forger = test_ca();
    assert!(
        host.with_certificate(&forger, "ops-laptop")
            .request(http::Method::GET, "/v1/status", None)
            .await
            .is_err()
    );

    // Certificates are optional here: a token alone still works, and a wrong token is never
    // rescued by a good certificate.
    let resp = host
        .admin()
        .request(http::Method::GET, "/v1/status", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let (cert, key) = client_certificate(&clients, "ops-laptop");
    let resp = ApiClient::new(
        &format!("https://{}", host.api.addr),
        Some("not-a-token".into()),
        host.api.ca_pem.clone(),
    )
    .unwrap()
    .with_client_certificate(&cert, &key)
    .unwrap()
    .request(http::Method::GET, "/v1/status", None)
    .await
    .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.text());

    // Client certificate settings are read when the API starts: an apply says so.
    let resp = host
        .admin()
        .put(
            "/v1/manifest?dry_run=true",
            b"[host.tls.client_auth]\nca = \"clients.pem\"\nrequired = true\n".to_vec(),
            "application/toml",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.text().contains("host.tls changed") && resp.text().contains("restarts"),
        "{}",
        resp.text()
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_client_certificate_turns_away_a_client_with_only_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let clients = test_ca();
    std::fs::write(dir.path().join("clients.pem"), &clients.pem).unwrap();
    let host = start(
        dir.path(),
        "[host.tls.client_auth]\nca = \"clients.pem\"\nrequired = true\nroles = { \"ops-laptop\" = \"operator\" }\n",
    )
    .await;
    // The admin token is valid, but without a certificate the connection is refused.
    assert!(
        host.admin()
            .request(http::Method::GET, "/v1/status", None)
            .await
            .is_err()
    );
    // With a certificate, the token's role applies; without a token, the certificate's.
    let (cert, key) = client_certificate(&clients, "unmapped-device");
    let resp = host
        .admin()
        .with_client_certificate(&cert, &key)
        .unwrap()
        .request(http::Method::GET, "/v1/status", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = host
        .with_certificate(&clients, "ops-laptop")
        .request(http::Method::GET, "/v1/status", None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    host.app.shutdown().await;

    // A client CA file that cannot be read stops the API from starting, naming the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.toml");
    std::fs::write(
        &path,
        "[host.tls.client_auth]\nca = \"missing.pem\"\nrequired = true\n",
    )
    .unwrap();
    let manifest = Manifest::load(&path).unwrap();
    let mut opts = ApplianceOptions::new(dir.path().join("data"));
    opts.plugin_dirs.push(artifacts_dir());
    let app = Appliance::start(manifest, opts).await.unwrap();
    let err = outpost_runtime::api::start(app.clone(), "127.0.0.1:0".parse().unwrap(), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
    app.shutdown().await;
}
