//! The API keys tokens are signed with, from flags/environment (one pair) and the TOML file
//! (`[[api_keys]]`, several), shared by `serve` and `token`.

use std::path::Path;

use super::{ConfigError, read_file};
use crate::auth::{ApiKey, MIN_SECRET_LEN};

/// The keys from a `--api-key`/`--api-secret` pair and a file's list, checked: a key needs its
/// secret, secrets are long enough, keys are not repeated.
pub fn api_keys(
    key: Option<String>,
    secret: Option<String>,
    from_file: Vec<ApiKey>,
) -> Result<Vec<ApiKey>, ConfigError> {
    let mut keys = from_file;
    match (key, secret) {
        (Some(key), Some(secret)) => {
            keys.retain(|k| k.key != key);
            keys.insert(0, ApiKey { key, secret });
        }
        (None, None) => {}
        _ => {
            return Err(ConfigError::Invalid(
                "--api-key and --api-secret go together".into(),
            ));
        }
    }
    for (i, k) in keys.iter().enumerate() {
        if k.key.is_empty() || k.key.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid(format!(
                "API key {:?} must be a non-empty word",
                k.key
            )));
        }
        if k.secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "the secret of API key {:?} is {} characters; at least {MIN_SECRET_LEN} are needed",
                k.key,
                k.secret.len()
            )));
        }
        if keys[..i].iter().any(|other| other.key == k.key) {
            return Err(ConfigError::Invalid(format!(
                "API key {:?} is listed twice",
                k.key
            )));
        }
    }
    Ok(keys)
}

/// The keys `tessera token` signs with: the same sources as `serve`.
pub fn read_keys(
    config: Option<&Path>,
    key: Option<String>,
    secret: Option<String>,
) -> Result<Vec<ApiKey>, ConfigError> {
    let from_file = match config {
        Some(path) => read_file(path)?.api_keys.unwrap_or_default(),
        None => Vec::new(),
    };
    // `--api-key` alone picks one of the file's keys.
    match (key, secret) {
        (Some(key), None) => {
            let keys = api_keys(None, None, from_file)?;
            let chosen: Vec<ApiKey> = keys.into_iter().filter(|k| k.key == key).collect();
            if chosen.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "no secret for API key {key:?} (give --api-secret or list it in the file)"
                )));
            }
            Ok(chosen)
        }
        (key, secret) => api_keys(key, secret, from_file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_are_checked() {
        let pair = api_keys(Some("k".into()), Some(LONG.into()), vec![]).unwrap();
        assert_eq!(pair.len(), 1);
        assert!(api_keys(Some("k".into()), None, vec![]).is_err());
        assert!(api_keys(Some("k".into()), Some("short".into()), vec![]).is_err());
        let twice = vec![
            ApiKey {
                key: "a".into(),
                secret: LONG.into(),
            },
            ApiKey {
                key: "a".into(),
                secret: LONG.into(),
            },
        ];
        assert!(api_keys(None, None, twice).is_err());
        assert!(api_keys(None, None, vec![]).unwrap().is_empty());
    }
}
