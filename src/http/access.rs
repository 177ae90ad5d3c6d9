//! Who is calling: a request's access token (`Authorization: Bearer`, or `?access_token=` on
//! GET requests, which an `EventSource` or a `<video src>` cannot give a header), verified into
//! a [`Caller`]; and the answers for a caller who may not: `401` with `WWW-Authenticate` for
//! a missing or bad token (RFC 6750 §3), `403` for a token without the grant. The token is
//! read here and nowhere logged.

use std::convert::Infallible;
use std::sync::Arc;

use warp::Filter;
use warp::http::{HeaderValue, Method, StatusCode, header};

use super::Reply;
use super::reply::error;
use crate::auth::{Auth, AuthError, Caller, Denied};

/// A request's caller, or why its token was not accepted.
pub(super) type Authz = Result<Caller, AuthError>;

/// The caller of every request that reaches the filter.
pub(super) fn caller(
    auth: Arc<Auth>,
) -> impl Filter<Extract = (Authz,), Error = Infallible> + Clone {
    let query = warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    warp::method()
        .and(
            warp::header::optional::<String>("authorization")
                // A header that is not text is no token: it answers 401 like any bad one.
                .or(warp::any().map(|| Some(String::from("unreadable"))))
                .unify(),
        )
        .and(query)
        .map(
            move |method: Method, authorization: Option<String>, query: Option<String>| {
                let token = match authorization.as_deref() {
                    Some(value) => Some(bearer(value)?),
                    None if method == Method::GET => query.as_deref().and_then(access_token),
                    None => None,
                };
                auth.caller(token)
            },
        )
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(value: &str) -> Result<&str, AuthError> {
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::Invalid(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// The `access_token` of a query string (tokens are base64url and dots: no escaping).
fn access_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "access_token")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `401` for a missing or unusable token, saying how to authenticate (RFC 6750 §3).
pub(super) fn unauthorized(e: &AuthError) -> Reply {
    let mut reply = error(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string());
    let challenge = match e {
        AuthError::Missing => r#"Bearer realm="tessera""#.to_owned(),
        // The description is ours and plain ASCII; quotes are kept out of it.
        other => format!(
            r#"Bearer realm="tessera", error="invalid_token", error_description="{}""#,
            other.to_string().replace('"', "'")
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        reply.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    reply
}

/// `403`: the token is good but does not allow this.
pub(super) fn forbidden(d: &Denied) -> Reply {
    error(StatusCode::FORBIDDEN, "forbidden", &d.0)
}

/// The caller, if `check` allows it; else the answer to send.
// The error is the finished response, built once per refused request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub(super) fn allow(
    authz: Authz,
    check: impl FnOnce(&Caller) -> Result<(), Denied>,
) -> Result<Caller, Reply> {
    let caller = authz.map_err(|e| unauthorized(&e))?;
    check(&caller).map_err(|d| forbidden(&d))?;
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_a_bearer_header_or_the_query() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(bearer("bearer  abc"), Ok("abc"));
        assert!(bearer("Basic dXNlcjpwYXNz").is_err());
        assert!(bearer("Bearer ").is_err());
        assert_eq!(access_token("room=a&access_token=x.y.z"), Some("x.y.z"));
        assert_eq!(access_token("access_token="), None);
        assert_eq!(access_token("token=x"), None);
    }
}
