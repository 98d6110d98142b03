//! What the agent dispatcher asks of the machine: a room's configured agent dispatches, and
//! the room records it needs to make jobs.

use lkr_proto::pb;

use super::Machine;
use crate::RoomError;

/// Agent dispatches one room may be configured with (token `roomConfig` or CreateRoom);
/// more are dropped.
pub const MAX_ROOM_AGENTS: usize = 64;

impl Machine {
    /// The agent dispatches room `name` was created with.
    pub fn room_agents(&self, name: &str) -> Vec<pb::RoomAgentDispatch> {
        self.rooms
            .get(name)
            .map(|r| r.agents().to_vec())
            .unwrap_or_default()
    }

    /// Sets the agent dispatches of room `name` (CreateRoom's `agents`).
    pub fn set_room_agents(
        &mut self,
        name: &str,
        agents: Vec<pb::RoomAgentDispatch>,
    ) -> Result<(), RoomError> {
        self.rooms.set_agents(name, agents, MAX_ROOM_AGENTS)
    }

    /// This node's ServerInfo, as joins get it (agent workers get it on registration).
    pub fn node_server_info(&self) -> pb::ServerInfo {
        self.server_info()
    }

    /// Room `name`'s record and its participants' records, for a dispatch made by API.
    pub fn room_with_participants(
        &self,
        name: &str,
    ) -> Result<(pb::Room, Vec<pb::ParticipantInfo>), RoomError> {
        let room = self.rooms.get(name)?;
        Ok((
            room.info(),
            room.participants().map(|p| p.info.clone()).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    use lkr_proto::pb;
    use lkr_proto::token::{Claims, VideoGrant};

    use crate::machine::{Config, Join, Limits, Machine, Output, RoomEvent};
    use crate::{RoomDefaults, Rooms};

    fn machine(now: Instant) -> Machine {
        let config = Config {
            auto_create: true,
            node_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port: 7882,
            region: String::new(),
            node_id: "ND_t".into(),
            fingerprint: ("sha-256".into(), "AA".into()),
            max_metadata_size: 0,
            max_attributes_size: 0,
            enable_remote_unmute: false,
            ice_servers: Vec::new(),
            limits: Limits::default(),
            tcp_port: None,
            turn: None,
        };
        Machine::new(config, Rooms::new(RoomDefaults::default()), now)
    }

    /// Joins `identity` to `room` with `claims` plus a grant to join it.
    fn try_join(
        m: &mut Machine,
        now: Instant,
        room: &str,
        identity: &str,
        claims: Claims,
    ) -> Result<String, crate::RoomError> {
        let claims = Claims {
            sub: identity.into(),
            video: Some(VideoGrant {
                room_join: true,
                room: room.into(),
                ..Default::default()
            }),
            ..claims
        };
        m.handle_join(
            now,
            Join {
                single_pc: true,
                ..Join::new(room, identity, claims)
            },
        )
    }

    fn join(m: &mut Machine, now: Instant, identity: &str, claims: Claims) -> String {
        try_join(m, now, "r", identity, claims).expect("admitted")
    }

    fn agent_claims() -> Claims {
        Claims {
            kind: "agent".into(),
            ..Default::default()
        }
    }

    /// The token that creates a room brings its `roomConfig.agents`; an agent participant
    /// has kind AGENT in its record.
    #[test]
    fn room_config_agents_and_agent_kind() {
        let now = Instant::now();
        let mut m = machine(now);
        let claims = Claims {
            room_config: Some(serde_json::json!({
                "agents": [{"agentName": "helper", "metadata": "hi"}]
            })),
            ..Default::default()
        };
        join(&mut m, now, "alice", claims);
        let agents = m.room_agents("r");
        assert_eq!(agents.len(), 1);
        assert_eq!(
            (agents[0].agent_name.as_str(), agents[0].metadata.as_str()),
            ("helper", "hi")
        );
        join(&mut m, now, "bot", agent_claims());
        let (_, people) = m.room_with_participants("r").unwrap();
        let bot = people.iter().find(|p| p.identity == "bot").unwrap();
        assert_eq!(bot.kind, pb::participant_info::Kind::Agent as i32);
    }

    /// A token's `roomPreset` names a configured room configuration: the room its join
    /// creates takes what the token's own `roomConfig` leaves unset from it (agents
    /// included); a preset nobody configured refuses the join and creates nothing.
    #[test]
    fn room_preset_fills_what_the_token_leaves_unset() {
        let now = Instant::now();
        let preset = pb::RoomConfiguration {
            max_participants: 2,
            empty_timeout: 42,
            metadata: "from preset".into(),
            agents: vec![pb::RoomAgentDispatch {
                agent_name: "helper".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let defaults = RoomDefaults {
            presets: [("small".to_string(), preset)].into(),
            ..RoomDefaults::default()
        };
        let mut m = machine(now);
        m.rooms = Rooms::new(defaults);
        let claims = Claims {
            room_preset: "small".into(),
            room_config: Some(serde_json::json!({"emptyTimeout": 9})),
            ..Default::default()
        };
        join(&mut m, now, "alice", claims);
        let room = m.api_list_rooms(&[]).remove(0);
        assert_eq!(
            (
                room.max_participants,
                room.empty_timeout,
                room.metadata.as_str()
            ),
            (2, 9, "from preset")
        );
        assert_eq!(m.room_agents("r")[0].agent_name, "helper");

        let claims = Claims {
            room_preset: "large".into(),
            ..Default::default()
        };
        match try_join(&mut m, now, "other", "bob", claims) {
            Err(crate::RoomError::InvalidArgument(e)) => {
                assert!(e.contains("unknown room configuration \"large\""), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!m.room_exists("other"));
    }

    /// A room where only agents remain closes after the departure timeout (agents never
    /// keep it open), and the agents are sent away with ROOM_CLOSED.
    #[test]
    fn a_room_with_only_agents_left_closes() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        let alice = join(&mut m, t0, "alice", Claims::default());
        let bot = join(&mut m, t0, "bot", agent_claims());
        m.handle_signal(
            t0,
            &alice,
            pb::signal_request::Message::Leave(pb::LeaveRequest::default()),
        )
        .unwrap();
        while m.poll_output().is_some() {}
        let deadline = m.poll_timeout().expect("the departure timeout runs");
        assert!(
            deadline <= t0 + Duration::from_secs(20),
            "{:?}",
            deadline - t0
        );
        m.handle_timeout(t0 + Duration::from_secs(19));
        assert!(m.room_exists("r"));
        m.handle_timeout(t0 + Duration::from_secs(20));
        assert!(!m.room_exists("r"));
        let out: Vec<Output> = std::iter::from_fn(|| m.poll_output()).collect();
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Close { to, leave: Some(l) }
            if *to == bot && l.reason == pb::DisconnectReason::RoomClosed as i32)),
            "{out:?}"
        );
        assert!(out.iter().any(
            |o| matches!(o, Output::Event(e) if matches!(**e, RoomEvent::RoomFinished { .. }))
        ));
        assert_eq!(m.participant_count(), 0);
    }

    /// Agents neither count toward max_participants nor are turned away by it.
    #[test]
    fn agents_do_not_count_toward_max_participants() {
        let now = Instant::now();
        let mut m = machine(now);
        let one = Claims {
            room_config: Some(serde_json::json!({"maxParticipants": 1})),
            ..Default::default()
        };
        join(&mut m, now, "alice", one);
        join(&mut m, now, "bot", agent_claims());
        join(&mut m, now, "bot2", agent_claims());
        let refused = try_join(&mut m, now, "r", "bob", Claims::default());
        assert!(
            matches!(refused, Err(crate::RoomError::RoomFull(1))),
            "{refused:?}"
        );
        assert_eq!(m.participant_count(), 3);
    }

    /// A room an agent joined first still waits for a person: the empty timeout applies.
    #[test]
    fn an_agent_alone_does_not_start_the_departure_clock() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        join(&mut m, t0, "bot", agent_claims());
        m.handle_timeout(t0 + Duration::from_secs(60));
        assert!(
            m.room_exists("r"),
            "the 300 s empty timeout applies, not the departure one"
        );
        m.handle_timeout(t0 + Duration::from_secs(300));
        assert!(!m.room_exists("r"));
    }
}
