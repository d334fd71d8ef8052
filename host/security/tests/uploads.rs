//! Operator certificate uploads: every refusal reason with real certificates (rcgen, and the
//! `openssl` CLI for PKCS#12), acceptance of a good CA-issued chain, serving, persistence and
//! expiry status.

mod pki;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use outpost_security::{
    AlertLevel, CertConfig, CertError, CertSource, CertificateManager, SERVED_DIR,
};
use pki::{Ca, Leaf, intermediate_ca, root_ca};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;

const HOST: &str = "edge-01.example.net";

struct Pki {
    root: Ca,
    intermediate: Ca,
}

fn pki() -> Pki {
    let root = root_ca("Operator root CA");
    let intermediate = intermediate_ca(&root, "Operator issuing CA");
    Pki { root, intermediate }
}

/// A manager requiring CA-issued certificates for `HOST`, chaining to `root`.
fn manager(dir: &Path, root: &Ca) -> CertificateManager {
    let config = CertConfig::new(HOST).with_ca_bundle_pem(root.pem.clone());
    CertificateManager::open(&dir.join("tls"), config).unwrap()
}

/// Leaf, intermediate and key as one PEM upload.
fn upload_pem(cert: &str, chain: &str, key: &str) -> Vec<u8> {
    format!("{cert}{chain}{key}").into_bytes()
}

fn refused(manager: &CertificateManager, data: &[u8]) -> CertError {
    let before = manager.served().fingerprint_sha256;
    let err = manager
        .upload(data, None)
        .expect_err("the upload must be refused");
    assert_eq!(
        manager.served().fingerprint_sha256,
        before,
        "a refused upload changes nothing"
    );
    err
}

#[test]
fn a_good_ca_issued_chain_is_accepted_and_stored_with_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST, "10.0.0.7"]).signed_by(&p.intermediate);
    let info = m
        .upload(&upload_pem(&cert, &p.intermediate.pem, &key), None)
        .unwrap();
    assert_eq!(info.source, CertSource::Upload);
    assert_eq!(info.fingerprint_sha256, pki::fingerprint(&cert));
    assert_eq!(info.chain_len, 2);
    assert_eq!(info.names, [HOST, "10.0.0.7"]);
    assert_eq!(m.served(), info);

    let served = dir.path().join("tls").join(SERVED_DIR);
    let version = fs::read_to_string(served.join("current")).unwrap();
    let version_dir = served.join(version.trim());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&version_dir.join("key.pem")), 0o600);
    assert_eq!(
        pki::fingerprint(&fs::read_to_string(version_dir.join("cert.pem")).unwrap()),
        info.fingerprint_sha256
    );
}

#[tokio::test]
async fn an_accepted_certificate_is_served_on_the_next_handshake_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let addr = serve(&m).await;
    let device_ca = m.identity().ca_pem().to_string();

    let before = pki::connect(&pki::client_config(&[&device_ca]), addr, HOST)
        .await
        .unwrap();
    assert_eq!(
        pki::peer_fingerprint(&before),
        m.identity().fingerprint_sha256()
    );

    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    m.upload(&upload_pem(&cert, &p.intermediate.pem, &key), None)
        .unwrap();
    let operator_client = pki::client_config(&[&p.root.pem]);
    let after = pki::connect(&operator_client, addr, HOST).await.unwrap();
    assert_eq!(pki::peer_fingerprint(&after), pki::fingerprint(&cert));

    // A restart serves the latest accepted certificate.
    let reopened = manager(dir.path(), &p.root);
    let addr2 = serve(&reopened).await;
    let again = pki::connect(&operator_client, addr2, HOST).await.unwrap();
    assert_eq!(pki::peer_fingerprint(&again), pki::fingerprint(&cert));

    // Going back to the device certificate is one call, and survives a restart too.
    reopened.use_device_certificate().unwrap();
    let back = pki::connect(&pki::client_config(&[&device_ca]), addr2, HOST)
        .await
        .unwrap();
    assert_eq!(
        pki::peer_fingerprint(&back),
        reopened.identity().fingerprint_sha256()
    );
    assert_eq!(
        manager(dir.path(), &p.root).served().source,
        CertSource::Device
    );
}

async fn serve(manager: &CertificateManager) -> SocketAddr {
    let acceptor = manager.tls_acceptor().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    addr
}

#[test]
fn an_expired_certificate_is_refused_as_expired() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let mut leaf = Leaf::good(&[HOST]);
    leaf.not_before = OffsetDateTime::now_utc() - Duration::days(100);
    leaf.not_after = OffsetDateTime::now_utc() - Duration::days(1);
    let (cert, key) = leaf.signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, &p.intermediate.pem, &key));
    assert!(matches!(err, CertError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn a_certificate_that_is_not_yet_valid_is_refused_as_not_yet_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let mut leaf = Leaf::good(&[HOST]);
    leaf.not_before = OffsetDateTime::now_utc() + Duration::days(2);
    leaf.not_after = OffsetDateTime::now_utc() + Duration::days(90);
    let (cert, key) = leaf.signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, &p.intermediate.pem, &key));
    assert!(matches!(err, CertError::NotYetValid { .. }), "{err}");
    assert!(err.to_string().contains("not valid until"), "{err}");
}

#[test]
fn a_certificate_for_another_host_is_refused_naming_the_uncovered_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&["other.example.net"]).signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, &p.intermediate.pem, &key));
    match &err {
        CertError::WrongHost { missing, sans } => {
            assert_eq!(missing, &[HOST.to_string()]);
            assert_eq!(sans, &["other.example.net".to_string()]);
        }
        other => panic!("expected WrongHost, got {other}"),
    }
    assert!(err.to_string().contains(HOST), "{err}");
}

#[test]
fn a_wildcard_certificate_covers_the_host_one_label_down() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&["*.example.net"]).signed_by(&p.intermediate);
    m.upload(&upload_pem(&cert, &p.intermediate.pem, &key), None)
        .unwrap();
}

#[test]
fn a_private_key_that_does_not_match_the_certificate_is_refused_as_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, _) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let (_, other_key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, &p.intermediate.pem, &other_key));
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("wrong key"), "{err}");
}

#[test]
fn a_certificate_without_server_auth_is_refused_as_wrong_usage() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let mut leaf = Leaf::good(&[HOST]);
    leaf.eku = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (cert, key) = leaf.signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, &p.intermediate.pem, &key));
    assert!(matches!(err, CertError::NoServerAuth { .. }), "{err}");
    assert!(err.to_string().contains("serverAuth"), "{err}");
    assert!(err.to_string().contains("clientAuth"), "{err}");

    leaf.eku = vec![];
    let (cert, key) = leaf.signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, &p.intermediate.pem, &key));
    assert!(matches!(err, CertError::NoServerAuth { .. }), "{err}");
}

#[test]
fn a_key_usage_without_digital_signature_is_refused_as_wrong_usage() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let mut leaf = Leaf::good(&[HOST]);
    leaf.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let (cert, key) = leaf.signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, &p.intermediate.pem, &key));
    assert!(matches!(err, CertError::NoDigitalSignature { .. }), "{err}");
    assert!(err.to_string().contains("digitalSignature"), "{err}");
}

#[test]
fn a_chain_missing_its_intermediate_is_refused_as_broken() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let err = refused(&m, &upload_pem(&cert, "", &key));
    assert!(matches!(err, CertError::BrokenChain { .. }), "{err}");
    assert!(err.to_string().contains("Operator issuing CA"), "{err}");
}

#[test]
fn a_chain_with_an_impostor_intermediate_is_refused_as_broken() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    // Same name as the real issuing CA, different key.
    let impostor = intermediate_ca(&p.root, "Operator issuing CA");
    let err = refused(&m, &upload_pem(&cert, &impostor.pem, &key));
    assert!(matches!(err, CertError::BrokenChain { .. }), "{err}");
    assert!(err.to_string().contains("does not verify"), "{err}");
}

#[test]
fn a_chain_from_a_ca_outside_the_bundle_is_refused_as_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let stranger = root_ca("Someone else's root");
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&stranger);
    let err = refused(&m, &upload_pem(&cert, &stranger.pem, &key));
    assert!(matches!(err, CertError::UntrustedIssuer { .. }), "{err}");
    // Without the root in the upload, the issuer is simply unknown: a broken chain.
    let err = refused(&m, &upload_pem(&cert, "", &key));
    assert!(matches!(err, CertError::BrokenChain { .. }), "{err}");
}

#[test]
fn a_self_signed_certificate_is_refused_when_a_ca_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).self_signed();
    let err = refused(&m, &upload_pem(&cert, "", &key));
    assert!(matches!(err, CertError::SelfSigned { .. }), "{err}");
    assert!(err.to_string().contains("self-signed"), "{err}");
}

#[test]
fn a_self_signed_certificate_is_accepted_when_no_ca_bundle_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let m = CertificateManager::open(&dir.path().join("tls"), CertConfig::new(HOST)).unwrap();
    let (cert, key) = Leaf::good(&[HOST]).self_signed();
    let info = m.upload(&upload_pem(&cert, "", &key), None).unwrap();
    assert_eq!(info.chain_len, 1);
}

#[test]
fn every_refusal_reason_reads_differently() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let now = OffsetDateTime::now_utc();
    let mut uploads = Vec::new();
    let mut expired = Leaf::good(&[HOST]);
    expired.not_before = now - Duration::days(10);
    expired.not_after = now - Duration::days(1);
    let mut early = Leaf::good(&[HOST]);
    early.not_before = now + Duration::days(1);
    let mut client_only = Leaf::good(&[HOST]);
    client_only.eku = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let mut no_sig = Leaf::good(&[HOST]);
    no_sig.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    for leaf in [
        expired,
        early,
        Leaf::good(&["x.invalid"]),
        client_only,
        no_sig,
    ] {
        let (cert, key) = leaf.signed_by(&p.intermediate);
        uploads.push(upload_pem(&cert, &p.intermediate.pem, &key));
    }
    let (cert, _) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let (_, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    uploads.push(upload_pem(&cert, &p.intermediate.pem, &key));
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    uploads.push(upload_pem(&cert, "", &key));
    let (cert, key) = Leaf::good(&[HOST]).self_signed();
    uploads.push(upload_pem(&cert, "", &key));

    let kinds: Vec<String> = uploads
        .iter()
        .map(|u| {
            let err = refused(&m, u);
            format!("{err:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut distinct = kinds.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), kinds.len(), "{kinds:?}");
}

#[test]
fn an_upload_without_a_key_or_certificate_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    assert!(matches!(
        refused(&m, cert.as_bytes()),
        CertError::NoPrivateKey
    ));
    assert!(matches!(
        refused(&m, key.as_bytes()),
        CertError::NoCertificate
    ));
    assert!(matches!(
        refused(&m, b"not a certificate"),
        CertError::UnrecognizedFormat { .. }
    ));
}

#[test]
fn a_pkcs12_file_from_openssl_with_its_full_chain_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let chain = format!("{}{}", p.intermediate.pem, p.root.pem);
    let p12 = pki::pkcs12(dir.path(), &cert, &key, &chain, "s3cret-pass");
    let info = m.upload(&p12, Some("s3cret-pass")).unwrap();
    assert_eq!(info.fingerprint_sha256, pki::fingerprint(&cert));
    // Leaf and intermediate are served; the root stays with the clients.
    assert_eq!(info.chain_len, 2);
}

#[test]
fn a_pkcs12_file_without_a_password_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let p12 = pki::pkcs12(dir.path(), &cert, &key, &p.intermediate.pem, "");
    let info = m.upload(&p12, None).unwrap();
    assert_eq!(info.fingerprint_sha256, pki::fingerprint(&cert));
}

#[test]
fn a_pkcs12_file_with_a_wrong_or_missing_password_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let p12 = pki::pkcs12(dir.path(), &cert, &key, &p.intermediate.pem, "right");
    let err = m.upload(&p12, Some("wrong")).unwrap_err();
    assert!(matches!(err, CertError::Pkcs12WrongPassword), "{err}");
    assert!(err.to_string().contains("wrong PKCS#12 password"), "{err}");
    let err = m.upload(&p12, None).unwrap_err();
    assert!(matches!(err, CertError::Pkcs12PasswordRequired), "{err}");
}

#[test]
fn a_pkcs12_file_with_a_broken_chain_is_refused_like_pem() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let (cert, key) = Leaf::good(&[HOST]).signed_by(&p.intermediate);
    let unrelated = root_ca("Unrelated CA");
    let p12 = pki::pkcs12(dir.path(), &cert, &key, &unrelated.pem, "pw");
    let err = m.upload(&p12, Some("pw")).unwrap_err();
    assert!(matches!(err, CertError::BrokenChain { .. }), "{err}");
}

#[test]
fn status_reports_expiry_and_alert_level_for_every_served_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let m = manager(dir.path(), &p.root);
    let device = m.status();
    let roles: Vec<&str> = device.iter().map(|s| s.role).collect();
    assert_eq!(roles, ["endpoint", "device-ca"]);
    assert!(device.iter().all(|s| s.active && s.alert == AlertLevel::Ok));

    let mut leaf = Leaf::good(&[HOST]);
    leaf.not_after = OffsetDateTime::now_utc() + Duration::days(5);
    let (cert, key) = leaf.signed_by(&p.intermediate);
    m.upload(&upload_pem(&cert, &p.intermediate.pem, &key), None)
        .unwrap();
    let status = m.status();
    let roles: Vec<&str> = status.iter().map(|s| s.role).collect();
    assert_eq!(roles, ["served", "intermediate", "endpoint", "device-ca"]);
    let served = &status[0];
    assert!(served.active);
    assert_eq!(served.source, CertSource::Upload);
    assert_eq!(served.alert, AlertLevel::Warning);
    assert_eq!(served.threshold_days, Some(7));
    assert!(served.seconds_left > 4 * 86_400 && served.seconds_left <= 5 * 86_400);
    assert!(
        !status[2].active,
        "the endpoint certificate is no longer served"
    );

    // In a week the upload has expired; in 4.9 days it is critical.
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(m.status_at(now + 7 * 86_400)[0].alert, AlertLevel::Expired);
    assert_eq!(
        m.status_at(now + 4 * 86_400 + 80_000)[0].alert,
        AlertLevel::Critical
    );

    // The JSON shape the management API exposes.
    let json = serde_json::to_value(&status[0]).unwrap();
    assert_eq!(json["alert"], "warning");
    assert_eq!(json["source"], "upload");
    assert!(json["not_after_rfc3339"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn alert_thresholds_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let config = CertConfig::new(HOST).with_alert_days([400]);
    let m = CertificateManager::open(&dir.path().join("tls"), config).unwrap();
    // The endpoint certificate lasts a year: inside a 400-day threshold, which is the smallest.
    let endpoint = &m.status()[0];
    assert_eq!(endpoint.role, "endpoint");
    assert_eq!(endpoint.alert, AlertLevel::Critical);
    assert_eq!(endpoint.threshold_days, Some(400));
}
