//! The room's layout over HTTP: `GET /rooms/{room}/layout` (the layout and the tiles it gives
//! now), `PUT` (a new layout, administrators), `POST ?dry_run=true` (the tiles a layout would
//! give, applying nothing), and `PUT /rooms/{room}/sessions/{id}/pin`. A layout is checked here,
//! whole, before the room sees it: a bad one is `400 bad_layout` naming the fault, and nothing
//! changes.

use std::collections::HashMap;

use bytes::Bytes;
use warp::http::StatusCode;

use super::Reply;
use super::access::{Authz, allow};
use super::reply::{empty, error, json};
use super::whip::{session_error, session_json};
use crate::room::Rooms;
use crate::room::layout::LayoutSpec;

/// `GET /rooms/{room}/layout`.
pub(super) async fn get(room: String, authz: Authz, rooms: Rooms) -> Reply {
    if let Err(reply) = allow(authz, |c| c.may_read_room(&room)) {
        return reply;
    }
    match rooms.layout(&room).await {
        Some(view) => json(StatusCode::OK, &view),
        None => super::unknown_room(&room),
    }
}

/// `PUT /rooms/{room}/layout`: applies a layout (the room's administrators).
pub(super) async fn put(
    room: String,
    body: Result<Bytes, Reply>,
    authz: Authz,
    rooms: Rooms,
) -> Reply {
    if let Err(reply) = allow(authz, |c| c.may_administer(&room)) {
        return reply;
    }
    let spec = match parse(body) {
        Ok(spec) => spec,
        Err(reply) => return reply,
    };
    match rooms.set_layout(&room, spec, true).await {
        Some(view) => json(StatusCode::OK, &view),
        None => super::unknown_room(&room),
    }
}

/// `POST /rooms/{room}/layout?dry_run=true`: the tiles a layout would give the room's sessions
/// now, without applying it (anyone who may read the room).
pub(super) async fn dry_run(
    room: String,
    query: HashMap<String, String>,
    body: Result<Bytes, Reply>,
    authz: Authz,
    rooms: Rooms,
) -> Reply {
    if let Err(reply) = allow(authz, |c| c.may_read_room(&room)) {
        return reply;
    }
    if query.get("dry_run").map(String::as_str) != Some("true") {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "POST on a layout is a dry run: add ?dry_run=true (PUT applies a layout)",
        );
    }
    let spec = match parse(body) {
        Ok(spec) => spec,
        Err(reply) => return reply,
    };
    match rooms.set_layout(&room, spec, false).await {
        Some(view) => json(StatusCode::OK, &view),
        None => super::unknown_room(&room),
    }
}

// A reply is what every handler returns; boxing it here would only be unboxed at once.
#[allow(clippy::result_large_err)]
fn parse(body: Result<Bytes, Reply>) -> Result<LayoutSpec, Reply> {
    let body = body?;
    LayoutSpec::parse(&body).map_err(|fault| error(StatusCode::BAD_REQUEST, "bad_layout", &fault))
}

/// What `PUT .../pin` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    pinned: bool,
}

/// `PUT /rooms/{room}/sessions/{id}/pin`: an administrator pins or unpins a session.
pub(super) async fn pin(
    room: String,
    session: String,
    body: Result<Bytes, Reply>,
    authz: Authz,
    rooms: Rooms,
) -> Reply {
    let (caller, target, request): (_, _, PinRequest) = match session_json(
        body,
        authz,
        &room,
        &session,
        "bad_pin",
        r#"{"pinned": bool}"#,
    ) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    match rooms.pin(&room, target, caller, request.pinned).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => session_error(e, &room, &session),
    }
}
