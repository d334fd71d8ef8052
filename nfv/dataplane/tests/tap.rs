//! TAP ports on real TAP devices inside network namespaces the tests create, with the
//! namespace's kernel as the peer. Needs root, `/dev/net/tun`, `ip` and `bash`.

mod common;

use std::time::{Duration, Instant};

use common::{Netns, answer_arp_until_udp, send_udp_from, unique_name};
use outpost_dataplane::{Batch, Port, PortSpec, TapPort, open_port};

const PEER_IP: [u8; 4] = [10, 201, 0, 2];

/// Brings `device` up in `ns` with address 10.201.0.1/24.
fn configure(ns: &Netns, device: &str) {
    ns.quiet_ipv6(device);
    ns.ip(&["link", "set", device, "up"]);
    ns.ip(&["addr", "add", "10.201.0.1/24", "dev", device]);
}

fn device_exists(ns: &Netns, device: &str) -> bool {
    ns.exec("ip", &["link", "show", device]).status.success()
}

#[test]
fn tap_port_answers_arp_and_receives_the_kernels_datagram() {
    let ns = Netns::new();
    let device = unique_name("t");
    let mut port = TapPort::open_in_netns(0, "tap", &device, &ns.name).unwrap();
    assert_eq!(port.interface(), device);
    assert!(port.readiness_fd().is_some());
    configure(&ns, &device);

    send_udp_from(&ns, PEER_IP, "hello-tap");
    let seen =
        answer_arp_until_udp(&mut port, PEER_IP, b"hello-tap", Duration::from_secs(10)).unwrap();
    assert!(seen.iter().any(|f| common::is_arp_request_for(f, PEER_IP)));
    let stats = port.stats();
    assert!(stats.rx_packets >= 2 && stats.tx_packets >= 1, "{stats:?}");
}

#[test]
fn a_created_device_disappears_with_the_port() {
    let ns = Netns::new();
    let device = unique_name("t");
    let port = TapPort::open_in_netns(0, "tap", &device, &ns.name).unwrap();
    assert!(device_exists(&ns, &device));
    drop(port);
    // Closing the last descriptor unregisters the device; a child process forked by a parallel
    // test may hold a copy until its exec closes it, so allow a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while device_exists(&ns, &device) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!device_exists(&ns, &device));
}

#[test]
fn tap_port_attaches_to_an_existing_persistent_device() {
    let ns = Netns::new();
    let device = unique_name("t");
    ns.ip(&["tuntap", "add", "dev", &device, "mode", "tap"]);
    let spec = PortSpec::Tap {
        name: "uplink".into(),
        interface: Some(device.clone()),
        netns: Some(ns.name.clone()),
    };
    let mut port = open_port(0, &spec).unwrap();
    configure(&ns, &device);

    send_udp_from(&ns, PEER_IP, "hello-persistent");
    answer_arp_until_udp(
        &mut *port,
        PEER_IP,
        b"hello-persistent",
        Duration::from_secs(10),
    )
    .unwrap();
    drop(port);
    // The device was not ours to create, so it outlives the port.
    assert!(device_exists(&ns, &device));
}

#[test]
fn an_empty_name_lets_the_kernel_choose_one() {
    let ns = Netns::new();
    let port = TapPort::open_in_netns(0, "tap", "", &ns.name).unwrap();
    assert!(port.interface().starts_with("tap"), "{}", port.interface());
    assert!(device_exists(&ns, port.interface()));
}

#[test]
fn frames_written_to_the_tap_reach_the_kernel_and_reads_never_block() {
    let ns = Netns::new();
    let device = unique_name("t");
    let mut port = TapPort::open_in_netns(0, "tap", &device, &ns.name).unwrap();
    configure(&ns, &device);
    let mut batch = Batch::new();
    // Drain whatever the kernel sent on link-up; a drained port returns 0 at once.
    while port.recv_batch(&mut batch, 64).unwrap() > 0 {}

    let rx_before = rx_packets(&ns, &device);
    let frames: Vec<_> = (0..10).map(|seq| common::test_frame(seq, 64)).collect();
    assert_eq!(port.send(frames.iter().map(Vec::as_slice)).unwrap(), 10);
    assert_eq!(rx_packets(&ns, &device) - rx_before, 10);
}

/// The device's received-packet count as the kernel reports it.
fn rx_packets(ns: &Netns, device: &str) -> u64 {
    let out = ns.ip(&["-s", "-j", "link", "show", device]);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    value[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}
