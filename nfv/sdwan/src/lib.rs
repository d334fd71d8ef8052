//! Host-side foundation of Outpost's SD-WAN feature.
//!
//! Independent pieces, meant to be wired together by the host (and driven by an SD-WAN plugin's
//! policy), and a [`gateway`] that wires them into one site's data path:
//!
//! * [`probe`] — active link probes. A [`probe::Prober`] per uplink sends small UDP probes
//!   every 100 ms to a remote [`probe::Reflector`] and keeps RTT, jitter (RFC 3550 style) and
//!   loss over a sliding window. A link goes Down after 3 consecutive lost probes (≈300 ms) and
//!   back Up after 5 consecutive good replies; state changes are broadcast with a timestamp.
//! * [`policy`] — pure, application-aware path selection: per-class SLAs and preferred links
//!   ([`policy::select`]), a serializable [`policy::FlowTable`] that pins flows to links without
//!   per-packet flapping and returns them to a recovered preferred link after a hold-down, and
//!   classifiers ([`policy::classify`]) by DSCP, 5-tuple, TLS SNI and HTTP Host.
//! * [`overlay`] — the encrypted site-to-site overlay: WireGuard via `boringtun`, one tunnel
//!   per uplink ([`overlay::OverlayPeer`]), key helpers, drop counters for hostile input, and
//!   MTU / TCP MSS clamping ([`overlay::mtu`]).
//! * [`qos`] — a per-uplink egress [`qos::Scheduler`]: strict-priority real-time classes, deficit
//!   round robin by bytes between weighted classes, bounded drop-tail queues with counters and a
//!   token-bucket rate cap.
//! * [`gateway`] — one site's SD-WAN data path over N uplinks to a remote site
//!   ([`gateway::Gateway`]): classify → route with flow pinning (re-evaluated on every probe
//!   update) → optional duplication with receive-side de-duplication → TCP MSS clamp → QoS →
//!   WireGuard, plus a serializable [`gateway::GatewayStatus`] (link quality, per-class choice
//!   and counters, failover events) and flow-table export/import for hot swaps.
//!
//! Wiring by hand: run a prober per uplink, feed each quality update into a
//! [`policy::Links`] map and [`policy::FlowTable::reevaluate`], classify packets, route each
//! flow with [`policy::FlowTable::route`] and hand the packet to the chosen uplink's
//! [`overlay::OverlayPeer`]. [`gateway::Gateway`] does exactly that.

pub mod gateway;
pub mod overlay;
pub mod policy;
pub mod probe;
pub mod qos;

pub use gateway::{Gateway, GatewayConfig, GatewayStatus, Uplink};
pub use policy::{Choice, ClassPolicy, FlowKey, FlowTable, Policy, Sla, select};
pub use probe::{LinkEvent, LinkId, LinkQuality, LinkState, ProbeConfig, Prober, Reflector};
pub use qos::{QosClass, QosConfig, RateCap, Scheduler};
