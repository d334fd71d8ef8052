//! Packet batches: what crosses into a network-function plugin, and what comes back.
//!
//! A [`Batch`] keeps every packet of one batch in a single contiguous buffer with a parallel
//! list of lengths and ingress ports, exactly the shape of the plugin's
//! `process(ingress: list<u16>, lengths: list<u32>, data: list<u8>)` export, so the runtime
//! hands [`Batch::ingress`], [`Batch::lengths`] and [`Batch::data`] to the call as they are: no
//! per-packet allocation, one copy by the canonical ABI.
//!
//! The plugin answers with a [`BatchResult`]: one [`Verdict`] per packet, and the rewritten
//! packets concatenated with their lengths. [`BatchResult::validate`] checks it against the
//! batch before the host trusts it; a malformed result is dropped whole and counted.
//!
//! ```
//! use outpost_dataplane::{Batch, BatchResult, MAX_FRAME_LEN, Verdict};
//!
//! let mut batch = Batch::new();
//! batch.push(0, b"first frame");
//! batch.push(1, b"second");
//! assert_eq!(batch.lengths(), &[11, 6]);
//!
//! // The plugin forwards the first packet to port 1 (rewritten) and drops the second.
//! let result = BatchResult {
//!     verdicts: vec![Verdict::Forward(1), Verdict::Drop],
//!     lengths: vec![5, 0],
//!     data: b"FIRST".to_vec(),
//! };
//! result.validate(&batch, 2, MAX_FRAME_LEN).unwrap();
//! let out: Vec<_> = result.forwards().collect();
//! assert_eq!(out, vec![(1, &b"FIRST"[..])]);
//! ```

use thiserror::Error;

/// Index of a port in the host's port list; the `u16` of `ingress` and `forward(u16)`.
pub type PortId = u16;

/// The longest frame any port accepts or emits (jumbo frames with room for VLAN tags).
pub const MAX_FRAME_LEN: usize = 16 * 1024;

/// A reusable batch of packets: one contiguous data buffer plus per-packet lengths and ingress
/// ports. `clear` keeps the allocations, so a batch loop allocates only while it warms up.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    data: Vec<u8>,
    lengths: Vec<u32>,
    ingress: Vec<PortId>,
    offsets: Vec<u32>,
}

/// One packet of a batch, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The port the packet arrived on.
    pub ingress: PortId,
    /// The frame's bytes.
    pub data: &'a [u8],
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `packets` packets totalling `bytes` bytes.
    pub fn with_capacity(packets: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            lengths: Vec::with_capacity(packets),
            ingress: Vec::with_capacity(packets),
            offsets: Vec::with_capacity(packets),
        }
    }

    /// Removes every packet, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.lengths.clear();
        self.ingress.clear();
        self.offsets.clear();
    }

    /// Appends one packet that arrived on `ingress`.
    pub fn push(&mut self, ingress: PortId, frame: &[u8]) {
        self.push_parts(ingress, &[frame]);
    }

    /// Appends one packet made of `parts` concatenated (a port that re-inserts a header uses this
    /// to avoid a scratch copy).
    pub fn push_parts(&mut self, ingress: PortId, parts: &[&[u8]]) {
        let offset = self.data.len();
        for part in parts {
            self.data.extend_from_slice(part);
        }
        // Frames are bounded by MAX_FRAME_LEN and batches by memory, so both fit in u32; the
        // saturation only matters for a caller that pushes gigabytes into one batch.
        let len = self.data.len() - offset;
        self.offsets.push(u32::try_from(offset).unwrap_or(u32::MAX));
        self.lengths.push(u32::try_from(len).unwrap_or(u32::MAX));
        self.ingress.push(ingress);
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Total bytes of all packets.
    pub fn total_bytes(&self) -> usize {
        self.data.len()
    }

    /// All packets' bytes, concatenated: the plugin's `data` argument.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Each packet's length: the plugin's `lengths` argument.
    pub fn lengths(&self) -> &[u32] {
        &self.lengths
    }

    /// Each packet's ingress port: the plugin's `ingress` argument.
    pub fn ingress(&self) -> &[PortId] {
        &self.ingress
    }

    /// The packet at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Packet<'_>> {
        let offset = *self.offsets.get(index)? as usize;
        let len = self.lengths[index] as usize;
        Some(Packet {
            ingress: self.ingress[index],
            data: self.data.get(offset..offset + len)?,
        })
    }

    /// The packets in order.
    pub fn iter(&self) -> impl Iterator<Item = Packet<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Discard the packet.
    Drop,
    /// Send the (possibly rewritten) packet out of the given port.
    Forward(PortId),
}

/// A plugin's answer for one batch: one verdict per packet, and the output packets'
/// bytes concatenated, with their lengths.
///
/// `lengths` has either one entry per verdict (a dropped packet's entry is usually 0 and its
/// bytes, if any, are ignored) or one entry per `Forward` verdict; the two shapes cannot be
/// confused, because they only have the same length when nothing is dropped, where they mean the
/// same thing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// One verdict per input packet, in order.
    pub verdicts: Vec<Verdict>,
    /// Length of each output packet, in order.
    pub lengths: Vec<u32>,
    /// Output packets, concatenated.
    pub data: Vec<u8>,
}

/// Why a plugin's [`BatchResult`] was rejected; the host drops the whole batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// The result does not have one verdict per packet.
    #[error("result has {verdicts} verdicts for a batch of {packets} packets")]
    VerdictCount {
        /// Verdicts in the result.
        verdicts: usize,
        /// Packets in the batch.
        packets: usize,
    },
    /// `lengths` matches neither the verdict count nor the forward count.
    #[error(
        "result has {lengths} lengths; expected {verdicts} (one per verdict) or {forwards} (one per forward verdict)"
    )]
    LengthCount {
        /// Entries in `lengths`.
        lengths: usize,
        /// Verdicts in the result.
        verdicts: usize,
        /// Forward verdicts in the result.
        forwards: usize,
    },
    /// The lengths do not add up to the data's size.
    #[error("result lengths add up to {sum} bytes but data holds {data} bytes")]
    DataLength {
        /// Sum of `lengths`.
        sum: u64,
        /// Size of `data`.
        data: usize,
    },
    /// A packet is forwarded to a port that does not exist.
    #[error("packet {packet} is forwarded to port {port}, but there are only {ports} ports")]
    NoSuchPort {
        /// Index of the packet in the batch.
        packet: usize,
        /// The port it names.
        port: PortId,
        /// Number of ports.
        ports: usize,
    },
    /// A forwarded packet is longer than the largest frame a port can send.
    #[error("packet {packet} is {len} bytes long; the largest frame is {max} bytes")]
    FrameTooLong {
        /// Index of the packet in the batch.
        packet: usize,
        /// Its length.
        len: u32,
        /// The limit.
        max: usize,
    },
    /// A forwarded packet has no bytes.
    #[error("packet {packet} is forwarded with length 0")]
    EmptyFrame {
        /// Index of the packet in the batch.
        packet: usize,
    },
}

impl BatchResult {
    /// An empty result, to be filled by the plugin call (kept across batches to reuse buffers).
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.verdicts.clear();
        self.lengths.clear();
        self.data.clear();
    }

    /// Checks the result against `batch`: one verdict per packet, `lengths` in one of the two
    /// shapes described on [`BatchResult`], lengths adding up to `data`, forwards only to ports
    /// below `ports`, forwarded frames non-empty and at most `max_frame` bytes.
    pub fn validate(
        &self,
        batch: &Batch,
        ports: usize,
        max_frame: usize,
    ) -> Result<(), BatchError> {
        if self.verdicts.len() != batch.len() {
            return Err(BatchError::VerdictCount {
                verdicts: self.verdicts.len(),
                packets: batch.len(),
            });
        }
        let forwards = self
            .verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Forward(_)))
            .count();
        let per_verdict = self.lengths.len() == self.verdicts.len();
        if !per_verdict && self.lengths.len() != forwards {
            return Err(BatchError::LengthCount {
                lengths: self.lengths.len(),
                verdicts: self.verdicts.len(),
                forwards,
            });
        }
        let sum: u64 = self.lengths.iter().map(|&l| u64::from(l)).sum();
        if sum != self.data.len() as u64 {
            return Err(BatchError::DataLength {
                sum,
                data: self.data.len(),
            });
        }
        let mut forward_index = 0;
        for (packet, verdict) in self.verdicts.iter().enumerate() {
            let Verdict::Forward(port) = *verdict else {
                continue;
            };
            if usize::from(port) >= ports {
                return Err(BatchError::NoSuchPort {
                    packet,
                    port,
                    ports,
                });
            }
            let len = if per_verdict {
                self.lengths[packet]
            } else {
                self.lengths[forward_index]
            };
            forward_index += 1;
            if len == 0 {
                return Err(BatchError::EmptyFrame { packet });
            }
            if len as usize > max_frame {
                return Err(BatchError::FrameTooLong {
                    packet,
                    len,
                    max: max_frame,
                });
            }
        }
        Ok(())
    }

    /// The forwarded packets in order, as `(egress port, bytes)`. Meant for a validated result;
    /// on a malformed one it stops early rather than panic.
    pub fn forwards(&self) -> Forwards<'_> {
        Forwards {
            result: self,
            per_verdict: self.lengths.len() == self.verdicts.len(),
            verdict: 0,
            length: 0,
            offset: 0,
        }
    }
}

/// Iterator over the forwarded packets of a [`BatchResult`], from [`BatchResult::forwards`].
#[derive(Debug, Clone)]
pub struct Forwards<'a> {
    result: &'a BatchResult,
    per_verdict: bool,
    verdict: usize,
    length: usize,
    offset: usize,
}

impl<'a> Iterator for Forwards<'a> {
    type Item = (PortId, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let verdict = *self.result.verdicts.get(self.verdict)?;
            self.verdict += 1;
            let port = match verdict {
                Verdict::Forward(port) => Some(port),
                Verdict::Drop => None,
            };
            if port.is_none() && !self.per_verdict {
                continue;
            }
            let len = *self.result.lengths.get(self.length)? as usize;
            self.length += 1;
            let bytes = self.result.data.get(self.offset..self.offset + len)?;
            self.offset += len;
            if let Some(port) = port {
                return Some((port, bytes));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(frames: &[&[u8]]) -> Batch {
        let mut batch = Batch::new();
        for (i, frame) in frames.iter().enumerate() {
            batch.push(i as PortId % 2, frame);
        }
        batch
    }

    #[test]
    fn batch_keeps_packets_contiguous_with_lengths_and_ingress() {
        let mut batch = batch_of(&[b"abc", b"", b"defgh"]);
        assert_eq!(batch.data(), b"abcdefgh");
        assert_eq!(batch.lengths(), &[3, 0, 5]);
        assert_eq!(batch.ingress(), &[0, 1, 0]);
        assert_eq!(batch.get(2).unwrap().data, b"defgh");
        assert!(batch.get(3).is_none());
        let frames: Vec<_> = batch.iter().map(|p| p.data).collect();
        assert_eq!(frames, vec![&b"abc"[..], b"", b"defgh"]);
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.total_bytes(), 0);
    }

    #[test]
    fn push_parts_concatenates_into_one_packet() {
        let mut batch = Batch::new();
        batch.push_parts(3, &[b"ab", b"cd"]);
        assert_eq!(
            batch.get(0).unwrap(),
            Packet {
                ingress: 3,
                data: b"abcd"
            }
        );
    }

    #[test]
    fn result_with_one_length_per_verdict_is_valid() {
        let batch = batch_of(&[b"aa", b"bb", b"cc"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Forward(1), Verdict::Drop, Verdict::Forward(0)],
            lengths: vec![3, 0, 1],
            data: b"xyzw".to_vec(),
        };
        assert_eq!(result.validate(&batch, 2, MAX_FRAME_LEN), Ok(()));
        let out: Vec<_> = result.forwards().collect();
        assert_eq!(out, vec![(1, &b"xyz"[..]), (0, &b"w"[..])]);
    }

    #[test]
    fn result_with_one_length_per_forward_is_valid() {
        let batch = batch_of(&[b"aa", b"bb", b"cc"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Drop, Verdict::Forward(1), Verdict::Forward(0)],
            lengths: vec![2, 1],
            data: b"xyz".to_vec(),
        };
        assert_eq!(result.validate(&batch, 2, MAX_FRAME_LEN), Ok(()));
        let out: Vec<_> = result.forwards().collect();
        assert_eq!(out, vec![(1, &b"xy"[..]), (0, &b"z"[..])]);
    }

    #[test]
    fn dropped_packets_bytes_are_skipped_when_lengths_are_per_verdict() {
        let batch = batch_of(&[b"aa", b"bb"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Drop, Verdict::Forward(0)],
            lengths: vec![2, 2],
            data: b"aabb".to_vec(),
        };
        assert_eq!(result.validate(&batch, 1, MAX_FRAME_LEN), Ok(()));
        assert_eq!(result.forwards().collect::<Vec<_>>(), vec![(0, &b"bb"[..])]);
    }

    #[test]
    fn empty_batch_with_empty_result_is_valid() {
        assert_eq!(BatchResult::new().validate(&Batch::new(), 0, 64), Ok(()));
    }

    #[test]
    fn too_few_verdicts_are_rejected() {
        let batch = batch_of(&[b"aa", b"bb"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Drop],
            ..BatchResult::default()
        };
        assert_eq!(
            result.validate(&batch, 1, MAX_FRAME_LEN),
            Err(BatchError::VerdictCount {
                verdicts: 1,
                packets: 2
            })
        );
    }

    #[test]
    fn too_many_verdicts_are_rejected() {
        let batch = batch_of(&[b"aa"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Drop, Verdict::Drop],
            ..BatchResult::default()
        };
        assert!(matches!(
            result.validate(&batch, 1, MAX_FRAME_LEN),
            Err(BatchError::VerdictCount {
                verdicts: 2,
                packets: 1
            })
        ));
    }

    #[test]
    fn lengths_matching_neither_shape_are_rejected() {
        let batch = batch_of(&[b"aa", b"bb", b"cc"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Drop, Verdict::Forward(0), Verdict::Forward(0)],
            lengths: vec![1],
            data: b"x".to_vec(),
        };
        assert_eq!(
            result.validate(&batch, 1, MAX_FRAME_LEN),
            Err(BatchError::LengthCount {
                lengths: 1,
                verdicts: 3,
                forwards: 2
            })
        );
    }

    #[test]
    fn lengths_not_adding_up_to_data_are_rejected() {
        let batch = batch_of(&[b"aa"]);
        let short = BatchResult {
            verdicts: vec![Verdict::Forward(0)],
            lengths: vec![3],
            data: b"xy".to_vec(),
        };
        assert_eq!(
            short.validate(&batch, 1, MAX_FRAME_LEN),
            Err(BatchError::DataLength { sum: 3, data: 2 })
        );
        let long = BatchResult {
            lengths: vec![1],
            ..short
        };
        assert_eq!(
            long.validate(&batch, 1, MAX_FRAME_LEN),
            Err(BatchError::DataLength { sum: 1, data: 2 })
        );
    }

    #[test]
    fn lengths_near_u32_max_do_not_overflow_the_sum() {
        let batch = batch_of(&[b"a", b"b"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Forward(0), Verdict::Forward(0)],
            lengths: vec![u32::MAX, u32::MAX],
            data: vec![],
        };
        assert_eq!(
            result.validate(&batch, 1, MAX_FRAME_LEN),
            Err(BatchError::DataLength {
                sum: 2 * u64::from(u32::MAX),
                data: 0
            })
        );
        assert_eq!(result.forwards().count(), 0);
    }

    #[test]
    fn forward_to_a_missing_port_is_rejected() {
        let batch = batch_of(&[b"aa", b"bb"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Forward(0), Verdict::Forward(2)],
            lengths: vec![1, 1],
            data: b"xy".to_vec(),
        };
        assert_eq!(
            result.validate(&batch, 2, MAX_FRAME_LEN),
            Err(BatchError::NoSuchPort {
                packet: 1,
                port: 2,
                ports: 2
            })
        );
    }

    #[test]
    fn oversize_forwarded_frame_is_rejected() {
        let batch = batch_of(&[b"aa"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Forward(0)],
            lengths: vec![65],
            data: vec![0; 65],
        };
        assert_eq!(
            result.validate(&batch, 1, 64),
            Err(BatchError::FrameTooLong {
                packet: 0,
                len: 65,
                max: 64
            })
        );
    }

    #[test]
    fn empty_forwarded_frame_is_rejected() {
        let batch = batch_of(&[b"aa"]);
        let result = BatchResult {
            verdicts: vec![Verdict::Forward(0)],
            lengths: vec![0],
            data: vec![],
        };
        assert_eq!(
            result.validate(&batch, 1, 64),
            Err(BatchError::EmptyFrame { packet: 0 })
        );
    }

    #[test]
    fn errors_name_the_offending_packet() {
        let err = BatchError::NoSuchPort {
            packet: 7,
            port: 9,
            ports: 2,
        };
        assert_eq!(
            err.to_string(),
            "packet 7 is forwarded to port 9, but there are only 2 ports"
        );
    }
}
