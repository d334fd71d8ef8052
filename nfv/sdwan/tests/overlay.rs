//! Two overlay peers over loopback UDP, with a relay in the middle that captures, replays and
//! lets the test inject hostile datagrams.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Dir, Relay};
use outpost_sdwan::overlay::{
    OverlayConfig, OverlayCounters, OverlayPeer, decode_public, decode_secret, encode_key,
    generate_secret, public_key,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// An IPv4/UDP packet (checksums zero; WireGuard only checks the IP length field).
fn ipv4_udp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&4000u16.to_be_bytes());
    p.extend_from_slice(&5000u16.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

async fn recv_within(rx: &mut mpsc::Receiver<Vec<u8>>, within: Duration) -> Option<Vec<u8>> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

async fn wait_counters(
    peer: &OverlayPeer,
    what: &str,
    cond: impl Fn(&OverlayCounters) -> bool,
) -> OverlayCounters {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let c = peer.counters();
        if cond(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct Pair {
    a: OverlayPeer,
    a_rx: mpsc::Receiver<Vec<u8>>,
    b: OverlayPeer,
    b_rx: mpsc::Receiver<Vec<u8>>,
    b_addr: SocketAddr,
    b_public: String,
    relay: Relay,
}

async fn pair() -> Pair {
    let a_secret = generate_secret();
    let b_secret = generate_secret();
    let a_public = public_key(&a_secret);
    let b_public = public_key(&b_secret);
    let a_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let b_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let b_addr = b_sock.local_addr().expect("addr");
    let relay = Relay::start(b_addr).await;
    relay.capture(true);
    let (a, a_rx) = OverlayPeer::start(
        OverlayConfig::new(a_secret, b_public),
        a_sock,
        relay.front(),
    )
    .expect("peer a");
    let mut b_config = OverlayConfig::new(b_secret, a_public);
    b_config.index = 2;
    let (b, b_rx) = OverlayPeer::start(b_config, b_sock, relay.back()).expect("peer b");
    Pair {
        a,
        a_rx,
        b,
        b_rx,
        b_addr,
        b_public: encode_key(b_public.as_bytes()),
        relay,
    }
}

async fn exchange(p: &mut Pair, tag: &str) {
    let to_b = ipv4_udp(
        [10, 1, 0, 1],
        [10, 2, 0, 1],
        format!("a->b {tag}").as_bytes(),
    );
    p.a.send(&to_b).await.expect("send a");
    let got = recv_within(&mut p.b_rx, Duration::from_secs(3)).await;
    assert_eq!(
        got.as_deref(),
        Some(&to_b[..]),
        "b did not get a's packet ({tag})"
    );
    let to_a = ipv4_udp(
        [10, 2, 0, 1],
        [10, 1, 0, 1],
        format!("b->a {tag}").as_bytes(),
    );
    p.b.send(&to_a).await.expect("send b");
    let got = recv_within(&mut p.a_rx, Duration::from_secs(3)).await;
    assert_eq!(
        got.as_deref(),
        Some(&to_a[..]),
        "a did not get b's packet ({tag})"
    );
}

#[test]
fn keys_round_trip_through_base64_and_bad_encodings_are_refused() {
    let secret = generate_secret();
    let encoded = encode_key(&secret.to_bytes());
    let back = decode_secret(&encoded).expect("decode");
    assert_eq!(back.to_bytes(), secret.to_bytes());
    let public = public_key(&secret);
    let decoded = decode_public(&encode_key(public.as_bytes())).expect("decode");
    assert_eq!(decoded.as_bytes(), public.as_bytes());
    assert!(decode_public("not base64!").is_err());
    assert!(decode_public(&encode_key(&[1; 32])[..20]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_handshake_and_exchange_packets_without_plaintext_on_the_wire() {
    let mut p = pair().await;
    let secret = b"TOP-SECRET-PAYLOAD-0123456789";
    let inner = ipv4_udp([10, 1, 0, 1], [10, 2, 0, 1], secret);
    // The first send triggers the handshake; the packet is queued and follows it.
    p.a.send(&inner).await.expect("send");
    let got = recv_within(&mut p.b_rx, Duration::from_secs(3)).await;
    assert_eq!(got.as_deref(), Some(&inner[..]));
    assert!(p.a.is_established() && p.b.is_established());
    exchange(&mut p, "second").await;

    let captured = p.relay.captured();
    assert!(captured.iter().any(|(d, _)| *d == Dir::ToTarget));
    assert!(captured.iter().any(|(d, _)| *d == Dir::ToClient));
    for (_, datagram) in &captured {
        assert!(!contains(datagram, secret), "plaintext leaked on the wire");
        assert!(
            !contains(datagram, b"a->b second"),
            "plaintext leaked on the wire"
        );
        assert!(
            !contains(datagram, b"b->a second"),
            "plaintext leaked on the wire"
        );
    }
    let a = p.a.counters();
    let b = p.b.counters();
    assert_eq!((a.rx_ok, b.rx_ok), (1, 2));
    assert_eq!(a.rx_dropped_invalid + b.rx_dropped_invalid, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_foreign_and_truncated_datagrams_are_dropped_and_counted() {
    let mut p = pair().await;
    exchange(&mut p, "warm-up").await;

    // Replay: resend the last data datagram (type 4) that went a -> b.
    let data = p
        .relay
        .captured()
        .into_iter()
        .rev()
        .find(|(d, bytes)| *d == Dir::ToTarget && bytes.first() == Some(&4))
        .map(|(_, bytes)| bytes)
        .expect("a captured data datagram");
    let before = p.b.counters();
    p.relay.inject_to_target(&data).await;
    p.relay.inject_to_target(&data).await;
    let after = wait_counters(&p.b, "replays counted", |c| {
        c.rx_dropped_replay >= before.rx_dropped_replay + 2
    })
    .await;
    assert_eq!(after.rx_ok, before.rx_ok, "a replay was delivered");
    assert!(
        recv_within(&mut p.b_rx, Duration::from_millis(200))
            .await
            .is_none()
    );

    // Wrong key: a stranger who knows b's public key but is not b's configured peer.
    let stranger_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let (stranger, _stranger_rx) = OverlayPeer::start(
        OverlayConfig::new(
            generate_secret(),
            decode_public(&p.b_public).expect("b public"),
        ),
        stranger_sock,
        p.b_addr,
    )
    .expect("stranger");
    let before = p.b.counters();
    stranger
        .send(&ipv4_udp([6, 6, 6, 6], [10, 2, 0, 1], b"let me in"))
        .await
        .expect("stranger send");
    wait_counters(&p.b, "stranger's handshake refused", |c| {
        c.rx_dropped_invalid > before.rx_dropped_invalid
    })
    .await;
    assert!(
        recv_within(&mut p.b_rx, Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(!stranger.is_established());
    drop(stranger);

    // Truncated and random garbage straight at b.
    let attacker = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let before = p.b.counters();
    attacker.send_to(&data[..10], p.b_addr).await.expect("send");
    // A data datagram cut by one byte, with a fresh counter (a reused counter would be caught
    // by the replay check before decryption even looks at it).
    let mut cut = data[..data.len() - 1].to_vec();
    cut[8..16].copy_from_slice(&1001u64.to_le_bytes());
    attacker.send_to(&cut, p.b_addr).await.expect("send");
    attacker
        .send_to(&[0xff; 200], p.b_addr)
        .await
        .expect("send");
    attacker
        .send_to(&[1, 0, 0, 0], p.b_addr)
        .await
        .expect("send");
    let mut forged = data.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x55; // bad AEAD tag
    // Give it a fresh counter so it is not caught as a replay first.
    forged[8..16].copy_from_slice(&1000u64.to_le_bytes());
    attacker.send_to(&forged, p.b_addr).await.expect("send");
    wait_counters(&p.b, "garbage counted", |c| {
        c.rx_dropped_invalid >= before.rx_dropped_invalid + 5
    })
    .await;
    assert!(
        recv_within(&mut p.b_rx, Duration::from_millis(200))
            .await
            .is_none()
    );

    // After all that, the tunnel still works both ways.
    exchange(&mut p, "after-abuse").await;
    let c = p.b.counters();
    eprintln!("b counters: {c:?}");
    assert!(c.rx_dropped_invalid >= 6, "{c:?}");
    assert!(c.rx_dropped_replay >= 2, "{c:?}");
}
