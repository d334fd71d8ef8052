//! Expiry monitoring: for every served certificate, when it expires and how urgent that is.

use serde::Serialize;

use crate::certs::{CertSource, rfc3339};

/// The default alert thresholds, in days before expiry.
pub const DEFAULT_ALERT_DAYS: [u32; 3] = [30, 7, 1];

/// How close a certificate is to expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertLevel {
    /// More time left than the largest threshold.
    Ok,
    /// Inside a threshold, but not the smallest one.
    Warning,
    /// Inside the smallest threshold.
    Critical,
    /// Already expired.
    Expired,
}

impl AlertLevel {
    /// A number for metrics: 0 ok, 1 warning, 2 critical, 3 expired.
    pub fn as_gauge(self) -> u8 {
        self as u8
    }
}

/// Alert thresholds in days before expiry (default 30, 7 and 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryThresholds {
    days: Vec<u32>,
}

impl Default for ExpiryThresholds {
    fn default() -> Self {
        ExpiryThresholds::new(DEFAULT_ALERT_DAYS)
    }
}

impl ExpiryThresholds {
    /// Thresholds at these many days before expiry (order and duplicates do not matter).
    pub fn new(days: impl IntoIterator<Item = u32>) -> ExpiryThresholds {
        let mut days: Vec<u32> = days.into_iter().collect();
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        ExpiryThresholds { days }
    }

    /// The thresholds, largest first.
    pub fn days(&self) -> &[u32] {
        &self.days
    }

    /// The level and the smallest threshold crossed for a certificate with `seconds_left`.
    pub fn classify(&self, seconds_left: i64) -> (AlertLevel, Option<u32>) {
        if seconds_left <= 0 {
            return (AlertLevel::Expired, self.days.last().copied());
        }
        let crossed = self
            .days
            .iter()
            .copied()
            .filter(|&d| seconds_left < i64::from(d) * 86_400)
            .min();
        match crossed {
            None => (AlertLevel::Ok, None),
            Some(d) if Some(&d) == self.days.last() => (AlertLevel::Critical, Some(d)),
            Some(d) => (AlertLevel::Warning, Some(d)),
        }
    }
}

/// Expiry status of one served certificate, for status pages and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    /// What this certificate is: `served`, `intermediate`, `endpoint` or `device-ca`.
    pub role: &'static str,
    /// Where it came from.
    pub source: CertSource,
    /// Whether handshakes present it now (as leaf or in the chain).
    pub active: bool,
    /// Subject distinguished name.
    pub subject: String,
    /// DNS and IP subject alternative names.
    pub names: Vec<String>,
    /// SHA-256 of the certificate (DER), lowercase hex.
    pub fingerprint_sha256: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// End of validity, RFC 3339 (UTC).
    pub not_after_rfc3339: String,
    /// Seconds until expiry (negative once expired).
    pub seconds_left: i64,
    /// How urgent renewal is.
    pub alert: AlertLevel,
    /// The smallest threshold (days) crossed, if any.
    pub threshold_days: Option<u32>,
}

impl CertStatus {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        role: &'static str,
        source: CertSource,
        active: bool,
        subject: String,
        names: Vec<String>,
        fingerprint_sha256: String,
        not_after: i64,
        now: i64,
        thresholds: &ExpiryThresholds,
    ) -> CertStatus {
        let seconds_left = not_after - now;
        let (alert, threshold_days) = thresholds.classify(seconds_left);
        CertStatus {
            role,
            source,
            active,
            subject,
            names,
            fingerprint_sha256,
            not_after,
            not_after_rfc3339: rfc3339(not_after),
            seconds_left,
            alert,
            threshold_days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn levels_follow_the_default_thresholds() {
        let t = ExpiryThresholds::default();
        assert_eq!(t.classify(90 * DAY), (AlertLevel::Ok, None));
        assert_eq!(t.classify(29 * DAY), (AlertLevel::Warning, Some(30)));
        assert_eq!(t.classify(6 * DAY), (AlertLevel::Warning, Some(7)));
        assert_eq!(t.classify(DAY / 2), (AlertLevel::Critical, Some(1)));
        assert_eq!(t.classify(0), (AlertLevel::Expired, Some(1)));
        assert_eq!(t.classify(-5), (AlertLevel::Expired, Some(1)));
    }

    #[test]
    fn thresholds_are_configurable_in_any_order() {
        let t = ExpiryThresholds::new([3, 60, 3]);
        assert_eq!(t.days(), [60, 3]);
        assert_eq!(t.classify(59 * DAY), (AlertLevel::Warning, Some(60)));
        assert_eq!(t.classify(2 * DAY), (AlertLevel::Critical, Some(3)));
    }
}
