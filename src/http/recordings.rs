//! A room's recordings: start (`POST`), list, stop (`DELETE`, answered once the file is
//! complete), download (also while it is being written).

use bytes::Bytes;
use warp::http::{StatusCode, header};

use super::Reply;
use super::reply::{error, json};
use crate::room::{RecordingError, Rooms};

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
    rooms: Rooms,
) -> Reply {
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

pub(super) async fn stop_recording(room: String, id: String, rooms: Rooms) -> Reply {
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
pub(super) async fn recording_file(room: String, id: String, rooms: Rooms) -> Reply {
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
