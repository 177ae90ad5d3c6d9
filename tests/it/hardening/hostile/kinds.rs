//! What the hostile client sends: raw HTTP/1.1 requests of every kind a stranger might try,
//! built from a real offer and real (and forged) tokens.

use anyhow::Result;

use super::ROOM;
use crate::auth::{SECRET, mint};

/// How a request's bytes go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pace {
    /// All at once.
    All,
    /// All at once, then the write half closed (a body shorter than its Content-Length).
    Truncated,
    /// Headers, then a byte of body a second, never finishing.
    Slow,
}

/// One hostile request.
#[derive(Clone)]
pub(super) struct Hostile {
    pub(super) kind: &'static str,
    pub(super) bytes: Vec<u8>,
    pub(super) pace: Pace,
    /// It is HTTP that hyper parses, so the answer comes from a route: a JSON error.
    pub(super) json: bool,
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: tessera\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// An offer of `n` minimal audio m-lines, each its own (no BUNDLE): 21 KB for 1,000.
fn many_m_lines(base: &str, n: usize) -> String {
    let session: String = base.split("\r\nm=").next().unwrap_or(base).to_owned();
    let mut sdp = session + "\r\n";
    for i in 0..n {
        sdp.push_str(&format!("m=audio 9 RTP/AVP 0\r\na=mid:{i}\r\n"));
    }
    sdp
}

/// `base` with `lines` inserted after its first m-line.
fn with_lines(base: &str, lines: &str) -> String {
    match base.find("\r\nm=") {
        Some(i) => {
            let after = base[i + 2..]
                .find("\r\n")
                .map_or(base.len(), |j| i + 2 + j + 2);
            format!("{}{lines}{}", &base[..after], &base[after..])
        }
        None => format!("{base}{lines}"),
    }
}

pub(super) fn candidates(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "a=candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host\r\n",
                1000 + i % 60000
            )
        })
        .collect()
}

/// The stateless kinds: each request stands alone.
pub(super) fn stateless(offer: &str, tokens: &Tokens) -> Vec<Hostile> {
    // A participant's real offer: everything wrong with what is sent below is what was done
    // to it.
    let whip = format!("/rooms/{ROOM}/whip");
    let auth = bearer(&tokens.join);
    let sdp = [
        ("Content-Type", "application/sdp"),
        ("Authorization", auth.as_str()),
    ];
    let mut kinds = vec![];
    let mut add = |kind, bytes, pace, json| {
        kinds.push(Hostile {
            kind,
            bytes,
            pace,
            json,
        })
    };
    let post = |body: &[u8]| request("POST", &whip, &sdp, body);
    add(
        "1,000 m-lines",
        post(many_m_lines(offer, 1000).as_bytes()),
        Pace::All,
        true,
    );
    add(
        "10,000 candidates",
        post(with_lines(offer, &candidates(10_000)).as_bytes()),
        Pace::All,
        true,
    );
    add(
        "1,000 candidates",
        post(with_lines(offer, &candidates(1000)).as_bytes()),
        Pace::All,
        true,
    );
    let long = format!("a=x-junk:{}\r\n", "A".repeat(100 * 1024));
    add(
        "100 KB attribute",
        post(with_lines(offer, &long).as_bytes()),
        Pace::All,
        true,
    );
    let long = format!("a=x-junk:{}\r\n", "A".repeat(30 * 1024));
    add(
        "30 KB attribute",
        post(with_lines(offer, &long).as_bytes()),
        Pace::All,
        true,
    );
    let mut bad_utf8 = offer.as_bytes().to_vec();
    bad_utf8.extend_from_slice(b"a=x:\xff\xfe\xc3\x28\r\n");
    add("invalid UTF-8", post(&bad_utf8), Pace::All, true);
    add(
        "NULs",
        post(offer.replace("a=mid", "a=\0mid\0").as_bytes()),
        Pace::All,
        true,
    );
    add("not SDP", post(b"hello, world"), Pace::All, true);
    add("empty offer", post(b""), Pace::All, true);
    add(
        "answer, not offer",
        post(
            offer
                .replace("a=setup:actpass", "a=setup:active")
                .replace("a=fingerprint", "a=x")
                .as_bytes(),
        ),
        Pace::All,
        true,
    );
    add(
        "wrong content type",
        request(
            "POST",
            &whip,
            &[("Content-Type", "text/plain"), ("Authorization", &auth)],
            offer.as_bytes(),
        ),
        Pace::All,
        true,
    );
    add(
        "conflicting content types",
        request(
            "POST",
            &whip,
            &[
                ("Content-Type", "text/plain"),
                ("Content-Type", "application/sdp"),
                ("Authorization", &auth),
            ],
            offer.as_bytes(),
        ),
        Pace::All,
        true,
    );
    add(
        "duplicate tokens",
        request(
            "POST",
            &whip,
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &bearer(&tokens.other_room)),
                ("Authorization", &auth),
            ],
            offer.as_bytes(),
        ),
        Pace::All,
        true,
    );
    let mut conflicting_length = request("POST", &whip, &sdp, offer.as_bytes());
    let at = conflicting_length
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(0);
    conflicting_length.splice(at..at, b"\r\nContent-Length: 3".iter().copied());
    add(
        "conflicting Content-Length",
        conflicting_length,
        Pace::All,
        false,
    );
    add(
        "truncated body",
        post(offer.as_bytes())
            .split_at(post(offer.as_bytes()).len() - 100)
            .0
            .to_vec(),
        Pace::Truncated,
        true,
    );
    add("slow body", post(offer.as_bytes()), Pace::Slow, true);
    let huge = format!("X-Junk: {}", "h".repeat(100 * 1024));
    let mut huge_header = request("GET", "/rooms", &[], b"");
    huge_header.splice(17..17, format!("{huge}\r\n").bytes());
    add("100 KB header", huge_header, Pace::All, false);
    add(
        "garbage request line",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n".to_vec(),
        Pace::All,
        false,
    );
    add(
        "NUL in a header",
        request("GET", "/rooms", &[("X-Junk", "a\0b")], b""),
        Pace::All,
        false,
    );
    add(
        "16 KB path",
        request(
            "GET",
            &format!("/rooms/{}", "r".repeat(16 * 1024)),
            &[],
            b"",
        ),
        Pace::All,
        true,
    );
    add(
        "bad percent-encoding",
        request(
            "GET",
            "/rooms/%ff%fe%00/layout",
            &[("Authorization", &auth)],
            b"",
        ),
        Pace::All,
        true,
    );
    add(
        "token alg none",
        request(
            "POST",
            &whip,
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &bearer(&tokens.alg_none)),
            ],
            offer.as_bytes(),
        ),
        Pace::All,
        true,
    );
    add(
        "token of a wrong key",
        request(
            "POST",
            &whip,
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &bearer(&tokens.wrong_key)),
            ],
            offer.as_bytes(),
        ),
        Pace::All,
        true,
    );
    add(
        "expired token",
        request(
            "POST",
            &whip,
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &bearer(&tokens.expired)),
            ],
            offer.as_bytes(),
        ),
        Pace::All,
        true,
    );
    add(
        "token for another room",
        request(
            "POST",
            &whip,
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &bearer(&tokens.other_room)),
            ],
            offer.as_bytes(),
        ),
        Pace::All,
        true,
    );
    add(
        "garbage token",
        request("GET", "/rooms", &[("Authorization", "Bearer a.b.c")], b""),
        Pace::All,
        true,
    );
    add(
        "layout garbage",
        request(
            "PUT",
            &format!("/rooms/{ROOM}/layout"),
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &bearer(&tokens.admin)),
            ],
            b"{\"regions\": [{\"x\": 1e999}]",
        ),
        Pace::All,
        true,
    );
    add(
        "unknown session",
        request(
            "DELETE",
            &format!("/rooms/{ROOM}/sessions/0123456789abcdef0123456789abcdef"),
            &[("Authorization", &auth)],
            b"",
        ),
        Pace::All,
        true,
    );
    // Every method on every route, without a token (the open routes, pages and CORS
    // preflights answer 2xx by design and are left out).
    let paths = [
        "/rooms".to_owned(),
        format!("/rooms/{ROOM}"),
        format!("/rooms/{ROOM}/whip"),
        format!("/rooms/{ROOM}/whep"),
        format!("/rooms/{ROOM}/events"),
        format!("/rooms/{ROOM}/layout"),
        format!("/rooms/{ROOM}/recordings"),
        format!("/rooms/{ROOM}/recordings/1"),
        format!("/rooms/{ROOM}/recordings/1/file"),
        format!("/rooms/{ROOM}/sessions/abc"),
        format!("/rooms/{ROOM}/sessions/abc/mute"),
        format!("/rooms/{ROOM}/sessions/abc/pin"),
        "/ice-servers".to_owned(),
        "/debug/counts".to_owned(),
        "/metrics".to_owned(),
    ];
    for path in &paths {
        for method in [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "TRACE", "FOO",
        ] {
            let bytes = request(method, path, &[], b"");
            kinds.push(Hostile {
                kind: "every method on every route",
                bytes,
                pace: Pace::All,
                json: method != "HEAD",
            });
        }
    }
    kinds
}

/// Tokens of every kind a stranger might present.
pub(super) struct Tokens {
    pub(super) join: String,
    pub(super) admin: String,
    pub(super) other_room: String,
    pub(super) expired: String,
    pub(super) wrong_key: String,
    pub(super) alg_none: String,
}

pub(super) fn tokens() -> Result<Tokens> {
    use base64::Engine;
    let now = tessera::auth::now();
    let claims = |room: &str, exp: u64| tessera::auth::Claims {
        iss: "it-key".into(),
        sub: "stranger".into(),
        name: None,
        exp,
        nbf: None,
        room: room.into(),
        grants: vec![tessera::auth::Grant::Join],
    };
    let key = tessera::auth::ApiKey {
        key: "it-key".into(),
        secret: SECRET.into(),
    };
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload = serde_json::to_value(claims(ROOM, now + 3600))?;
    Ok(Tokens {
        join: mint(&["--room", ROOM, "--identity", "stranger", "--grant", "join"])?,
        admin: mint(&["--admin"])?,
        other_room: mint(&[
            "--room",
            "elsewhere",
            "--identity",
            "stranger",
            "--grant",
            "join",
        ])?,
        expired: tessera::auth::mint(&key, &claims(ROOM, now - 3600))?,
        wrong_key: tessera::auth::mint(
            &tessera::auth::ApiKey {
                key: "it-key".into(),
                secret: "a-guess-at-the-secret-of-32-characters".into(),
            },
            &claims(ROOM, now + 3600),
        )?,
        alg_none: format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&payload)
        ),
    })
}
