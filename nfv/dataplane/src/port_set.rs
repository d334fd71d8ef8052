//! [`PortSet`]: the host's ports by id, filling batches from all of them and sending a plugin's
//! forwarded packets out of the right one.
//!
//! ```
//! use outpost_dataplane::{Batch, BatchResult, PortSet, PortSpec, Verdict};
//!
//! let specs = [
//!     PortSpec::Memory { name: "n3".into(), capacity: 64 },
//!     PortSpec::Memory { name: "n6".into(), capacity: 64 },
//! ];
//! let mut ports = PortSet::open(&specs).unwrap();
//! let n3 = ports.get(0).unwrap().memory_handle().unwrap();
//! let n6 = ports.get(1).unwrap().memory_handle().unwrap();
//! n3.inject(b"uplink");
//!
//! let mut batch = Batch::new();
//! ports.recv(&mut batch, 32).unwrap();
//! // What a plugin would answer: forward everything from n3 to n6 unchanged.
//! let result = BatchResult {
//!     verdicts: vec![Verdict::Forward(1)],
//!     lengths: batch.lengths().to_vec(),
//!     data: batch.data().to_vec(),
//! };
//! result.validate(&batch, ports.len(), outpost_dataplane::MAX_FRAME_LEN).unwrap();
//! ports.transmit(&result).unwrap();
//! assert_eq!(n6.take_sent(), vec![b"uplink".to_vec()]);
//! ```

use std::io;

use crate::batch::{Batch, BatchResult, PortId};
use crate::port::{Port, PortStats};
use crate::spec::{PortError, PortSpec, open_port};

/// The host's ports, indexed by [`PortId`] (a port's id is its position).
#[derive(Default)]
pub struct PortSet {
    ports: Vec<Box<dyn Port>>,
    /// Where the next `recv` starts, so no port starves the others when batches fill up.
    next_recv: usize,
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.ports.iter().map(|p| p.name()))
            .finish()
    }
}

impl PortSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens every port in `specs`; the port at position `i` gets id `i`.
    pub fn open(specs: &[PortSpec]) -> Result<Self, PortError> {
        let mut set = Self::new();
        for spec in specs {
            let id = PortId::try_from(set.len()).map_err(|_| PortError::TooManyPorts)?;
            if set.id_of(spec.name()).is_some() {
                return Err(PortError::DuplicateName(spec.name().to_owned()));
            }
            set.push(open_port(id, spec)?)?;
        }
        Ok(set)
    }

    /// Adds a port whose id must equal the set's current length; returns its id.
    pub fn push(&mut self, port: Box<dyn Port>) -> Result<PortId, PortError> {
        if self.id_of(port.name()).is_some() {
            return Err(PortError::DuplicateName(port.name().to_owned()));
        }
        if usize::from(port.id()) != self.ports.len() {
            return Err(PortError::WrongId {
                name: port.name().to_owned(),
                id: port.id(),
                position: self.ports.len(),
            });
        }
        self.ports.push(port);
        Ok(self.ports.len() as PortId - 1)
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether there are no ports.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The port with id `id`.
    pub fn get(&self, id: PortId) -> Option<&dyn Port> {
        self.ports.get(usize::from(id)).map(|p| &**p)
    }

    /// The port with id `id`, mutably.
    pub fn get_mut(&mut self, id: PortId) -> Option<&mut (dyn Port + 'static)> {
        self.ports.get_mut(usize::from(id)).map(|p| &mut **p)
    }

    /// The id of the port named `name`.
    pub fn id_of(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.name() == name)
            .map(|i| i as PortId)
    }

    /// The ports in id order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Port> + '_ {
        self.ports.iter().map(|p| &**p)
    }

    /// Appends up to `max` frames in total from all ports to `batch`, starting with a different
    /// port each call; returns how many. Every port is polled even if one fails; the first
    /// error is returned after the others were read.
    pub fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let count = self.ports.len();
        let mut total = 0;
        let mut first_error = None;
        for step in 0..count {
            let index = (self.next_recv + step) % count;
            match self.ports[index].recv_batch(batch, max - total) {
                Ok(n) => total += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            if total >= max {
                break;
            }
        }
        if count > 0 {
            self.next_recv = (self.next_recv + 1) % count;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Sends every forwarded packet of a validated `result` out of its port, one `send_batch`
    /// per port; returns how many were accepted. Forwards to ports that do not exist are
    /// skipped (validation rejects them first).
    pub fn transmit(&mut self, result: &BatchResult) -> io::Result<usize> {
        let mut total = 0;
        let mut first_error = None;
        for (index, port) in self.ports.iter_mut().enumerate() {
            let mut frames = result
                .forwards()
                .filter(|&(egress, _)| usize::from(egress) == index)
                .map(|(_, frame)| frame)
                .peekable();
            if frames.peek().is_none() {
                continue;
            }
            match port.send_batch(&mut frames) {
                Ok(n) => total += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Every port's name and counters, in id order.
    pub fn stats(&self) -> Vec<(String, PortStats)> {
        self.ports
            .iter()
            .map(|p| (p.name().to_owned(), p.stats()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Verdict;
    use crate::memory::MemoryPort;

    fn memory_set(n: usize) -> PortSet {
        let specs: Vec<_> = (0..n)
            .map(|i| PortSpec::Memory {
                name: format!("m{i}"),
                capacity: 16,
            })
            .collect();
        PortSet::open(&specs).unwrap()
    }

    #[test]
    fn ports_get_their_position_as_id_and_are_found_by_name() {
        let set = memory_set(3);
        assert_eq!(set.id_of("m2"), Some(2));
        assert_eq!(set.get(1).unwrap().id(), 1);
        assert!(set.get(3).is_none());
        assert_eq!(set.stats().len(), 3);
    }

    #[test]
    fn duplicate_names_and_wrong_ids_are_rejected() {
        let spec = PortSpec::Memory {
            name: "same".into(),
            capacity: 1,
        };
        assert!(matches!(
            PortSet::open(&[spec.clone(), spec]),
            Err(PortError::DuplicateName(name)) if name == "same"
        ));
        let mut set = PortSet::new();
        let (port, _) = MemoryPort::new(5, "x", 1);
        assert!(matches!(
            set.push(Box::new(port)),
            Err(PortError::WrongId {
                id: 5,
                position: 0,
                ..
            })
        ));
    }

    #[test]
    fn recv_respects_the_total_and_rotates_the_first_port() {
        let mut set = memory_set(2);
        for id in 0..2 {
            let handle = set.get(id).unwrap().memory_handle().unwrap();
            handle.inject_all([&b"a"[..], b"b", b"c"]);
        }
        let mut batch = Batch::new();
        assert_eq!(set.recv(&mut batch, 2).unwrap(), 2);
        assert_eq!(batch.ingress(), &[0, 0]);
        batch.clear();
        assert_eq!(set.recv(&mut batch, 2).unwrap(), 2);
        assert_eq!(batch.ingress(), &[1, 1]);
        batch.clear();
        assert_eq!(set.recv(&mut batch, 10).unwrap(), 2);
        assert_eq!(batch.ingress(), &[0, 1]);
    }

    #[test]
    fn transmit_sends_each_forward_out_of_its_port_in_order() {
        let mut set = memory_set(3);
        let result = BatchResult {
            verdicts: vec![
                Verdict::Forward(2),
                Verdict::Drop,
                Verdict::Forward(0),
                Verdict::Forward(2),
            ],
            lengths: vec![1, 1, 1],
            data: b"xyz".to_vec(),
        };
        assert_eq!(set.transmit(&result).unwrap(), 3);
        let sent = |id| set.get(id).unwrap().memory_handle().unwrap().take_sent();
        assert_eq!(sent(0), vec![b"y".to_vec()]);
        assert!(sent(1).is_empty());
        assert_eq!(sent(2), vec![b"x".to_vec(), b"z".to_vec()]);
    }
}
