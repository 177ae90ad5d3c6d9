//! Access tokens: JWTs signed HS256 with an API secret (`iss` names the key), carrying who the
//! caller is and what it may do in which room ([`claims`]); the decisions those claims lead to
//! ([`policy`], pure); and signed links ([`signed`]). With no key configured the server is
//! open: every caller is [`Caller::Open`].
//!
//! Tokens are read from `Authorization: Bearer` (RFC 6750, RFC 9725 §4.7.1) or, on GET
//! requests only, `?access_token=` (an `EventSource` or a `<video src>` cannot set a header).
//! They are never logged.

pub mod claims;
pub mod policy;
pub mod signed;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

pub use claims::{ANY_ROOM, Claims, Grant};
pub use policy::{Caller, Denied, SessionRight};
pub use signed::UrlSigner;

/// The shortest secret accepted: HS256 wants at least its hash's 32 bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Clock difference tolerated between the minting machine and this one.
const LEEWAY_SECS: u64 = 30;

/// An API key and the secret that signs its tokens.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ApiKey {
    /// Public: tokens name it in `iss`.
    pub key: String,
    /// Private: signs and verifies.
    pub secret: String,
}

impl std::fmt::Debug for ApiKey {
    // The secret never reaches a log, not even a debug one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey {{ key: {:?}, secret: .. }}", self.key)
    }
}

/// Why a token was not accepted (all `401`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, where one is needed.
    #[error("this server needs an access token (Authorization: Bearer <token>)")]
    Missing,
    /// Not a JWT, or not one of ours.
    #[error("the access token is not valid: {0}")]
    Invalid(String),
    /// Past its `exp`.
    #[error("the access token has expired")]
    Expired,
    /// Before its `nbf`.
    #[error("the access token is not valid yet")]
    NotYetValid,
}

/// The configured keys and the link signer.
#[derive(Debug, Clone)]
pub struct Auth {
    keys: Vec<ApiKey>,
    signer: UrlSigner,
}

impl Auth {
    /// Tokens signed by any of `keys`; open when there are none.
    pub fn new(keys: Vec<ApiKey>) -> Auth {
        let signer = UrlSigner::new(keys.first().map(|k| k.secret.as_str()));
        Auth { keys, signer }
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Signs links (recording downloads).
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Who presents `token` (`None`: no token): [`Caller::Open`] on an open server, else the
    /// verified claims.
    pub fn caller(&self, token: Option<&str>) -> Result<Caller, AuthError> {
        if !self.enabled() {
            return Ok(Caller::Open);
        }
        let token = token.ok_or(AuthError::Missing)?;
        self.verify(token).map(Caller::Token)
    }

    /// Verifies `token`'s signature (by the key its `iss` names), expiry and shape.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let issuer = unverified_issuer(token)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.key == issuer)
            .ok_or_else(|| AuthError::Invalid(format!("unknown key {issuer:?}")))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&key.key]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        // Secrets are checked non-empty when keys are read, so this cannot fail.
        let decoding = DecodingKey::from_secret(key.secret.as_bytes())
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let decoded = jsonwebtoken::decode::<Claims>(token, &decoding, &validation);
        match decoded {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::Invalid(e.to_string()),
            }),
        }
    }
}

/// Signs `claims` with `key`: a token.
pub fn mint(key: &ApiKey, claims: &Claims) -> Result<String, AuthError> {
    let encoding = EncodingKey::from_secret(key.secret.as_bytes())
        .map_err(|e| AuthError::Invalid(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &encoding)
        .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// The `iss` of a token, read before verification only to pick the key that verifies it.
fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    let bad = || AuthError::Invalid("not a JSON Web Token".into());
    let payload = token.split('.').nth(1).ok_or_else(bad)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    let claims: Issuer = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Invalid("the token names no key (iss)".into()))?;
    Ok(claims.iss)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ApiKey {
        ApiKey {
            key: name.into(),
            secret: format!("{name}-secret-that-is-long-enough-for-hs256"),
        }
    }

    fn claims(iss: &str, exp: u64) -> Claims {
        Claims {
            iss: iss.into(),
            sub: "ann".into(),
            name: Some("Ann".into()),
            exp,
            nbf: None,
            room: "a".into(),
            grants: vec![Grant::Join],
        }
    }

    #[test]
    fn a_minted_token_verifies_under_its_key_only() {
        let auth = Auth::new(vec![key("k1"), key("k2")]);
        let token = mint(&key("k2"), &claims("k2", now() + 600)).unwrap();
        assert_eq!(auth.verify(&token).unwrap().sub, "ann");
        // Signed with another secret than its key's.
        let forged = mint(&key("k1"), &claims("k2", now() + 600)).unwrap();
        assert!(matches!(auth.verify(&forged), Err(AuthError::Invalid(_))));
        let unknown = mint(&key("k3"), &claims("k3", now() + 600)).unwrap();
        assert!(matches!(auth.verify(&unknown), Err(AuthError::Invalid(m)) if m.contains("k3")));
        assert_eq!(
            auth.verify(&mint(&key("k1"), &claims("k1", now() - 3600)).unwrap()),
            Err(AuthError::Expired)
        );
        assert!(matches!(
            auth.verify("not.a.token"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(auth.verify(""), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn an_open_server_needs_no_token_and_a_closed_one_does() {
        assert_eq!(Auth::new(vec![]).caller(None), Ok(Caller::Open));
        assert_eq!(
            Auth::new(vec![key("k")]).caller(None),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn not_before_is_honoured() {
        let auth = Auth::new(vec![key("k")]);
        let mut later = claims("k", now() + 7200);
        later.nbf = Some(now() + 3600);
        let token = mint(&key("k"), &later).unwrap();
        assert_eq!(auth.verify(&token), Err(AuthError::NotYetValid));
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let k = key("k");
        assert!(!format!("{k:?}").contains(&k.secret));
    }
}
