//! Application-aware path selection.
//!
//! Everything here is pure: it takes link qualities (from [`crate::probe`]) and a caller-owned
//! monotonic clock in milliseconds, and it decides. Nothing sleeps or does I/O, so the same code
//! can run in a host task or behind a plugin call.
//!
//! * [`select`] picks a [`Choice`] for one [`ClassPolicy`]: the first preferred link that is Up
//!   and meets the class SLA; failing that, the Up link with the lowest RTT; none Up, nothing.
//!   Real-time classes may ask for a second, duplicate link.
//! * [`FlowTable`] pins each flow (5-tuple) to a link so packets of one flow do not flap between
//!   paths. A flow moves only when its link goes Down or breaks the SLA while another link meets
//!   it, and it returns to a more preferred link only after that link has been Up for the
//!   table's `hold_down`. The table serializes with serde, so a host can keep it in a host table
//!   across a plugin hot swap.
//! * [`classify`] maps packets to class names by DSCP, 5-tuple rules, TLS SNI or HTTP Host.
//!
//! "Latency" in an SLA is the probe round-trip time ([`LinkQuality::rtt_ms`]).

pub mod classify;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::probe::{LinkId, LinkQuality, LinkState};

/// Service-level limits for a class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    /// Highest acceptable mean RTT, ms.
    pub max_latency_ms: f64,
    /// Highest acceptable jitter, ms.
    pub max_jitter_ms: f64,
    /// Highest acceptable loss, percent.
    pub max_loss_pct: f64,
}

impl Sla {
    /// Whether a link's measured quality is within these limits (state not considered).
    pub fn is_met_by(&self, q: &LinkQuality) -> bool {
        q.rtt_ms <= self.max_latency_ms
            && q.jitter_ms <= self.max_jitter_ms
            && q.loss_pct <= self.max_loss_pct
    }
}

/// Policy of one application class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPolicy {
    /// Class name, as produced by [`classify::Classifier`].
    pub name: String,
    /// Limits the chosen link should meet.
    pub sla: Sla,
    /// Links in order of preference. Links not listed are still used as a last resort.
    pub preferred: Vec<LinkId>,
    /// Send a copy over a second link (for real-time traffic).
    #[serde(default)]
    pub duplicate: bool,
}

/// The outcome of path selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// Link to send on.
    pub primary: LinkId,
    /// Second link to send a copy on, for classes with `duplicate`.
    pub duplicate: Option<LinkId>,
}

/// Current qualities of all links, keyed by id.
pub type Links = BTreeMap<LinkId, LinkQuality>;

fn is_up(links: &Links, id: LinkId) -> bool {
    links.get(&id).is_some_and(|q| q.state == LinkState::Up)
}

fn meets(links: &Links, id: LinkId, sla: &Sla) -> bool {
    links
        .get(&id)
        .is_some_and(|q| q.state == LinkState::Up && sla.is_met_by(q))
}

/// Preferred links first, then any other known link in id order.
fn candidates(class: &ClassPolicy, links: &Links) -> Vec<LinkId> {
    let mut out: Vec<LinkId> = Vec::with_capacity(links.len());
    for id in &class.preferred {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    for id in links.keys() {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    out
}

fn best_among(
    class: &ClassPolicy,
    links: &Links,
    exclude: Option<LinkId>,
) -> Option<(LinkId, bool)> {
    let cands: Vec<LinkId> = candidates(class, links)
        .into_iter()
        .filter(|id| Some(*id) != exclude)
        .collect();
    if let Some(id) = cands
        .iter()
        .copied()
        .find(|id| meets(links, *id, &class.sla))
    {
        return Some((id, true));
    }
    cands
        .iter()
        .copied()
        .filter(|id| is_up(links, *id))
        .filter_map(|id| links.get(&id).map(|q| (id, q.rtt_ms)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(id, _)| (id, false))
}

/// Chooses the path(s) for `class` given current link qualities.
pub fn select(class: &ClassPolicy, links: &Links) -> Option<Choice> {
    let (primary, _) = best_among(class, links, None)?;
    let duplicate = if class.duplicate {
        best_among(class, links, Some(primary)).map(|(id, _)| id)
    } else {
        None
    };
    Some(Choice { primary, duplicate })
}

/// A set of class policies by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Classes, by name.
    pub classes: BTreeMap<String, ClassPolicy>,
}

impl Policy {
    /// Builds a policy from class list.
    pub fn new(classes: impl IntoIterator<Item = ClassPolicy>) -> Self {
        Self {
            classes: classes.into_iter().map(|c| (c.name.clone(), c)).collect(),
        }
    }

    /// Looks a class up.
    pub fn class(&self, name: &str) -> Option<&ClassPolicy> {
        self.classes.get(name)
    }
}

/// A flow's 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port (0 for protocols without ports).
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, …).
    pub proto: u8,
}

/// Where a flow is pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEntry {
    /// Class the flow was classified into.
    pub class: String,
    /// Current pinned choice.
    pub choice: Choice,
    /// When it was pinned there (caller's clock, ms).
    pub pinned_at_ms: u64,
    /// Last time the flow was routed (caller's clock, ms), for idle expiry.
    pub last_seen_ms: u64,
    /// How many times the flow has moved.
    pub moves: u32,
}

/// A flow that [`FlowTable::reevaluate`] or [`FlowTable::route`] moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowMove {
    /// The flow.
    pub key: FlowKey,
    /// Previous primary link.
    pub from: LinkId,
    /// New primary link.
    pub to: LinkId,
}

#[derive(Serialize, Deserialize)]
struct FlowTableState {
    hold_down_ms: u64,
    up_since_ms: BTreeMap<LinkId, u64>,
    flows: Vec<(FlowKey, FlowEntry)>,
}

/// Flow pinning table; see the module documentation.
///
/// Times are milliseconds on a monotonic clock owned by the caller (for example milliseconds
/// since host start), which keeps the table pure and serializable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "FlowTableState", from = "FlowTableState")]
pub struct FlowTable {
    hold_down: Duration,
    up_since_ms: BTreeMap<LinkId, u64>,
    flows: HashMap<FlowKey, FlowEntry>,
}

impl From<FlowTable> for FlowTableState {
    fn from(t: FlowTable) -> Self {
        let mut flows: Vec<(FlowKey, FlowEntry)> = t.flows.into_iter().collect();
        flows.sort_by_key(|a| a.0);
        Self {
            hold_down_ms: u64::try_from(t.hold_down.as_millis()).unwrap_or(u64::MAX),
            up_since_ms: t.up_since_ms,
            flows,
        }
    }
}

impl From<FlowTableState> for FlowTable {
    fn from(s: FlowTableState) -> Self {
        Self {
            hold_down: Duration::from_millis(s.hold_down_ms),
            up_since_ms: s.up_since_ms,
            flows: s.flows.into_iter().collect(),
        }
    }
}

impl FlowTable {
    /// An empty table; flows return to a recovered preferred link after `hold_down`.
    pub fn new(hold_down: Duration) -> Self {
        Self {
            hold_down,
            up_since_ms: BTreeMap::new(),
            flows: HashMap::new(),
        }
    }

    /// Records link states; call on every quality update (also done by [`Self::route`]).
    pub fn observe(&mut self, links: &Links, now_ms: u64) {
        for (id, q) in links {
            if q.state == LinkState::Up {
                self.up_since_ms.entry(*id).or_insert(now_ms);
            } else {
                self.up_since_ms.remove(id);
            }
        }
        self.up_since_ms.retain(|id, _| links.contains_key(id));
    }

    fn settled(&self, id: LinkId, now_ms: u64) -> bool {
        let hold = u64::try_from(self.hold_down.as_millis()).unwrap_or(u64::MAX);
        self.up_since_ms
            .get(&id)
            .is_some_and(|since| now_ms.saturating_sub(*since) >= hold)
    }

    /// Decides where a pinned choice should go now; `None` means stay.
    fn decide(
        &self,
        current: Choice,
        class: &ClassPolicy,
        links: &Links,
        now_ms: u64,
    ) -> Option<Choice> {
        let ideal = select(class, links)?;
        let cur = current.primary;
        if !is_up(links, cur) {
            return Some(ideal);
        }
        let cur_meets = meets(links, cur, &class.sla);
        let ideal_meets = meets(links, ideal.primary, &class.sla);
        if ideal.primary == cur {
            return (ideal != current).then_some(ideal);
        }
        if !cur_meets {
            // Break of SLA: move only to something that actually meets it.
            return ideal_meets.then_some(ideal);
        }
        // Current link is fine; the ideal is more preferred. Return only once it has settled.
        if ideal_meets && self.settled(ideal.primary, now_ms) {
            return Some(ideal);
        }
        // Keep the primary but refresh the duplicate if it died.
        if let Some(dup) = current.duplicate
            && !is_up(links, dup)
        {
            let duplicate = if class.duplicate {
                best_among(class, links, Some(cur)).map(|(id, _)| id)
            } else {
                None
            };
            return Some(Choice {
                primary: cur,
                duplicate,
            });
        }
        None
    }

    /// Routes one packet of `key`: pins new flows, keeps or moves pinned ones.
    pub fn route(
        &mut self,
        key: FlowKey,
        class: &ClassPolicy,
        links: &Links,
        now_ms: u64,
    ) -> Option<Choice> {
        self.observe(links, now_ms);
        if let Some(entry) = self.flows.get(&key) {
            let current = entry.choice;
            let same_class = entry.class == class.name;
            let decided = if same_class {
                self.decide(current, class, links, now_ms)
            } else {
                select(class, links)
            };
            let entry = self.flows.get_mut(&key)?;
            entry.last_seen_ms = now_ms;
            if let Some(next) = decided {
                if next.primary != current.primary {
                    tracing::debug!(
                        ?key,
                        from = current.primary,
                        to = next.primary,
                        "flow moved"
                    );
                    entry.moves = entry.moves.saturating_add(1);
                    entry.pinned_at_ms = now_ms;
                }
                entry.choice = next;
                entry.class.clone_from(&class.name);
            } else if !is_up(links, current.primary) {
                // Nothing is up: keep the pin for when a link returns, but report no path.
                return None;
            }
            return Some(entry.choice);
        }
        let choice = select(class, links)?;
        self.flows.insert(
            key,
            FlowEntry {
                class: class.name.clone(),
                choice,
                pinned_at_ms: now_ms,
                last_seen_ms: now_ms,
                moves: 0,
            },
        );
        Some(choice)
    }

    /// Re-evaluates every pinned flow (call on link events or periodically) and returns moves.
    /// Flows whose class is not in `policy` are left alone.
    pub fn reevaluate(&mut self, policy: &Policy, links: &Links, now_ms: u64) -> Vec<FlowMove> {
        self.observe(links, now_ms);
        let mut updates = Vec::new();
        for (key, entry) in &self.flows {
            let Some(class) = policy.class(&entry.class) else {
                continue;
            };
            if let Some(next) = self.decide(entry.choice, class, links, now_ms) {
                updates.push((*key, next));
            }
        }
        let mut moves = Vec::new();
        for (key, next) in updates {
            if let Some(entry) = self.flows.get_mut(&key) {
                if entry.choice.primary != next.primary {
                    moves.push(FlowMove {
                        key,
                        from: entry.choice.primary,
                        to: next.primary,
                    });
                    entry.moves = entry.moves.saturating_add(1);
                    entry.pinned_at_ms = now_ms;
                }
                entry.choice = next;
            }
        }
        moves
    }

    /// The pinned entry of a flow.
    pub fn get(&self, key: &FlowKey) -> Option<&FlowEntry> {
        self.flows.get(key)
    }

    /// Forgets a flow.
    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowEntry> {
        self.flows.remove(key)
    }

    /// Drops flows not seen for `idle`; returns how many.
    pub fn expire_idle(&mut self, now_ms: u64, idle: Duration) -> usize {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let before = self.flows.len();
        self.flows
            .retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) < idle_ms);
        before - self.flows.len()
    }

    /// Every pinned flow, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> {
        self.flows.iter()
    }

    /// Number of pinned flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is pinned.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The return-to-preferred hold-down.
    pub fn hold_down(&self) -> Duration {
        self.hold_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn q(id: LinkId, state: LinkState, rtt: f64, loss: f64) -> LinkQuality {
        LinkQuality {
            link_id: id,
            rtt_ms: rtt,
            rtt_latest_ms: rtt,
            jitter_ms: 1.0,
            loss_pct: loss,
            state,
            probes_sent: 0,
            replies: 0,
            lost: 0,
            late_or_bad: 0,
        }
    }

    fn links(v: &[LinkQuality]) -> Links {
        v.iter().map(|l| (l.link_id, l.clone())).collect()
    }

    fn voice() -> ClassPolicy {
        ClassPolicy {
            name: "voice".into(),
            sla: Sla {
                max_latency_ms: 150.0,
                max_jitter_ms: 30.0,
                max_loss_pct: 1.0,
            },
            preferred: vec![1, 2],
            duplicate: false,
        }
    }

    fn key() -> FlowKey {
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            src_port: 40000,
            dst_port: 443,
            proto: 6,
        }
    }

    #[test]
    fn the_first_preferred_link_meeting_the_sla_is_chosen() {
        let l = links(&[
            q(1, LinkState::Up, 20.0, 0.0),
            q(2, LinkState::Up, 5.0, 0.0),
        ]);
        assert_eq!(select(&voice(), &l).map(|c| c.primary), Some(1));
    }

    #[test]
    fn an_sla_breaking_preferred_link_is_skipped() {
        let l = links(&[
            q(1, LinkState::Up, 20.0, 5.0),
            q(2, LinkState::Up, 50.0, 0.0),
        ]);
        assert_eq!(select(&voice(), &l).map(|c| c.primary), Some(2));
    }

    #[test]
    fn when_no_link_meets_the_sla_the_lowest_latency_up_link_is_chosen() {
        let l = links(&[
            q(1, LinkState::Up, 400.0, 0.0),
            q(2, LinkState::Up, 300.0, 0.0),
            q(3, LinkState::Down, 1.0, 0.0),
        ]);
        assert_eq!(select(&voice(), &l).map(|c| c.primary), Some(2));
    }

    #[test]
    fn no_link_up_means_no_choice() {
        let l = links(&[q(1, LinkState::Down, 1.0, 0.0)]);
        assert_eq!(select(&voice(), &l), None);
    }

    #[test]
    fn a_real_time_class_gets_a_duplicate_link() {
        let mut c = voice();
        c.duplicate = true;
        let l = links(&[
            q(1, LinkState::Up, 20.0, 0.0),
            q(2, LinkState::Up, 30.0, 0.0),
        ]);
        assert_eq!(
            select(&c, &l),
            Some(Choice {
                primary: 1,
                duplicate: Some(2)
            })
        );
    }

    #[test]
    fn a_pinned_flow_moves_on_down_and_returns_only_after_hold_down() {
        let mut t = FlowTable::new(Duration::from_millis(1000));
        let c = voice();
        let both = links(&[
            q(1, LinkState::Up, 20.0, 0.0),
            q(2, LinkState::Up, 30.0, 0.0),
        ]);
        assert_eq!(t.route(key(), &c, &both, 0).map(|c| c.primary), Some(1));
        // A gets slightly worse but within SLA: no flapping.
        let worse = links(&[
            q(1, LinkState::Up, 100.0, 0.0),
            q(2, LinkState::Up, 10.0, 0.0),
        ]);
        assert_eq!(t.route(key(), &c, &worse, 10).map(|c| c.primary), Some(1));
        let a_down = links(&[
            q(1, LinkState::Down, 20.0, 100.0),
            q(2, LinkState::Up, 30.0, 0.0),
        ]);
        assert_eq!(t.route(key(), &c, &a_down, 100).map(|c| c.primary), Some(2));
        assert_eq!(t.route(key(), &c, &both, 200).map(|c| c.primary), Some(2));
        assert_eq!(t.route(key(), &c, &both, 1100).map(|c| c.primary), Some(2));
        assert_eq!(t.route(key(), &c, &both, 1200).map(|c| c.primary), Some(1));
        assert_eq!(t.get(&key()).map(|e| e.moves), Some(2));
    }

    #[test]
    fn the_flow_table_survives_a_json_round_trip() {
        let mut t = FlowTable::new(Duration::from_millis(500));
        let l = links(&[q(1, LinkState::Up, 20.0, 0.0)]);
        t.route(key(), &voice(), &l, 5);
        let json = serde_json::to_string(&t).expect("serialize");
        let back: FlowTable = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, t);
    }
}
