//! The HTTP edge (warp): WHIP and WHEP (RFC 9725) for joining and watching, REST for room state,
//! a health check and debug counts. IO only: every decision is the room's; this module turns
//! requests into [`Rooms`] calls and results into status codes with typed JSON bodies.
//!
//! | route | what |
//! |---|---|
//! | `POST /rooms/{room}/whip` | `application/sdp` offer → 201 + answer + `Location` (participant/contributor) |
//! | `POST /rooms/{room}/whep` | `application/sdp` recvonly offer → 201 + answer + `Location` (viewer) |
//! | `DELETE /rooms/{room}/sessions/{id}` | leave |
//! | `PATCH /rooms/{room}/sessions/{id}` | trickle ICE: 405 for now (RFC 9725 §4.3.1: non-trickle servers answer 405) |
//! | `GET /rooms`, `GET /rooms/{room}` | room state as JSON |
//! | `GET /healthz` | liveness |
//! | `GET /` | the web page (`web/index.html`, embedded) |
//! | `GET /debug/counts` | live rooms, pipelines, peers, tasks, sockets |

mod errors;

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use serde::Serialize;
use warp::Filter;
use warp::http::{Response, StatusCode, header};

use crate::room::{JoinError, Rooms, valid_room_name};
use crate::types::SessionId;

pub use errors::ErrorBody;

/// Largest SDP body accepted: real offers are a few KiB.
pub const MAX_BODY: u64 = 64 * 1024;

type Reply = warp::reply::Response;

/// Every route of the server.
pub fn routes(
    rooms: Rooms,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_rooms = warp::any().map(move || rooms.clone());

    let join = warp::post()
        .and(warp::path!("rooms" / String / String))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::query::<HashMap<String, String>>())
        .and(limited_body())
        .and(with_rooms.clone())
        .then(join);
    let leave = warp::delete()
        .and(warp::path!("rooms" / String / "sessions" / String))
        .and(with_rooms.clone())
        .then(leave);
    let patch = warp::patch()
        .and(warp::path!("rooms" / String / "sessions" / String))
        .map(|_: String, _: String| {
            errors::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "trickle_not_supported",
                "this server does not accept trickled candidates yet; its answer carries them all",
            )
        });
    let options = warp::options()
        .and(warp::path!("rooms" / String / String))
        .map(|_: String, _: String| {
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header("accept-post", "application/sdp")
                .body("".into())
                .expect("static response parts are valid")
        });
    let list = warp::get()
        .and(warp::path!("rooms"))
        .and(with_rooms.clone())
        .then(|rooms: Rooms| async move { json(StatusCode::OK, &rooms.list().await) });
    let info = warp::get()
        .and(warp::path!("rooms" / String))
        .and(with_rooms.clone())
        .then(|room: String, rooms: Rooms| async move {
            match rooms.info(&room).await {
                Some(info) => json(StatusCode::OK, &info),
                None => errors::error(
                    StatusCode::NOT_FOUND,
                    "unknown_room",
                    &format!("no room named {room:?}"),
                ),
            }
        });
    let health = warp::get()
        .and(warp::path!("healthz"))
        .map(|| json(StatusCode::OK, &Health { status: "ok" }));
    let index = warp::get().and(warp::path::end()).map(|| {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(include_str!("../../web/index.html").into())
            .expect("static response parts are valid")
    });
    let counts = warp::get()
        .and(warp::path!("debug" / "counts"))
        .map(|| json(StatusCode::OK, &crate::metrics::snapshot()));

    join.or(leave)
        .unify()
        .or(patch)
        .unify()
        .or(options)
        .unify()
        .or(list)
        .unify()
        .or(info)
        .unify()
        .or(health)
        .unify()
        .or(counts)
        .unify()
        .or(index)
        .unify()
        .recover(errors::recover)
        .unify()
}

/// The request body, at most [`MAX_BODY`] bytes: refused early by its Content-Length, or while
/// reading when it has none (chunked) or lies. A missing body is an empty one (a 400 later).
fn limited_body() -> impl Filter<Extract = (Result<Bytes, Reply>,), Error = warp::Rejection> + Clone
{
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(collect_body)
}

async fn collect_body<S, B>(length: Option<u64>, body: S) -> Result<Bytes, Reply>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures::StreamExt;
    let too_large = || {
        errors::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the body is over {} KiB", MAX_BODY / 1024),
        )
    };
    if length.is_some_and(|l| l > MAX_BODY) {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            errors::error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("reading the body: {e}"),
            )
        })?;
        if out.len() + chunk.remaining() > MAX_BODY as usize {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            out.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    let body = serde_json::to_vec(body).expect("our response types always serialise");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("static response parts are valid")
}

/// `application/sdp`, ignoring parameters and case.
fn is_sdp(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    })
}

async fn join(
    room: String,
    endpoint: String,
    content_type: Option<String>,
    query: HashMap<String, String>,
    body: Result<Bytes, Reply>,
    rooms: Rooms,
) -> Reply {
    let body = match body {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let whep = match endpoint.as_str() {
        "whip" => false,
        "whep" => true,
        _ => return errors::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    if !valid_room_name(&room) {
        return errors::error(
            StatusCode::BAD_REQUEST,
            "invalid_room_name",
            "room names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
        );
    }
    if !is_sdp(content_type.as_deref()) {
        return errors::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!(
                "the offer must be sent as application/sdp, not {}",
                content_type.as_deref().unwrap_or("(no content type)")
            ),
        );
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return errors::error(
            StatusCode::BAD_REQUEST,
            "bad_offer",
            "the offer is not UTF-8 text",
        );
    };
    let name = query
        .get("name")
        .map(|n| n.trim().chars().take(64).collect::<String>())
        .filter(|n| !n.is_empty());
    match rooms.join(&room, whep, offer, name).await {
        Ok(answer) => Response::builder()
            .status(StatusCode::CREATED)
            .header(header::CONTENT_TYPE, "application/sdp")
            .header(header::LOCATION, session_path(&room, answer.session))
            .header("access-control-expose-headers", "location")
            .body(answer.sdp.into())
            .expect("the session path is a valid header value"),
        Err(e) => join_error(e),
    }
}

fn session_path(room: &str, session: SessionId) -> String {
    format!("/rooms/{room}/sessions/{session}")
}

fn join_error(e: JoinError) -> Reply {
    let (status, code) = match &e {
        JoinError::BadOffer(_) => (StatusCode::BAD_REQUEST, "bad_offer"),
        JoinError::UnsupportedCodec(_) => (StatusCode::BAD_REQUEST, "unsupported_codec"),
        // 403: the request is understood and refused by policy; RFC 9725 has no code of its own.
        JoinError::RoomFull(_) => (StatusCode::FORBIDDEN, "room_full"),
        JoinError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        JoinError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    errors::error(status, code, &e.to_string())
}

async fn leave(room: String, session: String, rooms: Rooms) -> Reply {
    let id = u64::from_str_radix(&session, 16).ok().map(SessionId);
    let found = match id {
        Some(id) if valid_room_name(&room) => rooms.leave(&room, id).await,
        _ => false,
    };
    if found {
        Response::builder()
            .status(StatusCode::OK)
            .body("".into())
            .expect("static response parts are valid")
    } else {
        errors::error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            &format!("no session {session:?} in room {room:?}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_content_type_ignores_case_and_parameters() {
        assert!(is_sdp(Some("application/sdp")));
        assert!(is_sdp(Some("Application/SDP; charset=utf-8")));
        assert!(!is_sdp(Some("text/plain")));
        assert!(!is_sdp(None));
    }
}
