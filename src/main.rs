//! The `tessera` binary: parse the command line and configuration, start logging and GStreamer,
//! bind the listener, print where it listens, and serve until SIGTERM or Ctrl-C (the first
//! drains, a second stops at once).

use anyhow::Context;
use clap::Parser;
use tessera::auth::{ANY_ROOM, Claims, Grant};
use tessera::config::{Cli, Command, Config, TokenArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = matches!(&cli.command, Command::Serve(args) if args.log_format == "json");
    // webrtc-rs's driver logs an error for every check it cannot send, and a client behind a
    // NAT offers private addresses the server cannot reach: several a second per such client.
    // A connection that fails for good ends its session, which we log. Its packet handlers
    // warn once per packet a stranger can send (a STUN request with another username, RTP
    // that fails SRTP's check): 1,505 lines for 2,709 such packets in issue 16's test, so a
    // stranger could fill the disk; they are dropped either way.
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| {
            "info,webrtc=warn,webrtc::peer_connection::driver=off,rtc=warn,rtc_ice=error,\
             rtc_dtls=error,rtc::peer_connection::handler=error"
                .into()
        })
    };
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    if json {
        // One JSON object per line; the spans a line was logged in (`room`, `session`) are
        // in `spans`, the innermost in `span`.
        log.json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        log.init();
    }
    match cli.command {
        Command::Token(args) => {
            // The token alone on stdout, so `$(tessera token ...)` is the token.
            println!("{}", token(args)?);
            Ok(())
        }
        Command::Serve(args) => {
            let config = Config::from_args(*args).context("invalid configuration")?;
            let http = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding the HTTP listener on {}", config.listen))?;
            let addr = http.local_addr()?;
            let redirect = match config.tls.redirect_port {
                Some(port) => {
                    let at = std::net::SocketAddr::new(config.listen.ip(), port);
                    let listener = tokio::net::TcpListener::bind(at)
                        .await
                        .with_context(|| format!("binding the redirect listener on {at}"))?;
                    Some(listener)
                }
                None => None,
            };
            // Certificate files are read (and a bad one refused) before the server says it
            // listens.
            let tls = tessera::tls::Tls::start(&config.tls, &config.rtc)?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            // The first line on stdout: tests and scripts read the real port from it.
            println!("tessera listening on {scheme}://{addr}");
            if let Some(redirect) = &redirect {
                println!(
                    "tessera redirecting http://{} to HTTPS",
                    redirect.local_addr()?
                );
            }
            if !config.tls.enabled() && !addr.ip().is_loopback() {
                tracing::warn!(
                    "plain HTTP on {addr}: browsers allow the camera only on https:// pages (or \
                     localhost); see --tls-cert, --acme-domain or --tls-self-signed"
                );
            }
            if config.api_keys.is_empty() {
                tracing::warn!(
                    "no API key is configured: anyone who reaches this server can join, watch, \
                     record and administer every room (see --api-key, --require-auth)"
                );
            }
            let metrics = match config.metrics_listen {
                Some(at) => {
                    let listener = tokio::net::TcpListener::bind(at)
                        .await
                        .with_context(|| format!("binding the metrics listener on {at}"))?;
                    println!(
                        "tessera metrics on http://{}/metrics",
                        listener.local_addr()?
                    );
                    Some(listener)
                }
                None => None,
            };
            let listeners = tessera::Listeners {
                http,
                redirect,
                metrics,
            };
            let (stop_tx, stops) = tokio::sync::mpsc::channel(4);
            // Lives as long as the process: it only forwards signals.
            tokio::spawn(forward_stop_signals(stop_tx));
            tessera::run(listeners, tls, config, stops).await
        }
    }
}

/// `tessera token`: signs the claims the flags describe.
fn token(args: TokenArgs) -> anyhow::Result<String> {
    let keys = tessera::config::read_keys(args.config.as_deref(), args.api_key, args.api_secret)?;
    let key = keys.first().context(
        "no API key: give --api-key and --api-secret (or TESSERA_API_KEY/TESSERA_API_SECRET, \
         or a --config file with [[api_keys]])",
    )?;
    let mut grants = args
        .grants
        .iter()
        .map(|g| g.parse::<Grant>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let room = if args.admin {
        grants.push(Grant::Admin);
        args.room.unwrap_or_else(|| ANY_ROOM.to_owned())
    } else {
        args.room
            .context("--room ROOM (or * for every room) is needed")?
    };
    anyhow::ensure!(
        !grants.is_empty(),
        "give at least one --grant (join, contribute, view, record, admin)"
    );
    grants.dedup();
    let ttl = humantime::parse_duration(&args.ttl)
        .with_context(|| format!("--ttl {:?}: use e.g. 6h, 30m or 2d", args.ttl))?;
    let identity = match args.identity {
        Some(i) => i,
        None if args.admin => "admin".to_owned(),
        None => anyhow::bail!("--identity (who the token is for) is needed"),
    };
    let claims = Claims {
        iss: key.key.clone(),
        sub: identity,
        name: args.name,
        exp: tessera::auth::now() + ttl.as_secs(),
        nbf: None,
        room,
        grants,
    };
    Ok(tessera::auth::mint(key, &claims)?)
}

/// Forwards every SIGTERM and SIGINT (Ctrl-C) as a stop request: the first drains, the next
/// stops at once (see [`tessera::run`]).
async fn forward_stop_signals(stops: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot watch SIGTERM and SIGINT: stop the server with SIGKILL");
        return;
    };
    loop {
        let name = tokio::select! {
            Some(()) = term.recv() => "SIGTERM",
            Some(()) = int.recv() => "SIGINT",
            else => return,
        };
        tracing::info!("{name} received");
        if stops.send(()).await.is_err() {
            return;
        }
    }
}
