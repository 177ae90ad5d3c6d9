//! tessera: a WebRTC conference server that mixes (an MCU).
//!
//! The architecture in ten lines (the README maps each concept to its file):
//! 1. `main.rs` parses the [`config`], starts GStreamer and calls [`run`] with a bound listener.
//! 2. [`http`] is the edge: WHIP/WHEP, REST and debug routes, owning no room state; [`serve`]
//!    accepts connections for it (HTTPS through [`tls`] when configured); [`auth`] says who
//!    may do what, [`admission`] how much (limits, rates, load).
//! 3. [`room`] is the domain: a [`room::Rooms`] registry of cheap [`room::RoomHandle`]s, each the
//!    mailbox of one room actor that owns the room's sessions, peers and the handle to its mixer,
//!    whose pipeline lives on a thread of its own: the actor never blocks.
//! 4. Pure decisions: [`room::layout`] (presets, regions, labels), [`room::floor`] (the active
//!    speaker), [`room::keyframe`], [`room::tiers`]; [`rtp`] and [`sdp`].
//! 5. [`peer`] is the only module that imports `webrtc::`; [`media`] the only one that imports `gst::`.
//! 6. They never import each other: they meet in [`types`] (ids, kinds, the [`types::RtpSink`] trait).
//! 7. RTP never crosses the actor's mailbox: per-track tasks push into appsrc, appsinks broadcast.
//! 8. Every task has one owner that stops it; every pipeline is set to Null by a Drop guard.
//! 9. A bad request gets a 4xx with a JSON body and touches nothing else; a pipeline error ends
//!    only its room; a failed peer leaves only its session.

pub mod admission;
pub mod auth;
pub mod config;
pub mod fuzzing;
pub mod http;
pub mod ice_servers;
pub mod media;
pub mod metrics;
pub mod peer;
pub mod rate_cap;
pub mod room;
pub mod rtp;
pub mod sdp;
pub mod serve;
pub mod speaking;
pub mod tls;
pub mod types;
pub mod webhooks;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The sockets the server accepts on, bound by the caller (so it can print the real ports).
pub struct Listeners {
    /// The interface: HTTPS when `tls` is given to [`run`], else plain HTTP.
    pub http: TcpListener,
    /// Plain HTTP that redirects to the interface (`--http-redirect-port`).
    pub redirect: Option<TcpListener>,
    /// Plain HTTP with `GET /metrics` alone (`--metrics-listen`).
    pub metrics: Option<TcpListener>,
}

/// The process's stop requests (SIGTERM, SIGINT), one message each: the first starts a drain,
/// the next stops at once. The sender is the signal handler's.
pub type StopRequests = tokio::sync::mpsc::Receiver<()>;

/// Serves until stopped: the first stop request starts a drain (new rooms are refused, the
/// rooms that run go on until empty or `--drain-timeout`), then every room is closed and
/// waited for; a second request ends the drain at once.
pub async fn run(
    listeners: Listeners,
    tls: Option<tls::Tls>,
    config: config::Config,
    mut stops: StopRequests,
) -> anyhow::Result<()> {
    let drain_timeout = config.drain_timeout;
    metrics::set_room_limit(config.metrics_room_limit);
    let media = media::MediaFactory::new(config.pipelines_dir.as_deref())?;
    let auth = Arc::new(auth::Auth::new(config.api_keys.clone()));
    let admission = Arc::new(admission::Admission::new(config.limits.clone()));
    let ice = Arc::new(config.ice_servers.clone());
    if !config.webhook_urls.is_empty() && config.api_keys.is_empty() {
        tracing::warn!("webhooks are sent unsigned: no API key is configured to sign them");
    }
    let (webhooks, webhook_workers) =
        webhooks::Webhooks::start(&config.webhook_urls, config.api_keys.first().cloned());
    let rooms = room::Rooms::new(Arc::new(config), media, webhooks);
    let routes = http::routes(rooms.clone(), auth, admission.clone(), ice);
    let stop = CancellationToken::new();
    let sampler = tokio::spawn(admission.run_sampler(stop.clone()));
    let redirect = match listeners.redirect {
        Some(listener) => {
            let https_port = listeners.http.local_addr()?.port();
            let stopped = stop.clone().cancelled_owned();
            Some(tokio::spawn(serve::serve_redirect(
                listener, https_port, stopped,
            )))
        }
        None => None,
    };
    let metrics_server = listeners.metrics.map(|listener| {
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(serve::serve(
            listener,
            None,
            http::metrics_routes(),
            stopped,
        ))
    });
    let acceptor = tls.as_ref().map(tls::Tls::acceptor);
    let drained = rooms.clone();
    let stopping = async move {
        if stops.recv().await.is_none() {
            // Nobody can ask any more: serve for ever.
            std::future::pending::<()>().await;
        }
        let running = drained.count();
        tracing::info!(
            rooms = running,
            "draining: no new rooms; the {running} running end once empty, or in {}",
            humantime::format_duration(drain_timeout)
        );
        drained.start_drain();
        let started = std::time::Instant::now();
        tokio::select! {
            () = drained.drained() => tracing::info!(
                "drained: every room ended in {:.1} s", started.elapsed().as_secs_f64()
            ),
            () = tokio::time::sleep(drain_timeout) => tracing::info!(
                rooms = drained.count(),
                "the drain timed out: ending the rooms left"
            ),
            Some(()) = stops.recv() => tracing::info!(
                rooms = drained.count(),
                "a second stop request: ending the rooms now"
            ),
        }
        // Every room ends (their recordings finished) while the interface still answers, so
        // the rooms' last events reach their streams; then the streams close and the
        // interface stops.
        drained.shutdown().await;
        stop.cancel();
    };
    serve::serve(listeners.http, acceptor, routes, stopping).await;
    if let Some(redirect) = redirect {
        let _ = redirect.await;
    }
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    rooms.shutdown().await;
    // The rooms' last events are queued: let them go out (bounded).
    webhook_workers.stop().await;
    let _ = sampler.await;
    drop(tls);
    Ok(())
}
