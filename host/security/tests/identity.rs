//! The device TLS identity: creation, loading, damage, and real handshakes.

mod common;

use std::fs;
use std::path::Path;

use outpost_security::{ApiClient, DeviceIdentity, SecurityError, client_config};

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names_file(err: &SecurityError, file: &str) -> bool {
    match err {
        SecurityError::Corrupt { path, .. } | SecurityError::MissingFile { path, .. } => {
            path.file_name().unwrap() == file && err.to_string().contains(file)
        }
        _ => false,
    }
}

#[test]
fn an_identity_is_created_once_and_then_loaded_identically() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let first = DeviceIdentity::load_or_create(&tls, "edge-01").unwrap();
    let key_before = fs::read(tls.join("key.pem")).unwrap();
    let again = DeviceIdentity::load_or_create(&tls, "edge-01").unwrap();
    assert_eq!(again.fingerprint_sha256(), first.fingerprint_sha256());
    assert_eq!(again.ca_fingerprint_sha256(), first.ca_fingerprint_sha256());
    assert_eq!(again.ca_pem(), first.ca_pem());
    assert_eq!(again.not_after(), first.not_after());
    assert_eq!(fs::read(tls.join("key.pem")).unwrap(), key_before);
    assert_eq!(first.fingerprint_sha256().len(), 64);
}

#[test]
fn the_keys_are_private_and_so_is_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    DeviceIdentity::load_or_create(&tls, "edge-01").unwrap();
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
    assert_eq!(mode(&tls.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&tls.join("ca.pem")), 0o644);
}

#[test]
fn the_chain_is_the_endpoint_certificate_then_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "edge-01").unwrap();
    let chain = id.cert_chain_pem();
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(chain.ends_with(id.ca_pem()));
    assert!(!chain.starts_with(id.ca_pem()));
    assert_eq!(
        fs::read_to_string(dir.path().join("cert.pem")).unwrap(),
        chain
    );
}

#[test]
fn the_endpoint_certificate_is_valid_for_about_a_year() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "edge-01").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = (id.not_after() - now) / 86_400;
    assert!((364..=365).contains(&days), "{days} days");
}

#[test]
fn a_corrupt_key_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    DeviceIdentity::load_or_create(dir.path(), "h").unwrap();
    fs::write(dir.path().join("key.pem"), "not a key\n").unwrap();
    let err = DeviceIdentity::load_or_create(dir.path(), "h").unwrap_err();
    assert!(names_file(&err, "key.pem"), "{err}");
    // Nothing was regenerated over it.
    assert_eq!(
        fs::read_to_string(dir.path().join("key.pem")).unwrap(),
        "not a key\n"
    );
}

#[test]
fn a_key_from_another_identity_is_refused_naming_the_key_file() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    DeviceIdentity::load_or_create(a.path(), "h").unwrap();
    DeviceIdentity::load_or_create(b.path(), "h").unwrap();
    fs::copy(b.path().join("key.pem"), a.path().join("key.pem")).unwrap();
    let err = DeviceIdentity::load_or_create(a.path(), "h").unwrap_err();
    assert!(names_file(&err, "key.pem"), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn a_certificate_from_another_ca_is_refused_naming_the_certificate_file() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    DeviceIdentity::load_or_create(a.path(), "h").unwrap();
    DeviceIdentity::load_or_create(b.path(), "h").unwrap();
    fs::copy(b.path().join("cert.pem"), a.path().join("cert.pem")).unwrap();
    let err = DeviceIdentity::load_or_create(a.path(), "h").unwrap_err();
    assert!(names_file(&err, "cert.pem"), "{err}");
}

#[test]
fn a_missing_half_is_an_error_and_nothing_is_regenerated() {
    for missing in ["ca.pem", "cert.pem", "key.pem"] {
        let dir = tempfile::tempdir().unwrap();
        let id = DeviceIdentity::load_or_create(dir.path(), "h").unwrap();
        fs::remove_file(dir.path().join(missing)).unwrap();
        let err = DeviceIdentity::load_or_create(dir.path(), "h").unwrap_err();
        assert!(names_file(&err, missing), "{missing}: {err}");
        assert!(!dir.path().join(missing).exists());
        if missing != "ca.pem" {
            assert_eq!(
                fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
                id.ca_pem()
            );
        }
    }
}

#[test]
fn an_identity_without_its_ca_key_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "h").unwrap();
    fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    let again = DeviceIdentity::load_or_create(dir.path(), "h").unwrap();
    assert_eq!(again.fingerprint_sha256(), id.fingerprint_sha256());
}

#[test]
fn a_pinned_ca_must_hold_a_certificate() {
    for bad in [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    ] {
        assert!(
            matches!(client_config(bad), Err(SecurityError::TlsConfig(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn server_config_offers_http1_over_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "h").unwrap();
    let config = id.server_config().unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert_eq!(
        client_config(id.ca_pem()).unwrap().alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
}

#[tokio::test]
async fn a_client_pinned_to_the_device_ca_completes_a_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "edge-01").unwrap();
    let server = common::serve(Some(id.tls_acceptor().unwrap())).await;
    let port = server.addr.port();
    for host in ["127.0.0.1", "localhost"] {
        let client = ApiClient::new(
            &format!("https://{host}:{port}"),
            None,
            Some(id.ca_pem().to_string()),
        )
        .unwrap();
        let response = client.request(http::Method::GET, "/", None).await.unwrap();
        assert_eq!(response.status, 200, "{host}");
        assert_eq!(response.body, b"ok", "{host}");
        assert_eq!(response.content_type.as_deref(), Some("text/plain"));
    }
}

#[tokio::test]
async fn a_client_pinned_to_another_ca_fails_with_a_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "edge-01").unwrap();
    let stranger = DeviceIdentity::load_or_create(other.path(), "edge-01").unwrap();
    let server = common::serve(Some(id.tls_acceptor().unwrap())).await;
    let client = ApiClient::new(
        &format!("https://127.0.0.1:{}", server.addr.port()),
        Some("opt_secret".into()),
        Some(stranger.ca_pem().to_string()),
    )
    .unwrap();
    let err = client
        .request(http::Method::GET, "/", None)
        .await
        .unwrap_err();
    match &err {
        SecurityError::Certificate { server, reason } => {
            assert_eq!(server, "127.0.0.1");
            assert!(reason.contains("UnknownIssuer"), "{reason}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    assert!(server.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_name_outside_the_certificate_is_refused_by_the_pinned_config() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "edge-01").unwrap();
    let server = common::serve(Some(id.tls_acceptor().unwrap())).await;
    let connector =
        outpost_security::tokio_rustls::TlsConnector::from(client_config(id.ca_pem()).unwrap());
    let connect = |name: &'static str| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let name = outpost_security::rustls::pki_types::ServerName::try_from(name).unwrap();
            connector.connect(name, tcp).await
        }
    };
    assert!(connect("edge-01").await.is_ok());
    assert!(connect("::1").await.is_ok());
    let err = connect("elsewhere.example").await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}
