//! ACME issuance and renewal against a real pebble server on loopback, with real HTTP-01
//! validation: the host serves `/.well-known/acme-challenge/` on the port pebble's VA checks.
//!
//! These tests need the `pebble` binary (Debian package `pebble`); without it they fail with
//! instructions rather than skip.

mod pki;

use std::net::SocketAddr;
use std::time::Duration;

use outpost_security::{
    AcmeConfig, CertConfig, CertSource, CertificateManager, RenewOutcome, RenewerConfig,
};
use pki::Pebble;
use tokio::net::TcpListener;

/// The name pebble validates and the certificate must cover; it resolves to 127.0.0.1.
const NAME: &str = "localhost";

struct Setup {
    _dir: tempfile::TempDir,
    manager: CertificateManager,
    pebble: Pebble,
    acme: AcmeConfig,
    challenge_server: tokio::task::JoinHandle<()>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.challenge_server.abort();
    }
}

async fn setup() -> Setup {
    pki::pebble_binary();
    let dir = tempfile::tempdir().unwrap();
    let manager = CertificateManager::open(&dir.path().join("tls"), CertConfig::new(NAME)).unwrap();
    // The host's HTTP-01 responder, on the port pebble is told to validate against.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http01_port = listener.local_addr().unwrap().port();
    let challenge_server = manager.http01_challenges().serve(listener);
    let pebble = Pebble::start(http01_port).await;
    let mut acme = AcmeConfig::new(pebble.directory_url.clone());
    acme.contact = vec!["mailto:ops@example.com".into()];
    acme.directory_roots_pem = Some(pebble.https_root_pem.clone());
    acme.timeout = Duration::from_secs(60);
    Setup {
        _dir: dir,
        manager,
        pebble,
        acme,
        challenge_server,
    }
}

/// Serves the manager's TLS acceptor on loopback, answering each connection with one byte.
async fn serve(manager: &CertificateManager) -> SocketAddr {
    let acceptor = manager.tls_acceptor().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    use tokio::io::AsyncWriteExt;
                    let _ = tls.write_all(b"!").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// The leaf a fresh handshake sees (trusting any presented chain is not needed: we pin the
/// exact fingerprint the manager reports).
async fn served_leaf(addr: SocketAddr, pebble_roots: &str) -> String {
    let config = pki::client_config(&[pebble_roots]);
    let tls = pki::connect(&config, addr, NAME)
        .await
        .expect("a handshake with the issued certificate verifies against pebble's root");
    pki::peer_fingerprint(&tls)
}

/// Pebble's issuing root (PEM), from its management interface.
async fn pebble_issuing_root(pebble: &Pebble) -> String {
    // The management interface speaks HTTPS with the same certificate as the directory.
    let config = pki::client_config(&[&pebble.https_root_pem]);
    let mut tls = pki::connect(&config, pebble.management, "localhost")
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a PEM root");
    text[start..].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issuance_against_pebble_succeeds_and_the_issued_certificate_is_served() {
    let s = setup().await;
    let addr = serve(&s.manager).await;
    let device_fp = s.manager.served().fingerprint_sha256;

    let info = match s.manager.acme_issue(&s.acme).await {
        Ok(info) => info,
        Err(e) => panic!("ACME issuance failed: {e}\npebble log:\n{}", s.pebble.log()),
    };
    assert_eq!(info.source, CertSource::Acme);
    assert!(info.names.contains(&NAME.to_string()), "{:?}", info.names);
    assert_ne!(info.fingerprint_sha256, device_fp);
    assert_eq!(s.manager.http01_challenges().pending(), 0);

    let root = pebble_issuing_root(&s.pebble).await;
    assert_eq!(served_leaf(addr, &root).await, info.fingerprint_sha256);
    let status = s.manager.status();
    assert!(
        status
            .iter()
            .any(|c| c.role == "served" && c.source == CertSource::Acme && c.active)
    );

    // A restart serves the issued certificate again.
    let reopened = CertificateManager::open(s.manager.dir(), CertConfig::new(NAME)).unwrap();
    assert_eq!(
        reopened.served().fingerprint_sha256,
        info.fingerprint_sha256
    );
    assert_eq!(reopened.served().source, CertSource::Acme);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_inside_the_threshold_rotates_to_a_new_certificate_without_a_restart() {
    let s = setup().await;
    let addr = serve(&s.manager).await;
    let first = s
        .manager
        .acme_issue(&s.acme)
        .await
        .unwrap_or_else(|e| panic!("ACME issuance failed: {e}\n{}", s.pebble.log()));
    let root = pebble_issuing_root(&s.pebble).await;
    assert_eq!(served_leaf(addr, &root).await, first.fingerprint_sha256);

    // Not inside a 1-day threshold: nothing happens.
    let mut relaxed = s.acme.clone();
    relaxed.renew_before = Duration::from_secs(86_400);
    assert!(matches!(
        s.manager.renew_if_due(&relaxed).await.unwrap(),
        RenewOutcome::NotDue { .. }
    ));

    // A threshold longer than the certificate's life: the renewer renews and rotates.
    let mut eager = s.acme.clone();
    eager.renew_before = Duration::from_secs(100 * 365 * 86_400);
    let renewer = s.manager.spawn_renewer(RenewerConfig {
        acme: Some(eager),
        check_interval: Duration::from_secs(3600),
        retry_interval: Duration::from_secs(1),
    });
    let manager = s.manager.clone();
    let renewed = tokio::time::timeout(Duration::from_secs(60), async move {
        loop {
            let served = manager.served();
            if served.fingerprint_sha256 != first.fingerprint_sha256 {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no renewal within 60 s\n{}", s.pebble.log()));
    renewer.abort();
    assert_eq!(renewed.source, CertSource::Acme);
    assert_eq!(served_leaf(addr, &root).await, renewed.fingerprint_sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issuance_fails_with_the_validation_error_when_no_challenge_is_served() {
    let s = setup().await;
    // Nobody answers on the HTTP-01 port, so pebble's real validation must fail.
    s.challenge_server.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let device_fp = s.manager.served().fingerprint_sha256;
    let err = s.manager.acme_issue(&s.acme).await.unwrap_err();
    assert!(
        matches!(err, outpost_security::CertError::Acme { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ACME"), "{err}");
    assert_eq!(s.manager.served().fingerprint_sha256, device_fp);
    assert_eq!(s.manager.http01_challenges().pending(), 0);
}
