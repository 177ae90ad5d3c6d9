//! Request bodies and their media types: every body is read with a limit ([`MAX_BODY`]), refused
//! early by its `Content-Length` or while reading when it has none or lies.

use std::time::Duration;

use bytes::Bytes;

use warp::Filter;
use warp::http::StatusCode;

use super::Reply;
use super::reply::error;

/// Largest body accepted: real offers are a few KiB.
pub const MAX_BODY: u64 = 64 * 1024;
/// How long a client may take to send a body (a slow sender holds a connection and a task
/// this long at most; the headers have their own deadline in `serve`).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The request body, at most [`MAX_BODY`] bytes: refused early by its Content-Length, or while
/// reading when it has none (chunked) or lies. A missing body is an empty one (a 400 later).
pub(super) fn limited_body()
-> impl Filter<Extract = (Result<Bytes, Reply>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(|length, body| async move {
            match tokio::time::timeout(BODY_TIMEOUT, collect_body(length, body)).await {
                Ok(body) => body,
                Err(_) => Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    &format!(
                        "the body did not arrive within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                )),
            }
        })
}

async fn collect_body<S, B>(length: Option<u64>, body: S) -> Result<Bytes, Reply>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures::StreamExt;
    let too_large = || {
        error(
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
            error(
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

/// Whether `content_type` is `media_type`, ignoring parameters and case.
pub(super) fn has_media_type(content_type: Option<&str>, media_type: &str) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(media_type))
    })
}

/// `application/sdp`, ignoring parameters and case.
pub(super) fn is_sdp(content_type: Option<&str>) -> bool {
    has_media_type(content_type, "application/sdp")
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
