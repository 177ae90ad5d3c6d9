//! The STUN and TURN servers handed to clients, so that one behind a NAT or a firewall that
//! drops UDP can still reach the server through a relay (coturn, typically).
//!
//! Pure: what a caller is given, as `RTCIceServer` dictionaries (the pages' `GET /ice-servers`)
//! and as RFC 9725 §4.6 `Link` headers (the `201` of WHIP and WHEP). The HTTP edge decides who
//! may have them; the time comes from the caller.
//!
//! Relay credentials are either one static account or, with a shared secret, minted per caller
//! in the "TURN REST API" scheme coturn checks with `use-auth-secret`: the username is
//! `<expiry, unix seconds>:<who>` and the password base64(HMAC-SHA1(secret, username)). coturn
//! refuses them once the expiry passes, so nothing needs revoking.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

/// How long minted relay credentials stay valid by default: a whole day, so that a long
/// meeting's allocation refreshes (every few minutes, with the same credentials) keep working.
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(24 * 3600);

/// How the TURN servers' credentials are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnCredentials {
    /// coturn's `use-auth-secret`: minted per caller, valid for `ttl`.
    Secret {
        /// coturn's `static-auth-secret`.
        secret: String,
        /// How long each minted pair is valid.
        ttl: Duration,
    },
    /// One account for everyone (coturn's `user=`).
    Static {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
}

/// The servers a deployment names, validated by the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServers {
    /// `stun:` URLs (no credentials).
    pub stun: Vec<String>,
    /// `turn:` and `turns:` URLs, all with the same credentials.
    pub turn: Vec<String>,
    /// Required when `turn` is not empty.
    pub credentials: Option<TurnCredentials>,
}

/// One entry of `RTCConfiguration.iceServers`, as a page passes it to `RTCPeerConnection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// The server's URLs.
    pub urls: Vec<String>,
    /// The TURN username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServers {
    /// Whether there is nothing to hand out.
    pub fn is_empty(&self) -> bool {
        self.stun.is_empty() && self.turn.is_empty()
    }

    /// What `who` (an identity, or a session's public id on an open server) is given at `now`:
    /// the STUN servers, then the TURN servers with their credentials.
    pub fn for_caller(&self, who: &str, now: SystemTime) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn.is_empty() {
            let (username, credential) = match &self.credentials {
                Some(TurnCredentials::Secret { secret, ttl }) => {
                    let expiry = now
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .saturating_add(*ttl)
                        .as_secs();
                    // coturn splits the username at its first ':' and reads the expiry before
                    // it; a ':' in `who` would be harmless, but keep the name readable in logs.
                    let username = format!("{expiry}:{}", who.replace(':', "_"));
                    let credential = rest_credential(secret, &username);
                    (Some(username), Some(credential))
                }
                Some(TurnCredentials::Static { username, password }) => {
                    (Some(username.clone()), Some(password.clone()))
                }
                None => (None, None),
            };
            servers.push(IceServer {
                urls: self.turn.clone(),
                username,
                credential,
            });
        }
        servers
    }
}

/// The password coturn expects for `username` under `use-auth-secret`:
/// base64(HMAC-SHA1(secret, username)).
pub fn rest_credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// RFC 9725 §4.6: one `Link` header value per URL of `servers`, with the credentials as
/// RFC 8288 parameters.
pub fn link_headers(servers: &[IceServer]) -> Vec<String> {
    let mut links = Vec::new();
    for server in servers {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(username), Some(credential)) = (&server.username, &server.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(username),
                    quoted(credential)
                ));
            }
            links.push(link);
        }
    }
    links
}

/// The inside of an RFC 9110 quoted-string: `"` and `\` escaped.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Whether `url` is a STUN (`stun:`, `stuns:`) or TURN (`turn:`, `turns:`) URI as RFC 7064 and
/// RFC 7065 write them: a scheme, a host, an optional port and, for TURN, an optional
/// `?transport=udp|tcp`. Returns which kind, or why not.
pub fn check_url(url: &str) -> Result<UrlKind, String> {
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| format!("{url:?} has no scheme (stun:, turn: or turns:)"))?;
    let kind = match scheme {
        "stun" | "stuns" => UrlKind::Stun,
        "turn" | "turns" => UrlKind::Turn,
        other => {
            return Err(format!(
                "{url:?}: the scheme must be stun, stuns, turn or turns, not {other:?}"
            ));
        }
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if authority.is_empty() || authority.starts_with('/') {
        return Err(format!(
            "{url:?}: write the host right after the scheme ({scheme}:host:port, no //)"
        ));
    }
    if let Some(query) = query {
        match (kind, query) {
            (UrlKind::Turn, "transport=udp" | "transport=tcp") => {}
            _ => {
                return Err(format!(
                    "{url:?}: the only query a TURN URL takes is ?transport=udp or ?transport=tcp"
                ));
            }
        }
    }
    Ok(kind)
}

/// What a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlKind {
    /// A STUN server.
    Stun,
    /// A TURN relay.
    Turn,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_servers() -> IceServers {
        IceServers {
            stun: vec!["stun:turn.example.org:3478".into()],
            turn: vec![
                "turn:turn.example.org:3478?transport=udp".into(),
                "turns:turn.example.org:443?transport=tcp".into(),
            ],
            credentials: Some(TurnCredentials::Secret {
                secret: "north".into(),
                ttl: Duration::from_secs(3600),
            }),
        }
    }

    #[test]
    fn rest_credentials_are_what_coturn_computes() {
        // Computed independently, as coturn's documentation does it:
        // `printf %s 1700000000:alice | openssl dgst -sha1 -hmac north -binary | base64`.
        assert_eq!(
            rest_credential("north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
    }

    #[test]
    fn minted_usernames_carry_the_expiry_and_who() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let servers = secret_servers().for_caller("alice", now);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:turn.example.org:3478"]);
        assert_eq!(servers[0].username, None);
        let turn = &servers[1];
        assert_eq!(turn.username.as_deref(), Some("1700003600:alice"));
        assert_eq!(
            turn.credential.as_deref(),
            Some(rest_credential("north", "1700003600:alice").as_str())
        );
        // A ':' in the identity does not move coturn's split.
        let odd = secret_servers().for_caller("a:b", now);
        assert_eq!(odd[1].username.as_deref(), Some("1700003600:a_b"));
    }

    #[test]
    fn link_headers_are_one_per_url_with_the_credentials() {
        let servers = IceServers {
            stun: vec!["stun:s.example.org".into()],
            turn: vec!["turn:t.example.org:3478?transport=udp".into()],
            credentials: Some(TurnCredentials::Static {
                username: "user".into(),
                password: "pa\"ss".into(),
            }),
        }
        .for_caller("x", SystemTime::now());
        assert_eq!(
            link_headers(&servers),
            [
                "<stun:s.example.org>; rel=\"ice-server\"".to_owned(),
                "<turn:t.example.org:3478?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\""
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(check_url("stun:example.org"), Ok(UrlKind::Stun));
        assert_eq!(
            check_url("turn:example.org:3478?transport=tcp"),
            Ok(UrlKind::Turn)
        );
        assert_eq!(check_url("turns:example.org:443"), Ok(UrlKind::Turn));
        assert!(check_url("http://example.org").is_err());
        assert!(check_url("turn://example.org").is_err());
        assert!(check_url("stun:example.org?transport=udp").is_err());
        assert!(check_url("turn:example.org?transport=sctp").is_err());
        assert!(check_url("example.org").is_err());
    }

    #[test]
    fn nothing_configured_gives_nothing() {
        assert!(IceServers::default().is_empty());
        assert!(
            IceServers::default()
                .for_caller("x", SystemTime::now())
                .is_empty()
        );
    }
}
