//! The UPF plugin end to end, driven by peers no one here wrote: a scapy SMF over PFCP (UDP) and
//! scapy-built GTP-U from a gNB network namespace, with the data network in another namespace.
//! The host owns two AF_PACKET ports on the root ends of the two veth pairs and answers ARP for
//! the UPF's N3 and N6 addresses.
//!
//! ```text
//!  gNB ns  g0 10.0.1.2 ──veth── n3 port (10.0.1.1) ┐
//!                                                  ├─ outpost (UPF plugin)  ← PFCP 127.0.0.1
//!  DN ns   d0 10.0.2.2 ──veth── n6 port (10.0.2.1) ┘
//!          route 10.45.0.0/16 via 10.0.2.1 (the UEs)
//! ```

#[path = "support/models.rs"]
mod support;
#[path = "support/upf.rs"]
mod upf;

use std::process::Command;

use serde_json::Value;
use support::{python, repo};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and two veth pairs, removed when dropped (even when the test fails).
struct Topology {
    gnb: String,
    dn: String,
    n3: String,
    n6: String,
}

impl Topology {
    fn new() -> Topology {
        let id = std::process::id() % 100_000;
        let t = Topology {
            gnb: format!("upf-gnb-{id}"),
            dn: format!("upf-dn-{id}"),
            n3: format!("n3u{id}"),
            n6: format!("n6u{id}"),
        };
        t.teardown();
        for (ns, root, inner, addr) in [
            (&t.gnb, &t.n3, "g0", "10.0.1.2/24"),
            (&t.dn, &t.n6, "d0", "10.0.2.2/24"),
        ] {
            ip(&["netns", "add", ns]);
            ip(&[
                "link", "add", root, "type", "veth", "peer", "name", inner, "netns", ns,
            ]);
            ip(&["-n", ns, "addr", "add", addr, "dev", inner]);
            ip(&["-n", ns, "link", "set", inner, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // No IPv6 chatter on the data plane; checksums computed in software (veth offload
            // would leave them partial on the wire).
            let _ = Command::new("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{root}.disable_ipv6=1")])
                .status();
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "ethtool", "-K", inner, "tx", "off"])
                .output();
            ip(&["link", "set", root, "up"]);
        }
        ip(&[
            "-n",
            &t.dn,
            "route",
            "add",
            "10.45.0.0/16",
            "via",
            "10.0.2.1",
        ]);
        t
    }

    fn teardown(&self) {
        for ns in [&self.gnb, &self.dn] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        for link in [&self.n3, &self.n6] {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn manifest(t: &Topology) -> String {
    format!(
        r#"
[ports.n3]
kind = "af-packet"
interface = "{n3}"
address = "10.0.1.1/24"

[ports.n6]
kind = "af-packet"
interface = "{n6}"
address = "10.0.2.1/24"

{tables}
[plugins.upf]
kind = "network-function"
component = "upf.wasm"
version = "1"
config = {{ n3-address = "10.0.1.1", node-id = "10.0.1.1" }}
grants.ports = ["n3", "n6"]
grants.tables = {granted}
grants.control = "127.0.0.1:0"
limits = {{ memory_mb = 64, deadline_ms = 1000 }}
"#,
        n3 = t.n3,
        n6 = t.n6,
        tables = upf::tables(100_000),
        granted = upf::GRANTED_TABLES,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scapy_smf_and_gnb_drive_the_upf_plugin_end_to_end_in_network_namespaces() {
    let topo = Topology::new();
    let dir = tempfile::tempdir().unwrap();
    let app = support::start(dir.path(), &manifest(&topo)).await;
    let status = app.plugin_status("upf").unwrap();
    assert_eq!(status.state, "running", "{status:?}");
    let control = app.network_functions()[0].control.clone().unwrap();

    const SESSIONS: usize = 4;
    const PACKETS: usize = 5;
    let out = tokio::task::spawn_blocking({
        let (gnb, dn) = (topo.gnb.clone(), topo.dn.clone());
        move || {
            Command::new(python())
                .arg(repo().join("conformance/reference/upf_peer.py"))
                .args(["run", "--upf", &control, "--gnb-ns", &gnb, "--dn-ns", &dn])
                .args(["--sessions", &SESSIONS.to_string()])
                .args(["--packets", &PACKETS.to_string()])
                .output()
                .expect("the scapy peer runs")
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "upf_peer.py failed: {stderr}");
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let nf = &app.network_functions()[0];
    let context = format!("report: {r:#}\nhost: {nf:?}\n{stderr}");

    // PFCP: no session before an association; association and heartbeat answered.
    assert_eq!(
        r["establishment_without_association_cause"], 72,
        "{context}"
    );
    assert_eq!(r["association_cause"], 1, "{context}");
    assert_eq!(r["association_response_type"], 6, "{context}");
    assert_eq!(r["upf_node_id"], "10.0.1.1", "{context}");
    assert_eq!(r["up_features_present"], true, "{context}");
    assert_eq!(r["heartbeat_response_type"], 2, "{context}");

    // Sessions: accepted, each with a UPF-chosen TEID on the N3 address.
    let sessions = r["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), SESSIONS);
    let mut teids = std::collections::HashSet::new();
    for s in sessions {
        assert_eq!(s["cause"], 1, "{context}");
        assert_eq!(s["teid_ipv4"], "10.0.1.1", "{context}");
        assert!(
            teids.insert(s["teid"].as_u64().unwrap()),
            "TEIDs are unique: {context}"
        );
    }

    // Uplink: every G-PDU came out of N6 decapsulated, from its UE.
    let dn_got = r["dn"]["received"].as_array().unwrap();
    assert_eq!(dn_got.len(), SESSIONS * PACKETS, "{context}");
    for i in 0..SESSIONS {
        for k in 0..PACKETS {
            let want = format!("ul-{i}-{k}");
            assert!(
                dn_got.iter().any(|p| p["payload"] == want.as_str()
                    && p["from"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("10.45.0.{}:", i + 1))),
                "{want} missing: {context}"
            );
        }
    }

    // Downlink: encapsulated toward the gNB with the FAR's TEID and the QER's QFI; plus the
    // echo response and the error indication for the unknown TEID.
    let back = r["gnb"]["received"].as_array().unwrap();
    let gpdus: Vec<&Value> = back.iter().filter(|p| p["type"] == 255).collect();
    assert_eq!(gpdus.len(), SESSIONS * PACKETS, "{context}");
    for p in &gpdus {
        let payload = p["payload"].as_str().unwrap();
        let i: u64 = payload.split('-').nth(1).unwrap().parse().unwrap();
        assert_eq!(p["teid"], 0x10000 + i, "{context}");
        assert_eq!(p["inner_dst"], format!("10.45.0.{}", i + 1), "{context}");
        assert_eq!(p["from"], "10.0.1.1:2152", "{context}");
    }
    assert!(
        back.iter().any(|p| p["type"] == 2),
        "echo response: {context}"
    );
    assert!(
        back.iter().any(|p| p["type"] == 26),
        "error indication for the unknown TEID: {context}"
    );

    // Path switch: an end marker on the old tunnel, then traffic on the new one.
    assert_eq!(r["modification_cause"], 1, "{context}");
    let after = r["after_switch"]["received"].as_array().unwrap();
    assert!(
        after
            .iter()
            .any(|p| p["type"] == 254 && p["teid"] == 0x10000),
        "end marker on the old TEID: {context}"
    );
    assert!(
        after
            .iter()
            .any(|p| p["type"] == 255 && p["teid"] == 0x20000 && p["payload"] == "dl-0-0"),
        "downlink on the new TEID: {context}"
    );
    for p in gpdus
        .iter()
        .copied()
        .chain(after.iter().filter(|p| p["type"] == 255))
    {
        assert_eq!(
            p["qfi"], 9,
            "the QER's QFI in a PDU session container: {context}"
        );
    }

    // Errors, as TS 29.244 clause 7.6 wants them. An unknown session: "Session context not
    // found".
    assert_eq!(r["unknown_session_cause"], 65, "{context}");
    // A request whose header is intact but whose body was cut short, the length field
    // promising more than the datagram holds (7.6.3): answered, to its sequence number, by the
    // response to that request with "Invalid Length".
    let truncated = &r["truncated_answer"];
    assert_eq!(truncated["type"], 51, "establishment response: {context}");
    assert_eq!(truncated["seq"], 999, "{context}");
    assert_eq!(truncated["cause"], 68, "Invalid Length: {context}");
    // Cut at an IE boundary, length consistent, so only mandatory IEs are missing (7.6.4.1):
    // "Mandatory IE missing", naming one of them (CP F-SEID, Create PDR or Create FAR) in the
    // Offending IE.
    let missing = &r["missing_ie_answer"];
    assert_eq!(missing["type"], 51, "establishment response: {context}");
    assert_eq!(missing["seq"], 998, "{context}");
    assert_eq!(missing["cause"], 66, "Mandatory IE missing: {context}");
    assert!(
        [57, 1, 3].contains(&missing["offending_ie"].as_u64().unwrap_or(0)),
        "the Offending IE names a missing mandatory IE: {context}"
    );
    // Too short to hold a PFCP header (7.6.3): silently discarded. The UPF answers datagrams
    // in order, so the first answer after it is the one to the heartbeat sent next.
    let runt = &r["runt_answer"];
    assert_eq!(runt["type"], 2, "only the heartbeat is answered: {context}");
    assert_eq!(runt["seq"], runt["heartbeat_seq"], "{context}");

    // Usage: the volume threshold of session 0 was reported; deletion reports what was counted.
    let reports = r["session_reports"].as_array().unwrap();
    assert!(
        reports.iter().any(|rep| rep["usar"] == true
            && rep["usage"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["volth"] == true)),
        "a volume-threshold report: {context}"
    );
    let deletions = r["deletions"].as_array().unwrap();
    assert_eq!(deletions.len(), SESSIONS);
    let ul_bytes_per_session = r["gnb"]["sent_inner_bytes"].as_u64().unwrap() / SESSIONS as u64;
    let dl_bytes_per_session = r["dn"]["sent_ip_bytes"].as_u64().unwrap() / SESSIONS as u64;
    for d in deletions {
        assert_eq!(d["cause"], 1, "{context}");
        let usage = d["usage"].as_array().unwrap();
        assert!(!usage.is_empty(), "{context}");
        let u = &usage[usage.len() - 1];
        assert_eq!(u["termr"], true, "{context}");
        if d["i"] != 0 {
            // Session 0's counters were reset by its threshold report; the others saw everything.
            assert_eq!(
                u["uplink"].as_u64(),
                Some(ul_bytes_per_session),
                "{context}"
            );
            assert_eq!(
                u["downlink"].as_u64(),
                Some(dl_bytes_per_session),
                "{context}"
            );
        }
    }
    assert_eq!(nf.stats.rejected_batches, 0, "{context}");
    // The operator's view (status, web UI) reads the association and the sessions from the
    // UPF's own tables: one SMF associated, every session deleted.
    let pfcp = app.network_functions()[0]
        .pfcp
        .clone()
        .expect("a UPF's PFCP view");
    assert_eq!(pfcp.associations.len(), 1, "{pfcp:?}");
    assert!(
        pfcp.associations[0].node_id.ends_with(&hex_ipv4(SMF_NODE)),
        "{pfcp:?}"
    );
    assert_eq!(pfcp.sessions, 0, "{pfcp:?}");
    app.shutdown().await;
}

/// The Node ID `upf_peer.py` gives its SMF.
const SMF_NODE: &str = "10.0.9.9";

fn hex_ipv4(addr: &str) -> String {
    let ip: std::net::Ipv4Addr = addr.parse().unwrap();
    ip.octets().iter().map(|b| format!("{b:02x}")).collect()
}
