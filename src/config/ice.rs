//! The STUN and TURN servers handed to clients: each URL checked, and exactly one way to make
//! relay credentials when there is a relay (`crate::ice_servers` makes them).

use std::time::Duration;

use super::ConfigError;
use crate::ice_servers::{DEFAULT_TURN_TTL, IceServers, TurnCredentials, UrlKind, check_url};

/// The ICE server settings as given (flags, environment or file).
pub(super) struct IceArgs {
    pub(super) stun_urls: Vec<String>,
    pub(super) turn_urls: Vec<String>,
    pub(super) turn_secret: Option<String>,
    pub(super) turn_ttl: Option<String>,
    pub(super) turn_username: Option<String>,
    pub(super) turn_password: Option<String>,
}

impl IceArgs {
    pub(super) fn into_config(self) -> Result<IceServers, ConfigError> {
        let invalid = |s: String| ConfigError::Invalid(s);
        for (flag, urls, kind) in [
            ("--stun-url", &self.stun_urls, UrlKind::Stun),
            ("--turn-url", &self.turn_urls, UrlKind::Turn),
        ] {
            for url in urls {
                if check_url(url).map_err(&invalid)? != kind {
                    return Err(invalid(format!(
                        "{flag} {url:?} is the wrong kind of server"
                    )));
                }
            }
        }
        let ttl = match &self.turn_ttl {
            None => DEFAULT_TURN_TTL,
            Some(text) => {
                let ttl = humantime::parse_duration(text)
                    .map_err(|e| invalid(format!("--turn-ttl {text:?}: {e}")))?;
                if ttl < Duration::from_secs(1) {
                    return Err(invalid("--turn-ttl must be at least 1s".into()));
                }
                ttl
            }
        };
        let credentials = match (self.turn_secret, self.turn_username, self.turn_password) {
            (None, None, None) => None,
            (Some(secret), None, None) if !secret.is_empty() => {
                Some(TurnCredentials::Secret { secret, ttl })
            }
            (None, Some(username), Some(password)) if !username.is_empty() => {
                Some(TurnCredentials::Static { username, password })
            }
            (Some(_), _, _) => {
                return Err(invalid(
                    "--turn-secret (minted credentials) and --turn-username/--turn-password \
                     (one static account) exclude each other, and the secret must not be empty"
                        .into(),
                ));
            }
            _ => {
                return Err(invalid(
                    "--turn-username and --turn-password go together".into(),
                ));
            }
        };
        if credentials.is_some() && self.turn_urls.is_empty() {
            return Err(invalid(
                "TURN credentials are configured but no --turn-url to use them with".into(),
            ));
        }
        if credentials.is_none() && !self.turn_urls.is_empty() {
            return Err(invalid(
                "--turn-url needs credentials: --turn-secret (coturn's static-auth-secret) or \
                 --turn-username and --turn-password"
                    .into(),
            ));
        }
        Ok(IceServers {
            stun: self.stun_urls,
            turn: self.turn_urls,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> IceArgs {
        IceArgs {
            stun_urls: vec![],
            turn_urls: vec!["turn:t.example.org:3478?transport=udp".into()],
            turn_secret: Some("s3cret".into()),
            turn_ttl: None,
            turn_username: None,
            turn_password: None,
        }
    }

    #[test]
    fn a_secret_mints_for_a_day_by_default() {
        let c = args().into_config().unwrap();
        assert_eq!(
            c.credentials,
            Some(TurnCredentials::Secret {
                secret: "s3cret".into(),
                ttl: DEFAULT_TURN_TTL
            })
        );
        let short = IceArgs {
            turn_ttl: Some("90s".into()),
            ..args()
        };
        assert!(matches!(
            short.into_config().unwrap().credentials,
            Some(TurnCredentials::Secret { ttl, .. }) if ttl == Duration::from_secs(90)
        ));
    }

    #[test]
    fn a_relay_needs_exactly_one_kind_of_credentials() {
        let none = IceArgs {
            turn_secret: None,
            ..args()
        };
        assert!(none.into_config().is_err());
        let both = IceArgs {
            turn_username: Some("u".into()),
            turn_password: Some("p".into()),
            ..args()
        };
        assert!(both.into_config().is_err());
        let half = IceArgs {
            turn_secret: None,
            turn_username: Some("u".into()),
            ..args()
        };
        assert!(half.into_config().is_err());
        let static_account = IceArgs {
            turn_secret: None,
            turn_username: Some("u".into()),
            turn_password: Some("p".into()),
            ..args()
        };
        assert!(static_account.into_config().is_ok());
    }

    #[test]
    fn urls_must_be_of_their_kind() {
        let swapped = IceArgs {
            stun_urls: vec!["turn:t.example.org".into()],
            ..args()
        };
        assert!(swapped.into_config().is_err());
        let bad = IceArgs {
            turn_urls: vec!["https://t.example.org".into()],
            ..args()
        };
        assert!(bad.into_config().is_err());
        let stun_only = IceArgs {
            stun_urls: vec!["stun:s.example.org:3478".into()],
            turn_urls: vec![],
            turn_secret: None,
            ..args()
        };
        assert!(stun_only.into_config().unwrap().turn.is_empty());
    }
}
