//! Every error the HTTP edge returns has the same typed JSON body, `{"error": code, "message":
//! sentence}`, including warp's own rejections (unknown route, wrong method, body too large).

use std::convert::Infallible;

use serde::{Deserialize, Serialize};
use warp::http::{Response, StatusCode, header};

use super::{MAX_BODY, Reply};

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `bad_offer`, `room_full`.
    pub error: String,
    /// A sentence for a person.
    pub message: String,
}

/// An error response.
pub fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = ErrorBody {
        error: code.to_owned(),
        message: message.to_owned(),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::to_vec(&body)
                .expect("ErrorBody always serialises")
                .into(),
        )
        .expect("static response parts are valid")
}

/// Turns warp's rejections into JSON errors.
pub async fn recover(rejection: warp::Rejection) -> Result<Reply, Infallible> {
    use warp::reject::{
        InvalidQuery, LengthRequired, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType,
    };
    let reply = if rejection.is_not_found() {
        error(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the body is over {} KiB", MAX_BODY / 1024),
        )
    } else if rejection.find::<LengthRequired>().is_some() {
        error(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send the offer with a Content-Length",
        )
    } else if rejection.find::<UnsupportedMediaType>().is_some() {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the offer must be sent as application/sdp",
        )
    } else if rejection.find::<InvalidQuery>().is_some() {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is malformed",
        )
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "that method is not allowed here",
        )
    } else {
        tracing::warn!("unhandled rejection: {rejection:?}");
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request could not be understood",
        )
    };
    Ok(reply)
}
