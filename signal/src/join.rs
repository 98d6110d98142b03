//! Reading a join: the token, the query of `/rtc`, the `join_request` of `/rtc/v1`.

use std::collections::HashMap;
use std::io::Read as _;

use base64::Engine as _;
use lkr_proto::pb;
use lkr_proto::token::{Claims, KeyProvider};
use prost::Message as _;

/// Largest decoded JoinRequest accepted, as LiveKit's limit on header bytes.
const MAX_JOIN_REQUEST: usize = 1 << 20;

/// Why a join is refused before the WebSocket opens: an HTTP status and the text body
/// that clients show (and read from `/validate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JoinError {
    pub status: u16,
    pub message: String,
}

impl JoinError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Which signalling path a join came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalPath {
    /// `/rtc`: dual peer connection unless a `join_request` is given.
    V0,
    /// `/rtc/v1`: single peer connection.
    V1,
}

/// Everything a join asks for, after checks.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub claims: Claims,
    pub room: String,
    pub identity: String,
    pub single_pc: bool,
    pub auto_subscribe: bool,
    /// LiveKit's `auto_subscribe_data_track`: absent from the URL means yes, absent from a
    /// join request means no, as LiveKit reads them.
    pub auto_subscribe_data: bool,
    pub adaptive_stream: bool,
    pub client_info: pb::ClientInfo,
    pub publisher_offer: Option<pb::SessionDescription>,
    pub metadata: Option<String>,
    pub attributes: HashMap<String, String>,
    pub reconnect: bool,
    pub participant_sid: String,
}

fn truthy(v: &str) -> bool {
    v == "1" || v.eq_ignore_ascii_case("true")
}

fn sdk_from_name(s: &str) -> i32 {
    use pb::client_info::Sdk;
    let sdk = match s.to_ascii_lowercase().as_str() {
        "js" => Sdk::Js,
        "swift" | "ios" => Sdk::Swift,
        "android" => Sdk::Android,
        "flutter" => Sdk::Flutter,
        "go" => Sdk::Go,
        "unity" => Sdk::Unity,
        "reactnative" => Sdk::ReactNative,
        "rust" => Sdk::Rust,
        "python" => Sdk::Python,
        "cpp" => Sdk::Cpp,
        "unityweb" => Sdk::UnityWeb,
        "node" => Sdk::Node,
        _ => Sdk::Unknown,
    };
    sdk as i32
}

/// Decodes the `join_request` parameter: base64url (padded or not) of a WrappedJoinRequest.
pub fn decode_join_request(param: &str) -> Result<pb::JoinRequest, JoinError> {
    // The client sees what was wrong, never the decoder's words (they are logged at debug).
    let bad = |m: &'static str, detail: &dyn std::fmt::Display| {
        tracing::debug!(%detail, "{m}");
        JoinError::new(400, m)
    };
    let trimmed = param.trim_end_matches('=');
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| bad("invalid join_request: not base64", &e))?;
    let wrapped = pb::WrappedJoinRequest::decode(raw.as_slice())
        .map_err(|e| bad("invalid join_request: not a WrappedJoinRequest", &e))?;
    let body = match pb::wrapped_join_request::Compression::try_from(wrapped.compression) {
        Ok(pb::wrapped_join_request::Compression::None) => wrapped.join_request,
        Ok(pb::wrapped_join_request::Compression::Gzip) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(wrapped.join_request.as_slice())
                .take(MAX_JOIN_REQUEST as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad("invalid join_request: bad gzip data", &e))?;
            out
        }
        Err(_) => {
            return Err(bad(
                "invalid join_request: unknown compression",
                &wrapped.compression,
            ));
        }
    };
    if body.len() > MAX_JOIN_REQUEST {
        return Err(bad("invalid join_request: larger than 1 MiB", &body.len()));
    }
    pb::JoinRequest::decode(body.as_slice())
        .map_err(|e| bad("invalid join_request: not a JoinRequest", &e))
}

/// Checks the credentials and reads the join parameters of a signalling request.
pub fn parse_join(
    path: SignalPath,
    headers: &http_headers::HeaderView<'_>,
    query: Option<&str>,
    keys: &impl KeyProvider,
) -> Result<JoinParams, JoinError> {
    let q: HashMap<String, String> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let token = match headers.authorization {
        Some(v) => Some(
            v.strip_prefix("Bearer ")
                .ok_or_else(|| {
                    JoinError::new(
                        401,
                        "invalid authorization header: must start with \"Bearer \"",
                    )
                })?
                .trim()
                .to_string(),
        ),
        None => q.get("access_token").cloned(),
    };
    let token = token.ok_or_else(|| {
        JoinError::new(
            401,
            "no access token: send Authorization: Bearer <token> or access_token",
        )
    })?;
    let claims = lkr_proto::token::verify(&token, keys).map_err(|e| {
        tracing::debug!(error = ?e, "join token refused");
        JoinError::new(401, e.to_string())
    })?;
    let video = claims.video();
    if !video.room_join {
        return Err(JoinError::new(
            401,
            "permissions denied: the token lacks the roomJoin grant",
        ));
    }
    if video.room.is_empty() {
        return Err(JoinError::new(400, "no room name"));
    }
    let identity = claims.identity().to_string();
    if identity.is_empty() {
        return Err(JoinError::new(400, "identity cannot be empty"));
    }

    let join_request = match q.get("join_request") {
        Some(j) => Some(decode_join_request(j)?),
        None if path == SignalPath::V1 => {
            return Err(JoinError::new(400, "join_request is required"));
        }
        None => None,
    };
    let mut params = JoinParams {
        room: video.room.clone(),
        identity,
        single_pc: join_request.is_some(),
        auto_subscribe: q.get("auto_subscribe").is_none_or(|v| truthy(v)),
        auto_subscribe_data: q.get("auto_subscribe_data_track").is_none_or(|v| truthy(v)),
        adaptive_stream: q.get("adaptive_stream").is_some_and(|v| truthy(v)),
        client_info: pb::ClientInfo {
            sdk: q.get("sdk").map(|s| sdk_from_name(s)).unwrap_or_default(),
            version: q.get("version").cloned().unwrap_or_default(),
            protocol: q
                .get("protocol")
                .and_then(|p| p.parse().ok())
                .unwrap_or_default(),
            client_protocol: q
                .get("client_protocol")
                .and_then(|p| p.parse().ok())
                .unwrap_or_default(),
            os: q.get("os").cloned().unwrap_or_default(),
            os_version: q.get("os_version").cloned().unwrap_or_default(),
            device_model: q.get("device_model").cloned().unwrap_or_default(),
            browser: q.get("browser").cloned().unwrap_or_default(),
            browser_version: q.get("browser_version").cloned().unwrap_or_default(),
            network: q.get("network").cloned().unwrap_or_default(),
            ..Default::default()
        },
        publisher_offer: None,
        metadata: None,
        attributes: HashMap::new(),
        reconnect: q.get("reconnect").is_some_and(|v| truthy(v)),
        participant_sid: q.get("sid").cloned().unwrap_or_default(),
        claims,
    };
    if let Some(jr) = join_request {
        if let Some(ci) = jr.client_info {
            params.client_info = ci;
        }
        if let Some(cs) = jr.connection_settings {
            params.auto_subscribe = cs.auto_subscribe;
            params.auto_subscribe_data = cs.auto_subscribe_data_track.unwrap_or(false);
            params.adaptive_stream = cs.adaptive_stream;
        }
        params.publisher_offer = jr.publisher_offer;
        if !jr.metadata.is_empty() {
            params.metadata = Some(jr.metadata);
        }
        params.attributes = jr.participant_attributes;
        params.reconnect = jr.reconnect;
        params.participant_sid = jr.participant_sid;
    }
    Ok(params)
}

/// The request headers a join looks at, independent of the HTTP library.
pub mod http_headers {
    /// Borrowed header values.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct HeaderView<'a> {
        pub authorization: Option<&'a str>,
    }
}

impl JoinParams {
    /// The join as the room machine takes it.
    pub fn to_join(&self) -> lkr_room::Join {
        lkr_room::Join {
            room: self.room.clone(),
            identity: self.identity.clone(),
            claims: self.claims.clone(),
            single_pc: self.single_pc,
            auto_subscribe: self.auto_subscribe,
            auto_subscribe_data: self.auto_subscribe_data,
            client_protocol: self.client_info.client_protocol,
            publisher_offer: self.publisher_offer.clone(),
            metadata: self.metadata.clone(),
            attributes: self.attributes.clone(),
            resume: self.reconnect.then(|| self.participant_sid.clone()),
            // As LiveKit: protocol 10 brought stream ids of a publisher's stream, and Firefox
            // does not sync the tracks of one stream.
            sync_stream_id: self.client_info.protocol > 9
                && !self
                    .client_info
                    .browser
                    .to_ascii_lowercase()
                    .contains("firefox"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkr_proto::token::{AccessToken, VideoGrant};
    use std::collections::BTreeMap;

    fn keys() -> BTreeMap<String, String> {
        BTreeMap::from([("devkey".into(), "secret".into())])
    }

    fn token(grant: VideoGrant, identity: &str) -> String {
        AccessToken::new("devkey", "secret")
            .with_identity(identity)
            .with_grant(grant)
            .to_jwt()
            .unwrap()
    }

    fn join_grant() -> VideoGrant {
        VideoGrant {
            room_join: true,
            room: "r1".into(),
            ..Default::default()
        }
    }

    /// The `join_request` the Python SDK 1.2.1 sent (from a capture): gzip, base64url.
    const PY_JOIN_REQUEST: &str = include_str!("../tests/data/py_join_request.txt");

    #[test]
    fn python_v1_join_request_decodes() {
        let jr = decode_join_request(PY_JOIN_REQUEST.trim()).unwrap();
        let ci = jr.client_info.unwrap();
        assert_eq!(ci.sdk, pb::client_info::Sdk::Python as i32);
        assert!(jr.connection_settings.unwrap().auto_subscribe);
        let offer = jr.publisher_offer.unwrap();
        assert_eq!(offer.r#type, "offer");
        assert!(offer.sdp.contains("m=application"));
    }

    #[test]
    fn v0_query_and_bearer() {
        let t = token(join_grant(), "alice");
        let auth = format!("Bearer {t}");
        let h = http_headers::HeaderView {
            authorization: Some(&auth),
        };
        let p = parse_join(
            SignalPath::V0,
            &h,
            Some("sdk=python&protocol=18&auto_subscribe=0&&adaptive_stream=1"),
            &keys(),
        )
        .unwrap();
        assert_eq!((p.room.as_str(), p.identity.as_str()), ("r1", "alice"));
        assert!(!p.single_pc && !p.auto_subscribe && p.adaptive_stream);
        assert_eq!(p.client_info.protocol, 18);
        // token in the query, as browsers send it
        let q = format!("access_token={t}&auto_subscribe=1");
        let p = parse_join(SignalPath::V0, &Default::default(), Some(&q), &keys()).unwrap();
        assert!(p.auto_subscribe);
    }

    #[test]
    fn refusals() {
        let none = http_headers::HeaderView::default();
        assert_eq!(
            parse_join(SignalPath::V0, &none, None, &keys())
                .unwrap_err()
                .status,
            401
        );
        let bad = format!("access_token={}x", token(join_grant(), "a"));
        assert_eq!(
            parse_join(SignalPath::V0, &none, Some(&bad), &keys())
                .unwrap_err()
                .status,
            401
        );
        let nojoin = format!(
            "access_token={}",
            token(
                VideoGrant {
                    room: "r".into(),
                    ..Default::default()
                },
                "a"
            )
        );
        assert_eq!(
            parse_join(SignalPath::V0, &none, Some(&nojoin), &keys())
                .unwrap_err()
                .status,
            401
        );
        let noid = format!("access_token={}", token(join_grant(), ""));
        let e = parse_join(SignalPath::V0, &none, Some(&noid), &keys()).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "identity cannot be empty")
        );
        let v1 = format!("access_token={}", token(join_grant(), "a"));
        let e = parse_join(SignalPath::V1, &none, Some(&v1), &keys()).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "join_request is required")
        );
        let garbage = format!("{v1}&join_request=%%%");
        assert_eq!(
            parse_join(SignalPath::V1, &none, Some(&garbage), &keys())
                .unwrap_err()
                .status,
            400
        );
    }
}
