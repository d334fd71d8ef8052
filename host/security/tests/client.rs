//! The API client against a stand-in server: headers, bodies, JSON and failures.

mod common;

use http::Method;
use outpost_security::{ApiClient, DeviceIdentity, SecurityError};

#[tokio::test]
async fn the_bearer_token_is_sent_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let id = DeviceIdentity::load_or_create(dir.path(), "edge-01").unwrap();
    let server = common::serve(Some(id.tls_acceptor().unwrap())).await;
    let client = ApiClient::new(
        &format!("https://127.0.0.1:{}", server.addr.port()),
        Some("opt_secret".into()),
        Some(id.ca_pem().to_string()),
    )
    .unwrap();
    let response = client
        .request(Method::GET, "/v1/status", None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer opt_secret"));
    assert_eq!(seen[0].path, "/v1/status");
}

#[tokio::test]
async fn no_authorization_header_is_sent_without_a_token() {
    let server = common::serve(None).await;
    let client = ApiClient::new(&format!("http://{}", server.addr), None, None).unwrap();
    client.request(Method::GET, "/", None).await.unwrap();
    assert_eq!(server.seen.lock().unwrap()[0].authorization, None);
}

#[tokio::test]
async fn post_and_put_send_the_body_and_its_content_type() {
    let server = common::serve(None).await;
    let client = ApiClient::new(
        &format!("http://{}/api/", server.addr),
        Some("opt_t".into()),
        None,
    )
    .unwrap();
    let posted = client
        .post("/v1/bus/t", b"{\"x\":1}".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(posted.text(), "ok");
    client
        .put("/v1/plugins/p", vec![0, 1, 2], "application/wasm")
        .await
        .unwrap();
    client.delete("/v1/tokens/x").await.unwrap();
    let seen = server.seen.lock().unwrap();
    assert_eq!(
        seen.iter()
            .map(|s| (s.method.as_str(), s.path.as_str()))
            .collect::<Vec<_>>(),
        [
            ("POST", "/api/v1/bus/t"),
            ("PUT", "/api/v1/plugins/p"),
            ("DELETE", "/api/v1/tokens/x")
        ]
    );
    assert_eq!(seen[0].body, b"{\"x\":1}");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(seen[1].body, [0, 1, 2]);
    assert_eq!(seen[1].content_type.as_deref(), Some("application/wasm"));
    assert_eq!(seen[2].content_type, None);
}

#[tokio::test]
async fn get_json_parses_success_and_reports_other_statuses() {
    let server = common::serve(None).await;
    let client = ApiClient::new(&format!("http://{}", server.addr), None, None).unwrap();
    let value: serde_json::Value = client.get_json("/json").await.unwrap();
    assert_eq!(value["n"], 3);
    match client.get_json::<serde_json::Value>("/missing").await {
        Err(SecurityError::Status {
            status, url, body, ..
        }) => {
            assert_eq!(status, 404);
            assert!(url.ends_with("/missing"), "{url}");
            assert_eq!(body, "no such thing");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.get_json::<serde_json::Value>("/").await,
        Err(SecurityError::BadJson { .. })
    ));
}

#[tokio::test]
async fn a_refused_connection_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = ApiClient::new(&format!("http://{addr}"), None, None).unwrap();
    let err = client.request(Method::GET, "/", None).await.unwrap_err();
    assert!(matches!(err, SecurityError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn paths_must_be_absolute() {
    let client = ApiClient::new("http://127.0.0.1:1", None, None).unwrap();
    assert!(matches!(
        client.request(Method::GET, "v1/status", None).await,
        Err(SecurityError::InvalidUrl { .. })
    ));
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = ApiClient::new(&format!("http://{addr}"), None, None)
        .unwrap()
        .with_timeout(std::time::Duration::from_millis(200));
    let err = client.request(Method::GET, "/", None).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    drop(listener);
}
