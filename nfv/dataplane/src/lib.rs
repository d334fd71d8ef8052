//! Network-function data plane on the host: packet ports and host-owned tables.
//!
//! A network-function plugin processes packets in batches: the host reads frames from its
//! [ports](Port) into a [`Batch`], calls the plugin's `process` export with the batch's three
//! slices, checks the [`BatchResult`] it returns ([`BatchResult::validate`]) and sends the
//! forwarded frames out of their ports ([`PortSet::transmit`]). State that must survive a plugin
//! swap lives in [host-owned tables](table), which the plugin reaches by name.
//!
//! Port backends: [in-memory](MemoryPort) (tests, benchmarks), [TAP](TapPort),
//! [AF_PACKET with mmap rings](AfPacketPort) on a real interface, and [pcap](PcapPort) replay
//! and capture. A manifest declares ports as [`PortSpec`]s, opened with [`open_port`] or
//! [`PortSet::open`].
//!
//! ```
//! use outpost_dataplane::{Batch, BatchResult, MAX_FRAME_LEN, PortSet, PortSpec, Verdict};
//!
//! let mut ports = PortSet::open(&[
//!     PortSpec::Memory { name: "in".into(), capacity: 256 },
//!     PortSpec::Memory { name: "out".into(), capacity: 256 },
//! ]).unwrap();
//! ports.get(0).unwrap().memory_handle().unwrap().inject(b"\x00\x01frame");
//!
//! let mut batch = Batch::new();
//! let mut result = BatchResult::new();
//! ports.recv(&mut batch, 64).unwrap();
//! // ... the runtime calls the plugin with batch.ingress(), batch.lengths(), batch.data() ...
//! result.verdicts.extend(batch.iter().map(|_| Verdict::Forward(1)));
//! result.lengths.extend_from_slice(batch.lengths());
//! result.data.extend_from_slice(batch.data());
//! match result.validate(&batch, ports.len(), MAX_FRAME_LEN) {
//!     Ok(()) => { ports.transmit(&result).unwrap(); }
//!     Err(e) => eprintln!("dropping batch: {e}"),
//! }
//! ```

pub mod af_packet;
pub mod batch;
pub mod memory;
pub mod netns;
pub mod pcap;
pub mod pcap_port;
pub mod port;
pub mod port_set;
pub mod spec;
mod sys;
pub mod table;
pub mod tap;

pub use af_packet::{AfPacketOptions, AfPacketPort};
pub use batch::{Batch, BatchError, BatchResult, MAX_FRAME_LEN, Packet, PortId, Verdict};
pub use memory::{MemoryPort, MemoryPortHandle};
pub use pcap_port::{Pacing, PcapPort};
pub use port::{Port, PortCounters, PortStats};
pub use port_set::PortSet;
pub use spec::{PortError, PortSpec, open_port};
pub use table::{Table, TableError, TableKind, TableSet, TableSetError, TableSpec, TableStats};
pub use tap::TapPort;
