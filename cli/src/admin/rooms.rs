//! `room …`: each command is one RoomService call, and its answer rendered as a [`Report`].

use std::collections::HashMap;

use lkr_proto::pb;
use serde_json::Value;

use super::Error;
use super::command::{
    MuteTrackArgs, ParticipantUpdateArgs, ParticipantsCommand, RoomCommand, RoomCreateArgs,
    SendDataArgs, UpdateSubscriptionsArgs,
};
use super::output::{Fields, Report, Table, to_json, unix_time};
use super::twirp::RoomClient;

/// Runs one room command against `client`.
pub async fn run(client: &RoomClient, command: RoomCommand) -> Result<Report, Error> {
    match command {
        RoomCommand::Create(args) => {
            let room = client.create_room(create_request(&args)).await?;
            Ok(room_report("Created room", &room))
        }
        RoomCommand::List(args) => {
            let rooms = client
                .list_rooms(pb::ListRoomsRequest { names: args.names })
                .await?;
            Ok(rooms_report(&rooms))
        }
        RoomCommand::Delete(target) => {
            let room = target.name().to_owned();
            let resp = client
                .delete_room(pb::DeleteRoomRequest { room: room.clone() })
                .await?;
            Ok(Report {
                human: format!("Deleted room {room}\n"),
                json: to_json(&resp),
            })
        }
        RoomCommand::Update(args) => {
            let room = client
                .update_room_metadata(pb::UpdateRoomMetadataRequest {
                    room: args.room.name().to_owned(),
                    metadata: args.metadata,
                })
                .await?;
            Ok(room_report("Updated room", &room))
        }
        RoomCommand::Participants { command } => run_participants(client, command).await,
        RoomCommand::MuteTrack(args) => mute_track(client, args).await,
        RoomCommand::UpdateSubscriptions(args) => update_subscriptions(client, args).await,
        RoomCommand::SendData(args) => send_data(client, args).await,
    }
}

async fn run_participants(
    client: &RoomClient,
    command: ParticipantsCommand,
) -> Result<Report, Error> {
    match command {
        ParticipantsCommand::List(target) => {
            let room = target.name().to_owned();
            let resp = client
                .list_participants(pb::ListParticipantsRequest { room: room.clone() })
                .await?;
            Ok(participants_report(&room, &resp))
        }
        ParticipantsCommand::Get(target) => {
            let p = client
                .get_participant(pb::RoomParticipantIdentity {
                    room: target.room.clone(),
                    identity: target.identity().to_owned(),
                    ..Default::default()
                })
                .await?;
            Ok(Report {
                human: participant_text(&p),
                json: to_json(&p),
            })
        }
        ParticipantsCommand::Remove(target) => {
            let identity = target.identity().to_owned();
            let resp = client
                .remove_participant(pb::RoomParticipantIdentity {
                    room: target.room.clone(),
                    identity: identity.clone(),
                    ..Default::default()
                })
                .await?;
            Ok(Report {
                human: format!("Removed participant {identity} from room {}\n", target.room),
                json: to_json(&resp),
            })
        }
        ParticipantsCommand::Update(args) => {
            let p = client.update_participant(update_request(args)?).await?;
            Ok(Report {
                human: format!("Updated participant\n{}", participant_text(&p)),
                json: to_json(&p),
            })
        }
    }
}

async fn mute_track(client: &RoomClient, args: MuteTrackArgs) -> Result<Report, Error> {
    let muted = args.state.mute;
    let resp = client
        .mute_published_track(pb::MuteRoomTrackRequest {
            room: args.room,
            identity: args.identity,
            track_sid: args.track_sid.clone(),
            muted,
        })
        .await?;
    let verb = if muted { "Muted" } else { "Unmuted" };
    let mut human = format!("{verb} track {}\n", args.track_sid);
    if let Some(track) = &resp.track {
        human.push_str(&tracks_table(std::slice::from_ref(track)));
    }
    Ok(Report {
        human,
        json: to_json(&resp),
    })
}

async fn update_subscriptions(
    client: &RoomClient,
    args: UpdateSubscriptionsArgs,
) -> Result<Report, Error> {
    let subscribe = !args.unsubscribe;
    let count = args.track_sids.len();
    let resp = client
        .update_subscriptions(pb::UpdateSubscriptionsRequest {
            room: args.room,
            identity: args.identity.clone(),
            track_sids: args.track_sids,
            subscribe,
            ..Default::default()
        })
        .await?;
    let verb = if subscribe {
        "Subscribed"
    } else {
        "Unsubscribed"
    };
    let plural = if count == 1 { "" } else { "s" };
    Ok(Report {
        human: format!(
            "{verb} {} {} {count} track{plural}\n",
            args.identity,
            if subscribe { "to" } else { "from" }
        ),
        json: to_json(&resp),
    })
}

async fn send_data(client: &RoomClient, args: SendDataArgs) -> Result<Report, Error> {
    let kind = if args.lossy {
        pb::data_packet::Kind::Lossy
    } else {
        pb::data_packet::Kind::Reliable
    };
    let size = args.data.len();
    let to = if args.destinations.is_empty() {
        "everyone".to_owned()
    } else {
        args.destinations.join(", ")
    };
    let resp = client
        .send_data(pb::SendDataRequest {
            room: args.room.clone(),
            data: args.data.into_bytes(),
            kind: kind.into(),
            destination_identities: args.destinations,
            topic: args.topic,
            ..Default::default()
        })
        .await?;
    Ok(Report {
        human: format!(
            "Sent {size} bytes ({}) to {to} in room {}\n",
            kind.as_str_name().to_ascii_lowercase(),
            args.room
        ),
        json: to_json(&resp),
    })
}

/// The CreateRoomRequest for `room create`; unset options stay 0, the server's default.
pub fn create_request(args: &RoomCreateArgs) -> pb::CreateRoomRequest {
    pb::CreateRoomRequest {
        name: args.room.name().to_owned(),
        empty_timeout: args.empty_timeout.unwrap_or_default(),
        departure_timeout: args.departure_timeout.unwrap_or_default(),
        max_participants: args.max_participants.unwrap_or_default(),
        metadata: args.metadata.clone().unwrap_or_default(),
        min_playout_delay: args.min_playout_delay.unwrap_or_default(),
        max_playout_delay: args.max_playout_delay.unwrap_or_default(),
        sync_streams: args.sync_streams,
        ..Default::default()
    }
}

/// The UpdateParticipantRequest for `room participants update`.
pub fn update_request(args: ParticipantUpdateArgs) -> Result<pb::UpdateParticipantRequest, Error> {
    let permission = args.permissions.as_deref().map(permission).transpose()?;
    if args.metadata.is_none()
        && args.name.is_none()
        && args.attributes.is_empty()
        && permission.is_none()
    {
        return Err(Error::BadArgument(
            "nothing to update: pass --metadata, --name, --attribute or --permissions".into(),
        ));
    }
    Ok(pb::UpdateParticipantRequest {
        room: args.target.room.clone(),
        identity: args.target.identity().to_owned(),
        metadata: args.metadata.unwrap_or_default(),
        name: args.name.unwrap_or_default(),
        attributes: args.attributes.into_iter().collect::<HashMap<_, _>>(),
        permission,
    })
}

/// Parses `--permissions`: ParticipantPermission in protobuf-JSON. Track sources may be
/// written in lower case (`camera`), as tokens write them.
pub fn permission(json: &str) -> Result<pb::ParticipantPermission, Error> {
    let bad = |why: String| Error::BadArgument(format!("--permissions: {why}"));
    let mut value: Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(map) = &mut value else {
        return Err(bad("expected a JSON object".into()));
    };
    for key in ["canPublishSources", "can_publish_sources"] {
        if let Some(Value::Array(sources)) = map.get_mut(key) {
            for source in sources.iter_mut() {
                if let Value::String(s) = source {
                    *s = s.to_ascii_uppercase();
                }
            }
        }
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

fn room_report(verb: &str, room: &pb::Room) -> Report {
    Report {
        human: format!("{verb} {}\n{}", room.name, room_text(room)),
        json: to_json(room),
    }
}

fn room_text(room: &pb::Room) -> String {
    let or_default = |v: u32| {
        if v == 0 {
            "server default".to_owned()
        } else {
            format!("{v} s")
        }
    };
    Fields::new()
        .field("Name", room.name.as_str())
        .field("SID", room.sid.as_str())
        .field(
            "Participants",
            format!(
                "{} ({} publishing)",
                room.num_participants, room.num_publishers
            ),
        )
        .field(
            "Max participants",
            match room.max_participants {
                0 => "no limit".to_owned(),
                n => n.to_string(),
            },
        )
        .field("Empty timeout", or_default(room.empty_timeout))
        .field("Departure timeout", or_default(room.departure_timeout))
        .field("Created", unix_time(room.creation_time))
        .field("Metadata", room.metadata.as_str())
        .render()
}

fn rooms_report(resp: &pb::ListRoomsResponse) -> Report {
    let human = if resp.rooms.is_empty() {
        "No rooms\n".to_owned()
    } else {
        let mut table = Table::new(&["NAME", "SID", "PARTICIPANTS", "PUBLISHERS", "CREATED"]);
        for room in &resp.rooms {
            table.row(vec![
                room.name.clone(),
                room.sid.clone(),
                room.num_participants.to_string(),
                room.num_publishers.to_string(),
                unix_time(room.creation_time),
            ]);
        }
        table.render()
    };
    Report {
        human,
        json: to_json(resp),
    }
}

fn participants_report(room: &str, resp: &pb::ListParticipantsResponse) -> Report {
    let human = if resp.participants.is_empty() {
        format!("No participants in room {room}\n")
    } else {
        let mut table = Table::new(&["IDENTITY", "SID", "NAME", "STATE", "TRACKS", "JOINED"]);
        for p in &resp.participants {
            table.row(vec![
                p.identity.clone(),
                p.sid.clone(),
                p.name.clone(),
                state_name(p.state),
                p.tracks.len().to_string(),
                unix_time(p.joined_at),
            ]);
        }
        table.render()
    };
    Report {
        human,
        json: to_json(resp),
    }
}

fn state_name(state: i32) -> String {
    pb::participant_info::State::try_from(state)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| state.to_string())
}

fn participant_text(p: &pb::ParticipantInfo) -> String {
    let kind = pb::participant_info::Kind::try_from(p.kind)
        .map(|k| k.as_str_name().to_owned())
        .unwrap_or_else(|_| p.kind.to_string());
    let mut attributes: Vec<String> = p
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    attributes.sort();
    let mut text = Fields::new()
        .field("Identity", p.identity.as_str())
        .field("SID", p.sid.as_str())
        .field("Name", p.name.as_str())
        .field("State", state_name(p.state))
        .field("Kind", kind)
        .field("Joined", unix_time(p.joined_at))
        .field("Metadata", p.metadata.as_str())
        .field("Attributes", attributes.join(", "))
        .field(
            "Permission",
            p.permission
                .as_ref()
                .map(permission_text)
                .unwrap_or_default(),
        )
        .render();
    if p.tracks.is_empty() {
        text.push_str("Tracks: none\n");
    } else {
        text.push_str("Tracks:\n");
        for line in tracks_table(&p.tracks).lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn permission_text(p: &pb::ParticipantPermission) -> String {
    let mut parts = Vec::new();
    for (allowed, what) in [
        (p.can_publish, "publish"),
        (p.can_subscribe, "subscribe"),
        (p.can_publish_data, "publish data"),
        (p.can_update_metadata, "update metadata"),
        (p.hidden, "hidden"),
    ] {
        if allowed {
            parts.push(what.to_owned());
        }
    }
    if !p.can_publish_sources.is_empty() {
        let sources: Vec<String> = p
            .can_publish_sources
            .iter()
            .map(|&s| source_name(s))
            .collect();
        parts.push(format!("sources: {}", sources.join(" ")));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn source_name(source: i32) -> String {
    pb::TrackSource::try_from(source)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| source.to_string())
}

fn tracks_table(tracks: &[pb::TrackInfo]) -> String {
    let mut table = Table::new(&["SID", "TYPE", "SOURCE", "NAME", "MIME", "MUTED"]);
    for t in tracks {
        let kind = pb::TrackType::try_from(t.r#type)
            .map(|k| k.as_str_name().to_owned())
            .unwrap_or_else(|_| t.r#type.to_string());
        table.row(vec![
            t.sid.clone(),
            kind,
            source_name(t.source),
            t.name.clone(),
            t.mime_type.clone(),
            if t.muted { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_accept_lower_case_sources() {
        let p = permission(r#"{"canPublish":true,"canPublishSources":["camera","MICROPHONE"]}"#)
            .unwrap();
        assert!(p.can_publish && !p.can_subscribe);
        assert_eq!(
            p.can_publish_sources,
            vec![
                pb::TrackSource::Camera as i32,
                pb::TrackSource::Microphone as i32
            ]
        );
        assert!(
            permission(r#"{"can_subscribe":true}"#)
                .unwrap()
                .can_subscribe
        );
        assert!(permission("[]").is_err());
        assert!(permission(r#"{"canPublishSources":["nose"]}"#).is_err());
    }

    #[test]
    fn room_listing_and_json() {
        let resp = pb::ListRoomsResponse {
            rooms: vec![pb::Room {
                name: "r1".into(),
                sid: "RM_abc".into(),
                num_participants: 2,
                creation_time: 1_700_000_000,
                ..Default::default()
            }],
        };
        let report = rooms_report(&resp);
        assert!(report.human.starts_with("NAME"));
        assert!(report.human.contains("r1    RM_abc  2"));
        assert!(report.human.contains("2023-11-14 22:13:20 UTC"));
        assert_eq!(report.json["rooms"][0]["name"], "r1");
        assert_eq!(report.json["rooms"][0]["numParticipants"], 2);
    }
}
