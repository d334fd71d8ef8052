//! API tokens: storage, verification, roles and the admin bootstrap.

use std::fs;
use std::path::Path;

use outpost_security::{
    Access, Identity, Role, SecurityError, TokenStore, bearer_token, ensure_admin,
};

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_token_roundtrips_through_add_verify_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
    assert!(store.is_empty());
    let token = store.add("ci", Role::Operator).unwrap();
    assert!(token.starts_with("opt_") && token.len() == 47, "{token}");
    assert_eq!(
        store.verify(&token),
        Some(Identity {
            name: "ci".into(),
            role: Role::Operator
        })
    );
    store.remove("ci").unwrap();
    assert_eq!(store.verify(&token), None);
    assert!(store.is_empty());
}

#[test]
fn the_file_holds_hashes_but_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let mut store = TokenStore::open(&path).unwrap();
    let token = store.add("grafana", Role::Viewer).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&token));
    assert!(!text.contains(&token[4..]));
    let hash = sha256_hex(&token);
    assert!(text.contains(&hash));
    assert_eq!(mode(&path), 0o600);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &json["tokens"][0];
    assert_eq!(entry["name"], "grafana");
    assert_eq!(entry["role"], "viewer");
    assert_eq!(entry["sha256"], hash.as_str());
    assert!(entry["created_unix"].as_u64().unwrap() > 1_700_000_000);
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[test]
fn listing_shows_names_and_roles_but_not_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
    let token = store.add("a", Role::Viewer).unwrap();
    store.add("b", Role::Ingest).unwrap();
    let list = store.list();
    assert_eq!(
        list.iter()
            .map(|t| (t.name.as_str(), t.role))
            .collect::<Vec<_>>(),
        [("a", Role::Viewer), ("b", Role::Ingest)]
    );
    assert_eq!(list[0].sha256_prefix, sha256_hex(&token)[..8]);
    let shown = serde_json::to_string(&list).unwrap();
    assert!(!shown.contains(&sha256_hex(&token)));
}

#[test]
fn wrong_empty_and_foreign_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
    let token = store.add("ci", Role::Operator).unwrap();
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    for wrong in [
        String::from_utf8(flipped).unwrap(),
        String::new(),
        token[..token.len() - 1].to_string(),
        format!("{token} "),
        token.to_uppercase(),
        "x".repeat(10_000),
    ] {
        assert_eq!(store.verify(&wrong), None, "{wrong:?}");
    }
    let empty = TokenStore::open(&dir.path().join("none.json")).unwrap();
    assert_eq!(empty.verify(&token), None);
}

#[test]
fn bearer_tokens_are_taken_from_the_authorization_header() {
    assert_eq!(bearer_token("Bearer opt_abc"), Some("opt_abc"));
    assert_eq!(bearer_token("bearer opt_abc"), Some("opt_abc"));
    assert_eq!(bearer_token("  BEARER \t opt_abc  "), Some("opt_abc"));
    for refused in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic dXNlcjpwYXNz",
        "Token opt_abc",
        "Bearer opt_abc extra",
        "Beareropt_abc",
        "opt_abc",
    ] {
        assert_eq!(bearer_token(refused), None, "{refused:?}");
    }
}

#[test]
fn roles_grant_exactly_the_documented_access() {
    let table = [
        (Role::Operator, [true, true, true]),
        (Role::Viewer, [true, false, false]),
        (Role::Ingest, [false, false, true]),
    ];
    for (role, expected) in table {
        let got = [Access::Read, Access::Write, Access::Ingest].map(|a| role.may(a));
        assert_eq!(got, expected, "{role}");
    }
}

#[test]
fn roles_print_and_parse_by_lowercase_name() {
    for role in [Role::Viewer, Role::Operator, Role::Ingest] {
        assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
    }
    assert_eq!("Operator".parse::<Role>().unwrap(), Role::Operator);
    let err = "admin".parse::<Role>().unwrap_err();
    assert!(matches!(&err, SecurityError::InvalidRole(r) if r == "admin"));
    assert!(err.to_string().contains("`admin`"), "{err}");
}

#[test]
fn duplicate_and_invalid_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
    store.add("ci", Role::Viewer).unwrap();
    assert!(matches!(
        store.add("ci", Role::Operator),
        Err(SecurityError::DuplicateToken(n)) if n == "ci"
    ));
    assert!(matches!(
        store.add("Bad Name", Role::Viewer),
        Err(SecurityError::InvalidTokenName(n)) if n == "Bad Name"
    ));
    assert!(matches!(
        store.remove("ghost"),
        Err(SecurityError::NoSuchToken(n)) if n == "ghost"
    ));
    assert_eq!(store.list().len(), 1);
}

#[test]
fn reopening_the_store_keeps_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let mut store = TokenStore::open(&path).unwrap();
    let kept = store.add("kept", Role::Ingest).unwrap();
    let gone = store.add("gone", Role::Viewer).unwrap();
    store.remove("gone").unwrap();
    let again = TokenStore::open(&path).unwrap();
    assert_eq!(again.verify(&kept).unwrap().role, Role::Ingest);
    assert_eq!(again.verify(&gone), None);
    assert_eq!(again.list(), store.list());
}

#[test]
fn a_malformed_token_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let good_hash = "ab".repeat(32);
    for (text, problem) in [
        ("{ not json".to_string(), "not a token file"),
        (r#"{"version":1,"tokens":[{"name":"a"}]}"#.to_string(), "not a token file"),
        (
            format!(r#"{{"version":1,"tokens":[{{"name":"a","role":"root","sha256":"{good_hash}","created_unix":1}}]}}"#),
            "not a token file",
        ),
        (
            r#"{"version":1,"tokens":[{"name":"a","role":"viewer","sha256":"xyz","created_unix":1}]}"#.to_string(),
            "64 hex digits",
        ),
        (
            format!(r#"{{"version":1,"tokens":[{{"name":"a","role":"viewer","sha256":"{good_hash}","created_unix":1}},{{"name":"a","role":"viewer","sha256":"{good_hash}","created_unix":1}}]}}"#),
            "appears twice",
        ),
        (r#"{"version":9,"tokens":[]}"#.to_string(), "unsupported version"),
    ] {
        fs::write(&path, &text).unwrap();
        let err = TokenStore::open(&path).unwrap_err();
        match &err {
            SecurityError::Corrupt { path: p, reason } => {
                assert_eq!(p, &path);
                assert!(reason.contains(problem), "{text}: {reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
        assert!(err.to_string().contains("tokens.json"), "{err}");
    }
}

#[test]
fn ensure_admin_creates_an_operator_token_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = ensure_admin(&data).unwrap().expect("a new admin token");
    let file = data.join("admin.token");
    assert_eq!(fs::read_to_string(&file).unwrap().trim(), token);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&data.join("tokens.json")), 0o600);
    let store = TokenStore::open(&data.join("tokens.json")).unwrap();
    assert_eq!(
        store.verify(&token),
        Some(Identity {
            name: "admin".into(),
            role: Role::Operator
        })
    );

    assert_eq!(ensure_admin(&data).unwrap(), None);
    assert_eq!(fs::read_to_string(&file).unwrap().trim(), token);
}

#[test]
fn ensure_admin_leaves_a_store_with_other_tokens_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TokenStore::open(&dir.path().join("tokens.json")).unwrap();
    store.add("viewer", Role::Viewer).unwrap();
    assert_eq!(ensure_admin(dir.path()).unwrap(), None);
    assert!(!dir.path().join("admin.token").exists());
}
