//! Hot rotation under load: 1,000 TLS connections held open across a certificate rotation all
//! keep working, and new handshakes see the new certificate.

mod pki;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outpost_security::{CertConfig, CertificateManager};
use pki::{Leaf, root_ca};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const HOST: &str = "edge-01.example.net";
const CONNECTIONS: usize = 1_000;

/// A line echo server over the manager's acceptor; counts connections that ended in an error.
async fn echo_server(manager: &CertificateManager, errors: Arc<AtomicUsize>) -> SocketAddr {
    let acceptor = manager.tls_acceptor().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let errors = Arc::clone(&errors);
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                let (read, mut write) = tokio::io::split(tls);
                let mut lines = BufReader::new(read).lines();
                loop {
                    match lines.next_line().await {
                        Ok(Some(line)) => {
                            if write
                                .write_all(format!("{line}\n").as_bytes())
                                .await
                                .is_err()
                            {
                                errors.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn exchange<S>(lines: &mut tokio::io::Lines<BufReader<S>>, message: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    lines
        .get_mut()
        .get_mut()
        .write_all(format!("{message}\n").as_bytes())
        .await
        .unwrap();
    let echoed = lines.next_line().await.unwrap().expect("connection closed");
    assert_eq!(echoed, message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_during_1000_open_tls_connections_drops_none_and_new_handshakes_see_the_new_certificate()
 {
    let dir = tempfile::tempdir().unwrap();
    let root = root_ca("Operator root CA");
    let config = CertConfig::new(HOST).with_ca_bundle_pem(root.pem.clone());
    let manager = CertificateManager::open(&dir.path().join("tls"), config).unwrap();
    let (old_cert, old_key) = Leaf::good(&[HOST]).signed_by(&root);
    manager
        .upload(format!("{old_cert}{old_key}").as_bytes(), None)
        .unwrap();
    let old_fp = pki::fingerprint(&old_cert);

    let errors = Arc::new(AtomicUsize::new(0));
    let addr = echo_server(&manager, Arc::clone(&errors)).await;
    let client = pki::client_config(&[&root.pem]);

    // Open 1,000 connections, 50 handshakes at a time; each exchanges a line first.
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for batch in 0..CONNECTIONS / 50 {
        let mut handshakes = tokio::task::JoinSet::new();
        for i in 0..50 {
            let client = Arc::clone(&client);
            handshakes.spawn(async move {
                let tls = pki::connect(&client, addr, HOST).await.unwrap();
                let fp = pki::peer_fingerprint(&tls);
                let mut lines = BufReader::new(tls).lines();
                exchange(&mut lines, &format!("before {}", batch * 50 + i)).await;
                (fp, lines)
            });
        }
        while let Some(done) = handshakes.join_next().await {
            conns.push(done.unwrap());
        }
    }
    assert_eq!(conns.len(), CONNECTIONS);
    assert!(conns.iter().all(|(fp, _)| *fp == old_fp));

    // Rotate while all of them are open.
    let (new_cert, new_key) = Leaf::good(&[HOST]).signed_by(&root);
    let info = manager
        .upload(format!("{new_cert}{new_key}").as_bytes(), None)
        .unwrap();
    let new_fp = pki::fingerprint(&new_cert);
    assert_eq!(info.fingerprint_sha256, new_fp);

    // Every open connection still exchanges data, in parallel.
    let mut checks = tokio::task::JoinSet::new();
    for (i, (_, mut lines)) in conns.into_iter().enumerate() {
        checks.spawn(async move {
            exchange(&mut lines, &format!("after {i}")).await;
            lines
        });
    }
    let mut still_open = Vec::with_capacity(CONNECTIONS);
    while let Some(done) = tokio::time::timeout(Duration::from_secs(60), checks.join_next())
        .await
        .expect("open connections answer after the rotation")
    {
        still_open.push(done.expect("a connection failed after the rotation"));
    }
    assert_eq!(still_open.len(), CONNECTIONS);

    // A fresh handshake sees the new leaf.
    let fresh = pki::connect(&client, addr, HOST).await.unwrap();
    assert_eq!(pki::peer_fingerprint(&fresh), new_fp);
    assert_eq!(errors.load(Ordering::SeqCst), 0, "no server-side errors");
    drop(still_open);
}
