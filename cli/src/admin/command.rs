//! The command line, with `lk`'s command and flag names.
//!
//! The modern forms are `token create` and `room …`; the original livekit-cli's top-level
//! forms (`create-token`, `create-room`, `list-rooms`, …) are kept as hidden commands that
//! reuse the same argument structures, so both spellings behave the same.

use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};

use crate::media::janus::JanusLoadTestArgs;
use crate::media::join::{LegacyJoinArgs, RoomJoinArgs};
use crate::media::loadtest::LoadTestArgs;
use crate::media::relay::UdpRelayArgs;
use crate::media::relay_load::RelayLoadTestArgs;

/// Access tokens and room administration for a LiveKit-compatible server.
#[derive(Debug, Parser)]
#[command(name = "livekit-cli", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Connection and output settings, accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Server URL; ws:// and wss:// map to http:// and https://
    #[arg(
        long,
        global = true,
        env = "LIVEKIT_URL",
        default_value = "http://localhost:7880"
    )]
    pub url: String,
    /// API key [env: LIVEKIT_API_KEY, or LK_API_KEY]
    #[arg(long, global = true)]
    pub api_key: Option<String>,
    /// API secret [env: LIVEKIT_API_SECRET, or LK_API_SECRET]
    #[arg(long, global = true)]
    pub api_secret: Option<String>,
    /// Use the development key pair devkey/secret (those of livekit-server --dev)
    #[arg(long, global = true)]
    pub dev: bool,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create access tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Create, list, update, delete and join rooms; manage their participants, tracks and data
    Room {
        #[command(subcommand)]
        command: RoomSubcommand,
    },
    /// Join a room with an access token, publish Ogg/Opus and IVF files, record
    Join(LegacyJoinArgs),
    /// Performance tests
    Perf {
        #[command(subcommand)]
        command: PerfCommand,
    },
    #[command(hide = true)]
    JoinRoom(RoomJoinArgs),
    #[command(hide = true)]
    LoadTest(LoadTestArgs),
    #[command(hide = true)]
    CreateToken(TokenArgs),
    #[command(hide = true)]
    CreateRoom(RoomCreateArgs),
    #[command(hide = true)]
    ListRooms(RoomListArgs),
    #[command(hide = true)]
    DeleteRoom(RoomTarget),
    #[command(hide = true)]
    UpdateRoomMetadata(RoomUpdateArgs),
    #[command(hide = true)]
    ListParticipants(RoomTarget),
    #[command(hide = true)]
    GetParticipant(ParticipantTarget),
    #[command(hide = true)]
    RemoveParticipant(ParticipantTarget),
}

/// What a parsed command line asks for, with the legacy spellings folded into the modern ones.
#[derive(Debug)]
pub enum Action {
    /// Sign a token locally.
    CreateToken(TokenArgs),
    /// Call the server's RoomService.
    Room(RoomCommand),
    /// Join a room with our own client.
    Join(JoinForm),
    /// Run a load test.
    LoadTest(LoadTestArgs),
    /// Run the load test against a Janus VideoRoom.
    JanusLoadTest(JanusLoadTestArgs),
    /// Run the plain UDP relay.
    UdpRelay(UdpRelayArgs),
    /// Run the audio load through the plain UDP relay.
    RelayLoadTest(RelayLoadTestArgs),
}

/// The two ways of asking for a join.
#[derive(Debug)]
pub enum JoinForm {
    /// `room join --identity I ROOM`: a token minted from the API key.
    Room(RoomJoinArgs),
    /// `join --token T`.
    Legacy(LegacyJoinArgs),
}

/// `room …`: the RoomService commands, and `join`.
#[derive(Debug, Subcommand)]
pub enum RoomSubcommand {
    #[command(flatten)]
    Admin(RoomCommand),
    /// Join a room: publish files and data, record what others publish
    Join(RoomJoinArgs),
}

/// `perf …`.
#[derive(Debug, Subcommand)]
pub enum PerfCommand {
    /// Publishers and subscribers against a server: join times, bitrates, loss, latency
    LoadTest(LoadTestArgs),
    /// The same load against a Janus VideoRoom over Janus's HTTP API, for comparisons
    JanusLoadTest(JanusLoadTestArgs),
    /// A plain UDP relay (recvmmsg/sendmmsg, no crypto): the CPU baseline for forwarding
    UdpRelay(UdpRelayArgs),
    /// The audio load of `load-test` (1 sender, N receivers) through `udp-relay`, with the
    /// relay's CPU per forwarded packet
    RelayLoadTest(RelayLoadTestArgs),
}

impl Command {
    /// Folds legacy commands into their modern equivalents.
    pub fn into_action(self) -> Action {
        match self {
            Command::Token {
                command: TokenCommand::Create(args),
            }
            | Command::CreateToken(args) => Action::CreateToken(args),
            Command::Room {
                command: RoomSubcommand::Admin(command),
            } => Action::Room(command),
            Command::Room {
                command: RoomSubcommand::Join(args),
            }
            | Command::JoinRoom(args) => Action::Join(JoinForm::Room(args)),
            Command::Join(args) => Action::Join(JoinForm::Legacy(args)),
            Command::Perf {
                command: PerfCommand::LoadTest(args),
            }
            | Command::LoadTest(args) => Action::LoadTest(args),
            Command::Perf {
                command: PerfCommand::JanusLoadTest(args),
            } => Action::JanusLoadTest(args),
            Command::Perf {
                command: PerfCommand::UdpRelay(args),
            } => Action::UdpRelay(args),
            Command::Perf {
                command: PerfCommand::RelayLoadTest(args),
            } => Action::RelayLoadTest(args),
            Command::CreateRoom(a) => Action::Room(RoomCommand::Create(a)),
            Command::ListRooms(a) => Action::Room(RoomCommand::List(a)),
            Command::DeleteRoom(a) => Action::Room(RoomCommand::Delete(a)),
            Command::UpdateRoomMetadata(a) => Action::Room(RoomCommand::Update(a)),
            Command::ListParticipants(a) => Action::Room(RoomCommand::Participants {
                command: ParticipantsCommand::List(a),
            }),
            Command::GetParticipant(a) => Action::Room(RoomCommand::Participants {
                command: ParticipantsCommand::Get(a),
            }),
            Command::RemoveParticipant(a) => Action::Room(RoomCommand::Participants {
                command: ParticipantsCommand::Remove(a),
            }),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an access token
    Create(TokenArgs),
}

/// The sources a token may allow publishing from (`canPublishSources`).
pub const TRACK_SOURCES: [&str; 4] = ["camera", "microphone", "screen_share", "screen_share_audio"];

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Room the token is for (video grant `room`)
    #[arg(long, short = 'r', alias = "r")]
    pub room: Option<String>,
    /// Participant identity
    #[arg(long, short = 'i', alias = "p", short_alias = 'p')]
    pub identity: Option<String>,
    /// Participant display name
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// Participant metadata
    #[arg(long)]
    pub metadata: Option<String>,
    /// Participant attribute KEY=VALUE (repeatable)
    #[arg(long = "attribute", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub attributes: Vec<(String, String)>,
    /// Grant roomJoin: join the room
    #[arg(long)]
    pub join: bool,
    /// Grant roomCreate: create and delete rooms
    #[arg(long)]
    pub create: bool,
    /// Grant roomList: list rooms
    #[arg(long)]
    pub list: bool,
    /// Grant roomAdmin: administer the room
    #[arg(long)]
    pub admin: bool,
    /// Grant roomRecord: use Egress
    #[arg(long)]
    pub egress: bool,
    /// Grant ingressAdmin: use Ingress
    #[arg(long)]
    pub ingress: bool,
    /// Grant recorder and hidden (older livekit-cli)
    #[arg(long, hide = true)]
    pub recorder: bool,
    /// Grant canUpdateOwnMetadata: the participant may change its own metadata, name and attributes
    #[arg(long)]
    pub allow_update_metadata: bool,
    /// Restrict publishing to these sources (comma separated)
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = PossibleValuesParser::new(TRACK_SOURCES)
    )]
    pub allow_source: Vec<String>,
    /// How long the token is valid, e.g. 90s, 5m, 1h30m, 2d
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub valid_for: Duration,
    /// VideoGrant as JSON (camelCase keys), applied over the grant the flags build
    #[arg(long, value_name = "JSON")]
    pub grant: Option<String>,
    /// Room configuration as JSON (RoomConfiguration, protobuf-JSON), applied when the token creates the room
    #[arg(long, value_name = "JSON", alias = "room-configuration")]
    pub room_config: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room
    Create(RoomCreateArgs),
    /// List rooms, all of them or those named
    List(RoomListArgs),
    /// Delete a room
    Delete(RoomTarget),
    /// Update a room's metadata
    Update(RoomUpdateArgs),
    /// List, inspect, update and remove participants
    Participants {
        #[command(subcommand)]
        command: ParticipantsCommand,
    },
    /// Mute or unmute a published track
    MuteTrack(MuteTrackArgs),
    /// Subscribe a participant to tracks, or unsubscribe it
    UpdateSubscriptions(UpdateSubscriptionsArgs),
    /// Send a data packet to a room's participants
    SendData(SendDataArgs),
}

/// A room named positionally, or with the older `--room`/`--name` flag.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct RoomTarget {
    /// Room name
    #[arg(value_name = "ROOM")]
    pub room: Option<String>,
    /// Room name (older form)
    #[arg(long = "room", alias = "name", value_name = "ROOM", hide = true)]
    pub room_flag: Option<String>,
}

impl RoomTarget {
    /// The room name, whichever way it was given.
    pub fn name(&self) -> &str {
        self.room
            .as_deref()
            .or(self.room_flag.as_deref())
            .unwrap_or_default()
    }

    /// A target naming `room` positionally.
    pub fn named(room: impl Into<String>) -> Self {
        Self {
            room: Some(room.into()),
            room_flag: None,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RoomCreateArgs {
    #[command(flatten)]
    pub room: RoomTarget,
    /// Seconds to keep the room open while nobody has joined yet
    #[arg(long, value_name = "SECONDS")]
    pub empty_timeout: Option<u32>,
    /// Seconds to keep the room open after the last participant left
    #[arg(long, value_name = "SECONDS")]
    pub departure_timeout: Option<u32>,
    /// Maximum number of participants (0: no limit)
    #[arg(long)]
    pub max_participants: Option<u32>,
    /// Room metadata
    #[arg(long)]
    pub metadata: Option<String>,
    /// Minimum playout delay, in milliseconds
    #[arg(long, value_name = "MS")]
    pub min_playout_delay: Option<u32>,
    /// Maximum playout delay, in milliseconds
    #[arg(long, value_name = "MS")]
    pub max_playout_delay: Option<u32>,
    /// Ask subscribers to synchronise audio and video
    #[arg(long)]
    pub sync_streams: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RoomListArgs {
    /// Only these rooms
    #[arg(value_name = "ROOM")]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RoomUpdateArgs {
    #[command(flatten)]
    pub room: RoomTarget,
    /// The new room metadata
    #[arg(long)]
    pub metadata: String,
}

#[derive(Debug, Subcommand)]
pub enum ParticipantsCommand {
    /// List a room's participants
    List(RoomTarget),
    /// Show one participant
    Get(ParticipantTarget),
    /// Remove a participant from its room
    Remove(ParticipantTarget),
    /// Update a participant's metadata, name, attributes or permissions
    Update(ParticipantUpdateArgs),
}

/// A participant: `--room R IDENTITY` (or `--identity I`, the older form).
#[derive(Debug, Clone, Args)]
pub struct ParticipantTarget {
    /// Room the participant is in
    #[arg(long, short = 'r')]
    pub room: String,
    /// Participant identity
    #[arg(value_name = "IDENTITY", required_unless_present = "identity_flag")]
    pub identity: Option<String>,
    /// Participant identity (older form)
    #[arg(
        long = "identity",
        value_name = "IDENTITY",
        hide = true,
        conflicts_with = "identity"
    )]
    pub identity_flag: Option<String>,
}

impl ParticipantTarget {
    /// The identity, whichever way it was given.
    pub fn identity(&self) -> &str {
        self.identity
            .as_deref()
            .or(self.identity_flag.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Args)]
pub struct ParticipantUpdateArgs {
    #[command(flatten)]
    pub target: ParticipantTarget,
    /// New participant metadata
    #[arg(long)]
    pub metadata: Option<String>,
    /// New display name
    #[arg(long)]
    pub name: Option<String>,
    /// Attribute KEY=VALUE to set (repeatable; an empty VALUE deletes the key)
    #[arg(long = "attribute", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub attributes: Vec<(String, String)>,
    /// New permissions: ParticipantPermission as protobuf-JSON, e.g. '{"canPublish":false,"canSubscribe":true}'
    #[arg(long, value_name = "JSON")]
    pub permissions: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct MuteTrackArgs {
    /// Room the track is in
    #[arg(long, short = 'r')]
    pub room: String,
    /// Identity of the participant publishing the track
    #[arg(long, short = 'i')]
    pub identity: String,
    #[command(flatten)]
    pub state: MuteState,
    /// Track sid (TR_…)
    #[arg(value_name = "TRACK_SID")]
    pub track_sid: String,
}

/// Exactly one of `--mute` and `--unmute`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct MuteState {
    /// Mute the track
    #[arg(long)]
    pub mute: bool,
    /// Unmute the track (the server must allow remote unmute)
    #[arg(long)]
    pub unmute: bool,
}

#[derive(Debug, Clone, Args)]
pub struct UpdateSubscriptionsArgs {
    /// Room of the participant
    #[arg(long, short = 'r')]
    pub room: String,
    /// Identity of the subscribing participant
    #[arg(long, short = 'i')]
    pub identity: String,
    /// Subscribe to the tracks (the default)
    #[arg(long, conflicts_with = "unsubscribe")]
    pub subscribe: bool,
    /// Unsubscribe from the tracks
    #[arg(long)]
    pub unsubscribe: bool,
    /// Track sids (TR_…)
    #[arg(value_name = "TRACK_SID", required = true)]
    pub track_sids: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SendDataArgs {
    /// Room to send to
    #[arg(long, short = 'r')]
    pub room: String,
    /// Topic of the packet
    #[arg(long)]
    pub topic: Option<String>,
    /// Send only to this participant identity (repeatable; default: everyone)
    #[arg(long = "identity", value_name = "IDENTITY")]
    pub destinations: Vec<String>,
    /// Deliver reliably, in order (the default)
    #[arg(long, conflicts_with = "lossy")]
    pub reliable: bool,
    /// Deliver unreliably
    #[arg(long)]
    pub lossy: bool,
    /// The payload, sent as UTF-8 bytes
    #[arg(value_name = "DATA")]
    pub data: String,
}

/// Parses `KEY=VALUE`; the value may be empty and may contain `=`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Parses a duration such as `90s`, `5m`, `1h30m` or `2d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return positive(Duration::from_secs(secs), s);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "bad duration {s:?}: unknown unit {c:?} (use s, m, h or d)"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("bad duration {s:?}: expected a number before {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "bad duration {s:?}: {digits} has no unit (use s, m, h or d)"
        ));
    }
    positive(Duration::from_secs(total), s)
}

fn positive(d: Duration, s: &str) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("duration {s:?} must be longer than zero"))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("1h5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }

    fn action(args: &[&str]) -> Action {
        let mut argv = vec!["livekit-cli"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().command.into_action()
    }

    #[test]
    fn legacy_forms_fold_into_modern_ones() {
        let Action::Room(RoomCommand::Create(a)) = action(&["create-room", "--name", "r1"]) else {
            panic!("create-room");
        };
        assert_eq!(a.room.name(), "r1");
        let Action::Room(RoomCommand::Delete(a)) = action(&["delete-room", "--room", "r2"]) else {
            panic!("delete-room");
        };
        assert_eq!(a.name(), "r2");
        let Action::Room(RoomCommand::Delete(a)) = action(&["delete-room", "r3"]) else {
            panic!("delete-room positional");
        };
        assert_eq!(a.name(), "r3");
        let Action::CreateToken(t) = action(&["create-token", "--join", "--r", "x", "--p", "y"])
        else {
            panic!("create-token");
        };
        assert_eq!(
            (t.room.as_deref(), t.identity.as_deref()),
            (Some("x"), Some("y"))
        );
        assert!(t.join);
        assert_eq!(t.valid_for, Duration::from_secs(300));
    }

    #[test]
    fn global_flags_go_anywhere() {
        let c = Cli::try_parse_from(["livekit-cli", "room", "list", "--json", "--dev"]).unwrap();
        assert!(c.global.json && c.global.dev);
        let c = Cli::try_parse_from(["livekit-cli", "--url", "ws://h:1", "room", "list"]).unwrap();
        assert_eq!(c.global.url, "ws://h:1");
    }

    #[test]
    fn exclusive_choices() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["livekit-cli", "room"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
        };
        assert!(parse(&["mute-track", "--room", "r", "--identity", "i", "TR_1"]).is_err());
        assert!(
            parse(&[
                "mute-track",
                "--room",
                "r",
                "--identity",
                "i",
                "--mute",
                "--unmute",
                "TR_1"
            ])
            .is_err()
        );
        assert!(parse(&["send-data", "--room", "r", "--lossy", "--reliable", "x"]).is_err());
        assert!(parse(&["create", "a", "--name", "b"]).is_err());
        assert!(parse(&["create"]).is_err());
        assert!(parse(&["participants", "get", "--room", "r"]).is_err());
        assert!(parse(&["participants", "get", "--room", "r", "--identity", "i"]).is_ok());
    }
}
