//! Bandwidth schedules and the token bucket that enforces them on upload bytes.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// Day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Every day of the week.
    pub fn all() -> Vec<Weekday> {
        Self::ALL.to_vec()
    }

    fn from_days_since_epoch(days: i64) -> Self {
        // 1970-01-01 was a Thursday.
        Self::ALL[(days + 3).rem_euclid(7) as usize]
    }

    fn previous(self) -> Self {
        let i = Self::ALL.iter().position(|d| *d == self).unwrap_or(0);
        Self::ALL[(i + 6) % 7]
    }
}

/// A time of day, `HH:MM` on the wire; `24:00` is allowed as a stop time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay {
    minutes: u16,
}

impl TimeOfDay {
    /// `hour:minute`; hour 24 only with minute 0.
    pub fn new(hour: u8, minute: u8) -> Result<Self> {
        if minute > 59 || hour > 24 || (hour == 24 && minute != 0) {
            return Err(StorageError::InvalidSchedule(format!(
                "{hour:02}:{minute:02} is not a time of day"
            )));
        }
        Ok(Self {
            minutes: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.minutes
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = StorageError;
    fn try_from(s: String) -> Result<Self> {
        let bad = || StorageError::InvalidSchedule(format!("{s:?} is not HH:MM"));
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        Self::new(h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?)
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> Self {
        t.to_string()
    }
}

/// One rule: on `days`, from `start` to `stop`, uploads run at most at `rate_mbps`
/// (megabits per second, 10^6 bits; `None` = unlimited). `stop` before `start` wraps past
/// midnight into the next day; `start == stop` covers the whole day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleWindow {
    /// Days the window starts on.
    pub days: Vec<Weekday>,
    /// Start time (inclusive).
    pub start: TimeOfDay,
    /// Stop time (exclusive).
    pub stop: TimeOfDay,
    /// Cap in Mbit/s, `None` for unlimited.
    pub rate_mbps: Option<u32>,
}

/// A list of windows; the first window that covers the current time decides the rate, and
/// `default_rate_mbps` applies when none does. Times are local to `utc_offset_minutes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandwidthSchedule {
    /// The windows, first match wins.
    #[serde(default)]
    pub windows: Vec<ScheduleWindow>,
    /// Rate outside every window (`None` = unlimited).
    #[serde(default)]
    pub default_rate_mbps: Option<u32>,
    /// Offset of the schedule's local time from UTC, in minutes.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

impl BandwidthSchedule {
    /// No limit at any time.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// The same cap at all times.
    pub fn fixed(rate_mbps: Option<u32>) -> Self {
        Self {
            default_rate_mbps: rate_mbps,
            ..Self::default()
        }
    }

    /// Checks the schedule: every window names at least one day, rates are positive and the
    /// offset is within ±18 h.
    pub fn validate(&self) -> Result<()> {
        if self.utc_offset_minutes.abs() > 18 * 60 {
            return Err(StorageError::InvalidSchedule(
                "utc_offset_minutes must be within ±1080".into(),
            ));
        }
        if self.default_rate_mbps == Some(0) {
            return Err(StorageError::InvalidSchedule(
                "a rate of 0 Mbps would stop uploads forever; use a positive rate".into(),
            ));
        }
        for (i, w) in self.windows.iter().enumerate() {
            if w.days.is_empty() {
                return Err(StorageError::InvalidSchedule(format!(
                    "window {i} names no days"
                )));
            }
            if w.rate_mbps == Some(0) {
                return Err(StorageError::InvalidSchedule(format!(
                    "window {i} has a rate of 0 Mbps; use a positive rate"
                )));
            }
            if w.start.minutes >= 24 * 60 {
                return Err(StorageError::InvalidSchedule(format!(
                    "window {i} starts at 24:00"
                )));
            }
        }
        Ok(())
    }

    /// The cap in bytes per second at `unix_ms` (`None` = unlimited).
    pub fn rate_at(&self, unix_ms: u64) -> Option<u64> {
        let local_min = (unix_ms / 60_000) as i64 + i64::from(self.utc_offset_minutes);
        let day = Weekday::from_days_since_epoch(local_min.div_euclid(24 * 60));
        let minute = local_min.rem_euclid(24 * 60) as u16;
        let mbps = self
            .windows
            .iter()
            .find(|w| window_covers(w, day, minute))
            .map(|w| w.rate_mbps)
            .unwrap_or(self.default_rate_mbps);
        mbps.map(|m| u64::from(m) * 125_000)
    }
}

fn window_covers(w: &ScheduleWindow, day: Weekday, minute: u16) -> bool {
    let (start, stop) = (w.start.minutes, w.stop.minutes);
    if start == stop {
        return w.days.contains(&day);
    }
    if start < stop {
        return w.days.contains(&day) && minute >= start && minute < stop;
    }
    // Wraps past midnight: the tail of a window that started yesterday, or the head of today's.
    (w.days.contains(&day) && minute >= start)
        || (w.days.contains(&day.previous()) && minute < stop)
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Bucket {
    /// May go negative: a caller takes its bytes at once and then waits off the debt.
    tokens: f64,
    last: Instant,
}

/// A token bucket on upload bytes that follows a [`BandwidthSchedule`]. Share one `Throttle`
/// between shares for a global cap, or give each share its own. The schedule can be replaced
/// at any time; waiting callers pick up the new rate within 100 ms.
pub struct Throttle {
    schedule: Mutex<BandwidthSchedule>,
    bucket: Mutex<Bucket>,
    meter: Mutex<VecDeque<(Instant, u64)>>,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("schedule", &self.schedule())
            .finish_non_exhaustive()
    }
}

/// How often a waiting caller re-reads the schedule.
const RECHECK: Duration = Duration::from_millis(100);
/// Measured-rate window.
const METER_WINDOW: Duration = Duration::from_secs(2);

impl Throttle {
    /// A throttle following `schedule` (validated).
    pub fn new(schedule: BandwidthSchedule) -> Result<Self> {
        schedule.validate()?;
        Ok(Self {
            schedule: Mutex::new(schedule),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
            meter: Mutex::new(VecDeque::new()),
        })
    }

    /// A throttle that never limits.
    pub fn unlimited() -> Self {
        Self::new(BandwidthSchedule::unlimited()).unwrap_or_else(|_| unreachable!())
    }

    /// Replaces the schedule; takes effect for waiting callers within 100 ms.
    pub fn set_schedule(&self, schedule: BandwidthSchedule) -> Result<()> {
        schedule.validate()?;
        tracing::info!(?schedule, "bandwidth schedule replaced");
        *lock(&self.schedule) = schedule;
        Ok(())
    }

    /// The schedule in force.
    pub fn schedule(&self) -> BandwidthSchedule {
        lock(&self.schedule).clone()
    }

    /// The cap right now in bytes per second (`None` = unlimited).
    pub fn current_limit(&self) -> Option<u64> {
        lock(&self.schedule).rate_at(now_unix_ms())
    }

    /// Upload bytes per second over the last two seconds.
    pub fn measured_rate(&self) -> u64 {
        let mut meter = lock(&self.meter);
        let now = Instant::now();
        while meter
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > METER_WINDOW)
        {
            meter.pop_front();
        }
        let bytes: u64 = meter.iter().map(|(_, b)| b).sum();
        (bytes as f64 / METER_WINDOW.as_secs_f64()) as u64
    }

    /// Takes `bytes` from the bucket, waiting as long as the schedule's rate requires. Callers
    /// should ask in chunks (the engine uses 64 KiB) so the flow is smooth.
    pub async fn acquire(&self, bytes: u64) {
        let mut first = true;
        loop {
            let rate = self.current_limit();
            let wait = {
                let mut b = lock(&self.bucket);
                let now = Instant::now();
                match rate {
                    None => {
                        b.tokens = 0.0;
                        b.last = now;
                        None
                    }
                    Some(rate) => {
                        let rate = rate as f64;
                        // Allow a burst of 50 ms worth (at least 64 KiB) so short idle gaps
                        // do not turn into a flood.
                        let burst = (rate / 20.0).max(65_536.0);
                        let elapsed = now.duration_since(b.last).as_secs_f64();
                        b.tokens = (b.tokens + elapsed * rate).min(burst);
                        b.last = now;
                        if first {
                            b.tokens -= bytes as f64;
                            first = false;
                        }
                        (b.tokens < 0.0)
                            .then(|| Duration::from_secs_f64(-b.tokens / rate).min(RECHECK))
                    }
                }
            };
            match wait {
                None => break,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
        lock(&self.meter).push_back((Instant::now(), bytes));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day_offset: u64, hh: u64, mm: u64) -> u64 {
        // 1970-01-05 was a Monday.
        ((4 + day_offset) * 24 * 60 + hh * 60 + mm) * 60_000
    }

    fn window(days: Vec<Weekday>, start: &str, stop: &str, rate: Option<u32>) -> ScheduleWindow {
        ScheduleWindow {
            days,
            start: start.to_owned().try_into().unwrap(),
            stop: stop.to_owned().try_into().unwrap(),
            rate_mbps: rate,
        }
    }

    #[test]
    fn business_hours_are_capped_and_nights_are_not() {
        let s = BandwidthSchedule {
            windows: vec![window(
                vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ],
                "08:00",
                "18:00",
                Some(10),
            )],
            default_rate_mbps: None,
            utc_offset_minutes: 0,
        };
        assert_eq!(s.rate_at(at(0, 9, 0)), Some(1_250_000));
        assert_eq!(s.rate_at(at(0, 18, 0)), None);
        assert_eq!(s.rate_at(at(0, 7, 59)), None);
        assert_eq!(s.rate_at(at(5, 9, 0)), None, "Saturday is unlimited");
    }

    #[test]
    fn a_window_past_midnight_covers_the_next_morning() {
        let s = BandwidthSchedule {
            windows: vec![window(vec![Weekday::Sun], "22:00", "06:00", Some(100))],
            default_rate_mbps: Some(1),
            utc_offset_minutes: 0,
        };
        assert_eq!(s.rate_at(at(6, 23, 0)), Some(12_500_000), "Sunday night");
        assert_eq!(s.rate_at(at(7, 5, 59)), Some(12_500_000), "Monday early");
        assert_eq!(s.rate_at(at(7, 6, 0)), Some(125_000));
        assert_eq!(
            s.rate_at(at(0, 5, 0)),
            Some(125_000 * 100),
            "Monday after Sunday"
        );
    }

    #[test]
    fn schedules_round_trip_through_json_and_bad_times_are_refused() {
        let json = r#"{"windows":[{"days":["Sat","Sun"],"start":"00:00","stop":"24:00","rate_mbps":null}],"default_rate_mbps":40}"#;
        let s: BandwidthSchedule = serde_json::from_str(json).unwrap();
        s.validate().unwrap();
        assert_eq!(s.rate_at(at(5, 12, 0)), None);
        assert_eq!(s.rate_at(at(1, 12, 0)), Some(5_000_000));
        assert!(serde_json::from_str::<TimeOfDay>("\"25:00\"").is_err());
        assert!(serde_json::from_str::<TimeOfDay>("\"7:5\"").is_err());
        assert!(BandwidthSchedule::fixed(Some(0)).validate().is_err());
    }
}
