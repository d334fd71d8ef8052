//! Classic pcap files (not pcapng): a reader for both byte orders and both timestamp
//! resolutions, and a writer that produces any of those four variants.
//!
//! Supported link types: Ethernet (1) and raw IP (101, 228 for IPv4, 229 for IPv6). A truncated
//! or corrupt file is an error that says where; the reader never panics and never allocates more
//! than the largest legal record.
//!
//! ```
//! use std::time::Duration;
//! use outpost_dataplane::pcap::{LinkType, PcapFormat, PcapReader, PcapWriter};
//!
//! let mut file = Vec::new();
//! let mut writer = PcapWriter::new(&mut file, PcapFormat::default()).unwrap();
//! writer.write_packet(Duration::from_micros(1_500_000), b"frame").unwrap();
//! drop(writer);
//!
//! let mut reader = PcapReader::new(&file[..]).unwrap();
//! assert_eq!(reader.header().link_type, LinkType::ETHERNET);
//! let mut data = Vec::new();
//! let record = reader.read_record(&mut data).unwrap().unwrap();
//! assert_eq!((record.timestamp, &data[..]), (Duration::from_micros(1_500_000), &b"frame"[..]));
//! assert!(reader.read_record(&mut data).unwrap().is_none());
//! ```

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

/// Magic number of microsecond-resolution files, as written in the file's byte order.
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic number of nanosecond-resolution files.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// The largest record libpcap accepts; anything larger is corruption.
pub const MAX_RECORD_LEN: u32 = 262_144;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// A pcap link type (`LINKTYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u16);

impl LinkType {
    /// `LINKTYPE_ETHERNET`: frames start with an Ethernet header.
    pub const ETHERNET: LinkType = LinkType(1);
    /// `LINKTYPE_RAW`: raw IPv4 or IPv6 packets.
    pub const RAW: LinkType = LinkType(101);
    /// `LINKTYPE_IPV4`: raw IPv4 packets.
    pub const IPV4: LinkType = LinkType(228);
    /// `LINKTYPE_IPV6`: raw IPv6 packets.
    pub const IPV6: LinkType = LinkType(229);

    /// Whether records of this link type are IP packets without a link-layer header.
    pub fn is_raw_ip(self) -> bool {
        matches!(self, Self::RAW | Self::IPV4 | Self::IPV6)
    }

    fn is_supported(self) -> bool {
        self == Self::ETHERNET || self.is_raw_ip()
    }
}

/// Byte order of a pcap file's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    /// Little-endian (what x86 and ARM hosts write).
    #[default]
    Little,
    /// Big-endian.
    Big,
}

/// Resolution of the fractional part of record timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampResolution {
    /// Microseconds (magic `a1b2c3d4`).
    #[default]
    Micros,
    /// Nanoseconds (magic `a1b23c4d`).
    Nanos,
}

impl TimestampResolution {
    fn units_per_second(self) -> u32 {
        match self {
            Self::Micros => 1_000_000,
            Self::Nanos => 1_000_000_000,
        }
    }
}

/// The parsed global header of a pcap file, and the format a writer produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapFormat {
    /// Byte order of the headers.
    pub byte_order: ByteOrder,
    /// Timestamp resolution.
    pub resolution: TimestampResolution,
    /// Largest number of bytes captured per packet.
    pub snaplen: u32,
    /// What the records contain.
    pub link_type: LinkType,
}

impl Default for PcapFormat {
    fn default() -> Self {
        Self {
            byte_order: ByteOrder::Little,
            resolution: TimestampResolution::Micros,
            snaplen: MAX_RECORD_LEN,
            link_type: LinkType::ETHERNET,
        }
    }
}

/// The header of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Capture time since the Unix epoch.
    pub timestamp: Duration,
    /// Length of the packet on the wire (may exceed the bytes captured).
    pub orig_len: u32,
}

/// What is wrong with a pcap file.
#[derive(Debug, Error)]
pub enum PcapError {
    /// The file could not be opened or created.
    #[error("pcap file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading or writing failed.
    #[error("pcap I/O: {0}")]
    Io(#[from] io::Error),
    /// The file ends inside the 24-byte global header.
    #[error("truncated pcap global header: {got} of 24 bytes")]
    TruncatedHeader {
        /// Bytes present.
        got: usize,
    },
    /// The first four bytes are not a classic pcap magic number.
    #[error(
        "not a classic pcap file: magic {magic:#010x} (expected a1b2c3d4 or a1b23c4d in either byte order; pcapng is not supported)"
    )]
    BadMagic {
        /// The bytes found, read big-endian.
        magic: u32,
    },
    /// A major version other than 2.
    #[error("unsupported pcap version {major}.{minor} (expected 2.x)")]
    UnsupportedVersion {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A link type other than Ethernet or raw IP.
    #[error("unsupported pcap link type {0} (expected 1 Ethernet, 101, 228 or 229 raw IP)")]
    UnsupportedLinkType(u16),
    /// The file ends inside a record.
    #[error("truncated pcap record {record} at byte {offset}: {got} of {expected} bytes")]
    TruncatedRecord {
        /// Index of the record (0 is the first).
        record: u64,
        /// File offset where the record starts.
        offset: u64,
        /// Bytes the record needs (header and data).
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// A record claims more bytes than any capture can hold.
    #[error(
        "corrupt pcap record {record} at byte {offset}: captured length {len} exceeds {MAX_RECORD_LEN}"
    )]
    RecordTooLong {
        /// Index of the record.
        record: u64,
        /// File offset where the record starts.
        offset: u64,
        /// The captured length it claims.
        len: u32,
    },
    /// A timestamp fraction of a second or more.
    #[error(
        "corrupt pcap record {record} at byte {offset}: timestamp fraction {fraction} is a second or more"
    )]
    BadTimestamp {
        /// Index of the record.
        record: u64,
        /// File offset where the record starts.
        offset: u64,
        /// The fraction field.
        fraction: u32,
    },
    /// A frame too long to write under the file's snaplen.
    #[error("frame of {len} bytes exceeds the pcap snaplen {snaplen}")]
    FrameTooLong {
        /// The frame's length.
        len: usize,
        /// The file's snaplen.
        snaplen: u32,
    },
}

/// Reads exactly `buf.len()` bytes unless the input ends; returns how many were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads pcap records one by one from any reader.
#[derive(Debug)]
pub struct PcapReader<R> {
    input: R,
    format: PcapFormat,
    record: u64,
    offset: u64,
}

impl PcapReader<BufReader<File>> {
    /// Opens the pcap file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PcapError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| PcapError::File {
            path: path.to_owned(),
            source,
        })?;
        Self::new(BufReader::with_capacity(256 * 1024, file))
    }
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut input: R) -> Result<Self, PcapError> {
        let mut header = [0u8; GLOBAL_HEADER_LEN];
        let got = read_full(&mut input, &mut header)?;
        if got < 4 {
            return Err(PcapError::TruncatedHeader { got });
        }
        let magic = [header[0], header[1], header[2], header[3]];
        let (byte_order, resolution) = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic))
        {
            (MAGIC_MICROS, _) => (ByteOrder::Little, TimestampResolution::Micros),
            (MAGIC_NANOS, _) => (ByteOrder::Little, TimestampResolution::Nanos),
            (_, MAGIC_MICROS) => (ByteOrder::Big, TimestampResolution::Micros),
            (_, MAGIC_NANOS) => (ByteOrder::Big, TimestampResolution::Nanos),
            (_, magic) => return Err(PcapError::BadMagic { magic }),
        };
        if got < GLOBAL_HEADER_LEN {
            return Err(PcapError::TruncatedHeader { got });
        }
        let u16_at = |at: usize| decode_u16(byte_order, [header[at], header[at + 1]]);
        let u32_at = |at: usize| {
            decode_u32(
                byte_order,
                [header[at], header[at + 1], header[at + 2], header[at + 3]],
            )
        };
        let (major, minor) = (u16_at(4), u16_at(6));
        if major != 2 {
            return Err(PcapError::UnsupportedVersion { major, minor });
        }
        // The upper bits of the link-type field carry FCS information; the type is the low 16.
        let link_type = LinkType((u32_at(20) & 0xffff) as u16);
        if !link_type.is_supported() {
            return Err(PcapError::UnsupportedLinkType(link_type.0));
        }
        Ok(Self {
            input,
            format: PcapFormat {
                byte_order,
                resolution,
                snaplen: u32_at(16),
                link_type,
            },
            record: 0,
            offset: GLOBAL_HEADER_LEN as u64,
        })
    }

    /// The file's global header.
    pub fn header(&self) -> &PcapFormat {
        &self.format
    }

    /// Reads the next record's bytes into `data` (replacing its contents); None at the end of
    /// the file.
    pub fn read_record(&mut self, data: &mut Vec<u8>) -> Result<Option<RecordHeader>, PcapError> {
        let mut header = [0u8; RECORD_HEADER_LEN];
        let got = read_full(&mut self.input, &mut header)?;
        if got == 0 {
            return Ok(None);
        }
        let (record, offset) = (self.record, self.offset);
        if got < RECORD_HEADER_LEN {
            return Err(PcapError::TruncatedRecord {
                record,
                offset,
                expected: RECORD_HEADER_LEN,
                got,
            });
        }
        let order = self.format.byte_order;
        let field = |at: usize| {
            decode_u32(
                order,
                [header[at], header[at + 1], header[at + 2], header[at + 3]],
            )
        };
        let (seconds, fraction, incl_len, orig_len) = (field(0), field(4), field(8), field(12));
        if incl_len > MAX_RECORD_LEN {
            return Err(PcapError::RecordTooLong {
                record,
                offset,
                len: incl_len,
            });
        }
        let units = self.format.resolution.units_per_second();
        if fraction >= units {
            return Err(PcapError::BadTimestamp {
                record,
                offset,
                fraction,
            });
        }
        data.clear();
        data.resize(incl_len as usize, 0);
        let got_data = read_full(&mut self.input, data)?;
        if got_data < data.len() {
            return Err(PcapError::TruncatedRecord {
                record,
                offset,
                expected: RECORD_HEADER_LEN + data.len(),
                got: RECORD_HEADER_LEN + got_data,
            });
        }
        self.record += 1;
        self.offset += (RECORD_HEADER_LEN + data.len()) as u64;
        let nanos = u64::from(fraction) * u64::from(1_000_000_000 / units);
        Ok(Some(RecordHeader {
            timestamp: Duration::from_secs(u64::from(seconds)) + Duration::from_nanos(nanos),
            orig_len,
        }))
    }

    /// Reads every remaining record (convenient in tests; a port reads one at a time).
    pub fn read_all(&mut self) -> Result<Vec<(RecordHeader, Vec<u8>)>, PcapError> {
        let mut records = Vec::new();
        loop {
            let mut data = Vec::new();
            match self.read_record(&mut data)? {
                Some(header) => records.push((header, data)),
                None => return Ok(records),
            }
        }
    }
}

fn decode_u16(order: ByteOrder, bytes: [u8; 2]) -> u16 {
    match order {
        ByteOrder::Little => u16::from_le_bytes(bytes),
        ByteOrder::Big => u16::from_be_bytes(bytes),
    }
}

fn decode_u32(order: ByteOrder, bytes: [u8; 4]) -> u32 {
    match order {
        ByteOrder::Little => u32::from_le_bytes(bytes),
        ByteOrder::Big => u32::from_be_bytes(bytes),
    }
}

fn encode_u32(order: ByteOrder, value: u32) -> [u8; 4] {
    match order {
        ByteOrder::Little => value.to_le_bytes(),
        ByteOrder::Big => value.to_be_bytes(),
    }
}

fn encode_u16(order: ByteOrder, value: u16) -> [u8; 2] {
    match order {
        ByteOrder::Little => value.to_le_bytes(),
        ByteOrder::Big => value.to_be_bytes(),
    }
}

/// Writes pcap records to any writer, in the format given at creation.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    output: W,
    format: PcapFormat,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (or truncates) the pcap file at `path`.
    pub fn create(path: impl AsRef<Path>, format: PcapFormat) -> Result<Self, PcapError> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| PcapError::File {
            path: path.to_owned(),
            source,
        })?;
        Self::new(BufWriter::with_capacity(256 * 1024, file), format)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header for `format`.
    pub fn new(mut output: W, format: PcapFormat) -> Result<Self, PcapError> {
        let order = format.byte_order;
        let magic = match format.resolution {
            TimestampResolution::Micros => MAGIC_MICROS,
            TimestampResolution::Nanos => MAGIC_NANOS,
        };
        let mut header = Vec::with_capacity(GLOBAL_HEADER_LEN);
        header.extend_from_slice(&encode_u32(order, magic));
        header.extend_from_slice(&encode_u16(order, 2));
        header.extend_from_slice(&encode_u16(order, 4));
        header.extend_from_slice(&encode_u32(order, 0)); // thiszone: always UTC
        header.extend_from_slice(&encode_u32(order, 0)); // sigfigs: always 0
        header.extend_from_slice(&encode_u32(order, format.snaplen));
        header.extend_from_slice(&encode_u32(order, u32::from(format.link_type.0)));
        output.write_all(&header)?;
        Ok(Self { output, format })
    }

    /// The format being written.
    pub fn format(&self) -> &PcapFormat {
        &self.format
    }

    /// Appends one record captured at `timestamp` (since the Unix epoch; seconds beyond 2106
    /// are truncated, as the format stores 32 bits).
    pub fn write_packet(&mut self, timestamp: Duration, frame: &[u8]) -> Result<(), PcapError> {
        if frame.len() > self.format.snaplen as usize {
            return Err(PcapError::FrameTooLong {
                len: frame.len(),
                snaplen: self.format.snaplen,
            });
        }
        let order = self.format.byte_order;
        let fraction = match self.format.resolution {
            TimestampResolution::Micros => timestamp.subsec_micros(),
            TimestampResolution::Nanos => timestamp.subsec_nanos(),
        };
        let len = frame.len() as u32;
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[0..4].copy_from_slice(&encode_u32(order, timestamp.as_secs() as u32));
        header[4..8].copy_from_slice(&encode_u32(order, fraction));
        header[8..12].copy_from_slice(&encode_u32(order, len));
        header[12..16].copy_from_slice(&encode_u32(order, len));
        self.output.write_all(&header)?;
        self.output.write_all(frame)?;
        Ok(())
    }

    /// Flushes buffered records to the underlying writer.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.output.flush().map_err(PcapError::from)
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> Result<W, PcapError> {
        self.output.flush()?;
        Ok(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats() -> Vec<PcapFormat> {
        let mut all = Vec::new();
        for byte_order in [ByteOrder::Little, ByteOrder::Big] {
            for resolution in [TimestampResolution::Micros, TimestampResolution::Nanos] {
                all.push(PcapFormat {
                    byte_order,
                    resolution,
                    snaplen: 65535,
                    link_type: LinkType::ETHERNET,
                });
            }
        }
        all
    }

    fn write(format: PcapFormat, packets: &[(Duration, &[u8])]) -> Vec<u8> {
        let mut writer = PcapWriter::new(Vec::new(), format).unwrap();
        for (ts, frame) in packets {
            writer.write_packet(*ts, frame).unwrap();
        }
        writer.into_inner().unwrap()
    }

    #[test]
    fn every_byte_order_and_resolution_round_trips() {
        let packets: Vec<(Duration, &[u8])> = vec![
            (Duration::new(1_700_000_000, 123_456_789), b"first"),
            (Duration::new(1_700_000_001, 0), b""),
            (Duration::new(1_700_000_002, 999_999_999), &[0xab; 1500]),
        ];
        for format in formats() {
            let bytes = write(format, &packets);
            let mut reader = PcapReader::new(&bytes[..]).unwrap();
            assert_eq!(*reader.header(), format);
            let records = reader.read_all().unwrap();
            assert_eq!(records.len(), packets.len());
            for ((header, data), (ts, frame)) in records.iter().zip(&packets) {
                assert_eq!(data, frame);
                assert_eq!(header.orig_len as usize, frame.len());
                let expected = match format.resolution {
                    TimestampResolution::Micros => {
                        Duration::new(ts.as_secs(), ts.subsec_micros() * 1000)
                    }
                    TimestampResolution::Nanos => *ts,
                };
                assert_eq!(header.timestamp, expected, "{format:?}");
            }
        }
    }

    #[test]
    fn big_endian_headers_are_big_endian_on_disk() {
        let format = PcapFormat {
            byte_order: ByteOrder::Big,
            ..PcapFormat::default()
        };
        let bytes = write(format, &[]);
        assert_eq!(&bytes[..4], &[0xa1, 0xb2, 0xc3, 0xd4]);
        assert_eq!(&bytes[20..24], &[0, 0, 0, 1]);
    }

    #[test]
    fn raw_ip_link_types_are_accepted_and_others_rejected() {
        for link_type in [LinkType::RAW, LinkType::IPV4, LinkType::IPV6] {
            let bytes = write(
                PcapFormat {
                    link_type,
                    ..PcapFormat::default()
                },
                &[],
            );
            let reader = PcapReader::new(&bytes[..]).unwrap();
            assert!(reader.header().link_type.is_raw_ip());
        }
        let bytes = write(
            PcapFormat {
                link_type: LinkType(105),
                ..PcapFormat::default()
            },
            &[],
        );
        assert!(matches!(
            PcapReader::new(&bytes[..]),
            Err(PcapError::UnsupportedLinkType(105))
        ));
    }

    #[test]
    fn an_empty_or_short_file_is_a_truncated_header() {
        for len in [0, 3, 23] {
            let bytes = &write(PcapFormat::default(), &[])[..len];
            assert!(
                matches!(PcapReader::new(bytes), Err(PcapError::TruncatedHeader { got }) if got == len),
                "{len}"
            );
        }
    }

    #[test]
    fn pcapng_and_garbage_are_bad_magic() {
        let pcapng = [0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0];
        assert!(matches!(
            PcapReader::new(&pcapng[..]),
            Err(PcapError::BadMagic { magic: 0x0a0d0d0a })
        ));
    }

    #[test]
    fn a_wrong_major_version_is_rejected() {
        let mut bytes = write(PcapFormat::default(), &[]);
        bytes[4] = 3;
        assert!(matches!(
            PcapReader::new(&bytes[..]),
            Err(PcapError::UnsupportedVersion { major: 3, minor: 4 })
        ));
    }

    #[test]
    fn a_file_cut_inside_a_record_header_or_data_is_an_error_naming_the_record() {
        let full = write(
            PcapFormat::default(),
            &[(Duration::ZERO, b"abcdef"), (Duration::ZERO, b"ghijkl")],
        );
        let second = 24 + 16 + 6;
        for cut in [second + 1, second + 15, second + 16, full.len() - 1] {
            let mut reader = PcapReader::new(&full[..cut]).unwrap();
            let mut data = Vec::new();
            assert!(reader.read_record(&mut data).unwrap().is_some());
            let err = reader.read_record(&mut data).unwrap_err();
            assert!(
                matches!(err, PcapError::TruncatedRecord { record: 1, offset, .. } if offset == second as u64),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn a_huge_captured_length_is_corruption_not_an_allocation() {
        let mut bytes = write(PcapFormat::default(), &[(Duration::ZERO, b"x")]);
        bytes[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        let err = reader.read_record(&mut Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            PcapError::RecordTooLong {
                record: 0,
                len: u32::MAX,
                ..
            }
        ));
        assert!(err.to_string().contains("record 0 at byte 24"), "{err}");
    }

    #[test]
    fn a_timestamp_fraction_of_a_whole_second_is_corruption() {
        let mut bytes = write(PcapFormat::default(), &[(Duration::ZERO, b"x")]);
        bytes[24 + 4..24 + 8].copy_from_slice(&1_000_000u32.to_le_bytes());
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert!(matches!(
            reader.read_record(&mut Vec::new()),
            Err(PcapError::BadTimestamp {
                fraction: 1_000_000,
                ..
            })
        ));
    }

    #[test]
    fn writing_beyond_the_snaplen_is_an_error() {
        let mut writer = PcapWriter::new(
            Vec::new(),
            PcapFormat {
                snaplen: 4,
                ..PcapFormat::default()
            },
        )
        .unwrap();
        assert!(matches!(
            writer.write_packet(Duration::ZERO, b"12345"),
            Err(PcapError::FrameTooLong { len: 5, snaplen: 4 })
        ));
    }

    #[test]
    fn opening_a_missing_file_names_it() {
        let err = PcapReader::open("/nonexistent/outpost.pcap").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/outpost.pcap"),
            "{err}"
        );
    }
}
