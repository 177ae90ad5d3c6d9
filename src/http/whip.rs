//! A session's own requests (WHIP/WHEP, RFC 9725): join with an offer, trickle candidates
//! (`PATCH`), say what it stopped sending (`PUT .../mute`), leave (`DELETE`).

use std::collections::HashMap;

use bytes::Bytes;
use warp::http::{Response, StatusCode, header};

use super::body::{has_media_type, is_sdp};
use super::reply::{empty, error};
use super::{Reply, TRICKLE_TYPE};
use crate::room::{JoinError, Rooms, TrickleError, valid_room_name};
use crate::sdp::parse_fragment;
use crate::types::SessionId;

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
pub(super) async fn join(
    room: String,
    endpoint: Endpoint,
    content_type: Option<String>,
    query: HashMap<String, String>,
    body: Result<Bytes, Reply>,
    rooms: Rooms,
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
    let name = query
        .get("name")
        .map(|n| n.trim().chars().take(64).collect::<String>())
        .filter(|n| !n.is_empty());
    match rooms.join(&room, whep, offer, name, quality).await {
        Ok(answer) => Response::builder()
            .status(StatusCode::CREATED)
            .header(header::CONTENT_TYPE, "application/sdp")
            .header(header::LOCATION, session_path(&room, answer.session))
            .header(header::ETAG, answer.etag)
            .header("accept-patch", TRICKLE_TYPE)
            .body(answer.sdp.into())
            .expect("the session path and etag are valid header values"),
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
    error(status, code, &e.to_string())
}

/// The session id of a URL segment, if the room name is valid and the segment is hex.
pub(super) fn session_id(room: &str, session: &str) -> Option<SessionId> {
    if !valid_room_name(room) {
        return None;
    }
    u64::from_str_radix(session, 16).ok().map(SessionId)
}

fn unknown_session(room: &str, session: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "unknown_session",
        &format!("no session {session:?} in room {room:?}"),
    )
}

pub(super) async fn leave(room: String, session: String, rooms: Rooms) -> Reply {
    let found = match session_id(&room, &session) {
        Some(id) => rooms.leave(&room, id).await,
        None => false,
    };
    if found {
        empty(StatusCode::OK)
    } else {
        unknown_session(&room, &session)
    }
}

/// RFC 9725 §4.3.1: trickled candidates for the session's ICE session → 204.
pub(super) async fn trickle(
    room: String,
    session: String,
    content_type: Option<String>,
    if_match: Option<String>,
    body: Result<Bytes, Reply>,
    rooms: Rooms,
) -> Reply {
    let body = match body {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(id) = session_id(&room, &session) else {
        return unknown_session(&room, &session);
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
    match rooms.trickle(&room, id, if_match, fragment).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(TrickleError::UnknownSession) => unknown_session(&room, &session),
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

pub(super) async fn mute(
    room: String,
    session: String,
    body: Result<Bytes, Reply>,
    rooms: Rooms,
) -> Reply {
    let body = match body {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(id) = session_id(&room, &session) else {
        return unknown_session(&room, &session);
    };
    let request: MuteRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_mute",
                &format!("expected {{\"audio\": bool, \"video\": bool}}: {e}"),
            );
        }
    };
    if rooms.mute(&room, id, request.audio, request.video).await {
        empty(StatusCode::NO_CONTENT)
    } else {
        unknown_session(&room, &session)
    }
}
