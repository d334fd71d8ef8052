//! Pcap files against an independent implementation (tcpdump/libpcap), and pcap ports.
//!
//! `tests/fixtures/tcpdump-*.pcap` were written by `tcpdump -w` (libpcap 1.10, microsecond and
//! `--time-stamp-precision=nano`) capturing three UDP datagrams "outpost fixture N" on a
//! namespace's loopback. The live tcpdump test needs `tcpdump` installed (scripts/test.sh
//! installs it); without it, it fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_dataplane::pcap::{
    ByteOrder, LinkType, PcapError, PcapFormat, PcapReader, PcapWriter, TimestampResolution,
};
use outpost_dataplane::{Batch, Pacing, PcapPort, Port, PortSpec, open_port};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The microsecond timestamps tcpdump printed (`-tt`) for the fixture's records.
const FIXTURE_TIMES: [(u64, u32); 3] = [
    (1_795_492_150, 22_848_689),
    (1_795_492_150, 127_701_041),
    (1_795_492_150, 232_816_607),
];

#[test]
fn captures_written_by_tcpdump_are_read_in_both_resolutions() {
    for (file, resolution) in [
        ("tcpdump-micros.pcap", TimestampResolution::Micros),
        ("tcpdump-nanos.pcap", TimestampResolution::Nanos),
    ] {
        let mut reader = PcapReader::open(fixture(file)).unwrap();
        let header = *reader.header();
        assert_eq!(header.resolution, resolution, "{file}");
        assert_eq!(header.byte_order, ByteOrder::Little);
        assert_eq!(header.link_type, LinkType::ETHERNET);
        assert_eq!(header.snaplen, 262_144);
        let records = reader.read_all().unwrap();
        assert_eq!(records.len(), 3, "{file}");
        for (i, ((record, data), (secs, nanos))) in records.iter().zip(FIXTURE_TIMES).enumerate() {
            let nanos = match resolution {
                TimestampResolution::Micros => nanos / 1000 * 1000,
                TimestampResolution::Nanos => nanos,
            };
            assert_eq!(
                record.timestamp,
                Duration::new(secs, nanos),
                "{file} record {i}"
            );
            assert_eq!(data.len(), 59);
            assert_eq!(record.orig_len, 59);
            assert_eq!(&data[12..14], &[0x08, 0x00], "IPv4 EtherType");
            let payload = format!("outpost fixture {}", i + 1);
            assert_eq!(&data[42..], payload.as_bytes());
        }
    }
}

#[test]
fn rewriting_tcpdumps_records_reproduces_its_file_byte_for_byte() {
    for (file, resolution) in [
        ("tcpdump-micros.pcap", TimestampResolution::Micros),
        ("tcpdump-nanos.pcap", TimestampResolution::Nanos),
    ] {
        let original = std::fs::read(fixture(file)).unwrap();
        let records = PcapReader::new(&original[..]).unwrap().read_all().unwrap();
        let format = PcapFormat {
            resolution,
            ..PcapFormat::default()
        };
        let mut writer = PcapWriter::new(Vec::new(), format).unwrap();
        for (record, data) in &records {
            writer.write_packet(record.timestamp, data).unwrap();
        }
        assert_eq!(writer.into_inner().unwrap(), original, "{file}");
    }
}

fn sample_frames() -> Vec<(Duration, Vec<u8>)> {
    // Three Ethernet/IPv4/UDP-looking frames with distinct sizes.
    (0..3u8)
        .map(|i| {
            let mut frame = vec![0xff; 6];
            frame.extend_from_slice(&[0x02, 0, 0, 0, 0, i]);
            frame.extend_from_slice(&[0x08, 0x00]);
            frame.extend_from_slice(&[0x45, 0, 0, 20 + i, 0, 0, 0, 0, 64, 17, 0, 0]);
            frame.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            frame.extend(std::iter::repeat_n(i, usize::from(i)));
            (
                Duration::new(1_700_000_000 + u64::from(i), 123_456_789),
                frame,
            )
        })
        .collect()
}

#[test]
fn files_we_write_in_every_variant_are_read_by_tcpdump() {
    let tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "tcpdump is not installed; it checks that our pcap files are readable by libpcap \
             (apt-get install tcpdump, or run scripts/test.sh)",
        );
    let dir = tempfile::tempdir().unwrap();
    let frames = sample_frames();
    for byte_order in [ByteOrder::Little, ByteOrder::Big] {
        for resolution in [TimestampResolution::Micros, TimestampResolution::Nanos] {
            let path = dir
                .path()
                .join(format!("{byte_order:?}-{resolution:?}.pcap"));
            let format = PcapFormat {
                byte_order,
                resolution,
                ..PcapFormat::default()
            };
            let mut writer = PcapWriter::create(&path, format).unwrap();
            for (ts, frame) in &frames {
                writer.write_packet(*ts, frame).unwrap();
            }
            writer.flush().unwrap();
            drop(writer);
            let out = Command::new(tcpdump)
                .args([
                    "-r",
                    path.to_str().unwrap(),
                    "-nn",
                    "-tt",
                    "--time-stamp-precision=nano",
                ])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{byte_order:?} {resolution:?}: {stderr}"
            );
            assert!(stderr.contains("EN10MB"), "{stderr}");
            let lines: Vec<_> = stdout.lines().collect();
            assert_eq!(lines.len(), 3, "{byte_order:?} {resolution:?}:\n{stdout}");
            let fraction = match resolution {
                TimestampResolution::Micros => "123456000",
                TimestampResolution::Nanos => "123456789",
            };
            for (i, line) in lines.iter().enumerate() {
                let stamp = format!("{}.{fraction} IP 10.0.0.1 > 10.0.0.2", 1_700_000_000 + i);
                assert!(
                    line.starts_with(&stamp),
                    "{byte_order:?} {resolution:?}: {line}"
                );
            }
        }
    }
}

fn write_capture(path: &Path, format: PcapFormat, frames: &[(Duration, Vec<u8>)]) {
    let mut writer = PcapWriter::create(path, format).unwrap();
    for (ts, frame) in frames {
        writer.write_packet(*ts, frame).unwrap();
    }
    writer.flush().unwrap();
}

fn drain(port: &mut dyn Port, timeout: Duration) -> Batch {
    let deadline = Instant::now() + timeout;
    let mut batch = Batch::new();
    while !port.is_exhausted() && Instant::now() < deadline {
        port.wait_readable(Duration::from_millis(50)).unwrap();
        port.recv_batch(&mut batch, 64).unwrap();
    }
    batch
}

#[test]
fn a_pcap_port_replays_every_record_as_fast_as_possible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.pcap");
    let frames = sample_frames();
    let format = PcapFormat {
        byte_order: ByteOrder::Big,
        resolution: TimestampResolution::Nanos,
        ..PcapFormat::default()
    };
    write_capture(&path, format, &frames);
    let mut port =
        PcapPort::open(2, "replay", Some(&path), None, Pacing::AsFastAsPossible).unwrap();
    let mut batch = Batch::new();
    assert_eq!(port.recv_batch(&mut batch, 2).unwrap(), 2);
    assert!(!port.is_exhausted());
    assert_eq!(port.recv_batch(&mut batch, 64).unwrap(), 1);
    assert_eq!(port.recv_batch(&mut batch, 64).unwrap(), 0);
    assert!(port.is_exhausted());
    let got: Vec<_> = batch.iter().map(|p| p.data.to_vec()).collect();
    let want: Vec<_> = frames.into_iter().map(|(_, f)| f).collect();
    assert_eq!(got, want);
    assert_eq!(batch.ingress(), &[2, 2, 2]);
    assert_eq!(port.stats().rx_packets, 3);
}

#[test]
fn a_pcap_port_replays_at_the_recorded_pacing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paced.pcap");
    let frames: Vec<_> = (0..3u32)
        .map(|i| {
            (
                Duration::from_millis(5_000 + u64::from(i) * 150),
                common_frame(i),
            )
        })
        .collect();
    write_capture(&path, PcapFormat::default(), &frames);
    let spec = PortSpec::Pcap {
        name: "paced".into(),
        path: Some(path),
        output: None,
        pacing: Pacing::Recorded,
    };
    let mut port = open_port(0, &spec).unwrap();
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut batch = Batch::new();
    while !port.is_exhausted() && start.elapsed() < Duration::from_secs(10) {
        port.wait_readable(Duration::from_millis(500)).unwrap();
        let n = port.recv_batch(&mut batch, 64).unwrap();
        arrivals.extend(std::iter::repeat_n(start.elapsed(), n));
    }
    assert_eq!(arrivals.len(), 3);
    // Each record waits for its offset from the first; never earlier.
    assert!(arrivals[1] >= Duration::from_millis(150), "{arrivals:?}");
    assert!(arrivals[2] >= Duration::from_millis(300), "{arrivals:?}");
}

fn common_frame(seq: u32) -> Vec<u8> {
    let mut frame = vec![0xff; 12];
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(&seq.to_be_bytes());
    frame
}

#[test]
fn raw_ip_captures_are_replayed_as_ethernet_frames() {
    let dir = tempfile::tempdir().unwrap();
    let ipv4 = vec![
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let mut ipv6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    ipv6.extend_from_slice(&[0; 32]);
    let not_ip = vec![0x15, 1, 2, 3];
    for link_type in [LinkType::RAW, LinkType::IPV4] {
        let path = dir.path().join(format!("raw-{}.pcap", link_type.0));
        let records = [ipv4.clone(), ipv6.clone(), not_ip.clone()];
        let frames: Vec<_> = records
            .iter()
            .map(|r| (Duration::ZERO, r.clone()))
            .collect();
        write_capture(
            &path,
            PcapFormat {
                link_type,
                ..PcapFormat::default()
            },
            &frames,
        );
        let mut port =
            PcapPort::open(0, "raw", Some(&path), None, Pacing::AsFastAsPossible).unwrap();
        let batch = drain(&mut port, Duration::from_secs(5));
        let first = batch.get(0).unwrap().data;
        assert_eq!(&first[..12], &[0; 12]);
        assert_eq!(&first[12..14], &[0x08, 0x00]);
        assert_eq!(&first[14..], &ipv4[..]);
        if link_type == LinkType::RAW {
            // LINKTYPE_RAW carries both versions; the version nibble picks the EtherType, and a
            // record that is neither is dropped and counted.
            assert_eq!(batch.len(), 2);
            assert_eq!(&batch.get(1).unwrap().data[12..14], &[0x86, 0xdd]);
            assert_eq!(port.stats().rx_drops, 1);
        } else {
            // LINKTYPE_IPV4 says every record is IPv4.
            assert_eq!(batch.len(), 3);
            assert_eq!(&batch.get(2).unwrap().data[12..14], &[0x08, 0x00]);
        }
    }
}

#[test]
fn a_truncated_capture_ends_the_replay_with_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    write_capture(&path, PcapFormat::default(), &sample_frames());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();

    let mut port = PcapPort::open(0, "cut", Some(&path), None, Pacing::AsFastAsPossible).unwrap();
    let mut batch = Batch::new();
    let err = port.recv_batch(&mut batch, 64).unwrap_err();
    assert!(err.to_string().contains("cut.pcap"), "{err}");
    assert!(err.to_string().contains("truncated pcap record 2"), "{err}");
    assert_eq!(batch.len(), 2, "records before the damage are delivered");
    assert!(port.is_exhausted());
    assert_eq!(port.recv_batch(&mut batch, 64).unwrap(), 0);
}

#[test]
fn garbage_and_pcapng_files_are_refused_when_the_port_opens() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("empty.pcap", vec![]),
        ("text.pcap", b"this is not a capture file at all".to_vec()),
        ("ng.pcapng", vec![0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let spec = PortSpec::Pcap {
            name: "bad".into(),
            path: Some(path),
            output: None,
            pacing: Pacing::AsFastAsPossible,
        };
        let err = open_port(0, &spec).unwrap_err().to_string();
        assert!(err.contains("bad") && err.contains("pcap"), "{name}: {err}");
    }
}

#[test]
fn a_pcap_port_records_what_it_sends() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let mut port =
        PcapPort::open(0, "capture", None, Some(&out), Pacing::AsFastAsPossible).unwrap();
    assert!(port.is_exhausted(), "a capture-only port never receives");
    let frames: Vec<_> = (0..5).map(common_frame).collect();
    assert_eq!(port.send(frames.iter().map(Vec::as_slice)).unwrap(), 5);
    assert_eq!(port.send([&[][..]]).unwrap(), 0);
    let records = PcapReader::open(&out).unwrap().read_all().unwrap();
    let got: Vec<_> = records.into_iter().map(|(_, data)| data).collect();
    assert_eq!(got, frames);
    assert_eq!(port.stats().tx_drops, 1);
}

#[test]
fn a_pcap_port_without_output_counts_sends_as_drops() {
    let mut port = PcapPort::open(0, "silent", None, None, Pacing::AsFastAsPossible).unwrap();
    assert_eq!(port.send([&b"x"[..], b"y"]).unwrap(), 0);
    assert_eq!(port.stats().tx_drops, 2);
}

#[test]
fn an_unwritable_output_is_an_error_naming_it() {
    let err = PcapPort::open(
        0,
        "capture",
        None,
        Some(Path::new("/nonexistent/dir/out.pcap")),
        Pacing::AsFastAsPossible,
    )
    .unwrap_err();
    assert!(matches!(err, PcapError::File { .. }));
    assert!(err.to_string().contains("/nonexistent/dir/out.pcap"));
}
