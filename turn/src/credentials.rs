//! Time-limited TURN credentials.
//!
//! LiveKit derives a participant's TURN password from the API secret, so that a TURN server
//! holding the keys needs no per-participant state: the username names the API key and the
//! participant, and the password is a hash of the secret and the participant. This server
//! keeps that shape and adds an expiry to the username, so that a credential stops working
//! on its own: `USERNAME = "<expiry unix seconds>:<api key>:<participant sid>"`,
//! `PASSWORD = base64(HMAC-SHA256(api secret, USERNAME))`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long credentials handed to a participant stay valid.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a username has no valid password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Not `expiry:key:participant` (the client's fault).
    #[error("malformed TURN username")]
    Malformed,
    /// The expiry has passed (the client holds old credentials).
    #[error("TURN credentials expired")]
    Expired,
    /// The API key is not one of this server's (the client's fault).
    #[error("unknown API key in TURN username")]
    UnknownKey,
}

/// The username of credentials valid until `expiry` (unix seconds).
pub fn username(expiry: u64, api_key: &str, participant: &str) -> String {
    format!("{expiry}:{api_key}:{participant}")
}

/// The password of `username` under `secret`.
pub fn password(secret: &str, username: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length.
        return String::new();
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The API keys the server knows, to check usernames against.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: BTreeMap<String, String>,
}

impl Credentials {
    /// Credentials checked against these `key → secret` pairs.
    pub fn new(keys: BTreeMap<String, String>) -> Self {
        Self { keys }
    }

    /// A username and password for `participant`, valid from `now_unix` for `ttl`, signed
    /// with the first key.
    pub fn issue(
        &self,
        participant: &str,
        now_unix: u64,
        ttl: Duration,
    ) -> Option<(String, String)> {
        let (key, secret) = self.keys.iter().next()?;
        let user = username(now_unix + ttl.as_secs(), key, participant);
        let pass = password(secret, &user);
        Some((user, pass))
    }

    /// The password `username` must have been used with, if it is well formed, names a
    /// known key and has not expired at `now_unix`.
    pub fn password_for(&self, username: &str, now_unix: u64) -> Result<String, CredentialError> {
        let mut parts = username.splitn(3, ':');
        let expiry: u64 = parts
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or(CredentialError::Malformed)?;
        let key = parts.next().ok_or(CredentialError::Malformed)?;
        if parts.next().is_none_or(str::is_empty) {
            return Err(CredentialError::Malformed);
        }
        if expiry < now_unix {
            return Err(CredentialError::Expired);
        }
        let secret = self.keys.get(key).ok_or(CredentialError::UnknownKey)?;
        Ok(password(secret, username))
    }
}
