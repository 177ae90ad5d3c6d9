//! Links that carry their own permission: a recording's download URL is signed for an hour
//! (`?exp=<unix time>&sig=<HMAC-SHA256 of the path and expiry>`), so a player or `curl` needs
//! no header. The key comes from the first API secret (links survive a restart) or, on an
//! open server, is random per process.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks links.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    /// A signer whose key is derived from `secret`, or random without one.
    pub fn new(secret: Option<&str>) -> UrlSigner {
        let key = match secret {
            // A key of its own, not the token secret itself: a link's signature can never be
            // taken for a token's.
            Some(secret) => Sha256::new()
                .chain_update(b"tessera signed link\0")
                .chain_update(secret.as_bytes())
                .finalize()
                .into(),
            None => rand::random(),
        };
        UrlSigner { key }
    }

    fn mac(&self, path: &str, exp: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// The query string (`exp=...&sig=...`) that lets `path` be fetched until `exp`.
    pub fn query(&self, path: &str, exp: u64) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.mac(path, exp).finalize().into_bytes());
        format!("exp={exp}&sig={sig}")
    }

    /// Whether `sig` signs `path` until `exp`, and `exp` has not passed at `now`.
    pub fn verify(&self, path: &str, exp: u64, sig: &str, now: u64) -> bool {
        if now > exp {
            return false;
        }
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        // Constant time: a forger learns nothing from how long a wrong guess took.
        self.mac(path, exp).verify_slice(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_link_works_for_its_path_until_it_expires() {
        let signer = UrlSigner::new(Some("a secret of at least thirty-two bytes"));
        let query = signer.query("/rooms/a/recordings/1/file", 1000);
        let sig = query.split("sig=").nth(1).unwrap();
        assert!(signer.verify("/rooms/a/recordings/1/file", 1000, sig, 999));
        assert!(!signer.verify("/rooms/a/recordings/1/file", 1000, sig, 1001));
        assert!(!signer.verify("/rooms/a/recordings/2/file", 1000, sig, 999));
        assert!(!signer.verify("/rooms/a/recordings/1/file", 2000, sig, 999));
        assert!(!signer.verify("/rooms/a/recordings/1/file", 1000, "AAAA", 999));
        let other = UrlSigner::new(Some("another secret of thirty-two bytes."));
        assert!(!other.verify("/rooms/a/recordings/1/file", 1000, sig, 999));
    }
}
