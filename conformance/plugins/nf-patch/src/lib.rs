//! A patch cable with a memory, for the host's network-function tests:
//!
//! - `process`: every packet from port 0 goes out of port 1 and the other way round, with the
//!   configured `version` byte appended (so a test sees which version forwarded it); packets
//!   whose first byte is `0xdd` are dropped; the packet and byte counts of each ingress port are
//!   added to the host table `patch-counts` (exact, key `in/<port>`), one `count` per port per
//!   batch; a packet whose first byte is `0xee` makes the call trap (config `trap-on-ee`);
//! - `control`: answers `<version>:<datagram>` to the sender; a datagram `inject:<port>` sends
//!   a packet `injected` out of that port through `nf-io.transmit`;
//! - `tick`: counts ticks in `patch-counts` under `ticks`.

use outpost_sdk::config;
use outpost_sdk::network_function::packet_types::{BatchResult, Verdict};
use outpost_sdk::network_function::{Guest, Table, nf_io, open_table};

struct Patch;

fn counts() -> Result<Table, String> {
    open_table("patch-counts")
}

fn version() -> u8 {
    config::get("version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Guest for Patch {
    fn process(ingress: Vec<u16>, lengths: Vec<u32>, data: Vec<u8>) -> BatchResult {
        let tag = version();
        let trap = config::get("trap-on-ee").as_deref() == Some("true");
        let mut out = BatchResult {
            verdicts: Vec::with_capacity(ingress.len()),
            lengths: Vec::with_capacity(ingress.len()),
            data: Vec::with_capacity(data.len() + ingress.len()),
        };
        let mut per_port = [(0u64, 0u64); 2];
        let mut at = 0usize;
        for (port, len) in ingress.iter().zip(&lengths) {
            let packet = &data[at..at + *len as usize];
            at += *len as usize;
            if let Some(c) = per_port.get_mut(usize::from(*port)) {
                c.0 += 1;
                c.1 += u64::from(*len);
            }
            match packet.first() {
                Some(0xee) if trap => panic!("asked to trap"),
                Some(0xdd) | None => {
                    out.verdicts.push(Verdict::Drop);
                    out.lengths.push(0);
                }
                Some(_) => {
                    out.verdicts.push(Verdict::Forward(1 - (*port).min(1)));
                    out.lengths.push(*len + 1);
                    out.data.extend_from_slice(packet);
                    out.data.push(tag);
                }
            }
        }
        if let Ok(table) = counts() {
            for (port, (packets, bytes)) in per_port.iter().enumerate() {
                if *packets > 0 {
                    let _ = table.count(format!("in/{port}").as_bytes(), *packets, *bytes);
                }
            }
        }
        out
    }

    fn control(peer: String, datagram: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        if let Some(port) = datagram
            .strip_prefix(b"inject:")
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            let sent = nf_io::transmit(port, b"injected");
            let answer = match sent {
                Ok(()) => "sent".to_string(),
                Err(e) => format!("refused: {e}"),
            };
            return vec![(peer, answer.into_bytes())];
        }
        let mut reply = format!("{}:", version()).into_bytes();
        reply.extend_from_slice(&datagram);
        vec![(peer, reply)]
    }

    fn tick(_now_ms: u64) {
        if let Ok(table) = counts() {
            let _ = table.count(b"ticks", 1, 0);
        }
    }
}

outpost_sdk::export_network_function!(Patch);
