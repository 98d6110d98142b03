//! The `livekit-server` command line: flags, `generate-keys`, logging, start and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{Config, Overrides, Settings};
use crate::node::Node;

/// A LiveKit-compatible media server.
#[derive(Debug, Parser)]
#[command(name = "livekit-server", version, about)]
pub struct Args {
    /// YAML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// YAML configuration body (instead of a file).
    #[arg(
        long,
        env = "LIVEKIT_CONFIG",
        value_name = "YAML",
        hide_env_values = true
    )]
    pub config_body: Option<String>,
    /// File of API keys, YAML lines "key: secret"; must not be readable by others.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// API keys, YAML "key: secret" (several on separate lines).
    #[arg(long, env = "LIVEKIT_KEYS", hide_env_values = true)]
    pub keys: Option<String>,
    /// Region of this node.
    #[arg(long, env = "LIVEKIT_REGION")]
    pub region: Option<String>,
    /// IP address advertised to clients for media.
    #[arg(long, env = "NODE_IP")]
    pub node_ip: Option<String>,
    /// UDP port for media (one port for every participant).
    #[arg(long, env = "UDP_PORT")]
    pub udp_port: Option<String>,
    /// Media shards: threads, each with its own engine and socket on the media port
    /// (0: one per core). Overrides `rtc.shards`.
    #[arg(long, env = "LIVEKIT_RTC_SHARDS")]
    pub rtc_shards: Option<usize>,
    /// Overrides `rtc.shard_spill`.
    #[arg(long, env = "LIVEKIT_RTC_SHARD_SPILL")]
    pub rtc_shard_spill: Option<u32>,
    /// Address to listen on (repeatable).
    #[arg(long)]
    pub bind: Vec<String>,
    /// HTTP port for the API and signalling.
    #[arg(long)]
    pub port: Option<u16>,
    /// Development mode: devkey/secret, loopback only, debug logs.
    #[arg(long)]
    pub dev: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new API key and secret.
    GenerateKeys,
    /// Print the ports the server would use.
    Ports,
}

fn init_logging(level: &str, json: bool) {
    // RUST_LOG, when set, replaces the configured level; the DTLS and SCTP stacks stay quiet
    // either way (their warnings about extensions they skip are harmless and frequent).
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| format!("{level},hyper=info"));
    let mut filter = tracing_subscriber::EnvFilter::new(base);
    for quiet in [
        lkr_dtls_glue::dtls::QUIET_LOG_DIRECTIVE,
        "sctp_proto=warn",
        "tungstenite=info",
        "tokio_tungstenite=info",
    ] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn settings(args: &Args) -> anyhow::Result<Settings> {
    let (config, unsupported) = match (&args.config, &args.config_body) {
        (Some(file), _) => Config::load_file(file)?,
        (None, Some(body)) => Config::load(body)?,
        (None, None) => (Config::default(), Vec::new()),
    };
    let overrides = Overrides {
        dev: args.dev,
        bind: args.bind.clone(),
        port: args.port,
        udp_port: args.udp_port.clone(),
        node_ip: args.node_ip.clone(),
        region: args.region.clone(),
        keys: args.keys.clone(),
        key_file: args.key_file.clone(),
        shards: args.rtc_shards,
        shard_spill: args.rtc_shard_spill,
    };
    let settings = Settings::resolve(&config, &overrides)?;
    init_logging(&settings.log_level, settings.log_json);
    for key in unsupported {
        tracing::warn!(key = %key, "config key accepted but not yet supported; it has no effect");
    }
    Ok(settings)
}

/// The first non-loopback IPv4 address of this host's interfaces that `rtc.interfaces` and
/// `rtc.ips` allow: the address advertised when the server listens on all addresses and no
/// `node_ip` is configured.
fn first_interface_ip(filter: &crate::config::AddressFilter) -> Option<std::net::IpAddr> {
    let addrs: Vec<(String, std::net::IpAddr)> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| (i.name.clone(), i.ip()))
        .collect();
    filter.pick(&addrs)
}

/// SIGTERM and SIGINT, listened for from before the first until exit, so that a second
/// signal sent while the first is being acted on is not lost between two waits. (Two sent
/// before the first is taken still merge into one, as pending signals of a kind do.)
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if self.term.is_none() && self.int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
            tokio::select! {
                _ = recv(&mut self.int) => "SIGINT",
                _ = recv(&mut self.term) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Starts the embedded TURN server when `turn.enabled`, and says how participants reach it.
fn start_turn(
    settings: &Settings,
    node_ip: std::net::IpAddr,
    udp_ip: std::net::IpAddr,
    media_addr: SocketAddr,
) -> anyhow::Result<Option<lkr_room::TurnIce>> {
    let Some(t) = &settings.turn else {
        return Ok(None);
    };
    let tls = match &t.tls {
        None => None,
        Some(tls) => {
            let config = match &tls.cert {
                Some((cert, key)) => Some(
                    lkr_driver::turn::tls_config(cert, key)
                        .map_err(|e| anyhow::anyhow!("turn.cert_file/key_file: {e}"))?,
                ),
                None => None,
            };
            Some((SocketAddr::new(udp_ip, tls.port), config))
        }
    };
    let media_local = if media_addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), media_addr.port())
    } else {
        media_addr
    };
    let addrs = lkr_driver::turn::spawn(lkr_driver::turn::TurnSettings {
        udp: t.udp_port.map(|p| SocketAddr::new(udp_ip, p)),
        tcp: t.udp_port.map(|p| SocketAddr::new(udp_ip, p)),
        tls,
        relay_bind_ip: udp_ip,
        relay_ip: node_ip,
        relay_ports: t.relay_range,
        media_addr: SocketAddr::new(node_ip, media_addr.port()),
        media_local,
        keys: settings.keys.clone(),
        max_allocations: 1024,
        stream_handshake: lkr_driver::turn::STREAM_HANDSHAKE,
        stream_idle: lkr_driver::turn::STREAM_IDLE,
        max_streams: lkr_driver::turn::MAX_STREAMS,
    })
    .context("cannot open the TURN ports")?;
    let mut urls = Vec::new();
    if let Some(a) = addrs.udp {
        urls.push(format!("turn:{node_ip}:{}?transport=udp", a.port()));
    }
    if let Some(a) = addrs.tcp {
        urls.push(format!("turn:{node_ip}:{}?transport=tcp", a.port()));
    }
    if let (Some(a), Some(tls)) = (addrs.tls, &t.tls) {
        // Behind a TLS-terminating load balancer clients reach it on 443.
        let port = if tls.external { 443 } else { a.port() };
        urls.push(format!("turns:{}:{port}?transport=tcp", tls.domain));
    }
    tracing::info!(?urls, relay_range = ?t.relay_range, "TURN server started");
    Ok(Some(lkr_room::TurnIce {
        urls,
        credentials: lkr_turn::Credentials::new(settings.keys.clone()),
    }))
}

async fn run(settings: Settings, pacer: std::sync::Arc<lkr_signal::Pacer>) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for ip in &settings.bind {
        let addr = SocketAddr::new(*ip, settings.http_port);
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(l);
    }
    let node_ip = settings
        .node_ip
        .or_else(|| {
            settings
                .bind
                .iter()
                .copied()
                .find(|ip| !ip.is_unspecified())
        })
        .or_else(|| first_interface_ip(&settings.address_filter));
    let node_ip = match node_ip {
        Some(ip) => ip,
        None if settings.address_filter.is_set() => anyhow::bail!(
            "no address of this host is allowed by rtc.interfaces / rtc.ips (set rtc.node_ip, or \
             widen the filters)"
        ),
        None => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    let udp_ip = match settings.bind.as_slice() {
        [one] => *one,
        _ => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    let mut driver =
        lkr_driver::DriverConfig::new(SocketAddr::new(udp_ip, settings.udp_port.start));
    driver.shards = settings.shards;
    driver.spill = settings.shard_spill;
    driver.segmentation = settings.udp_segmentation;
    driver.idle_poll_wakeups = settings.idle_poll_wakeups;
    // An event for the control plane ends the signalling threads' pacing at once.
    driver.on_event = Some(lkr_driver::EventHook(std::sync::Arc::new({
        let pacer = pacer.clone();
        move || pacer.busy()
    })));
    driver.tcp = settings
        .tcp_port
        .map(|p| lkr_driver::TcpConfig::new(SocketAddr::new(udp_ip, p)));
    let media = lkr_driver::spawn(driver).with_context(|| {
        format!(
            "cannot open the media UDP port {udp_ip}:{}",
            settings.udp_port.start
        )
    })?;
    // The media core's share of the limits goes first on its command queue, ahead of any
    // peer.
    let l = &settings.limits;
    let _ = media
        .handle
        .send(lkr_sfu::Command::SetLimits(lkr_sfu::MediaLimits {
            max_nacks_per_packet: l.max_nacks_per_packet,
            max_retransmissions_per_sec: l.max_retransmissions_per_sec,
            data_channel: lkr_datachannel::SctpLimits {
                max_channels: l.max_data_channels,
                max_label_len: l.max_data_channel_label_length,
                max_buffered_bytes: l.data_channel_max_buffered_amount,
            },
            bandwidth_estimation: settings.congestion_control.enabled,
            allow_pause: settings.congestion_control.allow_pause,
            speakers: settings.speakers,
            pli_throttle: settings.pli_throttle,
            packet_buffer: settings.packet_buffer,
        }));
    let turn = start_turn(&settings, node_ip, udp_ip, media.handle.local_addr)?;
    let node_id = lkr_proto::id::new_id("ND_");
    let machine_config = lkr_room::Config {
        auto_create: settings.auto_create,
        node_ip,
        udp_port: settings.udp_port.start,
        tcp_port: media.handle.tcp_addr.map(|a| a.port()),
        turn,
        region: settings.region.clone(),
        node_id: node_id.clone(),
        fingerprint: media.handle.fingerprint.clone(),
        max_metadata_size: settings.room.max_metadata_size,
        max_attributes_size: settings.max_attributes_size,
        enable_remote_unmute: settings.enable_remote_unmute,
        ice_servers: settings.ice_servers.clone(),
        limits: lkr_room::Limits {
            max_pending_tracks: settings.limits.max_pending_tracks,
            max_rids_per_track: settings.limits.max_rids_per_track,
            num_tracks: settings.limits.num_tracks as usize,
            max_participant_name_length: settings.limits.max_participant_name_length,
            max_participant_identity_length: settings.limits.max_participant_identity_length,
            subscription_limit_audio: settings.limits.subscription_limit_audio as usize,
            subscription_limit_video: settings.limits.subscription_limit_video as usize,
            data_tracks: settings.enable_data_tracks,
            max_data_track_custom_encoding: settings.limits.max_data_track_custom_encoding,
            ..lkr_room::Limits::default()
        },
    };
    let mut machine = lkr_room::Machine::new(
        machine_config,
        lkr_room::Rooms::new(settings.room.clone()),
        std::time::Instant::now(),
    );
    // Participants' refreshed tokens are signed with the first key (every node of a
    // cluster has the same keys).
    if let Some((key, secret)) = settings.keys.iter().next() {
        machine.set_token_signer(lkr_room::TokenSigner::new(key, secret));
    }
    let mut background = tokio::task::JoinSet::new();
    let mut webhook_stats = None;
    let room_events = settings.webhook.clone().map(|wh| {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        tracing::info!(urls = ?wh.urls, "webhooks enabled");
        let (stats, task) = crate::webhook::spawn(wh, rx);
        webhook_stats = Some(stats);
        background.spawn(async move {
            let _ = task.await;
        });
        tx
    });
    let (control, control_task) = lkr_signal::Control::spawn_paced(
        machine,
        Some(lkr_signal::MediaLink {
            commands: media.handle.commands.clone(),
            events: media.events,
            data_queued: media.data_queued,
        }),
        room_events,
        lkr_agent::Limits::default(),
        lkr_agent::Timing::default(),
        pacer,
    );
    let node = Arc::new(Node::new(settings, control));
    let _ = node.egress.set(crate::egress::EgressRuntime::new(
        media.handle.clone(),
        node.settings.egress_dir.clone(),
        node.settings.max_egresses,
    ));
    *node
        .counters
        .webhook
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = webhook_stats;
    *node
        .counters
        .media
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(media.handle.stats.clone());
    let cluster = match node.settings.redis.clone() {
        None => None,
        Some(redis) => Some(
            join_cluster(
                &node,
                &redis,
                &node_id,
                node_ip,
                media.handle.local_addr.port(),
            )
            .await?,
        ),
    };
    let mut metrics_listeners = Vec::new();
    if let Some(p) = &node.settings.prometheus {
        for ip in &node.settings.bind {
            let addr = SocketAddr::new(*ip, p.port);
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            metrics_listeners.push(l);
        }
    }
    let s = &node.settings;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        bind = ?s.bind,
        port = s.http_port,
        rtc_udp = %media.handle.local_addr,
        shards = s.shards,
        node_ip = %node_ip,
        keys = s.keys.len(),
        dev = s.development,
        "starting livekit-server"
    );
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(c) = &cluster {
        tasks.spawn(crate::cluster::run(c.clone(), node.clone()));
    }
    for l in listeners {
        tasks.spawn(crate::http::serve(node.clone(), l));
    }
    if let Some(p) = node.settings.prometheus.clone() {
        tracing::info!(
            port = p.port,
            auth = !p.username.is_empty(),
            "metrics on /metrics"
        );
        for l in metrics_listeners {
            tasks.spawn(crate::metrics::serve(
                l,
                p.clone(),
                node.control.clone(),
                node.counters.clone(),
                node_id.clone(),
            ));
        }
    }
    tasks.spawn(async move {
        if let Err(e) = control_task.await {
            tracing::error!(error = %e, "room control task failed");
        }
    });
    let media_watch = node.control.clone();
    let mut signals = ShutdownSignals::new();
    let sig = tokio::select! {
        sig = signals.next() => sig,
        _ = media_watch.media_lost() => {
            // Serving signalling without media would take joins that cannot work.
            tracing::error!("the media plane stopped; exiting");
            tasks.abort_all();
            anyhow::bail!("the media plane stopped");
        }
    };
    tracing::info!(
        signal = sig,
        "shutting down: no new joins, participants told to leave (a second signal exits at once)"
    );
    if let Some(c) = &cluster {
        c.drain();
        tracing::info!(
            "draining: new rooms go to other nodes; the participants here stay until they leave (a second signal stops now)"
        );
        let control = node.control.clone();
        let emptied = async move {
            loop {
                let left = control
                    .call(|m, _| Ok::<_, lkr_room::RoomError>(m.stats().participants))
                    .await;
                if !matches!(left, Ok(Ok(n)) if n > 0) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        };
        tokio::select! {
            _ = emptied => tracing::info!("drained: no participant left"),
            sig = signals.next() => tracing::warn!(signal = sig, "second signal: stopping without waiting"),
        }
        c.leave().await;
    }
    let control = node.control.clone();
    let graceful = async move {
        let _ = control.shutdown().await;
        // Sessions write their leave and close; webhook tasks deliver what is queued.
        control.sessions_closed().await;
        drop(node);
        while background.join_next().await.is_some() {}
    };
    tokio::select! {
        _ = graceful => tracing::info!("shutdown complete"),
        _ = tokio::time::sleep(SHUTDOWN_BOUND) => {
            tracing::warn!(bound_s = SHUTDOWN_BOUND.as_secs(), "shutdown did not finish in time; exiting");
        }
        sig = signals.next() => tracing::warn!(signal = sig, "second signal: exiting now"),
    }
    tasks.abort_all();
    Ok(())
}

/// Connects to the cluster's Redis and makes this node one of its members (its record is
/// written by [`crate::cluster::run`]).
async fn join_cluster(
    node: &Arc<Node>,
    redis: &lkr_cluster::RedisSettings,
    node_id: &str,
    node_ip: std::net::IpAddr,
    udp_port: u16,
) -> anyhow::Result<Arc<crate::cluster::Cluster>> {
    let store = lkr_cluster::Store::connect(redis)
        .await
        .context("cannot reach the cluster's Redis (redis:)")?;
    let s = &node.settings;
    let me = lkr_cluster::NodeInfo {
        id: node_id.to_string(),
        region: s.region.clone(),
        http_url: format!("http://{}", SocketAddr::new(node_ip, s.http_port)),
        rtc_addr: SocketAddr::new(node_ip, udp_port).to_string(),
        state: lkr_cluster::NodeState::Serving,
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        stats: Default::default(),
    };
    // Every node of a cluster has the same keys; the first one's secret keys the relay.
    let secret = s.keys.values().next().cloned().unwrap_or_default();
    tracing::info!(node = %me.id, url = %me.http_url, selector = ?s.node_selector.kind, "joining the cluster");
    let cluster = crate::cluster::Cluster::new(store, s.node_selector.clone(), me, &secret);
    let _ = node.cluster.set(cluster.clone());
    Ok(cluster)
}

/// The longest a graceful shutdown may take before the process exits anyway.
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(15);

/// The whole `livekit-server` program.
pub fn server_main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::GenerateKeys) => {
            println!("API Key:  {}", lkr_proto::id::new_api_key());
            println!("API Secret:  {}", lkr_proto::id::new_api_secret());
            return ExitCode::SUCCESS;
        }
        Some(Command::Ports) => {}
        None => {}
    }
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("livekit-server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(args.command, Some(Command::Ports)) {
        println!("HTTP (API and signalling): TCP {}", settings.http_port);
        println!("RTC (media): UDP {}", settings.udp_port.start);
        return ExitCode::SUCCESS;
    }
    let pacer = std::sync::Arc::new(lkr_signal::Pacer::new(settings.idle_signal_pacing));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park({
            let pacer = pacer.clone();
            move || pacer.park()
        })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("livekit-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(settings, pacer)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("livekit-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
