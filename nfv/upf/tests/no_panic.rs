//! Property tests: no input, however broken, panics the UPF, and every batch gets one verdict
//! per packet.

mod common;

use common::*;
use outpost_pfcp::{Body, Message};
use outpost_upf::{N3, N6, TableId, Tables};
use proptest::prelude::*;

/// A harness with an association and the usual session; the session's uplink TEID.
fn established() -> (Harness, u32) {
    let mut h = Harness::new();
    h.associate();
    let (_, teid) = h.establish(session_request());
    (h, teid)
}

/// Valid messages and packets to mutate.
fn seeds(teid: u32) -> Vec<Vec<u8>> {
    vec![
        Message::session(0, 7, Body::SessionEstablishmentRequest(session_request()))
            .to_vec()
            .unwrap(),
        gpdu(GNB, teid, Some(9), &ue_packet(120)),
        server_packet(90),
        udp_packet(
            GNB,
            N3_ADDR,
            2152,
            2152,
            &[0x32, 1, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0],
        ),
    ]
}

fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for (at, v) in flips {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] ^= v;
        }
    }
    let keep = bytes.len().saturating_sub(cut % 8);
    bytes.truncate(keep);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (mut h, _) = established();
        let _ = h.send_raw(&data);
        let mut d = data.clone();
        if d.len() >= 2 {
            d[0] = 0x21;
        }
        let _ = h.send_raw(&d);
    }

    #[test]
    fn mutated_pfcp_and_packets_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        port in 0u16..3,
    ) {
        let (mut h, teid) = established();
        let bytes = mutate(seeds(teid)[which].clone(), &flips, cut);
        let _ = h.send_raw(&bytes);
        let out = h.batch(&[(port, bytes.clone()), (N3, gpdu(GNB, teid, Some(9), &ue_packet(60))), (N6, bytes)]);
        prop_assert_eq!(out.verdicts.len(), 3);
        h.upf.tick(&mut h.tables, &mut h.io, 1 + cut as u64 % 100_000);
    }

    #[test]
    fn arbitrary_batches_get_one_verdict_per_packet(
        packets in proptest::collection::vec((0u16..4, proptest::collection::vec(any::<u8>(), 0..120)), 0..20),
        extra in proptest::collection::vec(any::<u8>(), 0..8),
        lie in any::<bool>(),
    ) {
        let (mut h, _) = established();
        let ingress: Vec<u16> = packets.iter().map(|p| p.0).collect();
        let mut lengths: Vec<u32> = packets.iter().map(|p| p.1.len() as u32).collect();
        let mut data: Vec<u8> = packets.iter().flat_map(|p| p.1.clone()).collect();
        data.extend(extra);
        if lie && !lengths.is_empty() {
            lengths[0] = lengths[0].wrapping_add(1_000_000);
        }
        let mut out = outpost_upf::BatchOut::new();
        h.upf.process(&mut h.tables, &mut h.io, &ingress, &lengths, &data, &mut out);
        prop_assert_eq!(out.verdicts.len(), lengths.len());
        prop_assert_eq!(out.lengths.len(), lengths.len());
        prop_assert_eq!(out.lengths.iter().map(|l| *l as usize).sum::<usize>(), out.data.len());
    }

    #[test]
    fn corrupt_records_never_panic(
        garbage in proptest::collection::vec(any::<u8>(), 0..80),
        table in 0usize..6,
    ) {
        let (mut h, teid) = established();
        // Overwrite every record of one table with garbage.
        let id = TableId::ALL[table];
        if id != TableId::Usage {
            for key in h.tables.all_keys(id) {
                h.tables.put(id, &key, &garbage).unwrap();
            }
        }
        let _ = h.batch(&[
            (N3, gpdu(GNB, teid, Some(9), &ue_packet(100))),
            (N6, server_packet(100)),
        ]);
        let hb = Message::node(9, Body::HeartbeatRequest(outpost_pfcp::HeartbeatRequest {
            recovery_time_stamp: 1,
        }));
        let _ = h.send_raw(&hb.to_vec().unwrap());
        h.upf.tick(&mut h.tables, &mut h.io, 10_000_000);
        let _ = h.send_raw(
            &Message::session(1, 3, Body::SessionDeletionRequest(outpost_pfcp::SessionDeletionRequest {}))
                .to_vec()
                .unwrap(),
        );
    }
}
