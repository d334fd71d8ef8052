//! AF_PACKET ports on real veth interfaces, with the kernel of a network namespace as the peer.
//! Needs root (CAP_NET_ADMIN and CAP_NET_RAW), `ip` and `bash`.

mod common;

use std::time::{Duration, Instant};

use common::{Netns, Veth, answer_arp_until_udp, ip, send_udp_from, test_frame, test_frame_seq};
use outpost_dataplane::{AfPacketOptions, AfPacketPort, Batch, Port, PortSpec, open_port};

const NS_IP: [u8; 4] = [10, 200, 0, 2];
const PEER_IP: [u8; 4] = [10, 200, 0, 1];

/// Receives on `port` until `want` test frames arrived or `timeout` passed; returns their
/// sequence numbers and the raw frames.
fn collect_test_frames(
    port: &mut dyn Port,
    want: usize,
    timeout: Duration,
) -> (Vec<u32>, Vec<Vec<u8>>) {
    let deadline = Instant::now() + timeout;
    let (mut seqs, mut frames) = (Vec::new(), Vec::new());
    let mut batch = Batch::new();
    while seqs.len() < want && Instant::now() < deadline {
        port.wait_readable(Duration::from_millis(20)).unwrap();
        batch.clear();
        port.recv_batch(&mut batch, 256).unwrap();
        for packet in batch.iter() {
            if let Some(seq) = test_frame_seq(packet.data) {
                seqs.push(seq);
                frames.push(packet.data.to_vec());
            }
        }
    }
    (seqs, frames)
}

#[test]
fn host_side_port_answers_arp_from_a_namespace_and_receives_the_kernels_datagram() {
    let ns = Netns::new();
    let veth = Veth::into_netns(&ns);
    ns.ip(&["addr", "add", "10.200.0.2/24", "dev", &veth.b]);
    let mut port = AfPacketPort::open(0, "host", &veth.a, &AfPacketOptions::default()).unwrap();
    assert_eq!(port.interface(), veth.a);

    send_udp_from(&ns, PEER_IP, "hello-outpost");
    let seen = answer_arp_until_udp(
        &mut port,
        PEER_IP,
        b"hello-outpost",
        Duration::from_secs(10),
    )
    .unwrap();

    // The ARP request came from the namespace's address.
    assert!(
        seen.iter()
            .any(|f| common::is_arp_request_for(f, PEER_IP) && f[28..32] == NS_IP)
    );
    let stats = port.stats();
    assert!(stats.rx_packets >= 2, "{stats:?}");
    assert!(stats.tx_packets >= 1, "{stats:?}");
    assert_eq!(stats.tx_drops, 0);
}

#[test]
fn frames_sent_from_the_host_port_arrive_in_the_namespace_and_are_not_echoed_back() {
    let ns = Netns::new();
    let veth = Veth::into_netns(&ns);
    let options = AfPacketOptions::default();
    let mut host = AfPacketPort::open(0, "host", &veth.a, &options).unwrap();
    let mut inside = AfPacketPort::open_in_netns(1, "inside", &veth.b, &ns.name, &options).unwrap();

    let frames: Vec<_> = (0..32)
        .map(|seq| test_frame(seq, 60 + seq as usize * 40))
        .collect();
    assert_eq!(host.send(frames.iter().map(Vec::as_slice)).unwrap(), 32);

    let (seqs, received) = collect_test_frames(&mut inside, 32, Duration::from_secs(5));
    assert_eq!(seqs, (0..32).collect::<Vec<_>>());
    assert_eq!(received, frames, "frames must arrive byte for byte");

    // The sender's own socket ignores outgoing frames.
    let (echoed, _) = collect_test_frames(&mut host, 1, Duration::from_millis(300));
    assert!(
        echoed.is_empty(),
        "the port saw its own transmissions: {echoed:?}"
    );
    let stats = host.stats();
    assert_eq!((stats.tx_packets, stats.tx_drops), (32, 0));
    assert_eq!(
        stats.tx_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
}

#[test]
fn ports_in_two_namespaces_carry_a_burst_in_order_without_loss() {
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    let veth = Veth::between(&ns_a, &ns_b);
    let options = AfPacketOptions {
        rx_block_size: 64 * 1024,
        rx_block_count: 64,
        ..AfPacketOptions::default()
    };
    let mut tx = AfPacketPort::open_in_netns(0, "a", &veth.a, &ns_a.name, &options).unwrap();
    let mut rx = AfPacketPort::open_in_netns(1, "b", &veth.b, &ns_b.name, &options).unwrap();

    const COUNT: u32 = 5000;
    let receiver = std::thread::spawn(move || {
        let (seqs, _) = collect_test_frames(&mut rx, COUNT as usize, Duration::from_secs(20));
        (seqs, rx.stats())
    });
    let mut seq = 0;
    while seq < COUNT {
        // Pace by the TX ring's free slots so the sender itself never drops.
        let room = tx.tx_room(64).min((COUNT - seq) as usize);
        if room == 0 {
            tx.wait_writable(Duration::from_millis(10)).unwrap();
            continue;
        }
        let frames: Vec<_> = (seq..seq + room as u32)
            .map(|s| test_frame(s, 64))
            .collect();
        assert_eq!(tx.send(frames.iter().map(Vec::as_slice)).unwrap(), room);
        seq += room as u32;
        if seq % 512 < 64 {
            // Leave the receiver time to drain: this test checks correctness, not speed.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (seqs, rx_stats) = receiver.join().unwrap();
    assert_eq!(
        seqs.len(),
        COUNT as usize,
        "lost frames; receiver {rx_stats:?}"
    );
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "out of order");
    assert_eq!(rx_stats.rx_drops, 0);
    assert_eq!(tx.stats().tx_packets, u64::from(COUNT));
}

#[test]
fn vlan_tagged_frames_arrive_with_their_tag() {
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    let veth = Veth::between(&ns_a, &ns_b);
    let options = AfPacketOptions::default();
    let mut tx = AfPacketPort::open_in_netns(0, "a", &veth.a, &ns_a.name, &options).unwrap();
    let mut rx = AfPacketPort::open_in_netns(1, "b", &veth.b, &ns_b.name, &options).unwrap();

    // dst, src, 802.1Q tag (VLAN 100, priority 3), then the test EtherType and a payload.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x43, 0x81, 0x00, 0x60, 0x64, 0x88, 0xb5]);
    frame.resize(64, 0x77);
    tx.send([&frame[..]]).unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut batch = Batch::new();
    while Instant::now() < deadline {
        rx.wait_readable(Duration::from_millis(20)).unwrap();
        batch.clear();
        rx.recv_batch(&mut batch, 64).unwrap();
        if let Some(p) = batch.iter().find(|p| p.data[6..12] == frame[6..12]) {
            assert_eq!(p.data, &frame[..], "the VLAN tag must be back in place");
            return;
        }
    }
    panic!("the tagged frame did not arrive");
}

#[test]
fn oversize_and_empty_frames_are_counted_as_transmit_drops() {
    let ns = Netns::new();
    let veth = Veth::into_netns(&ns);
    let mut port = AfPacketPort::open(0, "host", &veth.a, &AfPacketOptions::default()).unwrap();
    assert_eq!(port.max_tx_frame(), 1500 + 18);
    let big = vec![0u8; 1519];
    let ok = test_frame(1, 1518);
    assert_eq!(port.send([&big[..], &[][..], &ok[..]]).unwrap(), 1);
    let stats = port.stats();
    assert_eq!((stats.tx_packets, stats.tx_drops), (1, 2));
}

#[test]
fn promiscuous_mode_lasts_as_long_as_the_port() {
    let ns = Netns::new();
    let veth = Veth::into_netns(&ns);
    let promiscuity = || {
        let details = ip(&["-d", "link", "show", &veth.a]);
        details
            .split_whitespace()
            .skip_while(|w| *w != "promiscuity")
            .nth(1)
            .and_then(|n| n.parse::<u32>().ok())
            .expect("ip -d link prints promiscuity")
    };
    assert_eq!(promiscuity(), 0);
    let spec = PortSpec::AfPacket {
        name: "promisc".into(),
        interface: veth.a.clone(),
        netns: None,
        options: AfPacketOptions {
            promiscuous: true,
            ..AfPacketOptions::default()
        },
    };
    let port = open_port(0, &spec).unwrap();
    assert!(port.readiness_fd().is_some());
    assert_eq!(promiscuity(), 1);
    drop(port);
    // The socket closes with its last descriptor; a child forked by a parallel test may hold a
    // copy until its exec closes it, so allow a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while promiscuity() != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(promiscuity(), 0);
}

#[test]
fn a_spec_naming_a_namespace_opens_the_port_there() {
    let ns = Netns::new();
    let veth = Veth::into_netns(&ns);
    let spec = PortSpec::AfPacket {
        name: "n3".into(),
        interface: veth.b.clone(),
        netns: Some(ns.name.clone()),
        options: AfPacketOptions::default(),
    };
    let mut port = open_port(4, &spec).unwrap();
    let mut host = AfPacketPort::open(0, "host", &veth.a, &AfPacketOptions::default()).unwrap();
    host.send([&test_frame(7, 60)[..]]).unwrap();
    let (seqs, _) = collect_test_frames(&mut *port, 1, Duration::from_secs(5));
    assert_eq!(seqs, [7]);
    // The interface exists only inside the namespace, so opening it outside fails.
    let outside = PortSpec::AfPacket {
        name: "n3".into(),
        interface: veth.b.clone(),
        netns: None,
        options: AfPacketOptions::default(),
    };
    assert!(open_port(0, &outside).is_err());
}
