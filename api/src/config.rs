//! Server configuration: LiveKit's YAML field names, strict parsing, flag overrides.
//!
//! Parsing is strict as LiveKit's is: a key we do not know is an error that names it. Keys
//! LiveKit knows but this server does not act on yet are accepted, and [`Config::load`]
//! returns their paths so the caller can log them as not yet supported rather than drop
//! them silently.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

/// Why the configuration cannot be used. Every message names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("config: cannot read {file}: {err}")]
    Read { file: PathBuf, err: std::io::Error },
    #[error("key file {file}: {msg}")]
    KeyFile { file: PathBuf, msg: String },
    #[error("keys: {0}")]
    Keys(String),
    #[error(
        "no API keys configured: give --keys \"key: secret\", --key-file FILE, LIVEKIT_KEYS, \
         keys:/key_file: in the config file, or --dev for devkey/secret \
         (`livekit-server generate-keys` makes a key and secret)"
    )]
    NoKeys,
}

fn invalid(path: &str, msg: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_string(),
        msg: msg.to_string(),
    }
}

/// A UDP port or a `start-end` range, as LiveKit writes `rtc.udp_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// Parses `7882` or `50000-60000`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(format!("{p:?} is not a port number (1-65535)")),
            }
        };
        match s.split_once('-') {
            Some((a, b)) => {
                let (start, end) = (port(a)?, port(b)?);
                if start > end {
                    return Err(format!("range {s:?} ends before it starts"));
                }
                Ok(Self { start, end })
            }
            None => {
                let p = port(s)?;
                Ok(Self { start: p, end: p })
            }
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        PortRange::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Keys every config section may carry that we keep as raw YAML (never acted on).
type Opaque = Option<Value>;

/// One of `rtc.turn_servers`, as LiveKit reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnServerSpec {
    pub host: String,
    pub port: u16,
    /// `udp`, `tcp` or `tls` (left out: `tcp`, as LiveKit reads it).
    pub protocol: String,
    pub username: String,
    pub credential: String,
}

/// The ICE servers of `rtc.turn_servers` and `rtc.stun_servers`, written as LiveKit writes
/// them into a join response: `turn:HOST:PORT?transport=udp` (or `tcp`), `turns:HOST:PORT?
/// transport=tcp` for TLS, and one entry with every STUN server as `stun:HOST:PORT`.
fn configured_ice_servers(rtc: &RtcConfig) -> Result<Vec<lkr_proto::pb::IceServer>, ConfigError> {
    let mut out = Vec::new();
    for (i, s) in rtc.turn_servers.iter().enumerate() {
        let path = |field: &str| format!("rtc.turn_servers[{i}].{field}");
        if s.host.trim().is_empty() {
            return Err(invalid(&path("host"), "is required"));
        }
        if s.port == 0 {
            return Err(invalid(&path("port"), "must be a port number (1-65535)"));
        }
        let (scheme, transport) = match s.protocol.to_ascii_lowercase().as_str() {
            "udp" => ("turn", "udp"),
            // Left out, LiveKit takes TCP.
            "tcp" | "" => ("turn", "tcp"),
            "tls" => ("turns", "tcp"),
            other => {
                return Err(invalid(
                    &path("protocol"),
                    format!("{other:?} is not one of udp, tcp, tls"),
                ));
            }
        };
        let host = if s.host.contains(':') && !s.host.starts_with('[') {
            format!("[{}]", s.host)
        } else {
            s.host.clone()
        };
        out.push(lkr_proto::pb::IceServer {
            urls: vec![format!("{scheme}:{host}:{}?transport={transport}", s.port)],
            username: s.username.clone(),
            credential: s.credential.clone(),
        });
    }
    if !rtc.stun_servers.is_empty() {
        let mut urls = Vec::with_capacity(rtc.stun_servers.len());
        for (i, a) in rtc.stun_servers.iter().enumerate() {
            if a.trim().is_empty() {
                return Err(invalid(&format!("rtc.stun_servers[{i}]"), "is empty"));
            }
            urls.push(crate::whip::stun_url(a.trim()));
        }
        out.push(lkr_proto::pb::IceServer {
            urls,
            ..Default::default()
        });
    }
    Ok(out)
}

/// `rtc:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    pub udp_port: Option<PortRange>,
    /// Media shards (0: one per core; absent: 1).
    pub shards: Option<usize>,
    /// How many more peers a room's home shard may hold than the least loaded one before
    /// the room spreads over shards.
    pub shard_spill: Option<u32>,
    /// Datagrams to one subscriber that leave together go out as one segmented send
    /// (`UDP_SEGMENT`) where the kernel offers it (absent: on).
    pub udp_segmentation: Option<bool>,
    /// A shard whose socket woke it at least this many times in a second for nothing but
    /// idle peers' upkeep reads its socket every 50 ms instead (absent: 50; 0: never).
    pub idle_poll_wakeups: Option<u32>,
    /// The signalling threads wake on a schedule after a window of nothing but clients'
    /// keepalives, at least this many a second (absent: 50; 0: never).
    pub idle_signal_pacing: Option<f64>,
    pub tcp_port: Option<u16>,
    pub port_range_start: Option<u16>,
    pub port_range_end: Option<u16>,
    pub node_ip: Option<String>,
    pub use_external_ip: bool,
    /// STUN servers (`host:port`) handed to clients in the join response.
    pub stun_servers: Vec<String>,
    pub use_ice_lite: Opaque,
    pub interfaces: IncludeExclude,
    pub ips: IncludeExclude,
    pub enable_loopback_candidate: Opaque,
    pub use_mdns: Opaque,
    pub external_ip_only: Opaque,
    pub batch_io: Opaque,
    pub force_tcp: Opaque,
    /// TURN servers of the operator's own (coturn, say), handed to clients in the join
    /// response after the embedded TURN server's.
    pub turn_servers: Vec<TurnServerSpec>,
    pub strict_acks: Opaque,
    pub packet_buffer_size: Option<i64>,
    pub packet_buffer_size_video: Option<i64>,
    pub packet_buffer_size_audio: Option<i64>,
    pub pli_throttle: PliThrottleConfig,
    pub congestion_control: CongestionControl,
    pub allow_tcp_fallback: Opaque,
    pub reconnect_on_publication_error: Opaque,
    pub reconnect_on_subscription_error: Opaque,
    pub reconnect_on_data_channel_error: Opaque,
    pub data_channel_max_buffered_amount: Option<u64>,
    pub datachannel_slow_threshold: Opaque,
    pub forward_stats: Opaque,
}

/// `rtc.interfaces` (interface names) or `rtc.ips` (CIDRs or addresses): which of the host's
/// addresses may be advertised when `node_ip` is not set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncludeExclude {
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

/// An address block: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// `10.0.0.0/16`, or a bare address (all its bits).
    fn parse(s: &str) -> Option<Cidr> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, width) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (a >> shift) == (b >> shift)
    }
}

/// Which of the host's addresses may be advertised when `node_ip` is not set (LiveKit's
/// `rtc.interfaces` and `rtc.ips`): an interface named in `includes` (when any are), not in
/// `excludes`, with an address in an `includes` block (when any are) and in no `excludes`
/// block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressFilter {
    pub interfaces_in: Vec<String>,
    pub interfaces_out: Vec<String>,
    pub ips_in: Vec<Cidr>,
    pub ips_out: Vec<Cidr>,
}

impl AddressFilter {
    fn resolve(rtc: &RtcConfig) -> Result<AddressFilter, ConfigError> {
        let cidrs = |path: &str, list: &[String]| {
            list.iter()
                .map(|s| {
                    Cidr::parse(s).ok_or_else(|| {
                        invalid(path, format!("{s:?} is not an address or CIDR block"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(AddressFilter {
            interfaces_in: rtc.interfaces.includes.clone(),
            interfaces_out: rtc.interfaces.excludes.clone(),
            ips_in: cidrs("rtc.ips.includes", &rtc.ips.includes)?,
            ips_out: cidrs("rtc.ips.excludes", &rtc.ips.excludes)?,
        })
    }

    /// Whether it says anything (an empty filter takes every address).
    pub fn is_set(&self) -> bool {
        *self != AddressFilter::default()
    }

    /// Whether the address `ip` of interface `name` may be advertised.
    pub fn allows(&self, name: &str, ip: IpAddr) -> bool {
        (self.interfaces_in.is_empty() || self.interfaces_in.iter().any(|i| i == name))
            && !self.interfaces_out.iter().any(|i| i == name)
            && (self.ips_in.is_empty() || self.ips_in.iter().any(|c| c.contains(ip)))
            && !self.ips_out.iter().any(|c| c.contains(ip))
    }

    /// The address to advertise among the host's `(interface, address)` pairs: the first
    /// non-loopback IPv4 one the filter allows.
    pub fn pick(&self, addrs: &[(String, IpAddr)]) -> Option<IpAddr> {
        addrs
            .iter()
            .find(|(name, ip)| {
                ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified() && self.allows(name, *ip)
            })
            .map(|(_, ip)| *ip)
    }
}

impl RtcConfig {
    /// `rtc.packet_buffer_size_video` / `_audio` (either defaulting to the deprecated
    /// `rtc.packet_buffer_size`, then to this server's 512): packets a published layer keeps
    /// for NACKs, 16 to 4096.
    fn packet_buffers(&self) -> Result<(usize, usize), ConfigError> {
        let (lo, hi) = lkr_sfu::forward::CACHE_SLOTS_RANGE;
        let one = |key: &str, v: Option<i64>| match v.or(self.packet_buffer_size) {
            None => Ok(lkr_sfu::forward::CACHE_SLOTS),
            Some(n) if (lo as i64..=hi as i64).contains(&n) => Ok(n as usize),
            Some(_) => Err(invalid(
                if v.is_some() {
                    key
                } else {
                    "rtc.packet_buffer_size"
                },
                format!("must be {lo}-{hi} packets"),
            )),
        };
        Ok((
            one(
                "rtc.packet_buffer_size_video",
                self.packet_buffer_size_video,
            )?,
            one(
                "rtc.packet_buffer_size_audio",
                self.packet_buffer_size_audio,
            )?,
        ))
    }
}

/// `rtc.pli_throttle`: the least time between two keyframe requests to a publisher for one
/// layer, by quality, as Go durations (`500ms`, `1s`) or integer nanoseconds, as LiveKit
/// reads them. Unset keys keep this server's 300 ms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PliThrottleConfig {
    pub low_quality: Option<Value>,
    pub mid_quality: Option<Value>,
    pub high_quality: Option<Value>,
}

/// Shortest and longest keyframe-request interval `rtc.pli_throttle` may set.
const PLI_THROTTLE_RANGE: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(10),
    std::time::Duration::from_secs(60),
);

impl PliThrottleConfig {
    fn resolve(&self) -> Result<lkr_sfu::PliThrottle, ConfigError> {
        let d = lkr_sfu::PliThrottle::default();
        let one = |key: &str, v: &Option<Value>, default: std::time::Duration| {
            let path = format!("rtc.pli_throttle.{key}");
            let Some(v) = v else { return Ok(default) };
            let parsed = match v {
                Value::String(text) => go_duration(text),
                Value::Number(n) => n.as_u64().map(std::time::Duration::from_nanos),
                _ => None,
            };
            match parsed {
                Some(t) if (PLI_THROTTLE_RANGE.0..=PLI_THROTTLE_RANGE.1).contains(&t) => Ok(t),
                Some(_) => Err(invalid(&path, "must be between 10ms and 60s")),
                None => Err(invalid(
                    &path,
                    "must be a duration such as 500ms or 1s (or integer nanoseconds)",
                )),
            }
        };
        Ok(lkr_sfu::PliThrottle {
            low: one("low_quality", &self.low_quality, d.low)?,
            mid: one("mid_quality", &self.mid_quality, d.mid)?,
            high: one("high_quality", &self.high_quality, d.high)?,
        })
    }
}

/// A Go duration string (`300ms`, `1.5s`, `1m30s`; units ns, us, µs, ms, s, m, h), as Go's
/// `time.ParseDuration` reads it, without a sign.
fn go_duration(text: &str) -> Option<std::time::Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * seconds;
    }
    (total.is_finite() && total <= 86_400.0).then(|| std::time::Duration::from_secs_f64(total))
}

/// `rtc.congestion_control`: per-subscriber bandwidth estimation from transport-cc
/// feedback, and whether it may pause a subscriber's video when not even the lowest layer
/// fits. LiveKit's other keys in this section are accepted and have no effect.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CongestionControl {
    pub enabled: bool,
    pub allow_pause: bool,
}

impl Default for CongestionControl {
    fn default() -> Self {
        CongestionControl {
            enabled: true,
            allow_pause: true,
        }
    }
}

/// One entry of `room.enabled_codecs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodecSpec {
    pub mime: String,
    pub fmtp_line: String,
}

/// `room.playout_delay`: how long subscribers should hold video before playing it out
/// (LiveKit's keys; milliseconds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayoutDelayConfig {
    pub enabled: bool,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl PlayoutDelayConfig {
    fn resolve(&self) -> Result<Option<(u32, u32)>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let ms = |path: &str, v: Option<i64>| match v {
            None => Ok(0),
            Some(n) if (0..=i64::from(lkr_room::MAX_PLAYOUT_DELAY_MS)).contains(&n) => Ok(n as u32),
            Some(_) => Err(invalid(
                path,
                format!("must be 0-{} milliseconds", lkr_room::MAX_PLAYOUT_DELAY_MS),
            )),
        };
        let min = ms("room.playout_delay.min", self.min)?;
        let max = ms("room.playout_delay.max", self.max)?;
        if max != 0 && max < min {
            return Err(invalid("room.playout_delay.max", "must not be under min"));
        }
        Ok(Some(lkr_room::playout_delay_range(min, max)))
    }
}

/// `room:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    pub auto_create: bool,
    pub enabled_codecs: Vec<CodecSpec>,
    pub max_participants: u32,
    pub empty_timeout: u32,
    pub departure_timeout: u32,
    /// Whether `MutePublishedTrack` may unmute (LiveKit's default: no).
    pub enable_remote_unmute: bool,
    pub max_metadata_size: Option<u32>,
    pub playout_delay: PlayoutDelayConfig,
    /// A subscriber's tracks of one publisher's stream share a stream id (LiveKit's
    /// default: no).
    pub sync_streams: bool,
    pub max_room_name_length: Option<u32>,
    pub max_participant_identity_length: Option<u32>,
    /// Named room configurations (LiveKit's room presets) that a CreateRoom's
    /// `room_preset` or a token's `roomPreset` picks.
    pub room_configurations: BTreeMap<String, RoomPresetConfig>,
    pub create_room_enabled: Opaque,
    pub create_room_timeout: Opaque,
    pub create_room_attempts: Opaque,
    pub update_batch_target_size: Opaque,
    pub participant_disconnect_timeout: Opaque,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            auto_create: true,
            enabled_codecs: Vec::new(),
            max_participants: 0,
            empty_timeout: 300,
            departure_timeout: 20,
            enable_remote_unmute: false,
            max_metadata_size: None,
            playout_delay: PlayoutDelayConfig::default(),
            sync_streams: false,
            max_room_name_length: None,
            max_participant_identity_length: None,
            room_configurations: BTreeMap::new(),
            create_room_enabled: None,
            create_room_timeout: None,
            create_room_attempts: None,
            update_batch_target_size: None,
            participant_disconnect_timeout: None,
        }
    }
}

/// One entry of `room.room_configurations`: a RoomConfiguration. Keys are taken in snake
/// case, in protobuf-JSON's camel case, and as LiveKit reads them from YAML (the field name
/// lower-cased: `emptytimeout`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomPresetConfig {
    pub name: String,
    #[serde(alias = "emptytimeout", alias = "emptyTimeout")]
    pub empty_timeout: u32,
    #[serde(alias = "departuretimeout", alias = "departureTimeout")]
    pub departure_timeout: u32,
    #[serde(alias = "maxparticipants", alias = "maxParticipants")]
    pub max_participants: u32,
    pub metadata: String,
    #[serde(alias = "minplayoutdelay", alias = "minPlayoutDelay")]
    pub min_playout_delay: u32,
    #[serde(alias = "maxplayoutdelay", alias = "maxPlayoutDelay")]
    pub max_playout_delay: u32,
    #[serde(alias = "syncstreams", alias = "syncStreams")]
    pub sync_streams: bool,
    /// Agents dispatched to a room created with this configuration (LiveKit Agents).
    pub agents: Vec<PresetAgentConfig>,
    /// Room composite or track egress at creation: accepted and not acted on (this server's
    /// egress is started by API).
    pub egress: Opaque,
}

/// One agent dispatch of a room configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresetAgentConfig {
    #[serde(alias = "agentname", alias = "agentName")]
    pub agent_name: String,
    pub metadata: String,
}

impl RoomPresetConfig {
    /// The configuration as the room model takes it; `name` is its key, for errors.
    fn resolve(&self, name: &str) -> Result<lkr_proto::pb::RoomConfiguration, ConfigError> {
        let path = |key: &str| format!("room.room_configurations.{name}.{key}");
        for (key, v) in [
            ("min_playout_delay", self.min_playout_delay),
            ("max_playout_delay", self.max_playout_delay),
        ] {
            if v > lkr_room::MAX_PLAYOUT_DELAY_MS {
                return Err(invalid(
                    &path(key),
                    format!("must be 0-{} milliseconds", lkr_room::MAX_PLAYOUT_DELAY_MS),
                ));
            }
        }
        if self.max_playout_delay != 0 && self.max_playout_delay < self.min_playout_delay {
            return Err(invalid(
                &path("max_playout_delay"),
                "must not be under min_playout_delay",
            ));
        }
        if self.agents.len() > lkr_room::machine::MAX_ROOM_AGENTS {
            return Err(invalid(
                &path("agents"),
                format!("at most {} agents", lkr_room::machine::MAX_ROOM_AGENTS),
            ));
        }
        Ok(lkr_proto::pb::RoomConfiguration {
            name: self.name.clone(),
            empty_timeout: self.empty_timeout,
            departure_timeout: self.departure_timeout,
            max_participants: self.max_participants,
            metadata: self.metadata.clone(),
            min_playout_delay: self.min_playout_delay,
            max_playout_delay: self.max_playout_delay,
            sync_streams: self.sync_streams,
            agents: self
                .agents
                .iter()
                .map(|a| lkr_proto::pb::RoomAgentDispatch {
                    agent_name: a.agent_name.clone(),
                    metadata: a.metadata.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }
}

/// `logging:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    pub level: Option<String>,
    pub json: bool,
    pub sample: Opaque,
    pub component_levels: Opaque,
    pub pion_level: Opaque,
    pub item_sample_seconds: Opaque,
    pub item_sample_initial: Opaque,
    pub item_sample_interval: Opaque,
}

/// `limit:`: LiveKit's keys, then this server's own caps on what one client may make the
/// server hold (documented in the README). Durations are seconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    pub num_tracks: Option<i32>,
    pub bytes_per_sec: Option<f32>,
    pub subscription_limit_video: Option<i32>,
    pub subscription_limit_audio: Option<i32>,
    pub max_metadata_size: Option<u32>,
    pub max_attributes_size: Option<u32>,
    pub max_room_name_length: Option<u32>,
    pub max_participant_identity_length: Option<u32>,
    pub max_participant_name_length: Option<u32>,
    pub signal_message_size_limit: Option<i64>,
    pub max_api_request_body_size: Option<i64>,
    pub max_cpu_utilization: Opaque,
    pub max_data_packet_size: Opaque,
    pub max_data_blob_key_length: Opaque,
    pub max_data_blobs_size: Opaque,
    pub max_data_track_custom_encoding_length: Option<u32>,
    pub agent_signal_message_size_limit: Opaque,
    // This server's own caps.
    pub max_pending_tracks: Option<u32>,
    pub max_rids_per_track: Option<u32>,
    pub max_data_channels: Option<u32>,
    pub max_data_channel_label_length: Option<u32>,
    pub max_nacks_per_packet: Option<u32>,
    pub max_retransmissions_per_sec: Option<u32>,
    pub max_http_connections: Option<u32>,
    pub http_read_header_timeout: Option<f64>,
    pub http_read_body_timeout: Option<f64>,
    pub websocket_upgrade_timeout: Option<f64>,
}

/// `webhook:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    pub api_key: String,
}

/// `egress:` (this server's own section: track egress written on the node's disk).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Where track egress files go (default `./egress`); created when needed.
    pub file_dir: Option<PathBuf>,
    /// Track egresses recording at once (default 16).
    pub max_concurrent: Option<usize>,
}

/// `redis:`: with an address (or sentinels, or cluster seeds) the node joins the cluster of
/// the nodes that share that Redis.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub address: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<i64>,
    pub use_tls: bool,
    pub tls: Opaque,
    pub sentinel_master_name: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    pub sentinel_addresses: Vec<String>,
    pub cluster_addresses: Vec<String>,
    pub dial_timeout: Opaque,
    pub read_timeout: Opaque,
    pub write_timeout: Opaque,
    pub cluster_max_redirects: Opaque,
}

impl RedisConfig {
    /// The connection settings, when this section names a Redis at all.
    fn resolve(&self) -> Option<lkr_cluster::RedisSettings> {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        let address = s(&self.address);
        if address.is_empty()
            && self.sentinel_addresses.is_empty()
            && self.cluster_addresses.is_empty()
        {
            return None;
        }
        Some(lkr_cluster::RedisSettings {
            address,
            username: s(&self.username),
            password: s(&self.password),
            db: self.db.unwrap_or(0),
            use_tls: self.use_tls,
            sentinel_master_name: s(&self.sentinel_master_name),
            sentinel_addresses: self.sentinel_addresses.clone(),
            sentinel_username: s(&self.sentinel_username),
            sentinel_password: s(&self.sentinel_password),
            cluster_addresses: self.cluster_addresses.clone(),
        })
    }
}

/// `turn:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    pub enabled: bool,
    pub domain: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub tls_port: Option<u16>,
    pub udp_port: Option<u16>,
    pub relay_range_start: Option<u16>,
    pub relay_range_end: Option<u16>,
    pub external_tls: bool,
}

/// The embedded TURN server's settings, resolved (`turn:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnSettings {
    /// TURN over UDP, and over TCP on the same port number (`turn.udp_port`, default 3478).
    pub udp_port: Option<u16>,
    /// TURN over TLS (`turn.tls_port`, default 5349), when a certificate is configured or
    /// TLS is terminated in front of the server (`external_tls`).
    pub tls: Option<TurnTls>,
    /// Relay sockets' ports (`relay_range_start..=relay_range_end`, default 30000-40000).
    pub relay_range: (u16, u16),
}

/// TURN over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnTls {
    pub port: u16,
    /// The name clients connect to and the certificate carries (`turn.domain`).
    pub domain: String,
    /// `cert_file`, `key_file`; `None` with `external_tls`.
    pub cert: Option<(String, String)>,
    /// TLS terminated by a load balancer on 443 that passes plain TCP to `port`.
    pub external: bool,
}

impl TurnConfig {
    fn resolve(&self) -> Result<Option<TurnSettings>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let udp_port = Some(self.udp_port.unwrap_or(3478)).filter(|p| *p != 0);
        let tls_port = self.tls_port.unwrap_or(5349);
        let cert = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "turn.cert_file",
                    "cert_file and key_file go together",
                ));
            }
        };
        // TLS runs when it can: a certificate, or TLS terminated in front. An explicit
        // tls_port without either is a mistake worth stopping for.
        let tls = if tls_port == 0 || (cert.is_none() && !self.external_tls) {
            if self.tls_port.is_some_and(|p| p != 0) {
                return Err(invalid(
                    "turn.tls_port",
                    "needs cert_file and key_file, or external_tls: true",
                ));
            }
            None
        } else {
            let domain = self
                .domain
                .clone()
                .filter(|d| !d.is_empty())
                .ok_or_else(|| invalid("turn.domain", "is required for TURN over TLS"))?;
            Some(TurnTls {
                port: tls_port,
                domain,
                cert: if self.external_tls { None } else { cert },
                external: self.external_tls,
            })
        };
        if udp_port.is_none() && tls.is_none() {
            return Err(invalid(
                "turn.udp_port",
                "TURN is enabled with no port to serve",
            ));
        }
        let relay_range = (
            self.relay_range_start.unwrap_or(30000),
            self.relay_range_end.unwrap_or(40000),
        );
        if relay_range.0 == 0 || relay_range.1 < relay_range.0 {
            return Err(invalid(
                "turn.relay_range_start",
                format!("{}-{} is not a port range", relay_range.0, relay_range.1),
            ));
        }
        Ok(Some(TurnSettings {
            udp_port,
            tls,
            relay_range,
        }))
    }
}

/// `audio:`: how audio levels become active speakers (LiveKit's keys and defaults, see
/// [`lkr_sfu::SpeakerDetection`]). `active_red_encoding` is accepted and has no effect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    pub active_level: Option<i64>,
    pub min_percentile: Option<i64>,
    /// Milliseconds.
    pub update_interval: Option<i64>,
    pub smooth_intervals: Option<i64>,
    pub active_red_encoding: Opaque,
}

/// Shortest `audio.update_interval` taken (other than 0, off): every interval may send each
/// room a speaker update.
const MIN_SPEAKER_INTERVAL_MS: i64 = 100;

impl AudioConfig {
    fn resolve(&self) -> Result<lkr_sfu::SpeakerDetection, ConfigError> {
        let d = lkr_sfu::SpeakerDetection::default();
        let within = |path: &str, v: Option<i64>, max: i64, what: &str| match v {
            Some(n) if !(0..=max).contains(&n) => {
                Err(invalid(path, format!("must be {what} (0-{max})")))
            }
            v => Ok(v),
        };
        let active_level = within(
            "audio.active_level",
            self.active_level,
            127,
            "a level in -dBov, 0 loudest",
        )?
        .map_or(d.active_level, |n| n as u8);
        let min_percentile = within(
            "audio.min_percentile",
            self.min_percentile,
            100,
            "a percentage",
        )?
        .map_or(d.min_percentile, |n| n as u8);
        let update_interval = match self.update_interval {
            None => d.update_interval,
            Some(0) => std::time::Duration::ZERO,
            Some(n) if (MIN_SPEAKER_INTERVAL_MS..=60_000).contains(&n) => {
                std::time::Duration::from_millis(n as u64)
            }
            Some(_) => {
                return Err(invalid(
                    "audio.update_interval",
                    format!(
                        "must be 0 (no active speakers) or {MIN_SPEAKER_INTERVAL_MS}-60000 milliseconds"
                    ),
                ));
            }
        };
        let smooth_intervals = within(
            "audio.smooth_intervals",
            self.smooth_intervals,
            1000,
            "a number of intervals",
        )?
        .map_or(d.smooth_intervals, |n| n as u32);
        Ok(lkr_sfu::SpeakerDetection {
            active_level,
            min_percentile,
            update_interval,
            smooth_intervals,
        })
    }
}

/// `prometheus:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    pub port: Option<u16>,
    pub username: String,
    pub password: String,
}

/// `ingress:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressConfig {
    pub rtmp_base_url: Opaque,
    pub whip_base_url: Opaque,
}

/// The whole YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub port: u16,
    pub bind_addresses: Vec<String>,
    pub prometheus_port: Option<u16>,
    pub prometheus: PrometheusConfig,
    pub environment: Opaque,
    pub rtc: RtcConfig,
    pub redis: RedisConfig,
    pub audio: AudioConfig,
    pub video: Opaque,
    pub room: RoomConfig,
    pub turn: TurnConfig,
    pub ingress: IngressConfig,
    pub webhook: WebhookConfig,
    pub egress: EgressConfig,
    pub node_selector: lkr_cluster::Selector,
    pub signal_relay: Opaque,
    pub psrpc: Opaque,
    pub key_file: Option<PathBuf>,
    pub keys: BTreeMap<String, String>,
    pub region: Option<String>,
    pub log_level: Option<String>,
    pub logging: LoggingConfig,
    pub limit: LimitConfig,
    pub development: bool,
    /// LiveKit data tracks (on unless set to false).
    pub enable_data_tracks: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 7880,
            bind_addresses: Vec::new(),
            prometheus_port: None,
            prometheus: PrometheusConfig::default(),
            environment: None,
            rtc: RtcConfig::default(),
            redis: RedisConfig::default(),
            audio: AudioConfig::default(),
            video: None,
            room: RoomConfig::default(),
            turn: TurnConfig::default(),
            ingress: IngressConfig::default(),
            webhook: WebhookConfig::default(),
            egress: EgressConfig::default(),
            node_selector: lkr_cluster::Selector::default(),
            signal_relay: None,
            psrpc: None,
            key_file: None,
            keys: BTreeMap::new(),
            region: None,
            log_level: None,
            logging: LoggingConfig::default(),
            limit: LimitConfig::default(),
            development: false,
            enable_data_tracks: None,
        }
    }
}

/// Config paths this server acts on; any other key present in a file is logged as not yet
/// supported. A path covers everything below it.
const SUPPORTED: &[&str] = &[
    "port",
    "bind_addresses",
    "rtc.udp_port",
    "rtc.shards",
    "rtc.shard_spill",
    "rtc.udp_segmentation",
    "rtc.idle_poll_wakeups",
    "rtc.idle_signal_pacing",
    "rtc.node_ip",
    "rtc.turn_servers",
    "rtc.tcp_port",
    "rtc.pli_throttle",
    "rtc.interfaces",
    "rtc.packet_buffer_size",
    "rtc.packet_buffer_size_video",
    "rtc.packet_buffer_size_audio",
    "rtc.ips",
    "audio.active_level",
    "audio.min_percentile",
    "audio.update_interval",
    "audio.smooth_intervals",
    "turn",
    "keys",
    "key_file",
    "region",
    "development",
    "log_level",
    "logging.level",
    "logging.json",
    "room.auto_create",
    "room.enabled_codecs",
    "room.max_participants",
    "room.enable_remote_unmute",
    "enable_data_tracks",
    "limit.max_data_track_custom_encoding_length",
    "room.sync_streams",
    "room.room_configurations",
    "room.playout_delay",
    "room.empty_timeout",
    "room.departure_timeout",
    "room.max_metadata_size",
    "room.max_room_name_length",
    "limit.max_metadata_size",
    "limit.max_attributes_size",
    "limit.max_room_name_length",
    "limit.max_api_request_body_size",
    "webhook.urls",
    "webhook.api_key",
    "egress.file_dir",
    "egress.max_concurrent",
    "prometheus_port",
    "prometheus.port",
    "prometheus.username",
    "prometheus.password",
    "limit.signal_message_size_limit",
    "limit.max_http_connections",
    "limit.http_read_header_timeout",
    "limit.http_read_body_timeout",
    "limit.websocket_upgrade_timeout",
    "limit.max_nacks_per_packet",
    "limit.max_retransmissions_per_sec",
    "limit.max_data_channels",
    "limit.max_data_channel_label_length",
    "limit.num_tracks",
    "limit.subscription_limit_audio",
    "limit.subscription_limit_video",
    "limit.max_participant_name_length",
    "limit.max_participant_identity_length",
    "limit.max_pending_tracks",
    "rtc.data_channel_max_buffered_amount",
    "rtc.stun_servers",
    "redis.address",
    "redis.username",
    "redis.password",
    "redis.db",
    "redis.use_tls",
    "redis.sentinel_master_name",
    "redis.sentinel_username",
    "redis.sentinel_password",
    "redis.sentinel_addresses",
    "redis.cluster_addresses",
    "node_selector",
];

fn unsupported_paths(prefix: &str, v: &Value, out: &mut Vec<String>) {
    let Value::Mapping(m) = v else { return };
    for (k, v) in m {
        let key = match k {
            Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        };
        let path = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        if SUPPORTED.contains(&path.as_str()) {
            continue;
        }
        if SUPPORTED.iter().any(|s| s.starts_with(&format!("{path}."))) {
            unsupported_paths(&path, v, out);
        } else if !v.is_null() {
            out.push(path);
        }
    }
}

impl Config {
    /// Parses a YAML body strictly. Returns the config and the paths of keys that are
    /// accepted but not acted on yet.
    pub fn load(yaml: &str) -> Result<(Config, Vec<String>), ConfigError> {
        if yaml.trim().is_empty() {
            return Ok((Config::default(), Vec::new()));
        }
        let value: Value = serde_yaml_ng::from_str(yaml).map_err(|e| invalid("<yaml>", e))?;
        if value.is_null() {
            return Ok((Config::default(), Vec::new()));
        }
        if !value.is_mapping() {
            return Err(invalid(
                "<root>",
                "the configuration must be a YAML mapping",
            ));
        }
        let config: Config = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            // The path already ends at the unknown key itself.
            if msg.starts_with("unknown field") {
                return invalid(&path, format!("unknown key {path:?}"));
            }
            invalid(&path, msg)
        })?;
        let mut unsupported = Vec::new();
        unsupported_paths("", &value, &mut unsupported);
        Ok((config, unsupported))
    }

    /// Reads and parses a config file.
    pub fn load_file(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let body = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            file: path.to_path_buf(),
            err,
        })?;
        Config::load(&body)
    }
}

/// Parses `key: secret` YAML (a `--keys` value, `LIVEKIT_KEYS` or a key file).
pub fn parse_keys(yaml: &str, origin: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let keys: BTreeMap<String, String> = serde_yaml_ng::from_str(yaml).map_err(|e| {
        ConfigError::Keys(format!(
            "{origin}: expected YAML lines of the form \"key: secret\" (the space after the colon is required): {e}"
        ))
    })?;
    if let Some((k, _)) = keys.iter().find(|(k, v)| k.is_empty() || v.is_empty()) {
        return Err(ConfigError::Keys(format!(
            "{origin}: key {k:?} has an empty key or secret"
        )));
    }
    Ok(keys)
}

/// Reads a key file, refusing one that anyone but its owner may read or write (group or
/// others): the README asks for `chmod 600`, stricter than LiveKit, which checks only others.
pub fn read_key_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let kf = |msg: String| ConfigError::KeyFile {
        file: path.to_path_buf(),
        msg,
    };
    let meta = std::fs::metadata(path).map_err(|e| kf(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(kf(format!(
                "permissions are {:o}: group and others must have no access (chmod 600 {})",
                mode & 0o777,
                path.display()
            )));
        }
    }
    let body = std::fs::read_to_string(path).map_err(|e| kf(e.to_string()))?;
    parse_keys(&body, &path.display().to_string())
}

/// Overrides from the command line and environment, applied over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub dev: bool,
    pub bind: Vec<String>,
    pub port: Option<u16>,
    pub udp_port: Option<String>,
    pub node_ip: Option<String>,
    pub region: Option<String>,
    pub keys: Option<String>,
    pub key_file: Option<PathBuf>,
    pub shards: Option<usize>,
    pub shard_spill: Option<u32>,
}

/// Caps on what one client may make the server hold or do. LiveKit's names where LiveKit has
/// the limit (`limit.*`, `rtc.data_channel_max_buffered_amount`), the README's for the rest.
/// A count or size of 0 means "no limit" only where LiveKit says so (`num_tracks`,
/// `bytes_per_sec`, the subscription limits, `signal_message_size_limit`,
/// `max_api_request_body_size`); this server's own caps are always finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Tracks one participant may publish (0: no limit). LiveKit's `limit.num_tracks`.
    pub num_tracks: u32,
    /// Bytes per second one participant may publish (0: no limit). `limit.bytes_per_sec`.
    pub bytes_per_sec: f32,
    /// Video tracks one participant may subscribe to (0: no limit).
    pub subscription_limit_video: u32,
    /// Audio tracks one participant may subscribe to (0: no limit).
    pub subscription_limit_audio: u32,
    /// Longest participant name, in bytes (0: no limit).
    pub max_participant_name_length: usize,
    /// Longest participant identity, in bytes (0: no limit).
    pub max_participant_identity_length: usize,
    /// Largest signalling WebSocket message, in bytes (0: no limit).
    pub signal_message_size_limit: usize,
    /// AddTrack requests of one participant waiting for their offer.
    pub max_pending_tracks: usize,
    /// Simulcast layers (rids) of one published track.
    pub max_rids_per_track: usize,
    /// Data channels on one participant's SCTP association.
    pub max_data_channels: usize,
    /// Longest data channel label or protocol, in bytes.
    pub max_data_channel_label_length: usize,
    /// Bytes queued for sending on one SCTP association; beyond it messages are dropped and
    /// counted. `rtc.data_channel_max_buffered_amount` (LiveKit's 0, unlimited, is replaced
    /// by this server's default).
    pub data_channel_max_buffered_amount: usize,
    /// Distinct lost packets one RTCP datagram may ask to be resent.
    pub max_nacks_per_packet: usize,
    /// Retransmissions sent to one peer per second.
    pub max_retransmissions_per_sec: u32,
    /// HTTP connections open at once (WebSockets included); more get a 503 and are closed.
    pub max_http_connections: usize,
    /// Time to receive a request's headers, and the longest idle keep-alive connection.
    pub http_read_header_timeout: std::time::Duration,
    /// Time to receive a request's body.
    pub http_read_body_timeout: std::time::Duration,
    /// Time from the 101 answer until the WebSocket is usable; else the join is undone.
    pub websocket_upgrade_timeout: std::time::Duration,
    /// Longest custom encoding a data track may name, in bytes (LiveKit's
    /// `limit.max_data_track_custom_encoding_length`, 32; 0 leaves this server's own cap of
    /// 256).
    pub max_data_track_custom_encoding: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            num_tracks: 0,
            bytes_per_sec: 0.0,
            subscription_limit_video: 0,
            subscription_limit_audio: 0,
            max_participant_name_length: 256,
            max_participant_identity_length: 256,
            signal_message_size_limit: 2 << 20,
            max_pending_tracks: 32,
            max_rids_per_track: 3,
            max_data_channels: 16,
            max_data_channel_label_length: 256,
            data_channel_max_buffered_amount: 8 << 20,
            max_nacks_per_packet: 256,
            max_retransmissions_per_sec: 2000,
            max_http_connections: 4096,
            http_read_header_timeout: std::time::Duration::from_secs(10),
            http_read_body_timeout: std::time::Duration::from_secs(30),
            websocket_upgrade_timeout: std::time::Duration::from_secs(10),
            max_data_track_custom_encoding: 32,
        }
    }
}

impl Limits {
    fn resolve(c: &Config) -> Result<Limits, ConfigError> {
        let l = &c.limit;
        let d = Limits::default();
        let non_negative = |path: &str, v: Option<i32>, default: u32| match v {
            None => Ok(default),
            Some(n) if n < 0 => Ok(0), // LiveKit's sample writes -1 for "no limit"
            Some(n) => u32::try_from(n).map_err(|_| invalid(path, "out of range")),
        };
        let positive = |path: &str, v: Option<u32>, default: usize| match v {
            None => Ok(default),
            Some(0) => Err(invalid(path, "must be at least 1")),
            Some(n) => Ok(n as usize),
        };
        let seconds = |path: &str, v: Option<f64>, default: std::time::Duration| match v {
            None => Ok(default),
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                Ok(std::time::Duration::from_secs_f64(s))
            }
            Some(_) => Err(invalid(
                path,
                "must be a number of seconds above 0 (at most 86400)",
            )),
        };
        let size = |path: &str, v: Option<i64>, default: usize| match v {
            None => Ok(default),
            Some(n) if n <= 0 => Ok(0),
            Some(n) => usize::try_from(n).map_err(|_| invalid(path, "out of range")),
        };
        Ok(Limits {
            num_tracks: non_negative("limit.num_tracks", l.num_tracks, d.num_tracks)?,
            bytes_per_sec: l.bytes_per_sec.unwrap_or(d.bytes_per_sec).max(0.0),
            subscription_limit_video: non_negative(
                "limit.subscription_limit_video",
                l.subscription_limit_video,
                d.subscription_limit_video,
            )?,
            subscription_limit_audio: non_negative(
                "limit.subscription_limit_audio",
                l.subscription_limit_audio,
                d.subscription_limit_audio,
            )?,
            max_participant_name_length: l
                .max_participant_name_length
                .map_or(d.max_participant_name_length, |n| n as usize),
            max_participant_identity_length: l
                .max_participant_identity_length
                .or(c.room.max_participant_identity_length)
                .map_or(d.max_participant_identity_length, |n| n as usize),
            signal_message_size_limit: size(
                "limit.signal_message_size_limit",
                l.signal_message_size_limit,
                d.signal_message_size_limit,
            )?,
            max_pending_tracks: positive(
                "limit.max_pending_tracks",
                l.max_pending_tracks,
                d.max_pending_tracks,
            )?,
            max_rids_per_track: match positive(
                "limit.max_rids_per_track",
                l.max_rids_per_track,
                d.max_rids_per_track,
            )? {
                n if n > lkr_room::negotiation::MAX_SIMULCAST_LAYERS => {
                    return Err(invalid(
                        "limit.max_rids_per_track",
                        "must be at most 3 (LiveKit's q, h and f)",
                    ));
                }
                n => n,
            },
            max_data_channels: positive(
                "limit.max_data_channels",
                l.max_data_channels,
                d.max_data_channels,
            )?,
            max_data_channel_label_length: positive(
                "limit.max_data_channel_label_length",
                l.max_data_channel_label_length,
                d.max_data_channel_label_length,
            )?,
            data_channel_max_buffered_amount: match c.rtc.data_channel_max_buffered_amount {
                None | Some(0) => d.data_channel_max_buffered_amount,
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            },
            max_nacks_per_packet: positive(
                "limit.max_nacks_per_packet",
                l.max_nacks_per_packet,
                d.max_nacks_per_packet,
            )?,
            max_retransmissions_per_sec: positive(
                "limit.max_retransmissions_per_sec",
                l.max_retransmissions_per_sec,
                d.max_retransmissions_per_sec as usize,
            )? as u32,
            max_http_connections: positive(
                "limit.max_http_connections",
                l.max_http_connections,
                d.max_http_connections,
            )?,
            http_read_header_timeout: seconds(
                "limit.http_read_header_timeout",
                l.http_read_header_timeout,
                d.http_read_header_timeout,
            )?,
            http_read_body_timeout: seconds(
                "limit.http_read_body_timeout",
                l.http_read_body_timeout,
                d.http_read_body_timeout,
            )?,
            websocket_upgrade_timeout: seconds(
                "limit.websocket_upgrade_timeout",
                l.websocket_upgrade_timeout,
                d.websocket_upgrade_timeout,
            )?,
            max_data_track_custom_encoding: l
                .max_data_track_custom_encoding_length
                .map_or(d.max_data_track_custom_encoding, |n| n as usize),
        })
    }
}

/// The settings the server runs with, after every source was applied and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: Vec<IpAddr>,
    pub http_port: u16,
    pub udp_port: PortRange,
    /// Media shards, resolved (at least 1).
    pub shards: usize,
    pub shard_spill: u32,
    /// Segmented sends of the media (`rtc.udp_segmentation`, default on).
    pub udp_segmentation: bool,
    /// Wake-ups a second for idle upkeep past which a shard polls its socket
    /// (`rtc.idle_poll_wakeups`, default [`lkr_driver::IDLE_POLL_WAKEUPS`]; 0: never).
    pub idle_poll_wakeups: u32,
    /// Keepalives a second past which the signalling threads pace (`rtc.idle_signal_pacing`,
    /// default [`lkr_signal::pacing::PACE_KEEPALIVES`]; 0: never).
    pub idle_signal_pacing: f64,
    /// The ICE-TCP port (`rtc.tcp_port`, default 7881; 0 turns ICE-TCP off).
    pub tcp_port: Option<u16>,
    /// The embedded TURN server (`turn:`), when enabled.
    pub turn: Option<TurnSettings>,
    pub node_ip: Option<IpAddr>,
    /// Which host address is advertised when `node_ip` is not set (`rtc.interfaces`,
    /// `rtc.ips`).
    pub address_filter: AddressFilter,
    pub region: String,
    pub keys: BTreeMap<String, String>,
    pub development: bool,
    pub log_level: String,
    pub log_json: bool,
    pub room: lkr_room::RoomDefaults,
    pub auto_create: bool,
    /// Largest Twirp request body, in bytes (LiveKit's `limit.max_api_request_body_size`;
    /// 0: no limit).
    pub max_api_request_body_size: u64,
    /// Largest total size of a participant's attributes, in bytes (0: no limit).
    pub max_attributes_size: usize,
    /// `room.enable_remote_unmute`: whether `MutePublishedTrack` may unmute a track.
    pub enable_remote_unmute: bool,
    /// `enable_data_tracks`: whether participants may publish data tracks (default on).
    pub enable_data_tracks: bool,
    /// ICE servers of `rtc.turn_servers` and `rtc.stun_servers`, for every join response.
    pub ice_servers: Vec<lkr_proto::pb::IceServer>,
    /// Where room events are POSTed (`webhook:`), when any URL is set.
    pub webhook: Option<crate::webhook::WebhookSettings>,
    /// The metrics port (`prometheus:` or `prometheus_port`), when set.
    pub prometheus: Option<crate::metrics::PrometheusSettings>,
    /// Every other cap (`limit:` and `rtc.data_channel_max_buffered_amount`).
    pub limits: Limits,
    /// `rtc.congestion_control`.
    pub congestion_control: CongestionControl,
    /// Active speaker detection (`audio:`).
    pub speakers: lkr_sfu::SpeakerDetection,
    /// Keyframe-request intervals by layer quality (`rtc.pli_throttle`).
    pub pli_throttle: lkr_sfu::PliThrottle,
    /// Packets a published layer keeps for NACKs: video, audio (`rtc.packet_buffer_size*`).
    pub packet_buffer: (usize, usize),
    /// Where track egress files go (`egress.file_dir`).
    pub egress_dir: PathBuf,
    /// Track egresses recording at once (`egress.max_concurrent`, at least 1).
    pub max_egresses: usize,
    /// The cluster's Redis (`redis:`), when the node is one of several.
    pub redis: Option<lkr_cluster::RedisSettings>,
    /// Which node gets a new room (`node_selector:`).
    pub node_selector: lkr_cluster::Selector,
}

impl Settings {
    /// Resolves the file config and the overrides into runnable settings.
    pub fn resolve(config: &Config, o: &Overrides) -> Result<Settings, ConfigError> {
        let development = config.development || o.dev;
        let port = o.port.unwrap_or(config.port);
        if port == 0 {
            return Err(invalid("port", "must be a port number (1-65535)"));
        }
        let bind_src: Vec<String> = if !o.bind.is_empty() {
            o.bind.clone()
        } else if !config.bind_addresses.is_empty() {
            config.bind_addresses.clone()
        } else if development {
            vec!["127.0.0.1".into()]
        } else {
            vec!["0.0.0.0".into()]
        };
        let bind = bind_src
            .iter()
            .map(|b| {
                b.parse::<IpAddr>()
                    .map_err(|_| invalid("bind_addresses", format!("{b:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let udp_port = match &o.udp_port {
            Some(s) => PortRange::parse(s).map_err(|m| invalid("udp-port", m))?,
            None => config.rtc.udp_port.unwrap_or(PortRange {
                start: 7882,
                end: 7882,
            }),
        };
        let node_ip = match o.node_ip.as_ref().or(config.rtc.node_ip.as_ref()) {
            Some(s) if !s.is_empty() => Some(
                s.parse::<IpAddr>()
                    .map_err(|_| invalid("rtc.node_ip", format!("{s:?} is not an IP address")))?,
            ),
            _ => None,
        };

        let mut keys = BTreeMap::new();
        if let Some(file) = o.key_file.as_ref().or(config.key_file.as_ref()) {
            keys.extend(read_key_file(file)?);
        }
        keys.extend(config.keys.clone());
        if let Some(k) = &o.keys {
            keys.extend(parse_keys(k, "--keys/LIVEKIT_KEYS")?);
        }
        if keys.is_empty() {
            if development {
                keys.insert("devkey".into(), "secret".into());
            } else {
                return Err(ConfigError::NoKeys);
            }
        }

        let log_level = config
            .logging
            .level
            .clone()
            .or_else(|| config.log_level.clone())
            .unwrap_or_else(|| if development { "debug" } else { "info" }.into());
        if !["trace", "debug", "info", "warn", "error"].contains(&log_level.as_str()) {
            return Err(invalid(
                "logging.level",
                format!("{log_level:?} is not one of trace, debug, info, warn, error"),
            ));
        }

        let mut room = lkr_room::RoomDefaults {
            empty_timeout: config.room.empty_timeout,
            departure_timeout: config.room.departure_timeout,
            max_participants: config.room.max_participants,
            sync_streams: config.room.sync_streams,
            playout_delay: config.room.playout_delay.resolve()?,
            presets: config
                .room
                .room_configurations
                .iter()
                .map(|(name, p)| Ok((name.clone(), p.resolve(name)?)))
                .collect::<Result<_, ConfigError>>()?,
            ..Default::default()
        };
        if !config.room.enabled_codecs.is_empty() {
            room.enabled_codecs = config
                .room
                .enabled_codecs
                .iter()
                .map(|c| lkr_proto::pb::Codec {
                    mime: c.mime.clone(),
                    fmtp_line: c.fmtp_line.clone(),
                })
                .collect();
        }
        if let Some(n) = config
            .limit
            .max_room_name_length
            .or(config.room.max_room_name_length)
        {
            room.max_room_name_length = n as usize;
        }
        if let Some(n) = config
            .limit
            .max_metadata_size
            .or(config.room.max_metadata_size)
        {
            room.max_metadata_size = n as usize;
        }
        let idle_signal_pacing = config
            .rtc
            .idle_signal_pacing
            .unwrap_or(lkr_signal::pacing::PACE_KEEPALIVES);
        if !(idle_signal_pacing.is_finite() && idle_signal_pacing >= 0.0) {
            return Err(invalid(
                "rtc.idle_signal_pacing",
                "must be a number of keepalives a second, 0 (never) or more",
            ));
        }
        let webhook = if config.webhook.urls.is_empty() {
            None
        } else {
            let key = &config.webhook.api_key;
            if key.is_empty() {
                return Err(invalid(
                    "webhook.api_key",
                    "is required to sign webhooks (one of the keys)",
                ));
            }
            let Some(secret) = keys.get(key) else {
                return Err(invalid("webhook.api_key", "is not one of the keys"));
            };
            for url in &config.webhook.urls {
                if !url.starts_with("http://") {
                    return Err(invalid(
                        "webhook.urls",
                        format!("{url:?}: only http:// URLs are supported"),
                    ));
                }
                url.parse::<http::Uri>()
                    .map_err(|e| invalid("webhook.urls", format!("{url:?}: {e}")))?;
            }
            Some(crate::webhook::WebhookSettings {
                api_key: key.clone(),
                api_secret: secret.clone(),
                urls: config.webhook.urls.clone(),
            })
        };
        let prometheus = config
            .prometheus
            .port
            .or(config.prometheus_port)
            .filter(|p| *p != 0)
            .map(|port| crate::metrics::PrometheusSettings {
                port,
                username: config.prometheus.username.clone(),
                password: config.prometheus.password.clone(),
            });
        let max_egresses = config.egress.max_concurrent.unwrap_or(16);
        if max_egresses == 0 {
            return Err(invalid("egress.max_concurrent", "must be at least 1"));
        }
        Ok(Settings {
            egress_dir: config
                .egress
                .file_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("egress")),
            max_egresses,
            webhook,
            prometheus,
            bind,
            http_port: port,
            udp_port,
            shards: match o.shards.or(config.rtc.shards).unwrap_or(1) {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            }
            .min(lkr_driver::MAX_SHARDS),
            shard_spill: o
                .shard_spill
                .or(config.rtc.shard_spill)
                .unwrap_or(lkr_driver::DEFAULT_SPILL),
            udp_segmentation: config.rtc.udp_segmentation.unwrap_or(true),
            idle_poll_wakeups: config
                .rtc
                .idle_poll_wakeups
                .unwrap_or(lkr_driver::IDLE_POLL_WAKEUPS),
            idle_signal_pacing,
            turn: config.turn.resolve()?,
            tcp_port: match config.rtc.tcp_port.unwrap_or(7881) {
                0 => None,
                p => Some(p),
            },
            node_ip,
            address_filter: AddressFilter::resolve(&config.rtc)?,
            region: o
                .region
                .clone()
                .or_else(|| config.region.clone())
                .unwrap_or_default(),
            keys,
            development,
            log_level,
            log_json: config.logging.json,
            room,
            auto_create: config.room.auto_create,
            max_api_request_body_size: match config.limit.max_api_request_body_size {
                None => 10 << 20,
                Some(n) => u64::try_from(n).unwrap_or(0),
            },
            max_attributes_size: config.limit.max_attributes_size.unwrap_or(64 * 1024) as usize,
            enable_remote_unmute: config.room.enable_remote_unmute,
            enable_data_tracks: config.enable_data_tracks.unwrap_or(true),
            ice_servers: configured_ice_servers(&config.rtc)?,
            limits: Limits::resolve(config)?,
            congestion_control: config.rtc.congestion_control.clone(),
            speakers: config.audio.resolve()?,
            pli_throttle: config.rtc.pli_throttle.resolve()?,
            packet_buffer: config.rtc.packet_buffers()?,
            redis: config.redis.resolve(),
            node_selector: config.node_selector.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        Config::load(yaml).unwrap_err().to_string()
    }

    #[test]
    fn livekit_sample_fields_parse() {
        let yaml = r#"
port: 7890
bind_addresses: ["127.0.0.1"]
rtc:
  udp_port: 7882
  tcp_port: 7881
  node_ip: 10.0.0.1
  use_external_ip: false
  congestion_control:
    enabled: true
room:
  auto_create: false
  empty_timeout: 60
  departure_timeout: 5
  max_participants: 10
  enable_remote_unmute: true
  enabled_codecs:
    - mime: audio/opus
    - mime: video/vp8
keys:
  k1: s1
logging:
  level: warn
  json: true
  pion_level: error
limit:
  num_tracks: -1
  max_metadata_size: 100
webhook:
  api_key: k1
  urls: ["http://127.0.0.1:9/"]
redis:
  address: 127.0.0.1:6379
prometheus:
  port: 6789
region: us-west
"#;
        let (c, unsupported) = Config::load(yaml).unwrap();
        assert_eq!(c.port, 7890);
        assert_eq!(
            c.rtc.udp_port,
            Some(PortRange {
                start: 7882,
                end: 7882
            })
        );
        assert!(!c.room.auto_create);
        assert!(c.rtc.congestion_control.enabled);
        assert!(
            unsupported.iter().any(|u| u == "logging.pion_level"),
            "logging.pion_level not reported: {unsupported:?}"
        );
        assert!(!unsupported.iter().any(|u| u.starts_with("redis")));
        assert!(!unsupported.iter().any(|u| u == "port"
            || u.starts_with("room.empty")
            || u == "room.enable_remote_unmute"));
        let s = Settings::resolve(&c, &Overrides::default()).unwrap();
        assert!(s.enable_remote_unmute);
        assert!(
            !Settings::resolve(
                &Config::load("keys: {a: b}").unwrap().0,
                &Overrides::default()
            )
            .unwrap()
            .enable_remote_unmute,
            "off unless configured, as in LiveKit"
        );
        assert_eq!(s.http_port, 7890);
        assert_eq!(s.log_level, "warn");
        assert!(s.log_json);
        assert_eq!(s.room.empty_timeout, 60);
        assert_eq!(s.room.max_metadata_size, 100);
        assert_eq!(s.room.enabled_codecs.len(), 2);
        assert_eq!(s.keys.get("k1").map(String::as_str), Some("s1"));
        assert_eq!(s.node_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            s.redis.as_ref().map(|r| r.address.as_str()),
            Some("127.0.0.1:6379")
        );
        assert_eq!(s.tcp_port, Some(7881));
        for (yaml, port) in [
            ("keys: {k: s}\n", Some(7881)),
            ("keys: {k: s}\nrtc: {tcp_port: 0}\n", None),
            ("keys: {k: s}\nrtc: {tcp_port: 443}\n", Some(443)),
        ] {
            let (c, _) = Config::load(yaml).unwrap();
            let t = Settings::resolve(&c, &Overrides::default()).unwrap();
            assert_eq!(t.tcp_port, port, "{yaml}");
        }
        assert_eq!(s.turn, None, "TURN is off unless enabled");
        let turn = |yaml: &str| {
            let (c, _) = Config::load(&format!("keys: {{k: s}}\nturn:\n{yaml}")).unwrap();
            Settings::resolve(&c, &Overrides::default()).map(|s| s.turn)
        };
        assert_eq!(
            turn("  enabled: true\n").unwrap(),
            Some(TurnSettings {
                udp_port: Some(3478),
                tls: None,
                relay_range: (30000, 40000)
            })
        );
        let ext = turn("  enabled: true\n  external_tls: true\n  domain: turn.example.com\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            ext.tls,
            Some(TurnTls {
                port: 5349,
                domain: "turn.example.com".into(),
                cert: None,
                external: true
            })
        );
        for (yaml, key) in [
            ("  enabled: true\n  tls_port: 443\n", "turn.tls_port"),
            (
                "  enabled: true\n  cert_file: a.pem\n  key_file: b.pem\n",
                "turn.domain",
            ),
            ("  enabled: true\n  cert_file: a.pem\n", "turn.cert_file"),
            (
                "  enabled: true\n  relay_range_start: 5\n  relay_range_end: 4\n",
                "turn.relay_range_start",
            ),
        ] {
            let e = turn(yaml).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
        let wh = s.webhook.expect("webhook settings");
        assert_eq!((wh.api_key.as_str(), wh.api_secret.as_str()), ("k1", "s1"));
        assert_eq!(wh.urls, ["http://127.0.0.1:9/"]);
        assert_eq!(s.prometheus.map(|p| p.port), Some(6789));
    }

    #[test]
    fn egress_settings_have_defaults_and_a_nonzero_cap() {
        let resolve = |yaml: &str| {
            let (c, unsupported) = Config::load(yaml).unwrap();
            assert!(unsupported.is_empty(), "{unsupported:?}");
            Settings::resolve(&c, &Overrides::default())
        };
        let s = resolve("keys:\n  k1: s1\n").unwrap();
        assert_eq!(
            (s.egress_dir.as_path(), s.max_egresses),
            (Path::new("egress"), 16)
        );
        let s =
            resolve("keys:\n  k1: s1\negress:\n  file_dir: /rec\n  max_concurrent: 2\n").unwrap();
        assert_eq!(
            (s.egress_dir.as_path(), s.max_egresses),
            (Path::new("/rec"), 2)
        );
        let e = resolve("keys:\n  k1: s1\negress:\n  max_concurrent: 0\n").unwrap_err();
        assert!(e.to_string().contains("egress.max_concurrent"), "{e}");
        assert!(
            Config::load("egress:\n  file_dri: x\n").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn webhook_keys_must_be_known() {
        let base = "keys:\n  k1: s1\nwebhook:\n  urls: [\"http://127.0.0.1:9/\"]\n";
        let resolve = |yaml: String| {
            let (c, _) = Config::load(&yaml).unwrap();
            Settings::resolve(&c, &Overrides::default()).map(|_| ())
        };
        let e = resolve(base.to_string()).unwrap_err().to_string();
        assert!(e.contains("webhook.api_key"), "{e}");
        let e = resolve(format!("{base}  api_key: nope\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not one of the keys"), "{e}");
        assert!(resolve(format!("{base}  api_key: k1\n")).is_ok());
    }

    #[test]
    fn limits_have_livekit_names_and_defaults() {
        let (c, _) = Config::load("keys: {a: b}\n").unwrap();
        let s = Settings::resolve(&c, &Overrides::default()).unwrap();
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.max_api_request_body_size, 10 << 20);
        assert_eq!(s.limits.signal_message_size_limit, 2 << 20);
        assert_eq!(s.limits.max_participant_name_length, 256);
        let yaml = "keys: {a: b}
rtc:
  data_channel_max_buffered_amount: 65536
limit:
  num_tracks: 12
  bytes_per_sec: 4194304
  subscription_limit_audio: 5
  subscription_limit_video: 6
  max_participant_name_length: 40
  signal_message_size_limit: 262144
  max_api_request_body_size: 1024
  max_pending_tracks: 4
  max_rids_per_track: 2
  max_data_channels: 3
  max_data_channel_label_length: 10
  max_nacks_per_packet: 50
  max_retransmissions_per_sec: 100
  max_http_connections: 7
  http_read_header_timeout: 1.5
  http_read_body_timeout: 2
  websocket_upgrade_timeout: 3
";
        let (c, _) = Config::load(yaml).unwrap();
        let l = Settings::resolve(&c, &Overrides::default()).unwrap();
        assert_eq!(l.max_api_request_body_size, 1024);
        let l = l.limits;
        assert_eq!((l.num_tracks, l.bytes_per_sec), (12, 4194304.0));
        assert_eq!(
            (l.subscription_limit_audio, l.subscription_limit_video),
            (5, 6)
        );
        assert_eq!(l.max_participant_name_length, 40);
        assert_eq!(l.signal_message_size_limit, 262144);
        assert_eq!((l.max_pending_tracks, l.max_rids_per_track), (4, 2));
        assert_eq!(
            (l.max_data_channels, l.max_data_channel_label_length),
            (3, 10)
        );
        assert_eq!(l.data_channel_max_buffered_amount, 65536);
        assert_eq!(
            (l.max_nacks_per_packet, l.max_retransmissions_per_sec),
            (50, 100)
        );
        assert_eq!(l.max_http_connections, 7);
        assert_eq!(l.http_read_header_timeout.as_millis(), 1500);
        assert_eq!(l.websocket_upgrade_timeout.as_secs(), 3);
        // LiveKit's "no limit" spellings; our own caps cannot be switched off.
        let (c, _) = Config::load(
            "keys: {a: b}\nlimit:\n  num_tracks: -1\n  max_api_request_body_size: 0\n",
        )
        .unwrap();
        let s = Settings::resolve(&c, &Overrides::default()).unwrap();
        assert_eq!((s.limits.num_tracks, s.max_api_request_body_size), (0, 0));
        for bad in [
            "max_data_channels: 0",
            "max_rids_per_track: 4",
            "http_read_body_timeout: 0",
            "http_read_header_timeout: -1",
        ] {
            let (c, _) = Config::load(&format!("keys: {{a: b}}\nlimit:\n  {bad}\n")).unwrap();
            let e = Settings::resolve(&c, &Overrides::default())
                .unwrap_err()
                .to_string();
            let key = bad.split(':').next().unwrap();
            assert!(e.contains(&format!("limit.{key}")), "{e}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("port: 7880\nbogus: 1\n");
        assert!(e.contains("\"bogus\""), "{e}");
        let e = err("rtc:\n  udp_port: 7882\n  nope: true\n");
        assert!(e.contains("rtc.nope"), "{e}");
        let e = err("room:\n  empty_timout: 3\n");
        assert!(e.contains("room.empty_timout"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = err("port: 99999\n");
        assert!(e.contains("port"), "{e}");
        let e = err("rtc:\n  udp_port: \"9-1\"\n");
        assert!(e.contains("rtc.udp_port"), "{e}");
        let e = err("room:\n  empty_timeout: soon\n");
        assert!(e.contains("room.empty_timeout"), "{e}");
        let e = err("- a\n- b\n");
        assert!(e.contains("mapping"), "{e}");
        let (c, _) = Config::load("logging:\n  level: loud\nkeys: {a: b}\n").unwrap();
        let e = Settings::resolve(&c, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("logging.level"), "{e}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("50000-60000"),
            Ok(PortRange {
                start: 50000,
                end: 60000
            })
        );
        assert!(PortRange::parse("0").is_err());
        assert!(PortRange::parse("abc").is_err());
    }

    #[test]
    fn no_keys_refused_dev_adds_devkey() {
        let c = Config::default();
        let e = Settings::resolve(&c, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("generate-keys"), "{e}");
        let s = Settings::resolve(
            &c,
            &Overrides {
                dev: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.keys.get("devkey").map(String::as_str), Some("secret"));
        assert_eq!(s.bind, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.udp_port.start, 7882);
        assert_eq!(s.log_level, "debug");
    }

    #[test]
    fn shards_from_file_and_flags() {
        let dev = Overrides {
            dev: true,
            ..Default::default()
        };
        let s = Settings::resolve(&Config::default(), &dev).unwrap();
        assert_eq!((s.shards, s.shard_spill), (1, lkr_driver::DEFAULT_SPILL));
        let (c, unsupported) = Config::load("rtc:\n  shards: 3\n  shard_spill: 5\n").unwrap();
        assert!(unsupported.is_empty(), "{unsupported:?}");
        let s = Settings::resolve(&c, &dev).unwrap();
        assert_eq!((s.shards, s.shard_spill), (3, 5));
        let o = Overrides {
            shards: Some(0),
            ..dev
        };
        let s = Settings::resolve(&c, &o).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(s.shards, cores, "0 means one per core");
    }

    #[test]
    fn udp_segmentation_is_on_unless_turned_off() {
        let dev = Overrides {
            dev: true,
            ..Default::default()
        };
        assert!(
            Settings::resolve(&Config::default(), &dev)
                .unwrap()
                .udp_segmentation
        );
        let (c, unsupported) = Config::load("rtc:\n  udp_segmentation: false\n").unwrap();
        assert!(unsupported.is_empty(), "{unsupported:?}");
        assert!(!Settings::resolve(&c, &dev).unwrap().udp_segmentation);
    }

    #[test]
    fn signal_pacing_defaults_to_fifty_keepalives_and_refuses_a_negative_rate() {
        let dev = Overrides {
            dev: true,
            ..Default::default()
        };
        let s = Settings::resolve(&Config::default(), &dev).unwrap();
        assert_eq!(s.idle_signal_pacing, lkr_signal::pacing::PACE_KEEPALIVES);
        let (c, unsupported) = Config::load("rtc:\n  idle_signal_pacing: 0.2\n").unwrap();
        assert!(unsupported.is_empty(), "{unsupported:?}");
        assert_eq!(Settings::resolve(&c, &dev).unwrap().idle_signal_pacing, 0.2);
        let (c, _) = Config::load("rtc:\n  idle_signal_pacing: -1\n").unwrap();
        let e = Settings::resolve(&c, &dev).unwrap_err().to_string();
        assert!(e.contains("rtc.idle_signal_pacing"), "{e}");
    }

    #[test]
    fn idle_polling_threshold_defaults_to_the_drivers() {
        let dev = Overrides {
            dev: true,
            ..Default::default()
        };
        let s = Settings::resolve(&Config::default(), &dev).unwrap();
        assert_eq!(s.idle_poll_wakeups, lkr_driver::IDLE_POLL_WAKEUPS);
        let (c, unsupported) = Config::load("rtc:\n  idle_poll_wakeups: 0\n").unwrap();
        assert!(unsupported.is_empty(), "{unsupported:?}");
        assert_eq!(Settings::resolve(&c, &dev).unwrap().idle_poll_wakeups, 0);
    }

    #[test]
    fn flags_override_file() {
        let (c, _) = Config::load("port: 1000\nkeys: {a: b}\nregion: x\n").unwrap();
        let o = Overrides {
            port: Some(2000),
            bind: vec!["::1".into()],
            udp_port: Some("9000".into()),
            region: Some("y".into()),
            keys: Some("c: d".into()),
            node_ip: Some("10.77.0.1".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&c, &o).unwrap();
        assert_eq!(
            (s.http_port, s.udp_port.start, s.region.as_str()),
            (2000, 9000, "y")
        );
        assert_eq!(s.keys.len(), 2);
        assert_eq!(s.bind, vec!["::1".parse::<IpAddr>().unwrap()]);
        let bad = Overrides {
            keys: Some("nocolon".into()),
            ..Default::default()
        };
        assert!(
            Settings::resolve(&c, &bad)
                .unwrap_err()
                .to_string()
                .contains("key: secret")
        );
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys.yaml");
        std::fs::write(&f, "APIabc: s3cr3t\n").unwrap();
        for mode in [0o644, 0o640, 0o660, 0o620, 0o604, 0o610] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_key_file(&f).unwrap_err().to_string();
            assert!(
                e.contains("keys.yaml")
                    && e.contains("group and others")
                    && e.contains("chmod 600"),
                "{mode:o}: {e}"
            );
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_key_file(&f).is_ok());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = read_key_file(&f).unwrap();
        assert_eq!(k.get("APIabc").map(String::as_str), Some("s3cr3t"));
    }
    #[test]
    fn turn_and_stun_servers_become_join_response_ice_servers_as_livekit_writes_them() {
        let yaml = r#"
keys: {a: b}
rtc:
  turn_servers:
    - host: turn.example.com
      port: 3478
      protocol: udp
      username: u1
      credential: p1
    - host: turn.example.com
      port: 443
      protocol: TLS
      username: u2
      credential: p2
    - host: "2001:db8::7"
      port: 3478
      protocol: tcp
    - host: 198.51.100.4
      port: 3478
  stun_servers: ["stun.example.com:3478", "203.0.113.9:19302"]
"#;
        let (c, unsupported) = Config::load(yaml).unwrap();
        assert!(
            !unsupported.iter().any(|u| u.starts_with("rtc.")),
            "{unsupported:?}"
        );
        let s = Settings::resolve(&c, &Overrides::default()).unwrap();
        let got: Vec<(Vec<&str>, &str, &str)> = s
            .ice_servers
            .iter()
            .map(|i| {
                (
                    i.urls.iter().map(String::as_str).collect(),
                    i.username.as_str(),
                    i.credential.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (vec!["turn:turn.example.com:3478?transport=udp"], "u1", "p1"),
                (vec!["turns:turn.example.com:443?transport=tcp"], "u2", "p2"),
                (vec!["turn:[2001:db8::7]:3478?transport=tcp"], "", ""),
                (vec!["turn:198.51.100.4:3478?transport=tcp"], "", ""),
                (
                    vec!["stun:stun.example.com:3478", "stun:203.0.113.9:19302"],
                    "",
                    ""
                ),
            ]
        );
        let none = Config::load("keys: {a: b}").unwrap().0;
        let s = Settings::resolve(&none, &Overrides::default()).unwrap();
        assert!(s.ice_servers.is_empty(), "no public STUN server is added");

        for (bad, want) in [
            (
                "  turn_servers: [{host: t, port: 3478, protocol: quic}]\n",
                "rtc.turn_servers[0].protocol",
            ),
            (
                "  turn_servers: [{host: t, port: 1, protocol: udp}, {port: 3478, protocol: udp}]\n",
                "rtc.turn_servers[1].host",
            ),
            (
                "  turn_servers: [{host: t, protocol: udp}]\n",
                "rtc.turn_servers[0].port",
            ),
            ("  stun_servers: [\"\"]\n", "rtc.stun_servers[0]"),
        ] {
            let c = Config::load(&format!("keys: {{a: b}}\nrtc:\n{bad}"))
                .unwrap()
                .0;
            let e = Settings::resolve(&c, &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn audio_keys_set_speaker_detection_and_bad_values_name_the_key() {
        let none = Config::load("keys: {a: b}").unwrap().0;
        let s = Settings::resolve(&none, &Overrides::default()).unwrap();
        assert_eq!(s.speakers, lkr_sfu::SpeakerDetection::default());

        let (c, ignored) = Config::load(
            "keys: {a: b}\naudio:\n  active_level: 50\n  min_percentile: 25\n  update_interval: 1000\n  smooth_intervals: 0\n  active_red_encoding: true\n",
        )
        .unwrap();
        assert_eq!(ignored, ["audio.active_red_encoding"]);
        let s = Settings::resolve(&c, &Overrides::default()).unwrap();
        assert_eq!(
            s.speakers,
            lkr_sfu::SpeakerDetection {
                active_level: 50,
                min_percentile: 25,
                update_interval: std::time::Duration::from_secs(1),
                smooth_intervals: 0,
            }
        );
        let off = Config::load("keys: {a: b}\naudio: {update_interval: 0}")
            .unwrap()
            .0;
        let s = Settings::resolve(&off, &Overrides::default()).unwrap();
        assert!(s.speakers.update_interval.is_zero());

        for (bad, want) in [
            ("active_level: 128", "audio.active_level"),
            ("active_level: -1", "audio.active_level"),
            ("min_percentile: 101", "audio.min_percentile"),
            ("update_interval: 50", "audio.update_interval"),
            ("update_interval: -400", "audio.update_interval"),
            ("smooth_intervals: -2", "audio.smooth_intervals"),
        ] {
            let c = Config::load(&format!("keys: {{a: b}}\naudio: {{{bad}}}"))
                .unwrap()
                .0;
            let e = Settings::resolve(&c, &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn interface_and_ip_filters_choose_the_advertised_address() {
        let host: Vec<(String, IpAddr)> = [
            ("lo", "127.0.0.1"),
            ("docker0", "172.17.0.1"),
            ("eth0", "10.1.2.3"),
            ("eth0", "fd00::3"),
            ("eth1", "192.0.2.7"),
        ]
        .iter()
        .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
        .collect();
        let pick = |yaml: &str| {
            let c = Config::load(&format!("keys: {{a: b}}\nrtc:\n{yaml}")).unwrap();
            assert!(c.1.is_empty(), "{:?}", c.1);
            let s = Settings::resolve(&c.0, &Overrides::default()).unwrap();
            s.address_filter.pick(&host).map(|ip| ip.to_string())
        };
        // No filter: the first non-loopback IPv4 address, as before.
        assert_eq!(pick("  udp_port: 7882").as_deref(), Some("172.17.0.1"));
        assert_eq!(
            pick("  interfaces: {excludes: [docker0]}").as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            pick("  interfaces: {includes: [eth1]}").as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            pick("  ips: {includes: [192.0.2.0/24]}").as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            pick("  ips: {excludes: [172.16.0.0/12, 10.1.2.3]}").as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            pick("  interfaces: {includes: [eth0, eth1]}\n  ips: {excludes: [10.0.0.0/8]}")
                .as_deref(),
            Some("192.0.2.7")
        );
        assert_eq!(
            pick("  ips: {includes: [0.0.0.0/0]}").as_deref(),
            Some("172.17.0.1")
        );
        assert_eq!(pick("  interfaces: {includes: [wlan0]}"), None);
        for (bad, key) in [
            ("ips: {includes: [10.0.0.0/33]}", "rtc.ips.includes"),
            ("ips: {excludes: [eth0]}", "rtc.ips.excludes"),
        ] {
            let c = Config::load(&format!("keys: {{a: b}}\nrtc: {{{bad}}}"))
                .unwrap()
                .0;
            let e = Settings::resolve(&c, &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn packet_buffer_sizes_follow_livekits_keys() {
        let sizes = |yaml: &str| {
            let c = Config::load(&format!("keys: {{a: b}}\nrtc: {{{yaml}}}")).unwrap();
            assert!(c.1.is_empty(), "{:?}", c.1);
            Settings::resolve(&c.0, &Overrides::default())
                .map(|s| s.packet_buffer)
                .map_err(|e| e.to_string())
        };
        assert_eq!(sizes("udp_port: 7882"), Ok((512, 512)));
        assert_eq!(
            sizes("packet_buffer_size_video: 500, packet_buffer_size_audio: 200"),
            Ok((500, 200))
        );
        assert_eq!(sizes("packet_buffer_size: 300"), Ok((300, 300)));
        assert_eq!(
            sizes("packet_buffer_size: 300, packet_buffer_size_audio: 100"),
            Ok((300, 100))
        );
        let e = sizes("packet_buffer_size_video: 8").unwrap_err();
        assert!(
            e.to_string().contains("rtc.packet_buffer_size_video"),
            "{e}"
        );
        let e = sizes("packet_buffer_size: 100000").unwrap_err();
        assert!(e.to_string().contains("rtc.packet_buffer_size"), "{e}");
    }

    #[test]
    fn pli_throttle_takes_go_durations_and_bad_values_name_the_key() {
        let none = Config::load("keys: {a: b}").unwrap().0;
        let s = Settings::resolve(&none, &Overrides::default()).unwrap();
        assert_eq!(s.pli_throttle, lkr_sfu::PliThrottle::default());

        // LiveKit's sample values, a compound duration and integer nanoseconds.
        let (c, ignored) = Config::load(
            "keys: {a: b}\nrtc:\n  pli_throttle:\n    low_quality: 500ms\n    mid_quality: 1.5s500ms\n    high_quality: 2000000000\n",
        )
        .unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        let s = Settings::resolve(&c, &Overrides::default()).unwrap();
        let ms = std::time::Duration::from_millis;
        assert_eq!(
            s.pli_throttle,
            lkr_sfu::PliThrottle {
                low: ms(500),
                mid: ms(2000),
                high: ms(2000),
            }
        );
        let partial = Config::load("keys: {a: b}\nrtc: {pli_throttle: {high_quality: 1s}}")
            .unwrap()
            .0;
        let s = Settings::resolve(&partial, &Overrides::default()).unwrap();
        assert_eq!(
            (s.pli_throttle.low, s.pli_throttle.high),
            (ms(300), ms(1000))
        );

        for (bad, want, why) in [
            (
                "low_quality: 5ms",
                "rtc.pli_throttle.low_quality",
                "between 10ms and 60s",
            ),
            (
                "mid_quality: 2m",
                "rtc.pli_throttle.mid_quality",
                "between 10ms and 60s",
            ),
            (
                "high_quality: 1 sec",
                "rtc.pli_throttle.high_quality",
                "a duration",
            ),
            (
                "high_quality: -1s",
                "rtc.pli_throttle.high_quality",
                "a duration",
            ),
            (
                "high_quality: [1]",
                "rtc.pli_throttle.high_quality",
                "a duration",
            ),
        ] {
            let c = Config::load(&format!("keys: {{a: b}}\nrtc: {{pli_throttle: {{{bad}}}}}"))
                .unwrap()
                .0;
            let e = Settings::resolve(&c, &Overrides::default()).unwrap_err();
            assert!(
                e.to_string().contains(want) && e.to_string().contains(why),
                "{bad}: {e}"
            );
        }
        let e = Config::load("keys: {a: b}\nrtc: {pli_throttle: {top_quality: 1s}}").unwrap_err();
        assert!(e.to_string().contains("top_quality"), "{e}");
    }

    #[test]
    fn room_playout_delay_and_sync_streams() {
        let resolve = |yaml: &str| {
            let c = Config::load(&format!("keys: {{a: b}}\nroom:\n{yaml}")).map(|c| c.0);
            c.and_then(|c| Settings::resolve(&c, &Overrides::default()))
        };
        let room = |yaml: &str| resolve(yaml).unwrap().room;
        assert_eq!(room("  auto_create: true\n").playout_delay, None);
        assert!(!room("  auto_create: true\n").sync_streams);
        assert!(room("  sync_streams: true\n").sync_streams);
        assert_eq!(
            room("  playout_delay: {enabled: true, min: 100, max: 2000}\n").playout_delay,
            Some((100, 2000))
        );
        // No max: LiveKit's 10 s. Not enabled: none, whatever the numbers.
        assert_eq!(
            room("  playout_delay: {enabled: true, min: 300}\n").playout_delay,
            Some((300, 10_000))
        );
        assert_eq!(
            room("  playout_delay: {enabled: false, min: 300}\n").playout_delay,
            None
        );
        for (bad, want) in [
            (
                "  playout_delay: {enabled: true, min: 500, max: 200}\n",
                "room.playout_delay.max",
            ),
            (
                "  playout_delay: {enabled: true, min: -1}\n",
                "room.playout_delay.min",
            ),
            (
                "  playout_delay: {enabled: true, max: 50000}\n",
                "room.playout_delay.max",
            ),
            ("  playout_delay: {enabled: true, mn: 1}\n", "mn"),
        ] {
            let e = resolve(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    /// `room.room_configurations`: snake-case keys, LiveKit's lower-cased YAML keys and
    /// protobuf-JSON's camel case all land in the preset; bad values name their key; the
    /// key is no longer reported as ignored.
    #[test]
    fn room_presets() {
        let load = |yaml: &str| {
            Config::load(&format!(
                "keys: {{a: b}}\nroom:\n  room_configurations:\n{yaml}"
            ))
        };
        let (c, ignored) = load(
            "    small:\n      max_participants: 2\n      metadata: m\n      \
             agents: [{agent_name: helper, metadata: hi}]\n    \
             lk:\n      emptytimeout: 30\n      minplayoutdelay: 100\n      \
             syncstreams: true\n      agents: [{agentname: x}]\n    \
             camel: {departureTimeout: 7, maxPlayoutDelay: 900}\n",
        )
        .unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        let room = Settings::resolve(&c, &Overrides::default()).unwrap().room;
        let small = &room.presets["small"];
        assert_eq!((small.max_participants, small.metadata.as_str()), (2, "m"));
        assert_eq!(
            (
                small.agents[0].agent_name.as_str(),
                small.agents[0].metadata.as_str()
            ),
            ("helper", "hi")
        );
        let lk = &room.presets["lk"];
        assert_eq!((lk.empty_timeout, lk.min_playout_delay), (30, 100));
        assert!(lk.sync_streams);
        assert_eq!(lk.agents[0].agent_name, "x");
        let camel = &room.presets["camel"];
        assert_eq!((camel.departure_timeout, camel.max_playout_delay), (7, 900));
        for (bad, want) in [
            (
                "    p: {min_playout_delay: 500, max_playout_delay: 200}\n",
                "room.room_configurations.p.max_playout_delay",
            ),
            (
                "    p: {max_playout_delay: 50000}\n",
                "room.room_configurations.p.max_playout_delay",
            ),
            ("    p: {max_participnts: 2}\n", "max_participnts"),
            ("    p: {max_participants: -1}\n", "max_participants"),
        ] {
            let e = load(bad)
                .and_then(|(c, _)| Settings::resolve(&c, &Overrides::default()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
