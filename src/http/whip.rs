//! A session's own requests (WHIP/WHEP, RFC 9725): join with an offer, trickle candidates
//! (`PATCH`), say what it stopped sending (`PUT .../mute`), leave (`DELETE`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use warp::http::{Response, StatusCode, header};

use super::access::{Authz, allow, forbidden, unauthorized};
use super::body::{has_media_type, is_sdp};
use super::ice::add_links;
use super::limits::{Admit, refused};
use super::reply::{empty, error};
use super::{Reply, TRICKLE_TYPE};
use crate::auth::Caller;
use crate::ice_servers::IceServers;
use crate::room::{
    JoinAnswer, JoinError, JoinRequest, Rooms, SessionError, TrickleError, valid_room_name,
};
use crate::sdp::parse_fragment;
use crate::types::{SessionRef, SessionSecret};

/// Where an offer goes: WHIP (to send, or to send and receive) or WHEP (to watch). Any other
/// last segment is no route at all (a path parameter that does not parse rejects the route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Whip,
    Whep,
}

impl std::str::FromStr for Endpoint {
    type Err = ();
    fn from_str(s: &str) -> Result<Endpoint, ()> {
        match s {
            "whip" => Ok(Endpoint::Whip),
            "whep" => Ok(Endpoint::Whep),
            _ => Err(()),
        }
    }
}

/// RFC 9725 §4.2: an offer POSTed to a room's WHIP or WHEP endpoint → 201 with the answer.
// What a warp route extracts, one argument each.
#[allow(clippy::too_many_arguments)]
pub(super) async fn join(
    room: String,
    endpoint: Endpoint,
    content_type: Option<String>,
    query: HashMap<String, String>,
    body: Result<Bytes, Reply>,
    authz: Authz,
    admit: Admit,
    rooms: Rooms,
    ice: Arc<IceServers>,
) -> Reply {
    let body = match body {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let whep = endpoint == Endpoint::Whep;
    if !valid_room_name(&room) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_room_name",
            "room names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
        );
    }
    // Before the offer is read: a stranger's offer costs no SDP parsing, let alone a room.
    let caller = match allow(authz, |c| c.may_offer(&room, whep)) {
        Ok(caller) => caller,
        Err(reply) => return reply,
    };
    if !is_sdp(content_type.as_deref()) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!(
                "the offer must be sent as application/sdp, not {}",
                content_type.as_deref().unwrap_or("(no content type)")
            ),
        );
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_offer",
            "the offer is not UTF-8 text",
        );
    };
    let quality = match query
        .get("quality")
        .map(|q| q.parse::<crate::types::Tier>())
    {
        None => None,
        Some(Ok(tier)) => Some(tier),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, "invalid_quality", &e),
    };
    let screen = match query.get("source").map(String::as_str) {
        None | Some("camera") => false,
        Some("screen") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_source",
                &format!("?source= is camera or screen, not {other:?}"),
            );
        }
    };
    let owner = match query.get("owner") {
        None => None,
        Some(id) => match crate::types::SessionRef::parse(id) {
            Some(crate::types::SessionRef::Public(id)) => Some(id),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_owner",
                    "?owner= is the public id of a session of the room",
                );
            }
        },
    };
    let name = query
        .get("name")
        .map(|n| n.trim().chars().take(64).collect::<String>())
        .filter(|n| !n.is_empty());
    // Last, once the request is known to be good: a place among the server's sessions and the
    // address's unconnected ones, under the server's load.
    let slots = match admit.session() {
        Ok(slots) => slots,
        Err(reply) => return reply,
    };
    let request = JoinRequest {
        whep,
        offer,
        name,
        quality,
        screen,
        owner,
        caller: caller.clone(),
        slots,
    };
    let started = std::time::Instant::now();
    let joined = rooms.join(&room, request).await;
    if joined.is_ok() {
        crate::metrics::families()
            .join_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    match joined {
        Ok(answer) => {
            let session = answer.session.to_string();
            let mut reply = created(&room, answer);
            add_links(&mut reply, &ice, &caller, &session);
            reply
        }
        Err(e) => join_error(e),
    }
}

/// The `201` of a join: the answer, where the session lives, and how to patch it.
fn created(room: &str, answer: JoinAnswer) -> Reply {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/sdp")
        .header(header::LOCATION, session_path(room, answer.secret))
        // The public id the room's state and events use for it: a page marks itself.
        .header("tessera-session-id", answer.session.to_string())
        .header(header::ETAG, answer.etag)
        .header("accept-patch", TRICKLE_TYPE)
        .body(answer.sdp.into())
        .expect("the session path and etag are valid header values")
}

/// A session's URL: its secret is the last segment.
fn session_path(room: &str, secret: SessionSecret) -> String {
    format!("/rooms/{room}/sessions/{secret}")
}

fn join_error(e: JoinError) -> Reply {
    let (status, code) = match &e {
        JoinError::BadOffer(_) => (StatusCode::BAD_REQUEST, "bad_offer"),
        JoinError::UnsupportedCodec(_) => (StatusCode::BAD_REQUEST, "unsupported_codec"),
        // 403: the request is understood and refused by policy; RFC 9725 has no code of its own.
        JoinError::RoomFull(_) => (StatusCode::FORBIDDEN, "room_full"),
        JoinError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        JoinError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        JoinError::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        JoinError::Refused(refusal) => return refused(refusal),
        JoinError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let mut reply = error(status, code, &e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Another instance (or this one, once restarted) will take it.
        reply.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(crate::admission::BUSY_RETRY_AFTER.as_secs()),
        );
    }
    reply
}

/// Who asks and which session the URL segment names (its secret, or its public id), or the
/// answer refusing the request: `401` without a usable token, `404` for a segment that names
/// no session (or a room name that is not valid).
// The error is the finished response, built once per refused request.
#[allow(clippy::result_large_err)]
fn session_request(authz: Authz, room: &str, session: &str) -> Result<(Caller, SessionRef), Reply> {
    let caller = authz.map_err(|e| unauthorized(&e))?;
    let target = valid_room_name(room)
        .then(|| SessionRef::parse(session))
        .flatten()
        .ok_or_else(|| unknown_session(room, session))?;
    Ok((caller, target))
}

/// A session request with a JSON body (`PUT .../mute`, `.../pin`): the caller and the session
/// it names, and the body read as `T`; or the answer refusing it (`400 {code}` saying what was
/// `expected` when the body is not that JSON).
#[allow(clippy::result_large_err)]
pub(super) fn session_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, Reply>,
    authz: Authz,
    room: &str,
    session: &str,
    code: &str,
    expected: &str,
) -> Result<(Caller, SessionRef, T), Reply> {
    let body = body?;
    let (caller, target) = session_request(authz, room, session)?;
    let request = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            code,
            &format!("expected {expected}: {e}"),
        )
    })?;
    Ok((caller, target, request))
}

/// The answer for a session request the room refused.
pub(super) fn session_error(e: SessionError, room: &str, session: &str) -> Reply {
    match e {
        SessionError::Unknown => unknown_session(room, session),
        SessionError::Denied(d) => forbidden(&d),
    }
}

fn unknown_session(room: &str, session: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "unknown_session",
        &format!("no session {session:?} in room {room:?}"),
    )
}

/// `DELETE`: its owner leaves, or an administrator removes it (by its public id).
pub(super) async fn leave(room: String, session: String, authz: Authz, rooms: Rooms) -> Reply {
    let (caller, target) = match session_request(authz, &room, &session) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    match rooms.leave(&room, target, caller).await {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => session_error(e, &room, &session),
    }
}

/// RFC 9725 §4.3.1: trickled candidates for the session's ICE session → 204.
pub(super) async fn trickle(
    room: String,
    session: String,
    content_type: Option<String>,
    if_match: Option<String>,
    body: Result<Bytes, Reply>,
    authz: Authz,
    rooms: Rooms,
) -> Reply {
    let body = match body {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let (caller, target) = match session_request(authz, &room, &session) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if !has_media_type(content_type.as_deref(), TRICKLE_TYPE) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!("trickled candidates must be sent as {TRICKLE_TYPE}"),
        );
    }
    let fragment = match std::str::from_utf8(&body)
        .map_err(|_| "the fragment is not UTF-8 text".to_owned())
        .and_then(parse_fragment)
    {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_fragment", &e),
    };
    match rooms
        .trickle(&room, target, caller, if_match, fragment)
        .await
    {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(TrickleError::UnknownSession) => unknown_session(&room, &session),
        Err(TrickleError::Denied(d)) => forbidden(&d),
        Err(e @ TrickleError::EtagMismatch(_)) => error(
            StatusCode::PRECONDITION_FAILED,
            "etag_mismatch",
            &e.to_string(),
        ),
        Err(e @ TrickleError::RestartUnsupported) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ice_restart_unsupported",
            &e.to_string(),
        ),
    }
}

/// What a session stopped sending; absent fields keep their value.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteRequest {
    audio: Option<bool>,
    video: Option<bool>,
}

/// `PUT .../mute`: what a session stopped sending (its owner), or what the server holds muted
/// (an administrator, by its public id).
pub(super) async fn mute(
    room: String,
    session: String,
    body: Result<Bytes, Reply>,
    authz: Authz,
    rooms: Rooms,
) -> Reply {
    let (caller, target, request): (_, _, MuteRequest) = match session_json(
        body,
        authz,
        &room,
        &session,
        "bad_mute",
        r#"{"audio": bool, "video": bool}"#,
    ) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    match rooms
        .mute(&room, target, caller, request.audio, request.video)
        .await
    {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => session_error(e, &room, &session),
    }
}
