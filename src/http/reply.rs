//! The shapes of every answer: typed JSON (an error is always `{"error": code, "message":
//! sentence}`), or an empty body.

use serde::{Deserialize, Serialize};
use warp::http::{Response, StatusCode, header};

use super::Reply;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `bad_offer`, `room_full`.
    pub error: String,
    /// A sentence for a person.
    pub message: String,
}

/// An error response.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Reply {
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

/// A JSON answer.
pub(super) fn json<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    let body = serde_json::to_vec(body).expect("our response types always serialise");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("static response parts are valid")
}

/// An answer without a body.
pub(super) fn empty(status: StatusCode) -> Reply {
    Response::builder()
        .status(status)
        .body("".into())
        .expect("static response parts are valid")
}
