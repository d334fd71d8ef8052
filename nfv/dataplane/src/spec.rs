//! Declaring ports: [`PortSpec`] is what a manifest says about a port, and [`open_port`] turns
//! it into a running [`Port`].
//!
//! ```
//! use outpost_dataplane::PortSpec;
//!
//! let spec: PortSpec = toml::from_str(r#"
//!     kind = "af-packet"
//!     name = "n3"
//!     interface = "eth1"
//!     options = { promiscuous = true, rx-block-timeout-ms = 2 }
//! "#).unwrap();
//! assert_eq!(spec.name(), "n3");
//! ```

use std::io;
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

use crate::af_packet::{AfPacketOptions, AfPacketPort};
use crate::batch::PortId;
use crate::memory::MemoryPort;
use crate::pcap::PcapError;
use crate::pcap_port::{Pacing, PcapPort};
use crate::port::Port;
use crate::tap::TapPort;

/// One port as declared in a manifest, selected by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PortSpec {
    /// An in-memory port (tests, benchmarks); reach its frames through
    /// [`Port::memory_handle`].
    Memory {
        /// The port's name.
        name: String,
        /// Frames each direction's queue holds.
        #[serde(default = "default_memory_capacity")]
        capacity: usize,
    },
    /// A TAP device, attached if it exists and created otherwise.
    Tap {
        /// The port's name.
        name: String,
        /// The device's name; defaults to the port's name.
        #[serde(default)]
        interface: Option<String>,
        /// Network namespace to open the device in (a name under `/run/netns` or a path).
        #[serde(default)]
        netns: Option<String>,
    },
    /// An existing network interface through AF_PACKET mmap rings.
    AfPacket {
        /// The port's name.
        name: String,
        /// The interface's name.
        interface: String,
        /// Network namespace the interface lives in.
        #[serde(default)]
        netns: Option<String>,
        /// Ring sizes and socket options.
        #[serde(default)]
        options: AfPacketOptions,
    },
    /// Replays a pcap file and/or records sent frames to one.
    Pcap {
        /// The port's name.
        name: String,
        /// The capture to replay.
        #[serde(default)]
        path: Option<PathBuf>,
        /// Where to record transmitted frames.
        #[serde(default)]
        output: Option<PathBuf>,
        /// Replay speed.
        #[serde(default)]
        pacing: Pacing,
    },
}

fn default_memory_capacity() -> usize {
    1024
}

impl PortSpec {
    /// The port's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Memory { name, .. }
            | Self::Tap { name, .. }
            | Self::AfPacket { name, .. }
            | Self::Pcap { name, .. } => name,
        }
    }

    /// The spec's `kind` as written in a manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "memory",
            Self::Tap { .. } => "tap",
            Self::AfPacket { .. } => "af-packet",
            Self::Pcap { .. } => "pcap",
        }
    }
}

/// Why a port could not be opened.
#[derive(Debug, Error)]
pub enum PortError {
    /// The backend failed to open (missing interface, no permission, bad ring size, ...).
    #[error("port {name:?} ({kind}): {source}")]
    Open {
        /// The port's name.
        name: String,
        /// The spec's kind.
        kind: &'static str,
        /// What failed.
        source: io::Error,
    },
    /// The pcap input or output file could not be used.
    #[error("port {name:?} (pcap): {source}")]
    Pcap {
        /// The port's name.
        name: String,
        /// What is wrong with the file.
        source: PcapError,
    },
    /// Two ports have the same name.
    #[error("port name {0:?} is used twice")]
    DuplicateName(String),
    /// A port was added with an id other than its position.
    #[error("port {name:?} has id {id} but would be port {position}")]
    WrongId {
        /// The port's name.
        name: String,
        /// Its id.
        id: PortId,
        /// The position it would take.
        position: usize,
    },
    /// More ports than a `u16` port id can name.
    #[error("too many ports: at most {} fit in a u16 port id", u16::MAX as usize + 1)]
    TooManyPorts,
}

/// Opens the port `spec` describes, with id `id`.
pub fn open_port(id: PortId, spec: &PortSpec) -> Result<Box<dyn Port>, PortError> {
    let open_error = |source: io::Error| PortError::Open {
        name: spec.name().to_owned(),
        kind: spec.kind(),
        source,
    };
    Ok(match spec {
        PortSpec::Memory { name, capacity } => Box::new(MemoryPort::new(id, name, *capacity).0),
        PortSpec::Tap {
            name,
            interface,
            netns,
        } => {
            let interface = interface.as_deref().unwrap_or(name);
            let port = match netns {
                Some(netns) => TapPort::open_in_netns(id, name, interface, netns),
                None => TapPort::open(id, name, interface),
            };
            Box::new(port.map_err(open_error)?)
        }
        PortSpec::AfPacket {
            name,
            interface,
            netns,
            options,
        } => {
            let port = match netns {
                Some(netns) => AfPacketPort::open_in_netns(id, name, interface, netns, options),
                None => AfPacketPort::open(id, name, interface, options),
            };
            Box::new(port.map_err(open_error)?)
        }
        PortSpec::Pcap {
            name,
            path,
            output,
            pacing,
        } => Box::new(
            PcapPort::open(id, name, path.as_deref(), output.as_deref(), *pacing).map_err(
                |source| PortError::Pcap {
                    name: name.clone(),
                    source,
                },
            )?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_deserializes_from_toml() {
        let specs: std::collections::BTreeMap<String, Vec<PortSpec>> = toml::from_str(
            r#"
            [[ports]]
            kind = "memory"
            name = "m"

            [[ports]]
            kind = "tap"
            name = "t"
            netns = "blue"

            [[ports]]
            kind = "af-packet"
            name = "n6"
            interface = "eth2"

            [[ports]]
            kind = "pcap"
            name = "replay"
            path = "in.pcap"
            pacing = "recorded"
            "#,
        )
        .unwrap();
        let ports = &specs["ports"];
        assert_eq!(
            ports[0],
            PortSpec::Memory {
                name: "m".into(),
                capacity: 1024
            }
        );
        assert_eq!(
            ports[1],
            PortSpec::Tap {
                name: "t".into(),
                interface: None,
                netns: Some("blue".into())
            }
        );
        assert_eq!(
            ports[2],
            PortSpec::AfPacket {
                name: "n6".into(),
                interface: "eth2".into(),
                netns: None,
                options: AfPacketOptions::default()
            }
        );
        assert_eq!(
            ports[3],
            PortSpec::Pcap {
                name: "replay".into(),
                path: Some("in.pcap".into()),
                output: None,
                pacing: Pacing::Recorded
            }
        );
        let kinds: Vec<_> = ports.iter().map(PortSpec::kind).collect();
        assert_eq!(kinds, ["memory", "tap", "af-packet", "pcap"]);
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        let typo = toml::from_str::<PortSpec>("kind = \"tap\"\nname = \"t\"\ninterfce = \"x\"");
        assert!(typo.unwrap_err().to_string().contains("interfce"));
        let kind = toml::from_str::<PortSpec>("kind = \"dpdk\"\nname = \"t\"");
        assert!(kind.unwrap_err().to_string().contains("dpdk"));
        let option = toml::from_str::<PortSpec>(
            "kind = \"af-packet\"\nname = \"a\"\ninterface = \"e\"\noptions = { promisc = true }",
        );
        assert!(option.unwrap_err().to_string().contains("promisc"));
    }

    #[test]
    fn a_memory_spec_opens_a_port_with_a_handle() {
        let spec = PortSpec::Memory {
            name: "m".into(),
            capacity: 4,
        };
        let mut port = open_port(3, &spec).unwrap();
        let handle = port.memory_handle().unwrap();
        handle.inject(b"frame");
        let mut batch = crate::Batch::new();
        assert_eq!(port.recv_batch(&mut batch, 8).unwrap(), 1);
        assert_eq!(batch.ingress(), &[3]);
    }

    #[test]
    fn a_missing_pcap_input_names_the_port_and_file() {
        let spec = PortSpec::Pcap {
            name: "replay".into(),
            path: Some("/nonexistent/in.pcap".into()),
            output: None,
            pacing: Pacing::AsFastAsPossible,
        };
        let err = open_port(0, &spec).unwrap_err().to_string();
        assert!(
            err.contains("replay") && err.contains("/nonexistent/in.pcap"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_interface_names_the_port() {
        let spec = PortSpec::AfPacket {
            name: "n3".into(),
            interface: "nosuchif1".into(),
            netns: None,
            options: AfPacketOptions::default(),
        };
        let err = open_port(0, &spec).unwrap_err().to_string();
        assert!(err.contains("n3") && err.contains("nosuchif1"), "{err}");
    }
}
