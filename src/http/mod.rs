//! The HTTP edge (warp): WHIP and WHEP (RFC 9725) for joining and watching, REST for rooms and
//! recordings, a health check and debug counts. IO only: every decision is the room's; this
//! module turns requests into [`Rooms`] calls and results into status codes with typed JSON
//! bodies.
//!
//! The routes are grouped by who may call them, so a check on each group sits in one place:
//!
//! | group | routes | who (with tokens on) |
//! |---|---|---|
//! | public | `GET /healthz`, `GET /readyz`; the browser client: `GET /`, `/view.html`, `/js/*`, `/style.css` | anyone |
//! | a session's own | `POST /rooms/{room}/whip` and `/whep` (offer → 201 + answer + `Location` + `Link` ICE servers); `GET /ice-servers` (the same, for a page before its offer); `PATCH`, `DELETE` `/rooms/{room}/sessions/{secret}`; `PUT .../mute` | `join`/`contribute`/`view` for the room; then the session's identity |
//! | a room's | `GET /rooms/{room}` (state), `GET /rooms/{room}/events` (SSE), `GET /rooms/{room}/layout`, `POST .../layout?dry_run=true`; recordings: `POST`/`GET /rooms/{room}/recordings`, `DELETE .../{id}`, `GET .../{id}/file`; administration: `DELETE /rooms/{room}`, `PUT /rooms/{room}/layout`, `DELETE`/`PUT .../mute`/`PUT .../pin` of `/rooms/{room}/sessions/{public id}` | any grant for the room to read; `record`; `admin` |
//! | the server's | `GET /rooms` (every room), `GET /debug/counts`, `GET /metrics` (Prometheus; also alone on `--metrics-listen`, without a token) | `admin` for room `*` |
//!
//! The check for each group is in its handlers, through `access.rs`: the caller is read once
//! per request, then each handler asks the policy (`crate::auth::policy`) what it may do.
//!
//! `OPTIONS` answers CORS preflights (and RFC 9725's `OPTIONS`) on every resource. A path that
//! is no resource is `404` whatever the method; a resource asked with a method it does not take
//! is `405` with `Allow` (`table.rs` says which is which).

mod access;
mod body;
mod events;
mod ice;
mod layout;
mod limits;
mod recordings;
mod reply;
mod table;
mod web;
mod whip;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use warp::Filter;
use warp::http::{Method, Response, StatusCode, header};

use crate::admission::Admission;
use crate::auth::Auth;
use crate::ice_servers::IceServers;
use crate::room::Rooms;

pub use body::MAX_BODY;
pub use reply::ErrorBody;
/// A JSON error answer, for the other servers (the HTTPS redirect) to answer alike.
pub(crate) use reply::error as error_reply;

use access::{Authz, allow};
use body::limited_body;
use reply::{empty, error, json};
use whip::Endpoint;

/// The media type of trickle ICE fragments (RFC 8840).
const TRICKLE_TYPE: &str = "application/trickle-ice-sdpfrag";
/// Response headers a browser page on another origin may read (WHIP/WHEP clients need them).
const EXPOSED: &str =
    "location, etag, accept-patch, link, allow, www-authenticate, tessera-session-id";

type Reply = warp::reply::Response;
type Routes = warp::filters::BoxedFilter<(Reply,)>;

/// Every route of the server; `auth` says who may call which.
pub fn routes(
    rooms: Rooms,
    auth: Arc<Auth>,
    admission: Arc<Admission>,
    ice: Arc<IceServers>,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    // First the rate gate: a flood of offers costs a map lookup each, not a parse.
    limits::rate_gate(admission.clone())
        .or(public(&auth, rooms.clone(), admission.clone()))
        .unify()
        .or(session(rooms.clone(), auth.clone(), admission.clone(), ice))
        .unify()
        .or(room(rooms.clone(), auth.clone(), admission.clone()))
        .unify()
        .or(server(rooms, auth, admission))
        .unify()
        .or(preflight())
        .unify()
        .or(fallback())
        .unify()
        .recover(recover)
        .unify()
        // Every answer may be read by a page of any origin: WHIP/WHEP players are often served
        // from elsewhere, and nothing here relies on cookies.
        .map(|mut reply: Reply| {
            let headers = reply.headers_mut();
            headers.insert(
                "access-control-allow-origin",
                header::HeaderValue::from_static("*"),
            );
            headers.insert(
                "access-control-expose-headers",
                header::HeaderValue::from_static(EXPOSED),
            );
            reply
        })
        // Every answer is counted (`tessera_http_requests`), by route group and status.
        .with(warp::log::custom(|info| {
            let labels = crate::metrics::HttpLabels {
                route: crate::metrics::route_group(info.path()),
                status: info.status().as_u16(),
            };
            crate::metrics::families()
                .http_requests
                .get_or_create(&labels)
                .inc();
        }))
        .map(warp::Reply::into_response)
}

fn with_rooms(rooms: Rooms) -> impl Filter<Extract = (Rooms,), Error = Infallible> + Clone {
    warp::any().map(move || rooms.clone())
}

fn with_auth(auth: Arc<Auth>) -> impl Filter<Extract = (Arc<Auth>,), Error = Infallible> + Clone {
    warp::any().map(move || auth.clone())
}

/// Anyone: the health and readiness checks and the browser client's files.
fn public(auth: &Auth, rooms: Rooms, admission: Arc<Admission>) -> Routes {
    let tokens = auth.enabled();
    let ready = warp::path!("readyz")
        .and(warp::get())
        .map(move || readiness(&rooms, &admission));
    let health = warp::path!("healthz").and(warp::get()).map(move || {
        json(
            StatusCode::OK,
            &Health {
                status: "ok",
                tokens,
            },
        )
    });
    let pages = warp::path::tail()
        .and_then(|tail: warp::path::Tail| async move {
            web::file(tail.as_str()).ok_or_else(warp::reject::not_found)
        })
        .and(warp::get())
        .map(|page: Reply| page);
    health.or(ready).unify().or(pages).unify().boxed()
}

/// `GET /readyz`: 200 while a new room would be admitted; 503 with `Retry-After` while the
/// server drains or is at a limit (a load balancer sends new rooms elsewhere; rooms that run
/// here go on).
fn readiness(rooms: &Rooms, admission: &Admission) -> Reply {
    let (status, reason) = if rooms.is_draining() {
        (
            "draining",
            Some("the server is draining before it stops".to_owned()),
        )
    } else {
        match admission.ready(rooms.count()) {
            Ok(()) => ("ready", None),
            Err(refusal) => ("busy", Some(refusal.to_string())),
        }
    };
    let code = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut reply = json(code, &Readiness { status, reason });
    if code != StatusCode::OK {
        reply.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(crate::admission::BUSY_RETRY_AFTER.as_secs()),
        );
    }
    reply
}

/// A session's own requests: joining (which makes the session) and what only that session
/// does to itself.
fn session(
    rooms: Rooms,
    auth: Arc<Auth>,
    admission: Arc<Admission>,
    ice: Arc<IceServers>,
) -> Routes {
    let caller = access::caller(auth);
    let with_ice = {
        let ice = ice.clone();
        warp::any().map(move || ice.clone())
    };
    let join = warp::path!("rooms" / String / Endpoint)
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::query::<HashMap<String, String>>())
        .and(limited_body())
        .and(caller.clone())
        .and(limits::admit(admission))
        .and(with_rooms(rooms.clone()))
        .and(with_ice)
        .then(whip::join);
    // Before a page makes its offer: the relays it may use.
    let ice_servers = warp::path!("ice-servers")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(caller.clone())
        .map(move |query: HashMap<String, String>, authz: Authz| {
            ice::ice_servers(&ice, &query, authz)
        });
    // By the session's secret (its owner) or its public id (an administrator).
    let leave = warp::path!("rooms" / String / "sessions" / String)
        .and(warp::delete())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(whip::leave);
    let patch = warp::path!("rooms" / String / "sessions" / String)
        .and(warp::patch())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("if-match"))
        .and(limited_body())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(whip::trickle);
    let mute = warp::path!("rooms" / String / "sessions" / String / "mute")
        .and(warp::put())
        .and(limited_body())
        .and(caller)
        .and(with_rooms(rooms))
        .then(whip::mute);
    join.or(ice_servers)
        .unify()
        .or(leave)
        .unify()
        .or(patch)
        .unify()
        .or(mute)
        .unify()
        .boxed()
}

/// A room's: its state, its events, its recordings, its end.
fn room(rooms: Rooms, auth: Arc<Auth>, admission: Arc<Admission>) -> Routes {
    let caller = access::caller(auth.clone());
    let info = warp::path!("rooms" / String)
        .and(warp::get())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(|room: String, authz: Authz, rooms: Rooms| async move {
            if let Err(reply) = allow(authz, |c| c.may_read_room(&room)) {
                return reply;
            }
            match rooms.info(&room).await {
                Some(info) => json(StatusCode::OK, &info),
                None => unknown_room(&room),
            }
        });
    let end = warp::path!("rooms" / String)
        .and(warp::delete())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(|room: String, authz: Authz, rooms: Rooms| async move {
            if let Err(reply) = allow(authz, |c| c.may_administer(&room)) {
                return reply;
            }
            if rooms.end(&room).await {
                empty(StatusCode::NO_CONTENT)
            } else {
                unknown_room(&room)
            }
        });
    let events = warp::path!("rooms" / String / "events")
        .and(warp::get())
        .and(caller.clone())
        .and(limits::admit(admission))
        .and(with_rooms(rooms.clone()))
        .map(events::events);
    let start_recording = warp::path!("rooms" / String / "recordings")
        .and(warp::post())
        .and(limited_body())
        .and(caller.clone())
        .and(with_auth(auth.clone()))
        .and(with_rooms(rooms.clone()))
        .then(recordings::start_recording);
    let list_recordings = warp::path!("rooms" / String / "recordings")
        .and(warp::get())
        .and(caller.clone())
        .and(with_auth(auth.clone()))
        .and(with_rooms(rooms.clone()))
        .map(recordings::list);
    let stop_recording = warp::path!("rooms" / String / "recordings" / String)
        .and(warp::delete())
        .and(caller.clone())
        .and(with_auth(auth.clone()))
        .and(with_rooms(rooms.clone()))
        .then(recordings::stop_recording);
    let get_layout = warp::path!("rooms" / String / "layout")
        .and(warp::get())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(layout::get);
    let put_layout = warp::path!("rooms" / String / "layout")
        .and(warp::put())
        .and(limited_body())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(layout::put);
    let dry_run_layout = warp::path!("rooms" / String / "layout")
        .and(warp::post())
        .and(warp::query::<HashMap<String, String>>())
        .and(limited_body())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(layout::dry_run);
    let pin = warp::path!("rooms" / String / "sessions" / String / "pin")
        .and(warp::put())
        .and(limited_body())
        .and(caller.clone())
        .and(with_rooms(rooms.clone()))
        .then(layout::pin);
    let recording_file = warp::path!("rooms" / String / "recordings" / String / "file")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(caller)
        .and(with_auth(auth))
        .and(with_rooms(rooms))
        .then(recordings::recording_file);
    info.or(end)
        .unify()
        .or(events)
        .unify()
        .or(start_recording)
        .unify()
        .or(list_recordings)
        .unify()
        .or(stop_recording)
        .unify()
        .or(recording_file)
        .unify()
        .or(get_layout)
        .unify()
        .or(put_layout)
        .unify()
        .or(dry_run_layout)
        .unify()
        .or(pin)
        .unify()
        .boxed()
}

/// The server's: every room, the debug counts.
fn server(rooms: Rooms, auth: Arc<Auth>, admission: Arc<Admission>) -> Routes {
    let caller = access::caller(auth.clone());
    let list = warp::path!("rooms")
        .and(warp::get())
        .and(caller.clone())
        .and(with_rooms(rooms))
        .then(|authz: Authz, rooms: Rooms| async move {
            match allow(authz, |c| c.may_administer_server()) {
                Ok(_) => json(StatusCode::OK, &rooms.list().await),
                Err(reply) => reply,
            }
        });
    let counts = warp::path!("debug" / "counts")
        .and(warp::get())
        .and(caller)
        .map(
            move |authz: Authz| match allow(authz, |c| c.may_administer_server()) {
                Ok(_) => {
                    let mut counts = serde_json::to_value(crate::metrics::snapshot())
                        .expect("the counts always serialise");
                    // What load-aware admission compares with --max-load.
                    counts["load_percent"] =
                        serde_json::json!((admission.load().get() * 1000.0).round() / 10.0);
                    json(StatusCode::OK, &counts)
                }
                Err(reply) => reply,
            },
        );
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(access::caller(auth))
        .map(
            |authz: Authz| match allow(authz, |c| c.may_administer_server()) {
                Ok(_) => metrics_reply(),
                Err(reply) => reply,
            },
        );
    list.or(counts).unify().or(metrics).unify().boxed()
}

/// `GET /metrics`: the Prometheus exposition.
pub fn metrics_reply() -> Reply {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
        .body(crate::metrics::render().into())
        .expect("a static content type")
}

/// The routes of `--metrics-listen`: `GET /metrics` alone, without a token (the port is
/// meant for the monitoring network only).
pub fn metrics_routes()
-> impl Filter<Extract = (Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::path!("metrics")
        .and(warp::get())
        .map(metrics_reply)
        .or(warp::any().map(|| {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "this port serves GET /metrics only",
            )
        }))
        .unify()
}

fn unknown_room(room: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "unknown_room",
        &format!("no room named {room:?}"),
    )
}

/// CORS preflight and RFC 9725's `OPTIONS`: what each resource takes.
fn preflight() -> Routes {
    warp::options()
        .and(warp::path::tail())
        .map(|_: warp::path::Tail| {
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header("accept-post", "application/sdp")
                .header("accept-patch", TRICKLE_TYPE)
                .header("access-control-allow-origin", "*")
                .header(
                    "access-control-allow-methods",
                    "GET, POST, PATCH, PUT, DELETE, OPTIONS",
                )
                .header(
                    "access-control-allow-headers",
                    "content-type, if-match, authorization",
                )
                .header("access-control-expose-headers", EXPOSED)
                .header("access-control-max-age", "600")
                .body("".into())
                .expect("static response parts are valid")
        })
        .boxed()
}

/// What no route took: `404` if the path is no resource, `405` with `Allow` if the resource
/// does not take the method, and `400` if it does but the request was malformed (a route
/// rejected it, e.g. its query string).
fn fallback() -> Routes {
    warp::method()
        .and(warp::path::full())
        .map(|method: Method, path: warp::path::FullPath| {
            let is_page = |p: &str| web::file(p).is_some();
            match table::allowed_methods(path.as_str(), is_page) {
                None => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &format!("no resource at {}", path.as_str()),
                ),
                Some(allowed) if !allowed.contains(&method) => {
                    let mut reply = error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        &format!("{} takes {}", path.as_str(), table::allow_header(allowed)),
                    );
                    if let Ok(v) = header::HeaderValue::from_str(&table::allow_header(allowed)) {
                        reply.headers_mut().insert(header::ALLOW, v);
                    }
                    reply
                }
                Some(_) => error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the request could not be understood (check its query string and headers)",
                ),
            }
        })
        .boxed()
}

/// The rejections no route turned into an answer (the fallback takes every request, so these
/// come only from filters inside a route).
async fn recover(rejection: warp::Rejection) -> Result<Reply, Infallible> {
    tracing::warn!("unhandled rejection: {rejection:?}");
    Ok(error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "the request could not be understood",
    ))
}

/// The body of `GET /readyz`.
#[derive(Serialize)]
struct Readiness {
    /// `ready`, `draining` or `busy`.
    status: &'static str,
    /// Why not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    /// Whether requests need an access token: a page opened without one says so at once.
    tokens: bool,
}
