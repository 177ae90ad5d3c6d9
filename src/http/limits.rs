//! Admission at the edge: the client's address of each request, the rate gate on `POST` and
//! `PATCH`, and the answers for a refusal: `429` (this address asks too much) or `503` (the
//! server is full or busy), both with `Retry-After` (RFC 9110 §10.2.3, RFC 9725 §4.7).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use warp::Filter;
use warp::http::{HeaderValue, Method, StatusCode, header};

use super::Reply;
use super::reply::error;
use crate::admission::{Admission, Refusal, SessionSlots, Slot};
use crate::serve::ClientAddr;

/// The IP address a request came from (`None` when served without our accept loop).
pub(super) fn client_ip() -> impl Filter<Extract = (Option<IpAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|a: Option<ClientAddr>| a.map(|a| a.0.ip()))
}

/// A request's standing with admission control: its address and the server's limits.
#[derive(Clone)]
pub(super) struct Admit {
    ip: Option<IpAddr>,
    admission: Arc<Admission>,
}

impl Admit {
    /// A place for a new session, or the answer refusing it.
    // The error is the finished response, built once per refused request.
    #[allow(clippy::result_large_err)]
    pub(super) fn session(&self) -> Result<SessionSlots, Reply> {
        self.admission
            .admit_session(self.ip)
            .map_err(|r| refused(&r))
    }

    /// A place for a new event stream, or the answer refusing it.
    #[allow(clippy::result_large_err)]
    pub(super) fn stream(&self) -> Result<Slot<IpAddr>, Reply> {
        self.admission
            .admit_stream(self.ip)
            .map_err(|r| refused(&r))
    }
}

/// Each request's [`Admit`].
pub(super) fn admit(
    admission: Arc<Admission>,
) -> impl Filter<Extract = (Admit,), Error = Infallible> + Clone {
    client_ip().map(move |ip| Admit {
        ip,
        admission: admission.clone(),
    })
}

/// Answers a `POST` or `PATCH` over its address's rate with `429`; lets every other request
/// through (rejects, so the real routes take it).
pub(super) fn rate_gate(
    admission: Arc<Admission>,
) -> impl Filter<Extract = (Reply,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(client_ip())
        .and_then(move |method: Method, ip: Option<IpAddr>| {
            let admission = admission.clone();
            async move {
                let limited = method == Method::POST || method == Method::PATCH;
                match ip {
                    Some(ip) if limited => match admission.check_rate(ip) {
                        Ok(()) => Err(warp::reject()),
                        Err(refusal) => Ok(refused(&refusal)),
                    },
                    _ => Err(warp::reject()),
                }
            }
        })
}

/// The answer for a refusal: `429` or `503`, with `Retry-After` in seconds.
pub(super) fn refused(refusal: &Refusal) -> Reply {
    let status = if refusal.is_per_client() {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut reply = error(status, refusal.code(), &refusal.to_string());
    reply.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(refusal.retry_after_secs()),
    );
    reply
}
