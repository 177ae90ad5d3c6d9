//! The server's own CPU use, as a fraction of all its cores, over the last few seconds: read
//! from /proc/self/stat twice a second by the admission sampler. A moving window rather than
//! one interval, so one busy moment (a keyframe burst, a pipeline starting) does not refuse a
//! join, while a server that is really full does.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the sampler reads /proc.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The window the load is measured over.
pub const WINDOW: Duration = Duration::from_secs(3);

/// The latest measured load, and the samples it came from.
#[derive(Debug)]
pub struct LoadGauge {
    /// f64 bits of the load (0.0 until two samples exist).
    current: AtomicU64,
    samples: Mutex<VecDeque<(Instant, f64)>>,
    cores: f64,
}

impl Default for LoadGauge {
    fn default() -> LoadGauge {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        LoadGauge {
            current: AtomicU64::new(0f64.to_bits()),
            samples: Mutex::new(VecDeque::new()),
            cores,
        }
    }
}

impl LoadGauge {
    /// The load: CPU seconds per second over the window, divided by the cores (1.0: all busy).
    pub fn get(&self) -> f64 {
        f64::from_bits(self.current.load(Ordering::Relaxed))
    }

    /// Reads the process's CPU time now and updates the load.
    pub fn sample(&self) {
        let cpu = crate::metrics::cpu_seconds(None);
        let mut samples = self
            .samples
            .lock()
            .expect("the samples are never left half-written");
        let load = push_sample(&mut samples, Instant::now(), cpu, self.cores);
        self.current.store(load.to_bits(), Ordering::Relaxed);
    }
}

/// Adds `(at, cpu)` to `samples`, forgets those older than [`WINDOW`] (keeping one at its edge),
/// and returns the load over what is left.
fn push_sample(samples: &mut VecDeque<(Instant, f64)>, at: Instant, cpu: f64, cores: f64) -> f64 {
    samples.push_back((at, cpu));
    while samples.len() > 2 && samples[1].0 + WINDOW <= at {
        samples.pop_front();
    }
    let (Some(&(t0, c0)), Some(&(t1, c1))) = (samples.front(), samples.back()) else {
        return 0.0;
    };
    let wall = (t1 - t0).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    ((c1 - c0) / wall / cores).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_is_cpu_seconds_per_second_per_core_over_the_window() {
        let start = Instant::now();
        let mut samples = VecDeque::new();
        assert_eq!(push_sample(&mut samples, start, 10.0, 2.0), 0.0);
        // One busy second on two cores: 1.8 CPU-seconds is 90%.
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let load = push_sample(&mut samples, at(1.0), 11.8, 2.0);
        assert!((load - 0.9).abs() < 1e-9, "{load}");
        // Three idle seconds later the busy second has left the window.
        for s in [2.0, 3.0, 4.0, 5.0] {
            push_sample(&mut samples, at(s), 11.8, 2.0);
        }
        let load = push_sample(&mut samples, at(6.0), 11.8, 2.0);
        assert_eq!(load, 0.0);
        assert!(
            samples.len() <= 5,
            "old samples are forgotten: {}",
            samples.len()
        );
    }
}
