//! Network quality -> how often to sync and how many ops per batch.

use serde::Serialize;

/// What the platform tells us about the network (`navigator.onLine`, `navigator.connection`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetInfo {
    pub online: bool,
    /// `4g`, `3g`, `2g`, `slow-2g`, or `None` where the Network Information API is missing.
    pub effective_type: Option<String>,
    pub rtt_ms: Option<f64>,
    pub downlink_mbps: Option<f64>,
    pub save_data: bool,
}

impl Default for NetInfo {
    fn default() -> Self {
        NetInfo { online: true, effective_type: None, rtt_ms: None, downlink_mbps: None, save_data: false }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    pub interval_ms: u64,
    pub batch_size: usize,
}

/// Interval and batch size per network quality (defaults from the reference design).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetPolicy {
    pub good: Tier,
    pub fair: Tier,
    pub poor: Tier,
}

impl Default for NetPolicy {
    fn default() -> Self {
        NetPolicy {
            good: Tier { interval_ms: 30_000, batch_size: 10 },
            fair: Tier { interval_ms: 60_000, batch_size: 5 },
            poor: Tier { interval_ms: 120_000, batch_size: 2 },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Quality {
    Good,
    Fair,
    Poor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetDecision {
    pub quality: Quality,
    pub interval_ms: u64,
    pub batch_size: usize,
    /// Offline: queue, do not send.
    pub paused: bool,
}

impl NetPolicy {
    /// Picks the tier: the browser's `effectiveType` when present, else our measured round trip
    /// (`measured_rtt_ms`, an average), else "good". `saveData` drops one tier.
    pub fn decide(&self, net: &NetInfo, measured_rtt_ms: Option<f64>) -> NetDecision {
        let quality = match net.effective_type.as_deref() {
            Some("4g") => Quality::Good,
            Some("3g") => Quality::Fair,
            Some("2g") | Some("slow-2g") => Quality::Poor,
            _ => match net.rtt_ms.or(measured_rtt_ms) {
                Some(rtt) if rtt >= 1_400.0 => Quality::Poor,
                Some(rtt) if rtt >= 270.0 => Quality::Fair,
                _ => Quality::Good,
            },
        };
        let quality = match (net.save_data, quality) {
            (true, Quality::Good) => Quality::Fair,
            (true, _) => Quality::Poor,
            (false, q) => q,
        };
        let tier = match quality {
            Quality::Good => self.good,
            Quality::Fair => self.fair,
            Quality::Poor => self.poor,
        };
        NetDecision { quality, interval_ms: tier.interval_ms, batch_size: tier.batch_size.max(1), paused: !net.online }
    }
}

/// Exponentially weighted moving average of measured request round trips.
#[derive(Clone, Debug, Default)]
pub struct RttEstimator {
    avg: Option<f64>,
}

impl RttEstimator {
    pub fn record(&mut self, rtt_ms: f64) {
        if !rtt_ms.is_finite() || rtt_ms < 0.0 {
            return;
        }
        self.avg = Some(match self.avg {
            Some(a) => a * 0.8 + rtt_ms * 0.2,
            None => rtt_ms,
        });
    }
    pub fn average(&self) -> Option<f64> {
        self.avg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(t: &str) -> NetInfo {
        NetInfo { effective_type: Some(t.into()), ..NetInfo::default() }
    }

    #[test]
    fn tiers_follow_effective_type() {
        let p = NetPolicy::default();
        assert_eq!(
            (p.decide(&with_type("4g"), None).interval_ms, p.decide(&with_type("4g"), None).batch_size),
            (30_000, 10)
        );
        assert_eq!(p.decide(&with_type("3g"), None).batch_size, 5);
        assert_eq!(p.decide(&with_type("2g"), None).interval_ms, 120_000);
        assert_eq!(p.decide(&with_type("slow-2g"), None).batch_size, 2);
    }

    #[test]
    fn measured_rtt_is_the_fallback() {
        let p = NetPolicy::default();
        let none = NetInfo::default();
        assert_eq!(p.decide(&none, None).quality, Quality::Good);
        assert_eq!(p.decide(&none, Some(500.0)).quality, Quality::Fair);
        assert_eq!(p.decide(&none, Some(2_000.0)).quality, Quality::Poor);
        // The browser's own rtt wins over ours.
        let rtt = NetInfo { rtt_ms: Some(50.0), ..NetInfo::default() };
        assert_eq!(p.decide(&rtt, Some(2_000.0)).quality, Quality::Good);
    }

    #[test]
    fn save_data_and_offline() {
        let p = NetPolicy::default();
        let save = NetInfo { save_data: true, ..with_type("4g") };
        assert_eq!(p.decide(&save, None).quality, Quality::Fair);
        let off = NetInfo { online: false, ..with_type("4g") };
        assert!(p.decide(&off, None).paused);
    }

    #[test]
    fn rtt_average_smooths() {
        let mut e = RttEstimator::default();
        e.record(100.0);
        e.record(200.0);
        assert_eq!(e.average(), Some(120.0));
        e.record(f64::NAN);
        assert_eq!(e.average(), Some(120.0));
    }
}
