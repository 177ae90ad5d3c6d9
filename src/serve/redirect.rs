//! Plain HTTP that sends every request to HTTPS (`--http-redirect-port`): a `308 Permanent
//! Redirect` to the same host and path on the HTTPS port, so a bookmark or a typed address
//! without `https://` still lands on the page. 308 keeps the method, so a WHIP client that
//! POSTs to the plain port is sent on with its offer.

use std::convert::Infallible;
use std::future::Future;

use tokio::net::TcpListener;
use warp::Filter;
use warp::http::{Response, StatusCode, header};

/// Serves redirects on `listener` to HTTPS on `https_port` until `shutdown` resolves.
pub async fn serve_redirect(
    listener: TcpListener,
    https_port: u16,
    shutdown: impl Future<Output = ()>,
) {
    let routes = warp::header::optional::<String>("host")
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            move |host: Option<String>, path: warp::path::FullPath, query: String| {
                redirect(host.as_deref(), path.as_str(), &query, https_port)
            },
        )
        // A header that is not text is the only way to fail above.
        .recover(|_| async {
            Ok::<_, Infallible>(crate::http::error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request's headers could not be read",
            ))
        })
        .unify();
    super::serve(listener, None, routes, shutdown).await;
}

/// The HTTPS address of a request that came to the plain port.
fn location(host: &str, path: &str, query: &str, https_port: u16) -> String {
    // The Host header may carry the plain port (or an IPv6 literal in brackets): keep the
    // name, replace the port.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("https://{name}{port}{path}{query}")
}

fn redirect(host: Option<&str>, path: &str, query: &str, https_port: u16) -> warp::reply::Response {
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return crate::http::error_reply(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a Host header is needed to redirect to HTTPS",
        );
    };
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(header::LOCATION, location(host, path, query, https_port))
        .body("".into())
        .expect("a redirect with a valid header is valid")
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn keeps_name_path_and_query_and_swaps_the_port() {
        assert_eq!(
            location("meet.example.org:8080", "/rooms/a/whip", "name=Ann", 8443),
            "https://meet.example.org:8443/rooms/a/whip?name=Ann"
        );
        assert_eq!(
            location("meet.example.org", "/", "", 443),
            "https://meet.example.org/"
        );
        assert_eq!(location("[::1]:80", "/x", "", 8443), "https://[::1]:8443/x");
    }
}
