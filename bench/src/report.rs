//! The run's plan and results, and the markdown table they become.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::RunArgs;
use crate::measure::cores;

/// How long and how far each step goes (short in `--smoke`).
pub struct Plan {
    /// Measurement window of each capacity step.
    pub window: Duration,
    /// How long the latency step samples.
    pub latency_window: Duration,
    /// How many viewers the join-time step times.
    pub joins: usize,
    /// Room sizes whose capacity is searched.
    pub sizes: Vec<usize>,
    /// Most rooms a capacity search tries.
    pub max_rooms: usize,
    /// Most audio-only rooms tried (everyone talking), and their size.
    pub audio_only: (usize, usize),
    /// Most conversational audio-only rooms tried (two talk).
    pub conversational_rooms: usize,
    /// WHEP viewers added to the fan-out room at a time, and the most tried.
    pub fanout: (usize, usize),
    /// Measurement window of each fan-out step.
    pub fanout_window: Duration,
}

/// The table's rows (measure, result, target) and notes under it.
#[derive(Default)]
pub struct Results {
    rows: Vec<(String, String, String)>,
    pub notes: Vec<String>,
}

impl Results {
    /// Adds a row (and prints it, so a long run shows its progress).
    pub fn row(
        &mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
    ) {
        let (w, v, t) = (what.into(), value.into(), target.into());
        eprintln!("| {w} | {v} | {t} |");
        self.rows.push((w, v, t));
    }
}

pub fn render(results: &Results, args: &RunArgs, plan: &Plan) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = format!(
        "\n## Run of {date}{}\n\nMachine: {} cores, {cpu}. Window per capacity step: {:.0} s. Command: `cargo run --release --bin tessera-bench --{}`\n\n| measure | result | target |\n|---|---|---|\n",
        if args.smoke { " (smoke)" } else { "" },
        cores(),
        plan.window.as_secs_f64(),
        if args.smoke {
            " --smoke"
        } else {
            " --write BENCHMARKS.md"
        },
    );
    for (w, v, t) in &results.rows {
        out.push_str(&format!("| {w} | {v} | {t} |\n"));
    }
    for n in &results.notes {
        out.push_str(&format!("\nNote: {n}\n"));
    }
    out
}

/// Puts `table` at the top of the markdown file at `path` (older tables stay below).
pub fn write_table(path: &Path, table: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let (head, rest) = match old.find("\n## Run of ") {
        Some(i) => (old[..i].to_string(), old[i..].to_string()),
        None => (old.clone(), String::new()),
    };
    std::fs::write(path, format!("{}\n{table}{rest}", head.trim_end()))?;
    Ok(())
}
