//! Pcap ports: replay a capture file as received traffic, and record transmitted frames to a
//! capture file.
//!
//! Every port yields Ethernet frames, so a raw-IP capture (link types 101, 228, 229) is replayed
//! with a synthetic Ethernet header (zero MAC addresses, EtherType from the IP version). Replay
//! runs as fast as the consumer reads, or at the pacing recorded in the file. A corrupt or
//! truncated file ends the replay with an error naming the file and the record.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::batch::{Batch, MAX_FRAME_LEN, PortId};
use crate::pcap::{LinkType, PcapError, PcapFormat, PcapReader, PcapWriter, RecordHeader};
use crate::port::{Port, PortCounters, TxTally};

/// How fast a pcap port replays its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pacing {
    /// Every record is ready at once.
    #[default]
    AsFastAsPossible,
    /// Records become ready at the intervals between their timestamps.
    Recorded,
}

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];

/// A port that replays one pcap file and/or records what it sends to another.
pub struct PcapPort {
    id: PortId,
    name: String,
    replay: Option<Replay>,
    capture: Option<(PathBuf, PcapWriter<BufWriter<File>>)>,
    counters: Arc<PortCounters>,
}

impl std::fmt::Debug for PcapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapPort")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("input", &self.replay.as_ref().map(|r| &r.path))
            .field("output", &self.capture.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

struct Replay {
    path: PathBuf,
    reader: PcapReader<BufReader<File>>,
    pacing: Pacing,
    /// A record read but not yet due.
    pending: Option<RecordHeader>,
    data: Vec<u8>,
    /// Wall-clock instant of the first record, and its timestamp.
    clock: Option<(Instant, Duration)>,
    exhausted: bool,
}

impl Replay {
    /// Reads the next record into `data` unless one is pending; false at the end of the file.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pending.is_some() {
            return Ok(true);
        }
        if self.exhausted {
            return Ok(false);
        }
        match self.reader.read_record(&mut self.data) {
            Ok(Some(header)) => {
                self.pending = Some(header);
                Ok(true)
            }
            Ok(None) => {
                self.exhausted = true;
                Ok(false)
            }
            Err(e) => {
                self.exhausted = true;
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("pcap replay {}: {e}", self.path.display()),
                ))
            }
        }
    }

    /// How long until the pending record is due (zero when it is, or when not paced).
    fn wait_for_pending(&mut self) -> Duration {
        let (Pacing::Recorded, Some(header)) = (self.pacing, self.pending) else {
            return Duration::ZERO;
        };
        let (start, first) = *self
            .clock
            .get_or_insert_with(|| (Instant::now(), header.timestamp));
        let due = start + header.timestamp.saturating_sub(first);
        due.saturating_duration_since(Instant::now())
    }
}

impl PcapPort {
    /// A port replaying `input` (if any) at `pacing` and recording sent frames to `output` (if
    /// any, as a microsecond little-endian Ethernet capture). Without `output`, sent frames are
    /// counted as drops.
    pub fn open(
        id: PortId,
        name: &str,
        input: Option<&Path>,
        output: Option<&Path>,
        pacing: Pacing,
    ) -> Result<Self, PcapError> {
        let replay = match input {
            Some(path) => Some(Replay {
                path: path.to_owned(),
                reader: PcapReader::open(path)?,
                pacing,
                pending: None,
                data: Vec::new(),
                clock: None,
                exhausted: false,
            }),
            None => None,
        };
        let capture = match output {
            Some(path) => Some((
                path.to_owned(),
                PcapWriter::create(path, PcapFormat::default())?,
            )),
            None => None,
        };
        Ok(Self {
            id,
            name: name.to_owned(),
            replay,
            capture,
            counters: PortCounters::new_shared(),
        })
    }

    /// Flushes recorded frames to the output file.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.capture {
            Some((path, writer)) => writer.flush().map_err(|e| capture_error(path, e)),
            None => Ok(()),
        }
    }
}

fn capture_error(path: &Path, e: PcapError) -> io::Error {
    io::Error::other(format!("pcap capture {}: {e}", path.display()))
}

impl Port for PcapPort {
    fn id(&self) -> PortId {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv_batch(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let Some(replay) = &mut self.replay else {
            return Ok(0);
        };
        let link_type = replay.reader.header().link_type;
        let (mut packets, mut bytes, mut drops) = (0u64, 0u64, 0u64);
        let mut result = Ok(());
        while packets < max as u64 {
            match replay.fill() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if !replay.wait_for_pending().is_zero() {
                break;
            }
            replay.pending = None;
            let frame = &replay.data;
            let len = if link_type.is_raw_ip() {
                frame.len() + 14
            } else {
                frame.len()
            };
            if frame.is_empty() || len > MAX_FRAME_LEN {
                drops += 1;
                continue;
            }
            if link_type.is_raw_ip() {
                let ethertype = match (link_type, frame[0] >> 4) {
                    (LinkType::IPV4, _) | (_, 4) => ETHERTYPE_IPV4,
                    (LinkType::IPV6, _) | (_, 6) => ETHERTYPE_IPV6,
                    _ => {
                        drops += 1;
                        continue;
                    }
                };
                batch.push_parts(self.id, &[&[0; 12], &ethertype, frame]);
            } else {
                batch.push(self.id, frame);
            }
            packets += 1;
            bytes += len as u64;
        }
        self.counters.add_rx(packets, bytes);
        self.counters.add_rx_drops(drops);
        result.map(|()| packets as usize)
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = &[u8]>) -> io::Result<usize> {
        let mut tally = TxTally::default();
        let mut result = Ok(());
        match &mut self.capture {
            Some((path, writer)) => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                for frame in frames {
                    if frame.is_empty() || frame.len() > MAX_FRAME_LEN || result.is_err() {
                        tally.drops += 1;
                        continue;
                    }
                    match writer.write_packet(now, frame) {
                        Ok(()) => tally.sent(frame.len()),
                        Err(e) => {
                            tally.drops += 1;
                            result = Err(capture_error(path, e));
                        }
                    }
                }
                if result.is_ok() {
                    result = writer.flush().map_err(|e| capture_error(path, e));
                }
            }
            None => tally.drops += frames.count() as u64,
        }
        let sent = tally.commit(&self.counters);
        result.map(|()| sent)
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        None
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        let Some(replay) = &mut self.replay else {
            std::thread::sleep(timeout);
            return Ok(false);
        };
        if !replay.fill()? {
            std::thread::sleep(timeout);
            return Ok(false);
        }
        let wait = replay.wait_for_pending();
        std::thread::sleep(wait.min(timeout));
        Ok(wait <= timeout)
    }

    fn is_exhausted(&self) -> bool {
        self.replay
            .as_ref()
            .is_none_or(|r| r.exhausted && r.pending.is_none())
    }
}
