//! End-to-end update control against a real OCI registry (Debian's `docker-registry`).

mod common;

use common::{
    Mode, TestRegistry, expired_release, keys, publisher, release, updater, write_component,
};
use outpost_update::{
    Decision, UpdateError, push_component, sign_artifact, signature_tag, verify_audit_log,
};

/// Pushes a component to `repo` and returns `(pinned reference, digest, bytes)`.
async fn push(registry: &TestRegistry, repo: &str, tag: &str) -> (String, String, Vec<u8>) {
    let (path, bytes) = write_component(
        registry.dir.path(),
        &format!("{}-{tag}", repo.replace('/', "_")),
    );
    let digest = push_component(
        &format!("{}:{tag}", registry.repo(repo)),
        &path,
        &registry.options(),
    )
    .await
    .unwrap();
    (format!("{}@{digest}", registry.repo(repo)), digest, bytes)
}

fn acme_repos(registry: &TestRegistry) -> Vec<String> {
    vec![format!("{}/acme/*", registry.host)]
}

#[tokio::test]
async fn a_pushed_and_signed_component_is_fetched_with_identical_bytes() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, digest, bytes) = push(&registry, "acme/filter", "1.0.0").await;
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
        &registry,
        state.path(),
        vec![publisher(
            "acme",
            &keys,
            &["acme-*"],
            &acme_repos(&registry),
        )],
    );

    let artifact = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap();

    assert_eq!(artifact.bytes, bytes);
    assert_eq!(artifact.digest, digest);
    assert_eq!(artifact.version, "1.0.0".parse().unwrap());
    assert_eq!(artifact.publisher, "acme");
    assert_eq!(artifact.plugin, "acme-filter");
    assert_eq!(
        updater.accepted_version("acme-filter"),
        Some("1.0.0".parse().unwrap())
    );
    updater.record_applied(&artifact).unwrap();
    let summary = verify_audit_log(updater.audit_log().path()).unwrap();
    assert_eq!(summary.entries, 2);
}

#[tokio::test]
async fn an_unsigned_artifact_is_refused_as_unsigned() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, _, _) = push(&registry, "acme/filter", "1.0.0").await;
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::Unsigned { .. }), "{err}");
    assert!(err.to_string().contains("unsigned"), "{err}");
}

#[tokio::test]
async fn a_signature_by_an_untrusted_key_is_refused_as_untrusted_key() {
    let registry = TestRegistry::start(Mode::Open);
    let trusted = keys();
    let attacker = keys();
    let (reference, _, _) = push(&registry, "acme/filter", "1.0.0").await;
    sign_artifact(
        &reference,
        &attacker.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &trusted, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(
        matches!(err, UpdateError::UntrustedKey { signatures: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_layer_altered_in_registry_storage_is_refused_as_tampered_layer() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, _, bytes) = push(&registry, "acme/filter", "1.0.0").await;
    sign_artifact(
        &reference,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    // A compromised registry serves other bytes (same length) for the layer's digest.
    let layer = outpost_update::sha256_digest(&bytes);
    let mut evil = bytes.clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    std::fs::write(registry.blob_data_path(&layer), &evil).unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::TamperedLayer { .. }), "{err}");
    // Refused before the version was recorded.
    assert_eq!(updater.accepted_version("acme-filter"), None);
}

#[tokio::test]
async fn a_manifest_whose_layer_descriptor_lies_about_its_size_is_refused_as_tampered_layer() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, digest, _) = push(&registry, "acme/filter", "1.0.0").await;
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&registry.pull_raw_manifest(&reference).await).unwrap();
    let size = manifest["layers"][0]["size"].as_i64().unwrap();
    manifest["layers"][0]["size"] = (size - 1).into();
    let body = serde_json::to_vec(&manifest).unwrap();
    let lying = outpost_update::sha256_digest(&body);
    assert_ne!(lying, digest);
    registry
        .push_raw_manifest(&format!("{}:lying", registry.repo("acme/filter")), &body)
        .await;
    let lying_ref = format!("{}@{lying}", registry.repo("acme/filter"));
    sign_artifact(
        &lying_ref,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&lying_ref, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::TamperedLayer { .. }), "{err}");
}

#[tokio::test]
async fn a_manifest_not_matching_the_requested_digest_is_refused_as_wrong_manifest_digest() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference_a, digest_a, _) = push(&registry, "acme/filter", "1.0.0").await;
    let (reference_b, _, _) = push(&registry, "acme/filter", "2.0.0").await;
    sign_artifact(
        &reference_a,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    // The registry's storage now answers B's manifest when asked for A's digest.
    let manifest_b = registry.pull_raw_manifest(&reference_b).await;
    std::fs::write(registry.blob_data_path(&digest_a), manifest_b).unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference_a, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(
        matches!(err, UpdateError::WrongManifestDigest { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_older_version_is_refused_unless_a_rollback_is_forced() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (old_ref, old_digest, old_bytes) = push(&registry, "acme/filter", "1.0.0").await;
    let (new_ref, _, _) = push(&registry, "acme/filter", "1.1.0").await;
    let opts = registry.options();
    sign_artifact(
        &old_ref,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &opts,
    )
    .await
    .unwrap();
    sign_artifact(
        &new_ref,
        &keys.private_key,
        &release("acme-filter", "1.1.0"),
        &opts,
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let policy = vec![publisher(
        "acme",
        &keys,
        &["acme-*"],
        &acme_repos(&registry),
    )];
    {
        let updater = updater(&registry, state.path(), policy.clone());
        updater
            .fetch_verified(&new_ref, "acme-filter", false)
            .await
            .unwrap();
    }
    // The high-water mark survives a restart.
    let updater = updater(&registry, state.path(), policy);

    let err = updater
        .fetch_verified(&old_ref, "acme-filter", false)
        .await
        .unwrap_err();
    assert!(matches!(err, UpdateError::OlderVersion { .. }), "{err}");
    assert!(err.to_string().contains("force_rollback"), "{err}");

    let forced = updater
        .fetch_verified(&old_ref, "acme-filter", true)
        .await
        .unwrap();
    assert_eq!(forced.bytes, old_bytes);
    assert_eq!(forced.digest, old_digest);
    updater
        .record_rolled_back(&forced, "canary failed")
        .unwrap();
    // A forced rollback does not lower the high-water mark.
    assert_eq!(
        updater.accepted_version("acme-filter"),
        Some("1.1.0".parse().unwrap())
    );
}

#[tokio::test]
async fn the_same_version_for_different_content_is_refused_as_version_reused() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (first, _, _) = push(&registry, "acme/filter", "a").await;
    let (second, _, _) = push(&registry, "acme/filter", "b").await;
    let opts = registry.options();
    sign_artifact(
        &first,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &opts,
    )
    .await
    .unwrap();
    sign_artifact(
        &second,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &opts,
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );
    updater
        .fetch_verified(&first, "acme-filter", false)
        .await
        .unwrap();
    // Fetching the accepted artifact again is fine.
    updater
        .fetch_verified(&first, "acme-filter", false)
        .await
        .unwrap();

    let err = updater
        .fetch_verified(&second, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::VersionReused { .. }), "{err}");
}

#[tokio::test]
async fn expired_release_metadata_is_refused_as_expired() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, _, _) = push(&registry, "acme/filter", "1.0.0").await;
    sign_artifact(
        &reference,
        &keys.private_key,
        &expired_release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::Expired { .. }), "{err}");
}

#[tokio::test]
async fn a_signature_copied_onto_another_artifact_is_refused_as_mix_and_match() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (signed_ref, signed_digest, _) = push(&registry, "acme/filter", "good").await;
    let (evil_ref, evil_digest, _) = push(&registry, "acme/filter", "evil").await;
    sign_artifact(
        &signed_ref,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let repo = registry.repo("acme/filter");
    registry
        .copy_manifest(
            &format!("{repo}:{}", signature_tag(&signed_digest)),
            &format!("{repo}:{}", signature_tag(&evil_digest)),
        )
        .await;
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&evil_ref, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            UpdateError::MixAndMatch {
                field: "manifest digest",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_signature_copied_to_another_repository_is_refused_as_mix_and_match() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, digest, _) = push(&registry, "acme/filter", "1.0.0").await;
    sign_artifact(
        &reference,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    // The same artifact and its signature, copied into another repository.
    let (src, dst) = (registry.repo("acme/filter"), registry.repo("acme/other"));
    registry
        .copy_manifest(&reference, &format!("{dst}:copy"))
        .await;
    let tag = signature_tag(&digest);
    registry
        .copy_manifest(&format!("{src}:{tag}"), &format!("{dst}:{tag}"))
        .await;
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&format!("{dst}@{digest}"), "acme-filter", false)
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            UpdateError::MixAndMatch {
                field: "repository identity",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_signature_for_one_plugin_used_for_another_is_refused_as_mix_and_match() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, _, _) = push(&registry, "acme/filter", "1.0.0").await;
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
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference, "acme-router", false)
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            UpdateError::MixAndMatch {
                field: "plugin name",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_publisher_signing_a_plugin_it_is_not_allowed_to_sign_is_refused() {
    let registry = TestRegistry::start(Mode::Open);
    let acme = keys();
    let (reference, _, _) = push(&registry, "acme/filter", "1.0.0").await;
    sign_artifact(
        &reference,
        &acme.private_key,
        &release("core-firewall", "9.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher(
            "acme",
            &acme,
            &["acme-*"],
            &acme_repos(&registry),
        )],
    );

    let err = updater
        .fetch_verified(&reference, "core-firewall", false)
        .await
        .unwrap_err();

    assert!(
        matches!(err, UpdateError::PublisherNotAllowed { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_publisher_signing_outside_its_repositories_is_refused() {
    let registry = TestRegistry::start(Mode::Open);
    let acme = keys();
    let (reference, _, _) = push(&registry, "other/filter", "1.0.0").await;
    sign_artifact(
        &reference,
        &acme.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher(
            "acme",
            &acme,
            &["acme-*"],
            &acme_repos(&registry),
        )],
    );

    let err = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(
        matches!(err, UpdateError::PublisherNotAllowed { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_signature_that_is_not_base64_is_refused_as_malformed() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, digest, _) = push(&registry, "acme/filter", "1.0.0").await;
    let info = sign_artifact(
        &reference,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&registry.pull_raw_manifest(&info.signature_reference).await)
            .unwrap();
    manifest["layers"][0]["annotations"][outpost_update::SIGNATURE_ANNOTATION] =
        "%%% not base64 %%%".into();
    let tag = format!(
        "{}:{}",
        registry.repo("acme/filter"),
        signature_tag(&digest)
    );
    registry
        .push_raw_manifest(&tag, &serde_json::to_vec(&manifest).unwrap())
        .await;
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::MalformedSignature(_)), "{err}");
}

#[tokio::test]
async fn a_trusted_signature_over_a_payload_without_release_metadata_is_refused_as_malformed() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, digest, _) = push(&registry, "acme/filter", "1.0.0").await;
    // A plain cosign signature (no Outpost annotations), made with the trusted key.
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": registry.repo("acme/filter")},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    });
    let payload = serde_json::to_vec(&payload).unwrap();
    let key = outpost_update::SigningKey::from_pem_file(&keys.private_key).unwrap();
    let sig = key.sign(&payload).unwrap();
    let sig_repo = format!(
        "{}:{}",
        registry.repo("acme/filter"),
        signature_tag(&digest)
    );
    let payload_digest = registry.push_raw_blob(&sig_repo, &payload).await;
    let config = b"{}".to_vec();
    let config_digest = registry.push_raw_blob(&sig_repo, &config).await;
    use base64::Engine as _;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": outpost_update::OCI_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": outpost_update::SIMPLE_SIGNING_MEDIA_TYPE,
            "digest": payload_digest,
            "size": payload.len(),
            "annotations": {outpost_update::SIGNATURE_ANNOTATION: base64::engine::general_purpose::STANDARD.encode(&sig)}
        }]
    });
    registry
        .push_raw_manifest(&sig_repo, &serde_json::to_vec(&manifest).unwrap())
        .await;
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::MalformedSignature(_)), "{err}");
}

#[tokio::test]
async fn a_reference_not_pinned_by_digest_is_refused() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    push(&registry, "acme/filter", "1.0.0").await;
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );

    let err = updater
        .fetch_verified(
            &format!("{}:1.0.0", registry.repo("acme/filter")),
            "acme-filter",
            false,
        )
        .await
        .unwrap_err();

    assert!(matches!(err, UpdateError::InvalidReference { .. }), "{err}");
}

#[tokio::test]
async fn every_decision_is_audited_in_a_chain_that_detects_an_edited_line() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, digest, _) = push(&registry, "acme/filter", "1.0.0").await;
    let (unsigned, _, _) = push(&registry, "acme/filter", "unsigned").await;
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
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["*"], &["*".into()])],
    );
    let artifact = updater
        .fetch_verified(&reference, "acme-filter", false)
        .await
        .unwrap();
    updater
        .fetch_verified(&unsigned, "acme-filter", false)
        .await
        .unwrap_err();
    updater.record_applied(&artifact).unwrap();
    updater
        .record_rolled_back(&artifact, "canary failed")
        .unwrap();

    let path = updater.audit_log().path().to_path_buf();
    assert_eq!(verify_audit_log(&path).unwrap().entries, 4);
    let text = std::fs::read_to_string(&path).unwrap();
    let entries: Vec<outpost_update::AuditEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions: Vec<Decision> = entries.iter().map(|e| e.decision).collect();
    assert_eq!(
        decisions,
        [
            Decision::Accepted,
            Decision::Refused,
            Decision::Applied,
            Decision::RolledBack
        ]
    );
    assert_eq!(entries[0].digest.as_deref(), Some(digest.as_str()));
    assert_eq!(entries[0].version.as_deref(), Some("1.0.0"));
    assert_eq!(entries[0].publisher.as_deref(), Some("acme"));
    assert_eq!(entries[1].reason_code.as_deref(), Some("unsigned"));
    assert_eq!(entries[3].reason.as_deref(), Some("canary failed"));

    // Turn the refusal into an acceptance after the fact.
    drop(updater);
    let edited = text.replacen("\"decision\":\"refused\"", "\"decision\":\"accepted\"", 1);
    std::fs::write(&path, edited).unwrap();
    let err = verify_audit_log(&path).unwrap_err();
    assert!(
        matches!(err, UpdateError::AuditChainBroken { line: 3, .. }),
        "{err}"
    );
    // An updater refuses to chain new entries onto a tampered log.
    let policy = outpost_update::TrustPolicy::new(outpost_update::TrustPolicySpec {
        publishers: vec![publisher("acme", &keys, &["*"], &["*".into()])],
    })
    .unwrap();
    let reopened = outpost_update::Updater::new(outpost_update::UpdaterConfig::new(
        policy,
        state.path(),
        registry.options(),
    ));
    assert!(matches!(
        reopened,
        Err(UpdateError::AuditChainBroken { .. })
    ));
}

#[tokio::test]
async fn the_stored_signature_verifies_with_the_openssl_cli() {
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let (reference, digest, _) = push(&registry, "acme/filter", "1.0.0").await;
    sign_artifact(
        &reference,
        &keys.private_key,
        &release("acme-filter", "1.0.0"),
        &registry.options(),
    )
    .await
    .unwrap();
    // Read the signature back from the registry the way cosign lays it out, independently.
    let sig_ref = format!(
        "{}:{}",
        registry.repo("acme/filter"),
        signature_tag(&digest)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&registry.pull_raw_manifest(&sig_ref).await).unwrap();
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = registry
        .pull_raw_blob(&sig_ref, layer["digest"].as_str().unwrap())
        .await;
    let b64 = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        parsed["critical"]["type"],
        "cosign container image signature"
    );
    assert_eq!(
        parsed["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        parsed["critical"]["identity"]["docker-reference"],
        registry.repo("acme/filter").as_str()
    );
    assert_eq!(parsed["optional"]["dev.outpost.plugin"], "acme-filter");
    assert_eq!(parsed["optional"]["dev.outpost.version"], "1.0.0");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payload.json"), &payload).unwrap();
    std::fs::write(dir.path().join("sig.der"), &der).unwrap();
    let openssl = |payload: &str| {
        std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&keys.public_key)
            .arg("-signature")
            .arg(dir.path().join("sig.der"))
            .arg(dir.path().join(payload))
            .output()
            .expect("cannot run `openssl` (apt-get install -y openssl)")
    };
    let out = openssl("payload.json");
    assert!(
        out.status.success(),
        "openssl rejected the signature: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
    std::fs::write(dir.path().join("forged.json"), payload.repeat(2)).unwrap();
    assert!(!openssl("forged.json").status.success());

    // And OpenSSL reads the generated private key as a P-256 PKCS#8 key.
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(&keys.private_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("prime256v1"));
}
