//! A room's recordings: start (`POST`), list, stop (`DELETE`, answered once the file is
//! complete), download (also while it is being written). All need the `record` grant (or
//! admin); each recording's JSON carries a `download_url` signed for an hour, which needs no
//! token, so a player or `curl` can fetch the file.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use warp::http::{StatusCode, header};

use super::Reply;
use super::access::{Authz, allow};
use super::reply::{error, json};
use crate::auth::Auth;
use crate::room::{RecordingError, RecordingInfo, Rooms};

/// How long a signed download link works.
const DOWNLOAD_LINK_SECS: u64 = 3600;

/// A recording as the API shows it: its state and a signed link to its file.
fn with_download(info: &RecordingInfo, auth: &Auth) -> Value {
    let mut value = serde_json::to_value(info).expect("RecordingInfo always serialises");
    let exp = crate::auth::now() + DOWNLOAD_LINK_SECS;
    let link = format!("{}?{}", info.file, auth.signer().query(&info.file, exp));
    value["download_url"] = Value::String(link);
    value
}

/// Every recording of `room`, for a caller with the grant.
pub(super) fn list(room: String, authz: Authz, auth: Arc<Auth>, rooms: Rooms) -> Reply {
    if let Err(reply) = allow(authz, |c| c.may_record(&room)) {
        return reply;
    }
    let all: Vec<Value> = rooms
        .recordings(&room)
        .iter()
        .map(|r| with_download(r, &auth))
        .collect();
    json(StatusCode::OK, &all)
}

fn recording_error(e: RecordingError) -> Reply {
    let (status, code) = match &e {
        RecordingError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        RecordingError::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported_format"),
        RecordingError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "recording_failed"),
    };
    error(status, code, &e.to_string())
}

/// The body of `POST /rooms/{room}/recordings` (empty: WebM).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecordingRequest {
    format: Option<String>,
}

pub(super) async fn start_recording(
    room: String,
    body: Result<Bytes, Reply>,
    authz: Authz,
    auth: Arc<Auth>,
    rooms: Rooms,
) -> Reply {
    let body = match body {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    if let Err(reply) = allow(authz, |c| c.may_record(&room)) {
        return reply;
    }
    let request: RecordingRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RecordingRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
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
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, "unsupported_format", &e),
    };
    match rooms.start_recording(&room, format).await {
        Ok(info) => {
            let mut reply = json(StatusCode::CREATED, &with_download(&info, &auth));
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

pub(super) async fn stop_recording(
    room: String,
    id: String,
    authz: Authz,
    auth: Arc<Auth>,
    rooms: Rooms,
) -> Reply {
    if let Err(reply) = allow(authz, |c| c.may_record(&room)) {
        return reply;
    }
    let Some(n) = recording_id(&id) else {
        return recording_error(RecordingError::NotFound(format!("no recording {id:?}")));
    };
    match rooms.stop_recording(&room, n).await {
        Ok(info) => json(StatusCode::OK, &with_download(&info, &auth)),
        Err(e) => recording_error(e),
    }
}

/// Whether `query` carries a valid signature for `path`.
fn signed(path: &str, query: &HashMap<String, String>, auth: &Auth) -> bool {
    let (Some(exp), Some(sig)) = (
        query.get("exp").and_then(|e| e.parse::<u64>().ok()),
        query.get("sig"),
    ) else {
        return false;
    };
    auth.signer().verify(path, exp, sig, crate::auth::now())
}

/// Streams a recording's file; a recording in progress gives what is written so far (a WebM
/// or fragmented MP4 that plays up to there). A signed link needs no token.
pub(super) async fn recording_file(
    room: String,
    id: String,
    query: HashMap<String, String>,
    authz: Authz,
    auth: Arc<Auth>,
    rooms: Rooms,
) -> Reply {
    use warp::Reply as _;
    let path = format!("/rooms/{room}/recordings/{id}/file");
    if !signed(&path, &query, &auth)
        && let Err(reply) = allow(authz, |c| c.may_record(&room))
    {
        return reply;
    }
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
