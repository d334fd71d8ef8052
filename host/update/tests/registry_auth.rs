//! Registry authentication and transport: htpasswd basic auth over HTTP and over HTTPS with a
//! given CA certificate.

mod common;

use common::{Mode, TestRegistry, keys, publisher, release, updater, write_component};
use outpost_update::{RegistryAuth, UpdateError, push_component, sign_artifact};

async fn round_trip(registry: &TestRegistry) {
    let keys = keys();
    let (path, bytes) = write_component(registry.dir.path(), "auth");
    let digest = push_component(
        &format!("{}:1.0.0", registry.repo("acme/filter")),
        &path,
        &registry.options(),
    )
    .await
    .unwrap();
    let reference = format!("{}@{digest}", registry.repo("acme/filter"));
    sign_artifact(
        &reference,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );
    let artifact = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap();
    assert_eq!(artifact.bytes, bytes);
}

#[tokio::test]
async fn basic_auth_credentials_allow_push_sign_and_fetch() {
    let registry = TestRegistry::start(Mode::BasicAuth);
    round_trip(&registry).await;
}

#[tokio::test]
async fn a_registry_requiring_basic_auth_rejects_anonymous_and_wrong_credentials() {
    let registry = TestRegistry::start(Mode::BasicAuth);
    let (path, _) = write_component(registry.dir.path(), "anon");
    for auth in [
        RegistryAuth::Anonymous,
        RegistryAuth::Basic {
            username: common::USER.into(),
            password: "wrong".into(),
        },
    ] {
        let mut options = registry.options();
        options.auth = auth;
        let err = push_component(&registry.repo("acme/filter"), &path, &options)
            .await
            .unwrap_err();
        assert!(matches!(err, UpdateError::Registry { .. }), "{err}");
    }
}

#[tokio::test]
async fn https_with_a_given_ca_certificate_and_basic_auth_round_trips() {
    let registry = TestRegistry::start(Mode::TlsBasicAuth);
    round_trip(&registry).await;
}

#[tokio::test]
async fn https_without_the_ca_certificate_is_refused() {
    let registry = TestRegistry::start(Mode::TlsBasicAuth);
    let (path, _) = write_component(registry.dir.path(), "noca");
    let mut options = registry.options();
    options.ca_certificate_pem = Some(common_other_ca());
    let err = push_component(&registry.repo("acme/filter"), &path, &options)
        .await
        .unwrap_err();
    assert!(matches!(err, UpdateError::Registry { .. }), "{err}");
}

/// A CA that did not sign the registry's certificate.
fn common_other_ca() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem().into_bytes()
}
