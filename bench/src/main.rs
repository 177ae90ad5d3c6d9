//! `tessera-bench`: the benchmark harness. It starts a release `tessera` on loopback, joins it
//! over the real WHIP/WHEP interface from this second process with simulated participants that
//! replay pre-encoded media, and measures, in one run: capacity (rooms of 4 and of 9), the
//! overhead against the same media work without WebRTC (the project's own pipelines fed
//! in-process, `tessera-bench baseline`) and against plain gst-launch pipelines (`raw.rs`),
//! added latency (video stamps, audio clicks), join time, memory per room, WHEP fan-out, what a
//! waiting room costs and audio-only capacity. It prints a markdown table; `--write FILE` puts
//! it at the top of BENCHMARKS.md. `--smoke` runs every step briefly (the test suite does).
//!
//! A crate of its own, beside the product: its WebRTC client (`client.rs`), its media
//! (`media/`: the replayed dumps and the receivers' decoders), the server it starts
//! (`server.rs`), the simulated participants (`sim.rs`), one file per step of the run
//! (`steps/`), the baseline without WebRTC (`baseline.rs`) and the table (`report.rs`).

mod baseline;
mod client;
mod measure;
mod media;
mod raw;
mod replay;
mod report;
mod server;
mod sim;
mod steps;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tessera-bench",
    about = "Benchmarks tessera against its raw media pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Sub {
    /// (internal) The baseline: R rooms of N inputs through the project's pipelines, no WebRTC.
    Baseline {
        #[arg(long)]
        rooms: usize,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        cache: PathBuf,
        /// Run the whole ladder (VP8 and H.264, high and low tiers), not just VP8 high.
        #[arg(long)]
        ladder: bool,
        /// Audio-only rooms where this many of each room talk (the others send near-silence).
        #[arg(long)]
        talkers: Option<usize>,
    },
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// The server binary (default: `tessera` next to this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Where the pre-encoded media is cached.
    #[arg(long, default_value = "target/bench-cache")]
    pub cache: PathBuf,
    /// Put the table at the top of this markdown file (older tables stay below).
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// A short run of every step (seconds instead of minutes), for CI.
    #[arg(long)]
    pub smoke: bool,
    /// Measurement window of each capacity step, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub window: f64,
    /// Largest number of rooms a capacity search tries.
    #[arg(long, default_value_t = 12)]
    pub max_rooms: usize,
    /// Skip the latency, join-time and audio-only steps (capacity and baseline only).
    #[arg(long)]
    pub capacity_only: bool,
    /// Room sizes whose capacity is searched.
    #[arg(long, value_delimiter = ',', default_values_t = [4, 9])]
    pub sizes: Vec<usize>,
    /// Run only the audio-only steps (a quick look at the audio path; not a table to keep).
    #[arg(long, conflicts_with = "capacity_only")]
    pub audio_only: bool,
    /// Run only the fan-out step (a quick look; not a table to keep).
    #[arg(long, conflicts_with_all = ["capacity_only", "audio_only"])]
    pub fanout_only: bool,
    /// Run only the composition step (a quick look; not a table to keep).
    #[arg(long, conflicts_with_all = ["capacity_only", "audio_only", "fanout_only"])]
    pub composition_only: bool,
    /// Run only the latency and join-time step (a quick look; not a table to keep).
    #[arg(long, conflicts_with_all = ["capacity_only", "audio_only", "fanout_only", "composition_only"])]
    pub latency_only: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "warn,rtc_dtls=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Some(Sub::Baseline {
            rooms,
            size,
            seconds,
            cache,
            ladder,
            talkers,
        }) => runtime.block_on(baseline::baseline(
            rooms, size, seconds, &cache, ladder, talkers,
        )),
        None => runtime.block_on(steps::run(cli.run)),
    }
}
