//! The `tessera` binary: parse the command line and configuration, start logging and GStreamer,
//! bind the listener, print where it listens, and serve until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use tessera::config::{Cli, Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| {
                "info,webrtc=warn,rtc=warn,rtc_ice=error,rtc_dtls=error".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::from_args(args).context("invalid configuration")?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding the HTTP listener on {}", config.listen))?;
            let addr = listener.local_addr()?;
            // The one line on stdout: tests and scripts read the real port from it.
            println!("tessera listening on http://{addr}");
            tessera::run(listener, config, shutdown_signal()).await
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler succeeds on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
