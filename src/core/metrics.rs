//! Counters and histograms behind `engine.metrics()`.

use std::collections::VecDeque;

use serde::Serialize;

/// How many recent errors `syncErrors` keeps.
pub const ERROR_HISTORY: usize = 20;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEntry {
    pub at: u64,
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
}

impl ErrorEntry {
    pub fn of(at: u64, e: &crate::core::error::SyncError) -> Self {
        ErrorEntry { at, code: e.code().into(), message: e.to_string(), status: e.status() }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub last_successful_sync: Option<u64>,
    pub sync_errors: VecDeque<ErrorEntry>,
    pub latency_avg_ms: Option<f64>,
    pub last_sync_duration_ms: Option<u64>,
    pub ops_sent: u64,
    pub ops_accepted: u64,
    pub ops_failed: u64,
    pub conflicts_resolved: u64,
    pub dead_lettered: u64,
    queue_size_sum: u64,
    queue_size_samples: u64,
    /// `retry_histogram[n]`: ops accepted after `n` failed attempts (the last bucket is "10 or more").
    pub retry_histogram: [u64; 11],
}

impl Metrics {
    pub fn record_error(&mut self, e: ErrorEntry) {
        if self.sync_errors.len() == ERROR_HISTORY {
            self.sync_errors.pop_front();
        }
        self.sync_errors.push_back(e);
    }

    pub fn record_queue_size(&mut self, n: usize) {
        self.queue_size_sum += n as u64;
        self.queue_size_samples += 1;
    }

    pub fn record_accepted(&mut self, attempts: u32) {
        self.ops_accepted += 1;
        self.retry_histogram[(attempts as usize).min(10)] += 1;
    }

    pub fn record_latency(&mut self, ms: f64) {
        self.latency_avg_ms = Some(match self.latency_avg_ms {
            Some(a) => a * 0.8 + ms * 0.2,
            None => ms,
        });
    }

    /// The snapshot JS sees; `pending` and `conflicts` come from the store.
    pub fn snapshot(&self, pending: usize, conflicts: usize, dead_letters: usize) -> MetricsSnapshot {
        let done = self.ops_accepted + self.ops_failed;
        MetricsSnapshot {
            last_successful_sync: self.last_successful_sync,
            pending_operations: pending,
            conflicts_count: conflicts,
            dead_letters_count: dead_letters,
            sync_errors: self.sync_errors.iter().cloned().collect(),
            network_latency: self.latency_avg_ms,
            sync_duration: self.last_sync_duration_ms,
            operation_success_rate: if done == 0 { 1.0 } else { self.ops_accepted as f64 / done as f64 },
            average_queue_size: if self.queue_size_samples == 0 {
                0.0
            } else {
                self.queue_size_sum as f64 / self.queue_size_samples as f64
            },
            ops_sent: self.ops_sent,
            ops_accepted: self.ops_accepted,
            ops_failed: self.ops_failed,
            conflicts_resolved: self.conflicts_resolved,
            dead_lettered: self.dead_lettered,
            retry_histogram: self.retry_histogram.to_vec(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    pub last_successful_sync: Option<u64>,
    pub pending_operations: usize,
    pub conflicts_count: usize,
    pub dead_letters_count: usize,
    pub sync_errors: Vec<ErrorEntry>,
    /// Average round trip of sync requests, ms.
    pub network_latency: Option<f64>,
    /// Duration of the last flush, ms.
    pub sync_duration: Option<u64>,
    /// Accepted ops / (accepted + failed attempts).
    pub operation_success_rate: f64,
    pub average_queue_size: f64,
    pub ops_sent: u64,
    pub ops_accepted: u64,
    pub ops_failed: u64,
    pub conflicts_resolved: u64,
    pub dead_lettered: u64,
    pub retry_histogram: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_history_is_bounded_and_rates_add_up() {
        let mut m = Metrics::default();
        for i in 0..25 {
            m.record_error(ErrorEntry { at: i, code: "NETWORK".into(), message: String::new(), status: None });
        }
        m.record_accepted(0);
        m.record_accepted(3);
        m.record_accepted(40);
        m.ops_failed = 1;
        m.record_queue_size(4);
        m.record_queue_size(2);
        let s = m.snapshot(7, 1, 0);
        assert_eq!(s.sync_errors.len(), ERROR_HISTORY);
        assert_eq!(s.sync_errors[0].at, 5);
        assert_eq!(s.operation_success_rate, 0.75);
        assert_eq!(s.average_queue_size, 3.0);
        assert_eq!((s.retry_histogram[0], s.retry_histogram[3], s.retry_histogram[10]), (1, 1, 1));
        assert_eq!(s.pending_operations, 7);
    }
}
