//! `token create`: sign an access token locally, as `lk token create` does.
//!
//! The flags build a [`VideoGrant`]; `--grant` (a JSON VideoGrant) is then laid over it key
//! by key, so `--join --grant '{"canPublish":false}'` keeps `roomJoin` and adds the
//! restriction.

use std::time::Duration;

use lkr_proto::pb;
use lkr_proto::token::{AccessToken, VideoGrant};
use serde_json::{Map, Value, json};

use super::Error;
use super::command::TokenArgs;
use super::connection::{Credentials, ServerUrl};
use super::output::{self, Fields, Report};

/// A signed token and what it was made from.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub jwt: String,
    pub identity: String,
    pub room: String,
    pub url: String,
    pub grant: VideoGrant,
    pub valid_for: Duration,
}

impl IssuedToken {
    /// What `token create` prints. The text ends with `Access token: <jwt>`, like `lk`.
    pub fn report(&self) -> Report {
        let grant = serde_json::to_string_pretty(&self.grant)
            .expect("a VideoGrant serialises: it holds only strings, bools and lists");
        let mut human = format!("Token grants:\n{grant}\n\n");
        let mut fields = Fields::new();
        if !self.identity.is_empty() {
            fields = fields.field("Identity", self.identity.as_str());
        }
        if !self.room.is_empty() {
            fields = fields.field("Room", self.room.as_str());
        }
        fields = fields
            .field("Valid for", output::duration(self.valid_for))
            .field("Project URL", self.url.as_str())
            .field("Access token", self.jwt.as_str());
        human.push_str(&fields.render());
        Report {
            human,
            json: json!({
                "access_token": self.jwt,
                "identity": self.identity,
                "room": self.room,
                "url": self.url,
            }),
        }
    }
}

/// Signs the token `args` describe with `creds`.
pub fn create(
    args: &TokenArgs,
    creds: &Credentials,
    url: &ServerUrl,
) -> Result<IssuedToken, Error> {
    let mut grant = grant_from_flags(args);
    if let Some(patch) = &args.grant {
        grant = merge_grant(grant, patch)?;
    }
    let roles = [
        grant.room_join,
        grant.room_create,
        grant.room_list,
        grant.room_admin,
        grant.room_record,
        grant.ingress_admin,
        grant.recorder,
        grant.agent,
    ];
    if !roles.contains(&true) {
        return Err(Error::BadArgument(
            "the token would grant nothing: pass at least one of --join, --create, --list, \
             --admin, --egress, --ingress, or --grant"
                .into(),
        ));
    }
    let identity = args.identity.clone().unwrap_or_default();
    if grant.room_join {
        if grant.room.is_empty() {
            return Err(Error::BadArgument("--join needs --room".into()));
        }
        if identity.is_empty() {
            return Err(Error::BadArgument("--join needs --identity".into()));
        }
    }
    if grant.room_admin && grant.room.is_empty() {
        return Err(Error::BadArgument(
            "--admin needs --room: room admin grants are per room".into(),
        ));
    }
    let mut token = AccessToken::new(&creds.api_key, &creds.api_secret)
        .with_identity(identity.as_str())
        .with_grant(grant.clone())
        .with_ttl(args.valid_for);
    if let Some(name) = &args.name {
        token = token.with_name(name.as_str());
    }
    if let Some(metadata) = &args.metadata {
        token = token.with_metadata(metadata.as_str());
    }
    token.claims.attributes = args.attributes.iter().cloned().collect();
    if let Some(config) = &args.room_config {
        token.claims.room_config = Some(room_config(config)?);
    }
    Ok(IssuedToken {
        jwt: token.to_jwt()?,
        identity,
        room: grant.room.clone(),
        url: url.given().to_owned(),
        grant,
        valid_for: args.valid_for,
    })
}

/// The grant the flags alone describe.
pub fn grant_from_flags(args: &TokenArgs) -> VideoGrant {
    VideoGrant {
        room_join: args.join,
        room_create: args.create,
        room_list: args.list,
        room_admin: args.admin,
        room_record: args.egress || args.recorder,
        ingress_admin: args.ingress,
        recorder: args.recorder,
        hidden: args.recorder,
        room: args.room.clone().unwrap_or_default(),
        can_update_own_metadata: args.allow_update_metadata.then_some(true),
        can_publish_sources: args.allow_source.clone(),
        ..Default::default()
    }
}

/// Lays the JSON object `patch` over `base`, key by key. Keys are VideoGrant's camelCase
/// names (snake_case is accepted too); `null` resets a key to its default.
pub fn merge_grant(base: VideoGrant, patch: &str) -> Result<VideoGrant, Error> {
    let bad = |why: String| Error::BadArgument(format!("--grant: {why}"));
    let patch: Value =
        serde_json::from_str(patch).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(patch) = patch else {
        return Err(bad("expected a JSON object".into()));
    };
    let known = grant_keys();
    let mut merged = match output::to_json(&base) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (key, value) in patch {
        let key = camel_case(&key);
        if !known.contains(&key) {
            return Err(bad(format!(
                "unknown field {key:?}; known fields: {}",
                known.join(", ")
            )));
        }
        merged.insert(key, value);
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| bad(e.to_string()))
}

/// Every JSON name of [`VideoGrant`], found by serialising a grant with every field set
/// (the struct literal below stops compiling when a field is added, so none is missed).
fn grant_keys() -> Vec<String> {
    let full = VideoGrant {
        room_create: true,
        room_list: true,
        room_record: true,
        room_admin: true,
        room_join: true,
        room: "r".into(),
        destination_room: "r".into(),
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        can_publish_sources: vec!["camera".into()],
        can_update_own_metadata: Some(true),
        ingress_admin: true,
        hidden: true,
        recorder: true,
        agent: true,
        can_subscribe_metrics: Some(true),
        can_manage_agent_session: Some(true),
    };
    match output::to_json(&full) {
        Value::Object(m) => m.into_iter().map(|(k, _)| k).collect(),
        _ => Vec::new(),
    }
}

/// `room_join` → `roomJoin`; camelCase names pass through.
fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `--room-config`: checked against RoomConfiguration, then kept as given.
fn room_config(json: &str) -> Result<Value, Error> {
    let bad = |why: String| Error::BadArgument(format!("--room-config: {why}"));
    let value: Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    serde_json::from_value::<pb::RoomConfiguration>(value.clone())
        .map_err(|e| bad(format!("not a RoomConfiguration: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_overrides_and_keeps() {
        let base = VideoGrant {
            room_join: true,
            room: "r".into(),
            ..Default::default()
        };
        let g = merge_grant(base.clone(), r#"{"canPublish":false,"can_subscribe":true}"#).unwrap();
        assert!(g.room_join);
        assert_eq!(g.room, "r");
        assert_eq!(g.can_publish, Some(false));
        assert_eq!(g.can_subscribe, Some(true));
        let g = merge_grant(base.clone(), r#"{"roomJoin":false,"room":"other"}"#).unwrap();
        assert!(!g.room_join);
        assert_eq!(g.room, "other");
        assert!(merge_grant(base.clone(), r#"{"canPublsh":false}"#).is_err());
        assert!(merge_grant(base.clone(), "[1]").is_err());
        assert!(merge_grant(base, r#"{"roomJoin":"yes"}"#).is_err());
    }

    #[test]
    fn keys_cover_the_grant() {
        let keys = grant_keys();
        assert!(keys.contains(&"canPublishSources".to_string()));
        assert!(keys.contains(&"canManageAgentSession".to_string()));
        assert_eq!(keys.len(), 18);
    }
}
