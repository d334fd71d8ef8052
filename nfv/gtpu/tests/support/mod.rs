//! Helpers of the interop tests: the reference Python, tshark, and a classic pcap writer that
//! wraps payloads in IPv4/UDP (linktype RAW) with smoltcp's wire module.
//!
//! The PFCP interop tests include this file too (`#[path]`).

#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the repository root")
        .to_path_buf()
}

/// The reference virtualenv's python (scapy and pycrate), from `OUTPOST_PY` or
/// `target/pyenv`.
pub fn python() -> PathBuf {
    let py = std::env::var_os("OUTPOST_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    assert!(
        py.is_file(),
        "no reference python at {}: run scripts/pyenv.sh (scripts/test.sh does)",
        py.display()
    );
    py
}

/// Runs a reference script with `args`, feeding `stdin`, and parses the JSON it prints.
pub fn run_script(script: &str, args: &[&str], stdin: Option<&Value>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("conformance/reference").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the reference python starts");
    let input = stdin.map(|v| v.to_string()).unwrap_or_default();
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("the script reads its input");
    let out = child.wait_with_output().expect("the reference script runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One UDP datagram to put in a capture.
pub struct Datagram<'a> {
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port.
    pub dst: (Ipv4Addr, u16),
    /// UDP payload.
    pub payload: &'a [u8],
}

/// Writes a classic pcap (linktype 101, raw IPv4) with one IPv4/UDP frame per datagram, both
/// checksums computed.
pub fn write_pcap(path: &Path, datagrams: &[Datagram<'_>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes());
    let caps = ChecksumCapabilities::default();
    for (i, d) in datagrams.iter().enumerate() {
        let udp = UdpRepr {
            src_port: d.src.1,
            dst_port: d.dst.1,
        };
        let udp_len = udp.header_len() + d.payload.len();
        let ip = Ipv4Repr {
            src_addr: d.src.0,
            dst_addr: d.dst.0,
            next_header: IpProtocol::Udp,
            payload_len: udp_len,
            hop_limit: 64,
        };
        let mut frame = vec![0u8; ip.buffer_len() + udp_len];
        let mut ip_packet = Ipv4Packet::new_unchecked(&mut frame[..]);
        ip.emit(&mut ip_packet, &caps);
        let mut udp_packet = UdpPacket::new_unchecked(ip_packet.payload_mut());
        udp.emit(
            &mut udp_packet,
            &IpAddress::Ipv4(d.src.0),
            &IpAddress::Ipv4(d.dst.0),
            d.payload.len(),
            |buf| buf.copy_from_slice(d.payload),
            &caps,
        );
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).expect("the capture is written");
}

/// Dissects a capture with `tshark -T json`; one `_source.layers` object per frame.
pub fn tshark_layers(path: &Path) -> Vec<Value> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "json", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"])
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark does not run ({e}): install it (scripts/test.sh does: apt-get install tshark)")
        });
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<Value> = serde_json::from_slice(&out.stdout).expect("tshark prints JSON");
    frames
        .into_iter()
        .map(|f| f["_source"]["layers"].clone())
        .collect()
}

/// Every expert info of a frame as (severity, message), searched through the whole tree.
pub fn expert_infos(layers: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                if let Some(sev) = map.get("_ws.expert.severity") {
                    let msg = map
                        .get("_ws.expert.message")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.push((
                        sev.as_str().unwrap_or_default().to_string(),
                        msg.to_string(),
                    ));
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(layers, &mut out);
    out
}

/// Expert severity "warning" (PI_WARN) as tshark prints it.
pub const SEVERITY_WARN: &str = "6291456";
/// Expert severity "error" (PI_ERROR) as tshark prints it.
pub const SEVERITY_ERROR: &str = "8388608";

/// Asserts that a frame is free of malformed-packet markers and of expert infos at warning or
/// error level (notes and chats, e.g. "sequence number", are information, not complaints).
pub fn assert_well_formed(name: &str, layers: &Value) {
    let text = layers.to_string();
    assert!(
        !text.contains("_ws.malformed") && !text.contains("Malformed Packet"),
        "{name}: tshark says malformed: {layers:#}"
    );
    let complaints: Vec<_> = expert_infos(layers)
        .into_iter()
        .filter(|(sev, _)| sev == SEVERITY_WARN || sev == SEVERITY_ERROR)
        .collect();
    assert!(
        complaints.is_empty(),
        "{name}: tshark expert warnings or errors {complaints:?}"
    );
}

/// The first value of a field anywhere in a frame's tree (tshark nests fields in subtrees).
pub fn find_field<'a>(layers: &'a Value, field: &str) -> Option<&'a Value> {
    find_all(layers, field).into_iter().next()
}

/// Every value of a field anywhere in a frame's tree, in document order.
pub fn find_all<'a>(layers: &'a Value, field: &str) -> Vec<&'a Value> {
    fn walk<'a>(v: &'a Value, field: &str, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == field {
                        out.push(v);
                    }
                    walk(v, field, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, field, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(layers, field, &mut out);
    out
}
