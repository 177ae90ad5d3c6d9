//! The HTTP edge (warp): WHIP and WHEP (RFC 9725) for joining and watching, REST for room state,
//! a health check and debug counts. IO only: every decision is the room's; this module turns
//! requests into [`Rooms`] calls and results into status codes with typed JSON bodies.
//!
//! | route | what |
//! |---|---|
//! | `POST /rooms/{room}/whip` | `application/sdp` offer → 201 + answer + `Location` (participant/contributor) |
//! | `POST /rooms/{room}/whep` | `application/sdp` recvonly offer → 201 + answer + `Location` (viewer) |
//! | `DELETE /rooms/{room}/sessions/{id}` | leave |
//! | `PATCH /rooms/{room}/sessions/{id}` | trickle ICE (`application/trickle-ice-sdpfrag`, `If-Match`) → 204; ICE restart → 422 |
//! | `PUT /rooms/{room}/sessions/{id}/mute` | `{"audio": bool, "video": bool}`: what the session stopped sending → 204 |
//! | `GET /rooms/{room}/events` | the room's events (Server-Sent Events, typed JSON) |
//! | `POST /rooms/{room}/recordings` | `{"format": "webm"|"mp4"}` → 201 + the recording |
//! | `GET /rooms/{room}/recordings` | the room's recordings |
//! | `DELETE /rooms/{room}/recordings/{id}` | stop → 200 once the file is complete |
//! | `GET /rooms/{room}/recordings/{id}/file` | the file (also while it is being written) |
//! | `GET /rooms`, `GET /rooms/{room}` | room state as JSON |
//! | `GET /healthz` | liveness |
//! | `GET /`, `/view.html`, `/js/*`, `/style.css` | the browser client (`web/`, embedded) |
//! | `GET /debug/counts` | live rooms, pipelines, peers, tasks, sockets |

mod errors;
mod web;

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use serde::Serialize;
use warp::Filter;
use warp::http::{Response, StatusCode, header};

use crate::room::events::RoomEvent;
use crate::room::{JoinError, RecordingError, Rooms, TrickleError, valid_room_name};
use crate::sdp::parse_fragment;
use crate::types::SessionId;

pub use errors::ErrorBody;

/// Largest SDP body accepted: real offers are a few KiB.
pub const MAX_BODY: u64 = 64 * 1024;
/// The media type of trickle ICE fragments (RFC 8840).
const TRICKLE_TYPE: &str = "application/trickle-ice-sdpfrag";
/// Response headers a browser page on another origin may read (WHIP/WHEP clients need them).
const EXPOSED: &str = "location, etag, accept-patch, link";
/// How often an idle event stream carries a comment, so proxies keep it open.
const EVENTS_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

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
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("if-match"))
        .and(limited_body())
        .and(with_rooms.clone())
        .then(trickle);
    let mute = warp::put()
        .and(warp::path!("rooms" / String / "sessions" / String / "mute"))
        .and(limited_body())
        .and(with_rooms.clone())
        .then(mute);
    let events = warp::get()
        .and(warp::path!("rooms" / String / "events"))
        .and(with_rooms.clone())
        .map(events);
    let start_recording = warp::post()
        .and(warp::path!("rooms" / String / "recordings"))
        .and(limited_body())
        .and(with_rooms.clone())
        .then(start_recording);
    let list_recordings = warp::get()
        .and(warp::path!("rooms" / String / "recordings"))
        .and(with_rooms.clone())
        .map(|room: String, rooms: Rooms| json(StatusCode::OK, &rooms.recordings(&room)));
    let stop_recording = warp::delete()
        .and(warp::path!("rooms" / String / "recordings" / String))
        .and(with_rooms.clone())
        .then(stop_recording);
    let recording_file = warp::get()
        .and(warp::path!(
            "rooms" / String / "recordings" / String / "file"
        ))
        .and(with_rooms.clone())
        .then(recording_file);
    let options = warp::options()
        .and(warp::path::tail())
        .map(|_: warp::path::Tail| {
            // CORS preflight and RFC 9725's OPTIONS: what each resource takes.
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
    // Last of the GET routes: anything else is a 404 (not the 405 warp would infer from the
    // other methods' routes).
    let web = warp::get()
        .and(warp::path::tail())
        .map(|tail: warp::path::Tail| {
            web::file(tail.as_str()).unwrap_or_else(|| {
                errors::error(StatusCode::NOT_FOUND, "not_found", "no such page")
            })
        });
    let counts = warp::get()
        .and(warp::path!("debug" / "counts"))
        .map(|| json(StatusCode::OK, &crate::metrics::snapshot()));

    // Grouped and boxed: a long chain of `or`s makes a type rustc takes minutes to check.
    // Recordings before `join`, which answers every other POST /rooms/{room}/{x} itself.
    let sessions = start_recording
        .or(join)
        .unify()
        .or(leave)
        .unify()
        .or(patch)
        .unify()
        .or(mute)
        .unify()
        .boxed();
    let rooms_api = events
        .or(list_recordings)
        .unify()
        .or(stop_recording)
        .unify()
        .or(recording_file)
        .unify()
        .or(options)
        .unify()
        .boxed();
    let state = list
        .or(info)
        .unify()
        .or(health)
        .unify()
        .or(counts)
        .unify()
        .or(web)
        .unify()
        .boxed();
    sessions
        .or(rooms_api)
        .unify()
        .or(state)
        .unify()
        .recover(errors::recover)
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

/// Whether `content_type` is `media_type`, ignoring parameters and case.
fn has_media_type(content_type: Option<&str>, media_type: &str) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(media_type))
    })
}

/// `application/sdp`, ignoring parameters and case.
fn is_sdp(content_type: Option<&str>) -> bool {
    has_media_type(content_type, "application/sdp")
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
    let quality = match query
        .get("quality")
        .map(|q| q.parse::<crate::types::Tier>())
    {
        None => None,
        Some(Ok(tier)) => Some(tier),
        Some(Err(e)) => return errors::error(StatusCode::BAD_REQUEST, "invalid_quality", &e),
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
    errors::error(status, code, &e.to_string())
}

/// The session id of a URL segment, if the room name is valid and the segment is hex.
fn session_id(room: &str, session: &str) -> Option<SessionId> {
    if !valid_room_name(room) {
        return None;
    }
    u64::from_str_radix(session, 16).ok().map(SessionId)
}

fn unknown_session(room: &str, session: &str) -> Reply {
    errors::error(
        StatusCode::NOT_FOUND,
        "unknown_session",
        &format!("no session {session:?} in room {room:?}"),
    )
}

fn empty(status: StatusCode) -> Reply {
    Response::builder()
        .status(status)
        .body("".into())
        .expect("static response parts are valid")
}

async fn leave(room: String, session: String, rooms: Rooms) -> Reply {
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
async fn trickle(
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
        return errors::error(
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
        Err(e) => return errors::error(StatusCode::BAD_REQUEST, "bad_fragment", &e),
    };
    match rooms.trickle(&room, id, if_match, fragment).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(TrickleError::UnknownSession) => unknown_session(&room, &session),
        Err(e @ TrickleError::EtagMismatch(_)) => errors::error(
            StatusCode::PRECONDITION_FAILED,
            "etag_mismatch",
            &e.to_string(),
        ),
        Err(e @ TrickleError::RestartUnsupported) => errors::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ice_restart_unsupported",
            &e.to_string(),
        ),
    }
}

fn recording_error(e: RecordingError) -> Reply {
    let (status, code) = match &e {
        RecordingError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        RecordingError::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported_format"),
        RecordingError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "recording_failed"),
    };
    errors::error(status, code, &e.to_string())
}

/// The body of `POST /rooms/{room}/recordings` (empty: WebM).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecordingRequest {
    format: Option<String>,
}

async fn start_recording(room: String, body: Result<Bytes, Reply>, rooms: Rooms) -> Reply {
    let body = match body {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let request: RecordingRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RecordingRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return errors::error(
                    StatusCode::BAD_REQUEST,
                    "bad_recording",
                    &format!("expected {{\"format\": \"webm\" or \"mp4\"}}: {e}"),
                );
            }
        }
    };
    let format = match request.format.as_deref().map(str::parse) {
        None => crate::types::RecordingFormat::default(),
        Some(Ok(f)) => f,
        Some(Err(e)) => return errors::error(StatusCode::BAD_REQUEST, "unsupported_format", &e),
    };
    match rooms.start_recording(&room, format).await {
        Ok(info) => {
            let mut reply = json(StatusCode::CREATED, &info);
            if let Ok(location) =
                header::HeaderValue::from_str(&format!("/rooms/{room}/recordings/{}", info.id))
            {
                reply.headers_mut().insert(header::LOCATION, location);
            }
            reply
        }
        Err(e) => recording_error(e),
    }
}

fn recording_id(id: &str) -> Option<u64> {
    u64::from_str_radix(id, 16).ok()
}

async fn stop_recording(room: String, id: String, rooms: Rooms) -> Reply {
    let Some(n) = recording_id(&id) else {
        return recording_error(RecordingError::NotFound(format!("no recording {id:?}")));
    };
    match rooms.stop_recording(&room, n).await {
        Ok(info) => json(StatusCode::OK, &info),
        Err(e) => recording_error(e),
    }
}

/// Streams a recording's file; a recording in progress gives what is written so far (a WebM
/// or fragmented MP4 that plays up to there).
async fn recording_file(room: String, id: String, rooms: Rooms) -> Reply {
    use warp::Reply as _;
    let Some(info) = recording_id(&id).and_then(|n| rooms.recording(&room, n)) else {
        return recording_error(RecordingError::NotFound(format!("no recording {id:?}")));
    };
    let path = rooms.recording_path(&room, info.format, &info.id);
    match tokio::fs::File::open(&path).await {
        Ok(file) => {
            let mut reply =
                warp::reply::stream(tokio_util::io::ReaderStream::new(file)).into_response();
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(info.format.content_type()),
            );
            if let Ok(v) = header::HeaderValue::from_str(&format!(
                "attachment; filename=\"{room}-{}.{}\"",
                info.id,
                info.format.name()
            )) {
                reply.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            reply
        }
        Err(e) => recording_error(RecordingError::NotFound(format!(
            "the file of recording {id} cannot be read: {e}"
        ))),
    }
}

/// What a session stopped sending; absent fields keep their value.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteRequest {
    audio: Option<bool>,
    video: Option<bool>,
}

async fn mute(room: String, session: String, body: Result<Bytes, Reply>, rooms: Rooms) -> Reply {
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
            return errors::error(
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

/// One reader's stream of a room's events; when it ends (the client went away), the event
/// channels nobody reads any more are forgotten.
struct EventStream {
    rooms: Rooms,
    room: String,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.rooms.sweep_event_channels();
    }
}

/// The room's event stream: a snapshot, then every event of that room as it happens. A reader
/// that falls behind its room's channel gets a fresh snapshot instead of the events it missed.
fn events(room: String, rooms: Rooms) -> Reply {
    use futures::StreamExt;
    use warp::Reply as _;
    if !valid_room_name(&room) {
        return errors::error(
            StatusCode::BAD_REQUEST,
            "invalid_room_name",
            "room names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
        );
    }
    // Subscribed before the snapshot is taken, so nothing falls between the two. The room's
    // own channel: another room's events never reach (or delay) this reader.
    let events = rooms.subscribe_events(&room);
    let first = futures::stream::once({
        let (rooms, room) = (rooms.clone(), room.clone());
        async move { rooms.snapshot(&room).await }
    });
    let state = (events, EventStream { rooms, room });
    let rest = futures::stream::unfold(state, |(mut events, stream)| async move {
        use tokio::sync::broadcast::error::RecvError;
        match events.recv().await {
            Ok(event) => Some((event, (events, stream))),
            Err(RecvError::Lagged(_)) => {
                // Fell behind: the state, re-read, instead of the events it missed.
                let snapshot = stream.rooms.snapshot(&stream.room).await;
                Some((snapshot, (events, stream)))
            }
            Err(RecvError::Closed) => None,
        }
    });
    let stream = first.chain(rest).map(|event: RoomEvent| {
        warp::sse::Event::default()
            .json_data(&event)
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    warp::sse::reply(
        warp::sse::keep_alive()
            .interval(EVENTS_KEEP_ALIVE)
            .stream(stream),
    )
    .into_response()
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
