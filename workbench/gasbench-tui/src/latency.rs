//! Call latencies, summarised in constant space: a log-linear histogram
//! (8 sub-buckets per power of two, so quantiles are within ~9%) and the
//! newest samples for a sparkline. A million pings cost the same to draw
//! as ten.

use std::collections::VecDeque;

const SUB: u32 = 8;
const BUCKETS: usize = 64 * SUB as usize;
/// Samples kept for the sparkline.
pub const RECENT: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latency {
    hist: Vec<u64>,
    pub count: u64,
    pub max: u64,
    pub recent: VecDeque<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hist: vec![0; BUCKETS],
            count: 0,
            max: 0,
            recent: VecDeque::with_capacity(RECENT),
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let octave = 63 - v.leading_zeros(); // >= 3
    let sub = (v >> (octave - 3)) & (SUB as u64 - 1);
    ((octave - 2) * SUB) as usize + sub as usize
}

/// The largest value that falls in bucket `b`.
fn upper(b: usize) -> u64 {
    if b < SUB as usize {
        return b as u64;
    }
    let octave = (b / SUB as usize) as u32 + 2;
    let sub = (b % SUB as usize) as u64;
    ((SUB as u64 + sub + 1) << (octave - 3)) - 1
}

impl Latency {
    pub fn record(&mut self, v: u64) {
        self.hist[bucket(v).min(BUCKETS - 1)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
    }

    /// The `q` quantile (0..=1), as the upper edge of its bucket, never
    /// above the largest value seen.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count - 1) as f64 * q).round() as u64;
        let mut seen = 0;
        for (b, &n) in self.hist.iter().enumerate() {
            seen += n;
            if seen > rank {
                return Some(upper(b).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_and_quantiles_are_close() {
        for v in [0u64, 1, 7, 8, 9, 15, 16, 1000, 123_456, u64::MAX / 2] {
            let b = bucket(v);
            assert!(upper(b) >= v, "{v}");
            if b > 0 {
                assert!(upper(b - 1) < v, "{v}");
            }
        }
        let mut l = Latency::default();
        for v in 1..=10_000u64 {
            l.record(v * 1000);
        }
        let p50 = l.quantile(0.5).unwrap() as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.13, "{p50}");
        assert_eq!(l.quantile(1.0), Some(10_000_000));
        assert_eq!(l.recent.len(), RECENT);
        assert_eq!(*l.recent.back().unwrap(), 10_000_000);
        assert_eq!(Latency::default().quantile(0.5), None);
    }
}
