//! Refreshed access tokens. The server hands each participant connected by signalling a
//! token of its current grants (SignalResponse `refresh_token`): at its join and at every
//! resume, every five minutes, and whenever its name, metadata, attributes or permission
//! change, as LiveKit does. A client that must join afresh (its resume refused, or long
//! after its own token expired) joins with the latest one, and keeps what the API granted
//! it meanwhile.

use std::time::{Duration, Instant};

use lkr_proto::pb;
use lkr_proto::token::{AccessToken, Claims, TokenError};

use super::{Machine, Resp, source_name};

/// How often a connected participant gets a new token (LiveKit's interval).
pub const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The least time a refreshed token is valid for; one whose original had longer left keeps
/// that expiry (LiveKit's rule).
pub const REFRESHED_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

/// Signs the tokens handed to participants with one of the node's API keys.
#[derive(Clone)]
pub struct TokenSigner {
    key: String,
    secret: String,
}

impl TokenSigner {
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            secret: secret.into(),
        }
    }
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The token a participant that joined with `claims` is handed now (`now_unix`, seconds):
/// those claims with its current name, metadata, attributes and permission, valid for
/// [`REFRESHED_TOKEN_TTL`] or until the original expiry if that is later.
pub fn refreshed_token(
    signer: &TokenSigner,
    claims: &Claims,
    info: &pb::ParticipantInfo,
    now_unix: u64,
) -> Result<String, TokenError> {
    let mut c = claims.clone();
    c.name.clone_from(&info.name);
    c.metadata.clone_from(&info.metadata);
    c.attributes = info
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(p) = &info.permission {
        let v = c.video.get_or_insert_with(Default::default);
        v.can_publish = Some(p.can_publish);
        v.can_subscribe = Some(p.can_subscribe);
        v.can_publish_data = Some(p.can_publish_data);
        v.can_publish_sources = p
            .can_publish_sources
            .iter()
            .filter_map(|s| source_name(*s))
            .map(str::to_owned)
            .collect();
        v.hidden = p.hidden;
        v.can_update_own_metadata = Some(p.can_update_metadata);
        v.can_subscribe_metrics = Some(p.can_subscribe_metrics);
    }
    c.iat = None;
    // A body hash only ever belongs to the request it signed.
    c.sha256.clear();
    let left = c.exp.map_or(0, |e| e.saturating_sub(now_unix));
    let ttl = REFRESHED_TOKEN_TTL.max(Duration::from_secs(left));
    let mut token = AccessToken::new(&signer.key, &signer.secret).with_ttl(ttl);
    token.claims = c;
    token.to_jwt_at(now_unix)
}

impl Machine {
    /// Signs the tokens handed to participants with `signer` (without one, none are sent).
    pub fn set_token_signer(&mut self, signer: TokenSigner) {
        self.signer = Some(signer);
    }

    /// Sends participant `psid` a token of its current grants, if it is connected by
    /// signalling, and sets when the next one is due.
    pub(super) fn refresh_token(&mut self, now: Instant, psid: &str) {
        let Some(signer) = &self.signer else { return };
        let Some(p) = self.participants.get_mut(psid) else {
            return;
        };
        p.set_refresh_at(now + TOKEN_REFRESH_INTERVAL);
        if p.connected()
            && let Ok(r) = self.rooms.participant(p.room(), p.identity())
        {
            let unix = u64::try_from(self.clock.ms(now) / 1000).unwrap_or(0);
            match refreshed_token(signer, p.claims(), &r.info, unix) {
                Ok(token) => self.out.signal(psid, Resp::RefreshToken(token)),
                Err(e) => tracing::warn!(participant = %psid, "token refresh: {e}"),
            }
        }
        self.watch(psid);
    }
}
