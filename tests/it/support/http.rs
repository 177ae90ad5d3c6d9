//! The HTTP side of the tests: one way to build a client, and raw helpers that return what the
//! server said (status, `Location`, body) without judging it, so bad-input tests can assert on
//! 4xx answers and the happy paths can turn them into errors.
//!
//! Every request has [`HTTP_TIMEOUT`] as its deadline, and proxies are ignored: the server is
//! always on 127.0.0.1, and a proxy from the environment would only get in the way.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Client, Url};
use serde_json::Value;

/// Deadline for any one HTTP request to the server under test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Certificates (DER) the tests' HTTPS servers use, trusted by every client made here: a test
/// that starts a server with its own certificate adds it once, and every helper (and the test
/// clients' WHIP/WHEP) then speaks HTTPS to it. Only test certificates ever go in.
static TRUSTED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Trusts `der` (a certificate) in every client made from now on.
pub fn trust(der: &[u8]) {
    TRUSTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(der.to_vec());
}

/// A client for talking to the server under test (over HTTPS too, for trusted certificates).
pub fn client() -> Result<Client> {
    let mut builder = Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .tls_info(true);
    for der in TRUSTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        let cert = reqwest::Certificate::from_der(der).context("a trusted test certificate")?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().context("building the HTTP client")
}

/// What the server answered, unjudged.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The `Location` header, as sent (usually a path).
    pub location: Option<String>,
    /// The `ETag` header (a WHIP/WHEP session's ICE session tag).
    pub etag: Option<String>,
    pub content_type: Option<String>,
    /// The `WWW-Authenticate` header (a `401`'s challenge).
    pub www_authenticate: Option<String>,
    /// The `Retry-After` header (a `429`'s or `503`'s).
    pub retry_after: Option<String>,
    /// Every `Link` header, in order (RFC 9725's ICE servers on a `201`).
    pub links: Vec<String>,
    pub body: String,
}

impl RawResponse {
    async fn read(response: reqwest::Response) -> Result<RawResponse> {
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(reqwest::header::LOCATION);
        let etag = header(reqwest::header::ETAG);
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let www_authenticate = header(reqwest::header::WWW_AUTHENTICATE);
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let links = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let status = response.status().as_u16();
        let body = response.text().await.context("reading the response body")?;
        Ok(RawResponse {
            status,
            location,
            etag,
            content_type,
            www_authenticate,
            retry_after,
            links,
            body,
        })
    }

    /// The body parsed as JSON (e.g. the `{"error", "message"}` of a 4xx).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("HTTP {} body is not JSON: {:?}", self.status, self.body))
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `method url`, with an access token (`Authorization: Bearer`) and a body of a content type
/// if given.
pub async fn send(
    method: reqwest::Method,
    url: &Url,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> Result<RawResponse> {
    let mut request = client()?.request(method.clone(), url.clone());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    RawResponse::read(response).await
}

/// `POST url` with the given content type and body.
pub async fn post(url: &Url, content_type: &str, body: impl Into<String>) -> Result<RawResponse> {
    send(
        reqwest::Method::POST,
        url,
        None,
        Some((content_type, body.into())),
    )
    .await
}

/// `PATCH url` with a body of `content_type`, and `If-Match` if given.
pub async fn patch(
    url: &Url,
    content_type: &str,
    if_match: Option<&str>,
    body: impl Into<String>,
) -> Result<RawResponse> {
    let mut request = client()?
        .patch(url.clone())
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body.into());
    if let Some(tag) = if_match {
        request = request.header(reqwest::header::IF_MATCH, tag);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("PATCH {url}"))?;
    RawResponse::read(response).await
}

/// `PUT url` with a JSON body.
pub async fn put_json(url: &Url, body: &Value) -> Result<RawResponse> {
    let response = client()?
        .put(url.clone())
        .json(body)
        .send()
        .await
        .with_context(|| format!("PUT {url}"))?;
    RawResponse::read(response).await
}

/// `DELETE url`.
pub async fn delete(url: &Url) -> Result<RawResponse> {
    let response = client()?
        .delete(url.clone())
        .send()
        .await
        .with_context(|| format!("DELETE {url}"))?;
    RawResponse::read(response).await
}

/// `GET url`, unjudged.
pub async fn get(url: &Url) -> Result<RawResponse> {
    let response = client()?
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    RawResponse::read(response).await
}

/// `GET url` expecting a 2xx JSON body.
pub async fn get_json(url: &Url) -> Result<Value> {
    let response = get(url).await?;
    anyhow::ensure!(
        response.is_success(),
        "GET {url}: HTTP {}: {}",
        response.status,
        response.body
    );
    response.json()
}

/// `base` joined with path segments, each percent-encoded as one segment
/// (`endpoint(base, &["rooms", "a b", "whip"])` is `{base}/rooms/a%20b/whip`).
pub fn endpoint(base: &str, segments: &[&str]) -> Result<Url> {
    let mut url = Url::parse(base).with_context(|| format!("parsing base URL {base:?}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("base URL {base:?} cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The URL of the room's state document, `GET {base}/rooms/{room}`.
pub fn room_url(base: &str, room: &str) -> Result<Url> {
    endpoint(base, &["rooms", room])
}
