//! Network namespaces, veth pairs and a tiny ARP/UDP peer for the port tests (and the
//! benchmark). Every name is unique per process and call, and every object is removed by a Drop
//! guard, so tests run in parallel and clean up after a failure.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use outpost_dataplane::{Batch, Port};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name no other test (in this or another test process) uses: `o` + tag + pid + counter,
/// within the 15 bytes an interface name may have.
pub fn unique_name(tag: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("o{tag}{:x}x{n}", std::process::id());
    assert!(name.len() <= 15, "interface name {name} too long");
    name
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is iproute2 installed?): {e}"))
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = run("ip", args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with every interface in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = format!("outpost-test-{}", unique_name("n"));
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `PROGRAM ARGS` inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Turns off IPv6 on `interface`, so the kernel's router solicitations and MLD reports do
    /// not add noise.
    pub fn quiet_ipv6(&self, interface: &str) {
        let key = format!("net.ipv6.conf.{interface}.disable_ipv6=1");
        let _ = self.exec("sysctl", &["-q", "-w", &key]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair; `a` stays where it was created, `b` may be moved into a namespace. Deleting
/// either end deletes both; the guard deletes `a` in the root namespace (ends inside a
/// namespace go with it).
pub struct Veth {
    pub a: String,
    pub b: String,
}

impl Veth {
    /// A pair with `a` in the root namespace and `b` in `ns`, both up.
    pub fn into_netns(ns: &Netns) -> Self {
        let veth = Self {
            a: unique_name("a"),
            b: unique_name("b"),
        };
        ip(&[
            "link", "add", &veth.a, "type", "veth", "peer", "name", &veth.b,
        ]);
        ip(&["link", "set", &veth.b, "netns", &ns.name]);
        let _ = run(
            "sysctl",
            &[
                "-q",
                "-w",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", veth.a),
            ],
        );
        ip(&["link", "set", &veth.a, "up"]);
        ns.quiet_ipv6(&veth.b);
        ns.ip(&["link", "set", &veth.b, "up"]);
        wait_until_up(None, &veth.a);
        wait_until_up(Some(ns), &veth.b);
        veth
    }

    /// A pair with `a` in `ns_a` and `b` in `ns_b`, both up.
    pub fn between(ns_a: &Netns, ns_b: &Netns) -> Self {
        let veth = Self {
            a: unique_name("a"),
            b: unique_name("b"),
        };
        ip(&[
            "link", "add", &veth.a, "type", "veth", "peer", "name", &veth.b,
        ]);
        ip(&["link", "set", &veth.a, "netns", &ns_a.name]);
        ip(&["link", "set", &veth.b, "netns", &ns_b.name]);
        for (ns, end) in [(ns_a, &veth.a), (ns_b, &veth.b)] {
            ns.quiet_ipv6(end);
            ns.ip(&["link", "set", end, "up"]);
        }
        wait_until_up(Some(ns_a), &veth.a);
        wait_until_up(Some(ns_b), &veth.b);
        veth
    }
}

/// Waits until `device` (in `ns`, or the root namespace) is operationally up. Right after `ip
/// link set up` the kernel still drops transmitted frames until its link watcher has activated
/// the device's queueing discipline, which is also when the operational state turns UP.
pub fn wait_until_up(ns: Option<&Netns>, device: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let args = ["-j", "link", "show", device];
        let out = match ns {
            Some(ns) => ns.ip(&args),
            None => ip(&args),
        };
        if out.contains("\"operstate\":\"UP\"") {
            return;
        }
        assert!(Instant::now() < deadline, "{device} did not come up: {out}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.a]);
    }
}

pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IPV4: u16 = 0x0800;
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];

pub fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

/// The ARP reply to `request` (an Ethernet ARP request), claiming its target IP for `mac`.
pub fn arp_reply(request: &[u8], mac: [u8; 6]) -> Vec<u8> {
    let arp = &request[14..];
    let (sender_mac, sender_ip, target_ip) = (&arp[8..14], &arp[14..18], &arp[24..28]);
    let mut reply = Vec::with_capacity(42);
    reply.extend_from_slice(sender_mac);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(&ETH_ARP.to_be_bytes());
    reply.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(target_ip);
    reply.extend_from_slice(sender_mac);
    reply.extend_from_slice(sender_ip);
    reply
}

/// Whether `frame` is an ARP request for `ip`.
pub fn is_arp_request_for(frame: &[u8], ip: [u8; 4]) -> bool {
    frame.len() >= 42 && ethertype(frame) == ETH_ARP && frame[21] == 1 && frame[38..42] == ip
}

/// The payload of `frame` if it is an IPv4 UDP datagram to `ip`:`port`.
pub fn udp_payload_to(frame: &[u8], ip: [u8; 4], port: u16) -> Option<&[u8]> {
    if frame.len() < 42 || ethertype(frame) != ETH_IPV4 || frame[23] != 17 || frame[30..34] != ip {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = frame.get(14 + ihl..)?;
    if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != port {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    udp.get(8..len)
}

/// Plays a host at `ip` (MAC [`PEER_MAC`]) behind `port`: answers ARP requests for `ip` and
/// waits for a UDP datagram to `ip`:9 carrying `payload`, which the kernel on the other side only
/// sends once our ARP reply (transmitted by the port) was accepted. Returns the frames seen.
pub fn answer_arp_until_udp(
    port: &mut dyn Port,
    ip: [u8; 4],
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut batch = Batch::new();
    let mut answered = 0;
    while Instant::now() < deadline {
        port.wait_readable(Duration::from_millis(50))
            .map_err(|e| format!("wait: {e}"))?;
        batch.clear();
        port.recv_batch(&mut batch, 64)
            .map_err(|e| format!("recv: {e}"))?;
        for packet in batch.iter() {
            let frame = packet.data;
            seen.push(frame.to_vec());
            if is_arp_request_for(frame, ip) {
                let reply = arp_reply(frame, PEER_MAC);
                let sent = port
                    .send_batch(&mut std::iter::once(&reply[..]))
                    .map_err(|e| format!("send: {e}"))?;
                assert_eq!(sent, 1, "the ARP reply was not accepted by the port");
                answered += 1;
            } else if udp_payload_to(frame, ip, 9) == Some(payload) {
                assert_eq!(&frame[..6], &PEER_MAC, "datagram not addressed to our MAC");
                return Ok(seen);
            }
        }
    }
    Err(format!(
        "no UDP datagram within {timeout:?}; answered {answered} ARP requests; saw {} frames",
        seen.len()
    ))
}

/// Makes the kernel in `ns` send one UDP datagram with `payload` to `ip`:9 (bash's /dev/udp, so
/// nothing beyond iproute2 and bash is needed).
pub fn send_udp_from(ns: &Netns, ip: [u8; 4], payload: &str) {
    let target = format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
    let script = format!("printf '%s' '{payload}' > /dev/udp/{target}/9");
    let out = ns.exec("bash", &["-c", &script]);
    assert!(
        out.status.success(),
        "sending UDP in {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test frame: broadcast destination, locally administered source, EtherType 0x88b5 (local
/// experimental), then `seq` and padding up to `len` bytes.
pub fn test_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x42]);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.resize(len.max(18), 0x5a);
    frame
}

/// The sequence number of a [`test_frame`], if `frame` is one.
pub fn test_frame_seq(frame: &[u8]) -> Option<u32> {
    (frame.len() >= 18 && frame[12..14] == [0x88, 0xb5])
        .then(|| u32::from_be_bytes([frame[14], frame[15], frame[16], frame[17]]))
}
