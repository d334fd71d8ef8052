//! The host's batch loop over memory ports, with a native stand-in for a plugin: receive, call,
//! validate, transmit; a malformed result drops the whole batch.

use outpost_dataplane::{
    Batch, BatchError, BatchResult, MAX_FRAME_LEN, MemoryPort, Port, PortSet, PortSpec, Verdict,
};

/// A stand-in NF: frames from port 0 go to port 1 with their first byte incremented; frames
/// from port 1 whose first byte is 0xff are dropped, the rest go to port 0 unchanged.
fn toy_nf(ingress: &[u16], lengths: &[u32], data: &[u8], out: &mut BatchResult) {
    out.clear();
    let mut offset = 0;
    for (&port, &len) in ingress.iter().zip(lengths) {
        let frame = &data[offset..offset + len as usize];
        offset += len as usize;
        match port {
            0 => {
                out.verdicts.push(Verdict::Forward(1));
                out.lengths.push(len);
                out.data.push(frame[0].wrapping_add(1));
                out.data.extend_from_slice(&frame[1..]);
            }
            _ if frame[0] == 0xff => {
                out.verdicts.push(Verdict::Drop);
                out.lengths.push(0);
            }
            _ => {
                out.verdicts.push(Verdict::Forward(0));
                out.lengths.push(len);
                out.data.extend_from_slice(frame);
            }
        }
    }
}

fn two_memory_ports(capacity: usize) -> PortSet {
    PortSet::open(&[
        PortSpec::Memory {
            name: "n3".into(),
            capacity,
        },
        PortSpec::Memory {
            name: "n6".into(),
            capacity,
        },
    ])
    .unwrap()
}

#[test]
fn frames_cross_the_loop_rewritten_forwarded_and_dropped_by_verdict() {
    let mut ports = two_memory_ports(64);
    let n3 = ports.get(0).unwrap().memory_handle().unwrap();
    let n6 = ports.get(1).unwrap().memory_handle().unwrap();
    n3.inject_all([&b"\x01up-a"[..], b"\x10up-b"]);
    n6.inject_all([&b"\x02down"[..], b"\xffbad"]);

    let mut batch = Batch::with_capacity(64, 64 * 1514);
    let mut result = BatchResult::new();
    assert_eq!(ports.recv(&mut batch, 64).unwrap(), 4);
    toy_nf(batch.ingress(), batch.lengths(), batch.data(), &mut result);
    result.validate(&batch, ports.len(), MAX_FRAME_LEN).unwrap();
    assert_eq!(ports.transmit(&result).unwrap(), 3);

    assert_eq!(
        n6.take_sent(),
        vec![b"\x02up-a".to_vec(), b"\x11up-b".to_vec()]
    );
    assert_eq!(n3.take_sent(), vec![b"\x02down".to_vec()]);
    let stats = ports.stats();
    assert_eq!(stats[0].1.rx_packets, 2);
    assert_eq!(stats[1].1.tx_packets, 2);
}

#[test]
fn a_malformed_result_is_refused_and_nothing_is_sent() {
    let mut ports = two_memory_ports(8);
    let n3 = ports.get(0).unwrap().memory_handle().unwrap();
    n3.inject_all([&b"\x01a"[..], b"\x01b"]);
    let mut batch = Batch::new();
    ports.recv(&mut batch, 8).unwrap();

    // A plugin that forgot a verdict, one that lies about lengths, one that names port 9.
    let cases = [
        BatchResult {
            verdicts: vec![Verdict::Forward(1)],
            lengths: vec![2],
            data: b"xx".to_vec(),
        },
        BatchResult {
            verdicts: vec![Verdict::Forward(1), Verdict::Forward(1)],
            lengths: vec![2, 2],
            data: b"xxx".to_vec(),
        },
        BatchResult {
            verdicts: vec![Verdict::Forward(1), Verdict::Forward(9)],
            lengths: vec![2, 2],
            data: b"xxxx".to_vec(),
        },
    ];
    let mut malformed_batches = 0;
    for result in &cases {
        match result.validate(&batch, ports.len(), MAX_FRAME_LEN) {
            Ok(()) => {
                ports.transmit(result).unwrap();
            }
            Err(
                BatchError::VerdictCount { .. }
                | BatchError::DataLength { .. }
                | BatchError::NoSuchPort { .. },
            ) => malformed_batches += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(malformed_batches, 3);
    assert_eq!(ports.get(1).unwrap().memory_handle().unwrap().sent_len(), 0);
}

#[test]
fn a_bounded_memory_link_counts_what_it_could_not_carry() {
    let (mut a, mut b) = MemoryPort::pair((0, "a"), (1, "b"), 100);
    let frames: Vec<Vec<u8>> = (0..250u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(a.send(frames.iter().map(Vec::as_slice)).unwrap(), 100);
    assert_eq!(a.stats().tx_drops, 150);
    let mut batch = Batch::new();
    assert_eq!(b.recv_batch(&mut batch, 1000).unwrap(), 100);
    // Receiving made room again.
    assert_eq!(a.send(frames[..10].iter().map(Vec::as_slice)).unwrap(), 10);
    let got: Vec<u32> = batch
        .iter()
        .map(|p| u32::from_be_bytes(p.data.try_into().unwrap()))
        .collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_batch_buffer_is_reused_without_growing_after_warm_up() {
    let mut ports = two_memory_ports(256);
    let n3 = ports.get(0).unwrap().memory_handle().unwrap();
    let mut batch = Batch::with_capacity(256, 256 * 128);
    let frame = [0x42u8; 128];
    let mut buffer = None;
    for _ in 0..20 {
        n3.inject_all(std::iter::repeat_n(&frame[..], 256));
        batch.clear();
        assert_eq!(ports.recv(&mut batch, 256).unwrap(), 256);
        assert_eq!(batch.data().len(), 256 * 128);
        // The same allocation every time: the batch never reallocates once sized.
        let ptr = batch.data().as_ptr();
        assert_eq!(*buffer.get_or_insert(ptr), ptr);
    }
}
