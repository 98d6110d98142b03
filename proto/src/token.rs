//! Access tokens: HS256 JWTs with LiveKit's claims.
//!
//! Verification follows LiveKit: read `iss` (the API key) without checking anything, look up
//! its secret, then check the HS256 signature, `exp` (required) and `nbf` with 60 s of
//! leeway. Claims are read leniently because every SDK writes them differently: Rust writes
//! every field (with `null`s), Python and Node omit empty ones. A grant left out keeps
//! LiveKit's default: `canPublish` and `canSubscribe` true, `canPublishData` following
//! `canPublish`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

/// Leeway for `exp` and `nbf`, as LiveKit's verifier allows.
pub const LEEWAY_SECS: u64 = 60;
/// Default lifetime of a token made by [`AccessToken`], as the SDKs use.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6 * 3600);

/// Why a token was refused. The text is what a client sees after `401`: as LiveKit's, it
/// names no parser internals and does not tell an unknown API key from a wrong secret, so a
/// client learns nothing about which keys exist. The fields carry the detail for the server's
/// debug log (`{:?}`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("invalid authorization token")]
    Malformed(String),
    #[error("invalid authorization token")]
    MissingIssuer,
    #[error("invalid authorization token")]
    UnknownKey(String),
    #[error("invalid authorization token")]
    BadSignature,
    #[error("invalid authorization token")]
    BadAlgorithm(String),
    #[error("invalid authorization token: token is expired")]
    Expired,
    #[error("invalid authorization token: token is not valid yet")]
    NotYetValid,
    #[error("invalid authorization token: token has no expiry")]
    MissingExpiry,
    #[error("invalid authorization token")]
    Invalid(String),
    #[error("could not sign token: {0}")]
    Signing(String),
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The `video` grant, with LiveKit's JSON names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VideoGrant {
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_create: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_list: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_record: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_admin: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub room_join: bool,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub room: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub can_publish_sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_update_own_metadata: Option<bool>,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub ingress_admin: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub hidden: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub recorder: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub agent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_subscribe_metrics: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_manage_agent_session: Option<bool>,
}

impl VideoGrant {
    /// `canPublish`, true when absent.
    pub fn can_publish(&self) -> bool {
        self.can_publish.unwrap_or(true)
    }
    /// `canSubscribe`, true when absent.
    pub fn can_subscribe(&self) -> bool {
        self.can_subscribe.unwrap_or(true)
    }
    /// `canPublishData`, following `canPublish` when absent.
    pub fn can_publish_data(&self) -> bool {
        self.can_publish_data.unwrap_or_else(|| self.can_publish())
    }
    /// `canUpdateOwnMetadata`, false when absent.
    pub fn can_update_own_metadata(&self) -> bool {
        self.can_update_own_metadata.unwrap_or(false)
    }
    /// `canSubscribeMetrics`, false when absent.
    pub fn can_subscribe_metrics(&self) -> bool {
        self.can_subscribe_metrics.unwrap_or(false)
    }

    /// Whether this grant may administer `room` (roomAdmin for that very room).
    pub fn admins(&self, room: &str) -> bool {
        self.room_admin && !room.is_empty() && self.room == room
    }
}

/// The `sip` grant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SipGrant {
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub admin: bool,
    #[serde(deserialize_with = "null_default", skip_serializing_if = "is_false")]
    pub call: bool,
}

/// Every claim of a LiveKit access token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Claims {
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub iss: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub jti: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub metadata: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub attributes: BTreeMap<String, String>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub kind_details: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip: Option<SipGrant>,
    /// RoomConfiguration in protobuf-JSON; see [`Claims::room_configuration`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_config: Option<serde_json::Value>,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub room_preset: String,
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub sha256: String,
    /// Claims we do not interpret (agent, inference, observability, ...), kept as they came.
    #[serde(flatten)]
    pub other: HashMap<String, serde_json::Value>,
}

impl Claims {
    /// The participant identity: `sub`, or `jti` for legacy tokens that put it there.
    pub fn identity(&self) -> &str {
        if self.sub.is_empty() {
            &self.jti
        } else {
            &self.sub
        }
    }

    /// The video grant, or an empty one (which still carries the publish/subscribe defaults).
    pub fn video(&self) -> VideoGrant {
        self.video.clone().unwrap_or_default()
    }

    /// The `roomConfig` claim as a RoomConfiguration, if present and well formed.
    pub fn room_configuration(&self) -> Result<Option<crate::pb::RoomConfiguration>, TokenError> {
        match &self.room_config {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| TokenError::Invalid(format!("bad roomConfig claim: {e}"))),
        }
    }
}

/// Where secrets for API keys come from.
pub trait KeyProvider {
    /// The secret of `key`, if the key is known.
    fn secret(&self, key: &str) -> Option<&str>;
}

impl KeyProvider for HashMap<String, String> {
    fn secret(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl KeyProvider for BTreeMap<String, String> {
    fn secret(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Reads the claims of `token` without checking anything: used only to find the API key.
fn unverified_claims(token: &str) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| TokenError::Malformed(format!("payload is not base64url: {e}")))?;
    serde_json::from_slice(&raw)
        .map_err(|e| TokenError::Malformed(format!("payload is not a claims object: {e}")))
}

/// The secret checked against when a token names an unknown key (its result is thrown away).
const UNKNOWN_KEY_SECRET: &[u8] = b"no key has this secret; it only spends the HMAC time";

/// Verifies `token` against the keys in `keys` and returns its claims.
pub fn verify(token: &str, keys: &impl KeyProvider) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        // jsonwebtoken cannot represent `alg: none`; name it rather than "malformed".
        let head = token.split('.').next().unwrap_or_default();
        let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head.trim_end_matches('='))
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r).ok())
            .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_owned));
        match alg {
            Some(a) if a != "HS256" => TokenError::BadAlgorithm(a),
            _ => TokenError::Malformed(e.to_string()),
        }
    })?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::BadAlgorithm(format!("{:?}", header.alg)));
    }
    let unverified = unverified_claims(token)?;
    if unverified.iss.is_empty() {
        return Err(TokenError::MissingIssuer);
    }
    let Some(secret) = keys.secret(&unverified.iss) else {
        // Spend the same HMAC work as for a known key, so that the time to answer does not
        // tell whether the key exists either.
        let _ = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &DecodingKey::from_secret(UNKNOWN_KEY_SECRET),
            &Validation::new(Algorithm::HS256),
        );
        return Err(TokenError::UnknownKey(unverified.iss));
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_exp = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => TokenError::MissingExpiry,
        ErrorKind::InvalidAlgorithm => TokenError::BadAlgorithm("mismatch".into()),
        _ => TokenError::Invalid(e.to_string()),
    })?;
    Ok(data.claims)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Builds and signs a token, as the server SDKs' `AccessToken` does.
#[derive(Debug, Clone)]
pub struct AccessToken {
    key: String,
    secret: String,
    ttl: Duration,
    /// The claims to sign; `iss`, `nbf` and `exp` are set by [`AccessToken::to_jwt`].
    pub claims: Claims,
}

impl AccessToken {
    /// A token for API key `key` signed with `secret`, valid for [`DEFAULT_TTL`].
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            secret: secret.into(),
            ttl: DEFAULT_TTL,
            claims: Claims::default(),
        }
    }

    /// Sets how long the token is valid from now.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// Sets the identity (`sub`).
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.claims.sub = identity.into();
        self
    }
    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.claims.name = name.into();
        self
    }
    /// Sets the participant metadata.
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.claims.metadata = metadata.into();
        self
    }
    /// Sets the video grant.
    pub fn with_grant(mut self, grant: VideoGrant) -> Self {
        self.claims.video = Some(grant);
        self
    }

    /// Signs the token with HS256.
    pub fn to_jwt(&self) -> Result<String, TokenError> {
        self.to_jwt_at(unix_now())
    }

    /// Signs the token with HS256 as of `now` (seconds since the Unix epoch): valid from
    /// then for its TTL.
    pub fn to_jwt_at(&self, now: u64) -> Result<String, TokenError> {
        let mut claims = self.claims.clone();
        claims.iss = self.key.clone();
        claims.nbf = Some(now);
        claims.exp = Some(now + self.ttl.as_secs());
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .map_err(|e| TokenError::Signing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> HashMap<String, String> {
        HashMap::from([("devkey".to_string(), "secret".to_string())])
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    /// Signs an arbitrary header and payload, to build tokens no SDK would make.
    fn raw_token(header: &str, payload: &str, secret: &str) -> String {
        use hmac_free::hs256;
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let sig = hs256(secret.as_bytes(), signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// HS256 through jsonwebtoken itself, for arbitrary payloads.
    mod hmac_free {
        pub fn hs256(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let enc = jsonwebtoken::EncodingKey::from_secret(key);
            let s = jsonwebtoken::crypto::sign(msg, &enc, jsonwebtoken::Algorithm::HS256)
                .expect("HS256 signing works");
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s)
                .expect("signature is base64url")
        }
    }

    #[test]
    fn round_trip_and_defaults() {
        let t = AccessToken::new("devkey", "secret")
            .with_identity("alice")
            .with_grant(VideoGrant {
                room_join: true,
                room: "r1".into(),
                ..Default::default()
            })
            .to_jwt()
            .unwrap();
        let c = verify(&t, &keys()).unwrap();
        assert_eq!(c.identity(), "alice");
        let v = c.video();
        assert!(v.room_join && v.can_publish() && v.can_subscribe() && v.can_publish_data());
        assert!(!v.can_update_own_metadata());
    }

    #[test]
    fn can_publish_data_follows_can_publish() {
        let now = unix_now();
        let p = format!(
            r#"{{"iss":"devkey","exp":{},"video":{{"canPublish":false}}}}"#,
            now + 100
        );
        let c = verify(&raw_token(r#"{"alg":"HS256"}"#, &p, "secret"), &keys()).unwrap();
        assert!(!c.video().can_publish_data());
        assert!(c.video().can_subscribe());
    }

    #[test]
    fn expired_and_leeway() {
        let now = unix_now();
        let hdr = r#"{"alg":"HS256","typ":"JWT"}"#;
        let old = format!(r#"{{"iss":"devkey","exp":{}}}"#, now - 120);
        assert_eq!(
            verify(&raw_token(hdr, &old, "secret"), &keys()),
            Err(TokenError::Expired)
        );
        let recent = format!(r#"{{"iss":"devkey","exp":{}}}"#, now - 30);
        assert!(verify(&raw_token(hdr, &recent, "secret"), &keys()).is_ok());
    }

    #[test]
    fn future_nbf() {
        let now = unix_now();
        let p = format!(
            r#"{{"iss":"devkey","exp":{},"nbf":{}}}"#,
            now + 1000,
            now + 300
        );
        assert_eq!(
            verify(&raw_token(r#"{"alg":"HS256"}"#, &p, "secret"), &keys()),
            Err(TokenError::NotYetValid)
        );
        let p = format!(
            r#"{{"iss":"devkey","exp":{},"nbf":{}}}"#,
            now + 1000,
            now + 30
        );
        assert!(verify(&raw_token(r#"{"alg":"HS256"}"#, &p, "secret"), &keys()).is_ok());
    }

    #[test]
    fn unknown_key_wrong_secret_missing_exp() {
        let now = unix_now();
        let p = format!(r#"{{"iss":"other","exp":{}}}"#, now + 100);
        assert_eq!(
            verify(&raw_token(r#"{"alg":"HS256"}"#, &p, "secret"), &keys()),
            Err(TokenError::UnknownKey("other".into()))
        );
        let p = format!(r#"{{"iss":"devkey","exp":{}}}"#, now + 100);
        assert_eq!(
            verify(&raw_token(r#"{"alg":"HS256"}"#, &p, "wrong"), &keys()),
            Err(TokenError::BadSignature)
        );
        let p = r#"{"iss":"devkey","sub":"x"}"#;
        assert_eq!(
            verify(&raw_token(r#"{"alg":"HS256"}"#, p, "secret"), &keys()),
            Err(TokenError::MissingExpiry)
        );
        assert_eq!(
            verify(
                &raw_token(r#"{"alg":"HS256"}"#, r#"{"exp":9999999999}"#, "secret"),
                &keys()
            ),
            Err(TokenError::MissingIssuer)
        );
    }

    #[test]
    fn refusals_hide_key_existence_and_parser_detail() {
        let now = unix_now();
        let hdr = r#"{"alg":"HS256"}"#;
        let unknown = format!(r#"{{"iss":"nokey","exp":{}}}"#, now + 100);
        let known = format!(r#"{{"iss":"devkey","exp":{}}}"#, now + 100);
        let e_unknown = verify(&raw_token(hdr, &unknown, "secret"), &keys()).unwrap_err();
        let e_wrong = verify(&raw_token(hdr, &known, "wrong"), &keys()).unwrap_err();
        assert!(matches!(e_unknown, TokenError::UnknownKey(ref k) if k == "nokey"));
        assert_eq!(e_unknown.to_string(), e_wrong.to_string());
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&known));
        let hostile = [
            "abc".to_string(),
            "a.b.c".to_string(),
            format!("{}.%%%.x", b64(hdr)),
            format!("{}.{}.x", b64(hdr), b64("[1,2,3]")),
            none,
            raw_token(r#"{"alg":"HS512"}"#, &known, "secret"),
            raw_token(hdr, r#"{"exp":9999999999}"#, "secret"),
        ];
        for t in &hostile {
            let text = verify(t, &keys()).unwrap_err().to_string();
            assert_eq!(text, "invalid authorization token", "{t}");
        }
        assert!(!e_unknown.to_string().contains("nokey"));
    }

    #[test]
    fn alg_none_and_other_algs_refused() {
        let now = unix_now();
        let p = format!(r#"{{"iss":"devkey","exp":{}}}"#, now + 100);
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&p));
        assert!(matches!(
            verify(&none, &keys()),
            Err(TokenError::BadAlgorithm(a)) if a == "none"
        ));
        let hs512 = raw_token(r#"{"alg":"HS512"}"#, &p, "secret");
        assert!(matches!(
            verify(&hs512, &keys()),
            Err(TokenError::BadAlgorithm(_))
        ));
        assert!(matches!(
            verify("abc", &keys()),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn rust_sdk_style_nulls_and_sub_fallback() {
        let now = unix_now();
        // The Rust SDK writes every field, with nulls and empty strings.
        let p = format!(
            r#"{{"iss":"devkey","exp":{},"nbf":{},"sub":"","jti":"legacy","name":"",
               "video":{{"roomJoin":true,"room":"r","canPublish":true,"canSubscribe":true,
               "canPublishData":true,"canPublishSources":[],"canUpdateOwnMetadata":false,
               "hidden":false,"recorder":false,"roomCreate":false,"destinationRoom":""}},
               "sip":{{"admin":false,"call":false}},"roomConfig":null,"attributes":{{}},
               "metadata":"","sha256":"","kind":"","kindDetails":null}}"#,
            now + 100,
            now
        );
        let c = verify(
            &raw_token(r#"{"typ":"JWT","alg":"HS256"}"#, &p, "secret"),
            &keys(),
        )
        .unwrap();
        assert_eq!(c.identity(), "legacy");
        assert!(c.room_configuration().unwrap().is_none());
        assert!(c.video().room_join);
    }

    #[test]
    fn room_config_claim_parses() {
        let c = Claims {
            room_config: Some(
                serde_json::json!({"name":"x","emptyTimeout":7,"max_participants":3}),
            ),
            ..Default::default()
        };
        let rc = c.room_configuration().unwrap().unwrap();
        assert_eq!((rc.empty_timeout, rc.max_participants), (7, 3));
    }
}
