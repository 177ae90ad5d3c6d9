//! The run: the server started once, then each step in its own file, all writing rows into
//! one [`Results`].

mod audio_only;
mod capacity;
mod fanout;
mod ladder;
mod latency;
mod layout;
mod waiting;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::RunArgs;
use crate::measure::rss_mib;
use crate::media::files::MediaFiles;
use crate::report::{Plan, Results, render, write_table};
use crate::server::Server;
use crate::sim::Joiner;

/// What every step works with.
pub struct Bench {
    pub joiner: Joiner,
    pub server: Server,
    pub plan: Plan,
    pub results: Results,
    /// Where the prepared media is cached (the baseline reads it too).
    pub cache: PathBuf,
    /// The server's resident memory before any room.
    pub idle_rss: f64,
    /// The media as files, for the raw gst-launch baseline.
    pub raw_files: MediaFiles,
}

pub async fn run(args: RunArgs) -> Result<()> {
    let plan = if args.smoke {
        Plan {
            window: Duration::from_secs(3),
            latency_window: Duration::from_secs(4),
            joins: 3,
            sizes: vec![2],
            max_rooms: 1,
            audio_only: (1, 2),
            conversational_rooms: 1,
            fanout: (2, 4),
            fanout_window: Duration::from_secs(3),
        }
    } else {
        Plan {
            window: Duration::from_secs_f64(args.window),
            latency_window: Duration::from_secs(20),
            joins: 50,
            sizes: args.sizes.clone(),
            max_rooms: args.max_rooms,
            audio_only: (12, 8),
            conversational_rooms: 30,
            fanout: (25, 1000),
            fanout_window: Duration::from_secs(10),
        }
    };
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has a directory")?
            .join("tessera"),
    };
    eprintln!("preparing media in {}", args.cache.display());
    let media = Arc::new(crate::media::dump::prepare(&args.cache)?);
    let raw_files = crate::media::files::media_files(&args.cache, &media, crate::raw::FILE_LOOPS)?;
    let server = Server::start(&bin)?;
    let idle_rss = rss_mib(server.pid());
    let joiner = Joiner::new(server.base.clone(), media)?;
    let mut bench = Bench {
        joiner,
        server,
        plan,
        results: Results::default(),
        cache: args.cache.clone(),
        idle_rss,
        raw_files,
    };
    if args.composition_only || args.latency_only {
        if args.composition_only {
            layout::run(&mut bench).await?;
        } else {
            latency::run(&mut bench).await?;
        }
        println!("{}", render(&bench.results, &args, &bench.plan));
        return Ok(());
    }
    if !args.capacity_only && !args.audio_only && !args.fanout_only {
        latency::run(&mut bench).await?;
    }
    if !args.audio_only && !args.fanout_only {
        capacity::run(&mut bench).await?;
        ladder::run(&mut bench)?;
        layout::run(&mut bench).await?;
    }
    if !args.capacity_only && !args.audio_only {
        fanout::run(&mut bench).await?;
        waiting::run(&mut bench).await?;
    }
    if !args.capacity_only && !args.fanout_only {
        audio_only::run(&mut bench).await?;
    }

    let table = render(&bench.results, &args, &bench.plan);
    println!("{table}");
    if let Some(path) = &args.write {
        write_table(path, &table)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
