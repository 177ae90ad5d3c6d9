//! Serving the routes: the accept loop for one listener, TLS when configured, HTTP/1.1 and
//! HTTP/2 through hyper, each request tagged with the client's address ([`ClientAddr`], which
//! the routes read for per-address limits), and a graceful end. warp 0.4 has no TLS of its own
//! and keeps its acceptor private, so the filter is served here as a plain service.
//!
//! Every connection is a task of its own; a slow or silent client costs only its task, and the
//! deadlines below (and [`idle`]'s) bound how long it may hold one.

mod idle;
mod redirect;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use warp::Filter;

pub use redirect::serve_redirect;

/// A request as hyper hands it over.
type Request = http::Request<hyper::body::Incoming>;

/// The address of the peer a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (HTTP/1.1; a slowloris costs a
/// socket for this long at most).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish when the server stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `routes` on `listener` (over TLS with `tls`) until `shutdown` resolves, then lets
/// open requests finish (bounded by [`DRAIN_TIMEOUT`]).
pub async fn serve<F, R>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    routes: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: warp::Reply,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: wait a moment rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The routes as a hyper service whose requests carry the client's address.
            let filtered = warp::service(routes);
            let service = hyper::service::service_fn(move |mut request: Request| {
                request.extensions_mut().insert(ClientAddr(addr));
                tower_service::Service::call(&mut filtered.clone(), request)
            });
            match tls {
                None => serve_connection(stream, service, watcher).await,
                Some(tls) => {
                    let Some(stream) = handshake(&tls, stream, addr).await else {
                        return;
                    };
                    serve_connection(stream, service, watcher).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// The TLS handshake, bounded; `None` when it fails or was only an ACME challenge (the
/// validation server closes after the handshake: there is nothing to serve).
async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let challenge = stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN);
            (!challenge).then_some(stream)
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            None
        }
    }
}

/// HTTP/1.1 or HTTP/2 on one connection, until it ends, the server stops, or it falls silent
/// ([`idle::silence`]: then it is dropped, which closes it).
async fn serve_connection<I, S>(io: I, service: S, watcher: hyper_util::server::graceful::Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request, Response = warp::reply::Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let (io, activity) = idle::Tracked::new(io);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::select! {
        ended = watcher.watch(connection.into_owned()) => {
            if let Err(e) = ended {
                tracing::debug!("connection ended: {e}");
            }
        }
        () = idle::silence(activity) => tracing::debug!("closing a silent connection"),
    }
}
