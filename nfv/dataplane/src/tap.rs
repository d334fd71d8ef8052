//! TAP ports: Ethernet frames to and from a Linux TAP device (`/dev/net/tun`, `IFF_TAP |
//! IFF_NO_PI`), non-blocking.
//!
//! Opening a name that exists attaches to that device (one made with `ip tuntap add mode tap`);
//! otherwise the kernel creates it, and it disappears when the port is dropped. An empty name
//! lets the kernel pick one (`tap0`, ...); [`TapPort::interface`] tells which.
//!
//! This module needs `unsafe` for the `TUNSETIFF` ioctl, which takes a pointer to an `ifreq`.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::{Batch, MAX_FRAME_LEN, PortId};
use crate::port::{Port, PortCounters, TxTally, poll_fd};
use crate::sys;

/// The TUN/TAP clone device.
const TUN_DEVICE: &str = "/dev/net/tun";

/// Largest frame a TAP device can hand us in one read (the 64 KiB IP limit plus a header).
const READ_BUFFER_LEN: usize = 65_536 + 18;

/// A port on a TAP device.
pub struct TapPort {
    id: PortId,
    name: String,
    interface: String,
    fd: OwnedFd,
    scratch: Box<[u8]>,
    counters: Arc<PortCounters>,
}

impl std::fmt::Debug for TapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPort")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

impl TapPort {
    /// Opens (attaching or creating) TAP device `interface` in the calling thread's network
    /// namespace as port `id` named `name`.
    pub fn open(id: PortId, name: &str, interface: &str) -> io::Result<Self> {
        let context =
            |e: io::Error| io::Error::new(e.kind(), format!("TAP device {interface:?}: {e}"));
        let mut req = sys::ifreq_with_name(interface).map_err(context)?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(|e| io::Error::new(e.kind(), format!("{TUN_DEVICE}: {e}")))?;
        let fd = OwnedFd::from(file);
        // SAFETY: TUNSETIFF reads and updates `req`, a valid ifreq that outlives the call.
        sys::check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) })
            .map_err(context)?;
        let interface = sys::ifreq_name(&req);
        tracing::debug!(port = name, interface, "TAP port open");
        Ok(Self {
            id,
            name: name.to_owned(),
            interface,
            fd,
            scratch: vec![0; READ_BUFFER_LEN].into_boxed_slice(),
            counters: PortCounters::new_shared(),
        })
    }

    /// Opens TAP device `interface` inside network namespace `netns` (see [`crate::netns`]).
    pub fn open_in_netns(id: PortId, name: &str, interface: &str, netns: &str) -> io::Result<Self> {
        crate::netns::run_in_netns(netns, || Self::open(id, name, interface))?
    }

    /// The device's name (the kernel's choice when opened with an empty name).
    pub fn interface(&self) -> &str {
        &self.interface
    }
}

impl Port for TapPort {
    fn id(&self) -> PortId {
        self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv_batch(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let (mut packets, mut bytes, mut drops) = (0u64, 0u64, 0u64);
        let mut result = Ok(());
        while packets < max as u64 {
            match sys::read(&self.fd, &mut self.scratch) {
                Ok(0) => break,
                Ok(n) if n > MAX_FRAME_LEN => drops += 1,
                Ok(n) => {
                    batch.push(self.id, &self.scratch[..n]);
                    packets += 1;
                    bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    result = Err(io::Error::new(
                        e.kind(),
                        format!("reading TAP device {:?}: {e}", self.interface),
                    ));
                    break;
                }
            }
        }
        self.counters.add_rx(packets, bytes);
        self.counters.add_rx_drops(drops);
        result.map(|()| packets as usize)
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = &[u8]>) -> io::Result<usize> {
        let mut tally = TxTally::default();
        for frame in frames {
            if frame.is_empty() || frame.len() > MAX_FRAME_LEN {
                tally.drops += 1;
                continue;
            }
            // A TAP write hands the frame to the kernel stack synchronously; it fails only when
            // the device cannot take it (down, no room), which a port counts as a drop.
            match sys::write(&self.fd, frame) {
                Ok(n) if n == frame.len() => tally.sent(n),
                Ok(_) | Err(_) => tally.drops += 1,
            }
        }
        Ok(tally.commit(&self.counters))
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        poll_fd(self.fd.as_raw_fd(), libc::POLLIN, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_device_name_is_an_error_naming_it() {
        let err = TapPort::open(0, "t", "this name is far too long").unwrap_err();
        assert!(
            err.to_string().contains("this name is far too long"),
            "{err}"
        );
    }
}
