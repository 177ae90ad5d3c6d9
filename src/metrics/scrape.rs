//! Rendering `GET /metrics`: the counted families ([`super::families`], the mixers'
//! [`super::room`] histograms and counters) plus what is read at the moment of the scrape:
//! rooms running, each room's worst input freshness, receivers per output, the latency its
//! pipeline adds, and the process's CPU, memory and threads (from /proc).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::families::{OutputLabel, families};
use super::room::{RoomLabel, mixer_families};

/// The media type of the text it renders (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The whole exposition, as a Prometheus server would scrape it.
pub fn render() -> String {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
        let mut registry = Registry::default();
        families().register(&mut registry);
        let f = mixer_families();
        registry.register(
            "tessera_mixer_frame_interval_seconds",
            "Wall-clock time between two composed frames of a room (30 fps: 0.033)",
            f.frame_interval.clone(),
        );
        registry.register(
            "tessera_encode_seconds",
            "Time a frame spends in an output's encoder",
            f.encode.clone(),
        );
        registry.register(
            "tessera_encoder_dropped_frames",
            "Frames dropped before an output's encoder because it was behind",
            f.encoder_drops.clone(),
        );
        registry.register(
            "tessera_audio_underruns",
            "Audio that reached a mix after the mix went out without it",
            f.audio_underruns.clone(),
        );
        registry.register_collector(Box::new(AtScrape));
        registry
    });
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &REGISTRY);
    text
}

/// The values read when scraped.
#[derive(Debug)]
struct AtScrape;

impl Collector for AtScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = super::snapshot();
        gauge(
            &mut encoder,
            "tessera_rooms",
            "Rooms running",
            counts.rooms as f64,
        )?;
        let rooms = mixer_families().live();
        // The `_other` rooms share a label: their gauges take the worst (or the sum).
        let mut freshness: BTreeMap<String, f64> = BTreeMap::new();
        let mut latency: BTreeMap<String, f64> = BTreeMap::new();
        let mut receivers: BTreeMap<String, u64> = BTreeMap::new();
        for room in &rooms {
            if let Some(worst) = room.worst_freshness() {
                let v = freshness.entry(room.label.clone()).or_default();
                *v = v.max(worst.as_secs_f64());
            }
            let v = latency.entry(room.label.clone()).or_default();
            *v = v.max(room.pipeline_latency().as_secs_f64());
            for (output, n) in room.receivers() {
                *receivers.entry(output).or_default() += n;
            }
        }
        let mut m = encoder.encode_descriptor(
            "tessera_source_freshness_seconds",
            "Time since the stalest video input of a room delivered a decoded frame",
            None,
            MetricType::Gauge,
        )?;
        for (room, v) in freshness {
            ConstGauge::new(v).encode(m.encode_family(&RoomLabel { room })?)?;
        }
        let mut m = encoder.encode_descriptor(
            "tessera_pipeline_latency_seconds",
            "Latency a room's pipeline adds before encoding (jitter buffer and mixers), the \
             server's share of sender-to-receiver latency",
            None,
            MetricType::Gauge,
        )?;
        for (room, v) in latency {
            ConstGauge::new(v).encode(m.encode_family(&RoomLabel { room })?)?;
        }
        let mut m = encoder.encode_descriptor(
            "tessera_receivers",
            "Sessions receiving each output of the mix",
            None,
            MetricType::Gauge,
        )?;
        for (output, n) in receivers {
            ConstGauge::new(n as i64).encode(m.encode_family(&OutputLabel { output })?)?;
        }
        let process = Process::read();
        let m = encoder.encode_descriptor(
            "tessera_process_cpu_seconds",
            "CPU time (user and system) the process used",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(process.cpu_seconds).encode(m)?;
        gauge(
            &mut encoder,
            "tessera_process_resident_memory_bytes",
            "Resident memory of the process",
            process.rss_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "tessera_process_threads",
            "Threads of the process",
            counts.threads as f64,
        )?;
        gauge(
            &mut encoder,
            "tessera_process_open_fds",
            "Open file descriptors of the process",
            process.open_fds as f64,
        )?;
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// The process, from /proc/self.
struct Process {
    cpu_seconds: f64,
    rss_bytes: u64,
    open_fds: usize,
}

impl Process {
    fn read() -> Process {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        Process {
            cpu_seconds: super::cpu_seconds(None),
            rss_bytes: rss_kb * 1024,
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
        }
    }
}
