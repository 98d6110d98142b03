//! Multi-node mode (`redis:`): this node's part in a cluster of nodes sharing a Redis.
//!
//! - **Records.** [`run`] refreshes this node's record (address, state, load) every second,
//!   reads the other nodes', and refreshes the placements of the rooms open here (and of those
//!   just placed here whose first participant is on the way); a room that closed is released.
//! - **Routing.** [`Cluster::route`] says where a room lives: here when it is open here, else
//!   its owner in Redis, else (for a join or a CreateRoom) the node the selector picks, placed
//!   atomically. A signal connection for a room elsewhere is relayed there
//!   ([`Cluster::connect_upstream`] and [`pipe`]); a Twirp call is forwarded
//!   ([`Cluster::forward`]); ListRooms and a room-less ListEgress ask every node.
//! - **Between nodes** a request carries `x-lkr-relay` (derived from the API secret), so the
//!   node that receives it serves it itself and never routes it again.
//! - **Redis down.** Rooms open here go on (they are found locally first), routes learnt
//!   before are used again, and a new room is opened here; the record and placements are
//!   written again once Redis answers.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lkr_cluster::{NodeInfo, NodeState, NodeStats, Selector, Store};
use lkr_proto::pb;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::node::Node;
use crate::twirp::{Code, Format, TwirpError};

type Resp = Response<Full<Bytes>>;

/// The header that marks a request relayed by another node of the cluster.
pub const RELAY_HEADER: &str = "x-lkr-relay";

/// Rooms routed lately, remembered for a Redis outage (at most this many).
const MAX_REMEMBERED: usize = 10_000;
/// A room placed here waits this long for its first participant before it is released.
const PENDING_GRACE: Duration = Duration::from_secs(30);
/// Rooms placed here and not yet open, at most.
const MAX_PENDING: usize = 10_000;
/// The longest a forwarded call (but a `PerformRpc`: [`forward_timeout`]), or a relayed
/// connection's opening, may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer a forwarded call may bring back.
const MAX_FORWARDED_BODY: usize = 64 << 20;

/// Where a room lives.
#[derive(Debug, Clone)]
pub enum Route {
    Here,
    There(NodeInfo),
}

/// Why a room could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no node of the cluster takes new rooms")]
    NoNode,
    #[error("the room's node {0} is not reachable")]
    Unreachable(String),
}

/// This node's membership of the cluster.
pub struct Cluster {
    store: Store,
    selector: Selector,
    me: Mutex<NodeInfo>,
    /// Live nodes (this one included) as last read from Redis.
    nodes: Mutex<Vec<NodeInfo>>,
    /// Room → owner id, as last routed (for a Redis outage).
    remembered: Mutex<HashMap<String, String>>,
    /// Rooms placed on this node that are not open yet, with when.
    pending: Mutex<HashMap<String, Instant>>,
    /// Rooms whose placement this node holds.
    held: Mutex<HashSet<String>>,
    relay_token: HeaderValue,
    http: Client<HttpConnector, Full<Bytes>>,
    redis_up: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Cluster {
    /// Joins the cluster of `store` as `me`; `secret` (an API secret every node shares)
    /// keys the relay header.
    pub fn new(store: Store, selector: Selector, me: NodeInfo, secret: &str) -> Arc<Self> {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("lkr-relay\n{secret}").as_bytes());
        let token: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Arc::new(Self {
            store,
            selector,
            nodes: Mutex::new(vec![me.clone()]),
            me: Mutex::new(me),
            remembered: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            held: Mutex::new(HashSet::new()),
            relay_token: HeaderValue::from_str(&token).unwrap_or(HeaderValue::from_static("-")),
            http: Client::builder(TokioExecutor::new()).build_http(),
            redis_up: AtomicBool::new(true),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// This node's id.
    pub fn id(&self) -> String {
        lock(&self.me).id.clone()
    }

    /// Whether a request came from another node of the cluster (to be served here).
    pub fn is_relayed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(RELAY_HEADER)
            .is_some_and(|v| v.as_bytes() == self.relay_token.as_bytes())
    }

    /// Stops taking new rooms; the record says so at once.
    pub fn drain(&self) {
        lock(&self.me).state = NodeState::Draining;
        self.wake.notify_one();
    }

    /// The live nodes as last read.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        lock(&self.nodes).clone()
    }

    fn node(&self, id: &str) -> Option<NodeInfo> {
        lock(&self.nodes).iter().find(|n| n.id == id).cloned()
    }

    fn remember(&self, room: &str, owner: &str) {
        let mut r = lock(&self.remembered);
        if r.len() >= MAX_REMEMBERED && !r.contains_key(room) {
            r.clear();
        }
        r.insert(room.to_string(), owner.to_string());
    }

    fn placed_here(&self, room: &str) {
        let mut p = lock(&self.pending);
        if p.len() >= MAX_PENDING {
            let now = Instant::now();
            p.retain(|_, at| now.duration_since(*at) < PENDING_GRACE);
        }
        if p.len() < MAX_PENDING {
            p.insert(room.to_string(), Instant::now());
        }
    }

    /// Where `room` lives. `create`: a room that lives nowhere is placed (by the selector)
    /// rather than left to this node to refuse.
    pub async fn route(&self, node: &Node, room: &str, create: bool) -> Result<Route, RouteError> {
        let name = room.to_string();
        let open_here = node
            .control
            .call(move |m, _| Ok::<_, lkr_room::RoomError>(m.room_exists(&name)))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if open_here {
            return Ok(Route::Here);
        }
        let me = self.id();
        let owner = match self.store.owner(room).await {
            Ok(owner) => owner,
            Err(e) => {
                tracing::warn!(room, error = %e, "redis unreachable: routing from what is known");
                let known = lock(&self.remembered).get(room).cloned();
                return Ok(match known.and_then(|id| self.node(&id)) {
                    Some(n) if n.id != me => Route::There(n),
                    _ => Route::Here,
                });
            }
        };
        let owner = match owner {
            Some(id) => Some(id),
            None if !create => None,
            None => {
                let nodes = self.nodes();
                let region = lock(&self.me).region.clone();
                let chosen = self
                    .selector
                    .select(&nodes, &region, random())
                    .map(|n| n.id.clone())
                    .ok_or(RouteError::NoNode)?;
                match self.store.place(room, &chosen).await {
                    Ok(owner) => Some(owner),
                    Err(e) => {
                        tracing::warn!(room, error = %e, "redis unreachable: the new room opens here");
                        return Ok(Route::Here);
                    }
                }
            }
        };
        let Some(owner) = owner else {
            return Ok(Route::Here);
        };
        self.remember(room, &owner);
        if owner == me {
            self.placed_here(room);
            return Ok(Route::Here);
        }
        if self.node(&owner).is_none() {
            self.refresh_nodes().await;
        }
        match self.node(&owner) {
            Some(n) => Ok(Route::There(n)),
            None => Err(RouteError::Unreachable(owner)),
        }
    }

    async fn refresh_nodes(&self) {
        if let Ok(nodes) = self.store.nodes().await {
            *lock(&self.nodes) = nodes;
        }
    }

    /// Forwards a Twirp call to `to`, with the caller's credentials; its answer is returned
    /// as it came.
    pub async fn forward(&self, to: &NodeInfo, call: &Forwarded, body: Bytes) -> Resp {
        match self.post(to, call, body).await {
            Ok((status, ct, body)) => {
                let mut r = Response::new(Full::new(body));
                *r.status_mut() = status;
                if let Some(ct) = ct {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                r
            }
            Err(e) => TwirpError::new(Code::Unavailable, e.to_string()).into_response(),
        }
    }

    async fn post(
        &self,
        to: &NodeInfo,
        call: &Forwarded,
        body: Bytes,
    ) -> Result<(StatusCode, Option<HeaderValue>, Bytes), RouteError> {
        let unreachable = || RouteError::Unreachable(to.id.clone());
        let uri = format!("{}{}", to.http_url, call.path_and_query);
        let mut req = http::Request::post(uri)
            .header(header::CONTENT_TYPE, call.content_type.clone())
            .header(RELAY_HEADER, self.relay_token.clone());
        if let Some(a) = &call.authorization {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let req = req.body(Full::new(body)).map_err(|_| unreachable())?;
        let answer = async {
            let resp = self.http.request(req).await.map_err(|e| {
                tracing::debug!(node = %to.id, error = %e, "forwarded call failed");
                unreachable()
            })?;
            let status = resp.status();
            let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
            let body = Limited::new(resp.into_body(), MAX_FORWARDED_BODY)
                .collect()
                .await
                .map_err(|_| unreachable())?
                .to_bytes();
            Ok((status, ct, body))
        };
        tokio::time::timeout(call.timeout, answer)
            .await
            .map_err(|_| unreachable())?
    }

    /// ListRooms over the whole cluster: this node's answer (`local`) and every other live
    /// node's, one entry per room.
    pub async fn list_rooms(
        &self,
        call: &Forwarded,
        format: Format,
        body: Bytes,
        local: Resp,
    ) -> Result<Resp, TwirpError> {
        let mut rooms: Vec<pb::Room> = decode_answer::<pb::ListRoomsResponse>(format, local)
            .await?
            .rooms;
        for answer in self.ask_others(call, body).await {
            if let Ok(r) = format.decode::<pb::ListRoomsResponse>(&answer) {
                for room in r.rooms {
                    if !rooms.iter().any(|x| x.name == room.name) {
                        rooms.push(room);
                    }
                }
            }
        }
        Ok(format.encode(&pb::ListRoomsResponse { rooms }))
    }

    /// A room-less ListEgress over the whole cluster.
    pub async fn list_egress(
        &self,
        call: &Forwarded,
        format: Format,
        body: Bytes,
        local: Resp,
    ) -> Result<Resp, TwirpError> {
        let mut items = decode_answer::<pb::ListEgressResponse>(format, local)
            .await?
            .items;
        for answer in self.ask_others(call, body).await {
            if let Ok(r) = format.decode::<pb::ListEgressResponse>(&answer) {
                items.extend(r.items);
            }
        }
        Ok(format.encode(&pb::ListEgressResponse {
            items,
            next_page_token: None,
        }))
    }

    /// StopEgress for an egress that is not on this node: the first node that knows it.
    pub async fn first_found(&self, call: &Forwarded, body: Bytes, local: Resp) -> Resp {
        if local.status() != StatusCode::NOT_FOUND {
            return local;
        }
        let me = self.id();
        for n in self.nodes().into_iter().filter(|n| n.id != me) {
            if let Ok((status, ct, answer)) = self.post(&n, call, body.clone()).await
                && status != StatusCode::NOT_FOUND
            {
                let mut r = Response::new(Full::new(answer));
                *r.status_mut() = status;
                if let Some(ct) = ct {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                return r;
            }
        }
        local
    }

    /// The successful answers of every other live node to `call`, asked at once.
    async fn ask_others(&self, call: &Forwarded, body: Bytes) -> Vec<Bytes> {
        let me = self.id();
        let asks = self
            .nodes()
            .into_iter()
            .filter(|n| n.id != me)
            .map(|n| {
                let body = body.clone();
                async move {
                    match self.post(&n, call, body).await {
                        Ok((s, _, b)) if s.is_success() => Some(b),
                        Ok((s, _, _)) => {
                            tracing::warn!(node = %n.id, status = %s, "a node refused a cluster-wide call");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(node = %n.id, error = %e, "a node missed a cluster-wide call");
                            None
                        }
                    }
                }
            });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Opens the relayed signal connection to `to` for a client's `path_and_query` (the
    /// token goes in it or in `authorization`). An HTTP refusal of `to` comes back as the
    /// answer to give the client.
    pub async fn connect_upstream(
        &self,
        to: &NodeInfo,
        path_and_query: &str,
        authorization: Option<&HeaderValue>,
        config: WebSocketConfig,
    ) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, Resp> {
        let unavailable = |what: &str| {
            tracing::warn!(node = %to.id, "relay: {what}");
            let mut r = Response::new(Full::new(Bytes::from(format!(
                "the room's node is not reachable: {what}"
            ))));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        };
        let host = to
            .http_url
            .strip_prefix("http://")
            .unwrap_or(&to.http_url)
            .to_string();
        let mut req = match format!("ws://{host}{path_and_query}").into_client_request() {
            Ok(r) => r,
            Err(e) => return Err(unavailable(&e.to_string())),
        };
        req.headers_mut()
            .insert(RELAY_HEADER, self.relay_token.clone());
        if let Some(a) = authorization {
            req.headers_mut().insert(header::AUTHORIZATION, a.clone());
        }
        let open = async {
            let tcp = TcpStream::connect(&host)
                .await
                .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
            let _ = tcp.set_nodelay(true);
            tokio_tungstenite::client_async_with_config(
                req,
                MaybeTlsStream::Plain(tcp),
                Some(config),
            )
            .await
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, open).await {
            Err(_) => Err(unavailable("timed out")),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                let (parts, body) = resp.into_parts();
                let mut r = Response::new(Full::new(Bytes::from(body.unwrap_or_default())));
                *r.status_mut() = parts.status;
                if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
                }
                Err(r)
            }
            Ok(Err(e)) => Err(unavailable(&e.to_string())),
        }
    }

    /// GET of a `/validate` route on `to`, answered as it came.
    pub async fn validate(
        &self,
        to: &NodeInfo,
        path_and_query: &str,
        authorization: Option<&HeaderValue>,
    ) -> Resp {
        let mut req = http::Request::get(format!("{}{path_and_query}", to.http_url))
            .header(RELAY_HEADER, self.relay_token.clone());
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let Ok(req) = req.body(Full::new(Bytes::new())) else {
            return TwirpError::new(Code::Internal, "bad relay request").into_response();
        };
        let answer = async {
            let resp = self.http.request(req).await.ok()?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .ok()?
                .to_bytes();
            Some((status, body))
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, answer).await {
            Ok(Some((status, body))) => {
                let mut r = Response::new(Full::new(body));
                *r.status_mut() = status;
                r
            }
            _ => {
                let mut r = Response::new(Full::new(Bytes::from_static(
                    b"the room's node is not reachable",
                )));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r
            }
        }
    }

    /// One refresh: this node's record, the others', and this node's placements.
    async fn refresh(&self, node: &Node, cpu: &mut CpuSampler) {
        let looked = node
            .control
            .call(|m, _| {
                let rooms: Vec<String> =
                    m.api_list_rooms(&[]).into_iter().map(|r| r.name).collect();
                Ok::<_, lkr_room::RoomError>((m.stats(), rooms))
            })
            .await;
        let Ok(Ok((stats, open))) = looked else {
            return;
        };
        let bytes_per_sec = media_bytes_per_sec(node);
        let record = {
            let mut me = lock(&self.me);
            me.stats = NodeStats {
                num_cpus: cpu.cores,
                cpu_load: cpu.sample(),
                sys_load: sys_load(cpu.cores),
                rooms: stats.rooms as u32,
                clients: stats.participants as u32,
                tracks_in: (stats.published_audio + stats.published_video) as u32,
                tracks_out: (stats.subscribed_audio + stats.subscribed_video) as u32,
                bytes_per_sec,
            };
            me.clone()
        };
        let written = self.store.register(&record).await;
        if let Err(e) = written {
            if self.redis_up.swap(false, Ordering::Relaxed) {
                tracing::warn!(error = %e, "redis unreachable: rooms here go on; the record is written again when it answers");
            }
            return;
        }
        if !self.redis_up.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable again: this node's record and rooms written again");
        }
        self.refresh_nodes().await;
        // Placements: the rooms open here and those placed here lately, not the others.
        let now = Instant::now();
        let want: Vec<String> = {
            let mut pending = lock(&self.pending);
            let open_set: HashSet<&String> = open.iter().collect();
            pending
                .retain(|r, at| !open_set.contains(r) && now.duration_since(*at) < PENDING_GRACE);
            open.iter().chain(pending.keys()).cloned().collect()
        };
        match self.store.refresh_rooms(&record.id, &want).await {
            Ok(lost) => {
                for room in &lost {
                    tracing::warn!(room = %room, "another node holds this room's placement; new participants go there");
                }
                let want: HashSet<String> = want.into_iter().collect();
                let gone: Vec<String> = {
                    let mut held = lock(&self.held);
                    let gone = held.difference(&want).cloned().collect();
                    *held = want;
                    for room in &lost {
                        held.remove(room);
                    }
                    gone
                };
                if !gone.is_empty()
                    && let Err(e) = self.store.release_rooms(&record.id, &gone).await
                {
                    tracing::debug!(error = %e, "room release failed; its placement expires");
                }
            }
            Err(e) => tracing::debug!(error = %e, "room placements not refreshed"),
        }
    }

    /// Leaves the cluster: the record and this node's placements are removed.
    pub async fn leave(&self) {
        let id = self.id();
        let held: Vec<String> = lock(&self.held).drain().collect();
        let _ = self.store.release_rooms(&id, &held).await;
        let _ = self.store.deregister(&id).await;
    }
}

/// A Twirp call to forward: where, in which form, with which credentials.
pub struct Forwarded {
    pub path_and_query: String,
    pub content_type: HeaderValue,
    pub authorization: Option<HeaderValue>,
    /// How long the node it goes to may take to answer ([`FORWARD_TIMEOUT`], or more for a
    /// call that waits on a participant: [`forward_timeout`]).
    pub timeout: Duration,
}

/// How long a forwarded Twirp call may take: [`FORWARD_TIMEOUT`], or for `PerformRpc` the
/// call's own acknowledgement and response deadlines and a margin, so that the caller hears
/// the owning node's verdict (the answer, or LiveKit's RPC error) rather than a cut
/// connection.
pub fn forward_timeout(service: &str, rpc: &str, format: Format, body: &[u8]) -> Duration {
    if service != crate::room_service::SERVICE || rpc != "PerformRpc" {
        return FORWARD_TIMEOUT;
    }
    let wait = match format.decode::<pb::PerformRpcRequest>(body) {
        Ok(r) if r.response_timeout_ms > 0 => {
            Duration::from_millis(r.response_timeout_ms.into()).min(lkr_room::RPC_MAX_TIMEOUT)
        }
        _ => lkr_room::RPC_DEFAULT_TIMEOUT,
    };
    (lkr_room::RPC_ACK_WITHIN + wait + RPC_FORWARD_MARGIN).max(FORWARD_TIMEOUT)
}

/// What a forwarded `PerformRpc` may take beyond the call's own deadlines.
const RPC_FORWARD_MARGIN: Duration = Duration::from_secs(3);

/// Refreshes this node's part in the cluster every [`lkr_cluster::store::REFRESH`] (and at
/// once when it starts draining), until the task is dropped.
pub async fn run(cluster: Arc<Cluster>, node: Arc<Node>) {
    let mut cpu = CpuSampler::new();
    loop {
        cluster.refresh(&node, &mut cpu).await;
        tokio::select! {
            _ = tokio::time::sleep(lkr_cluster::store::REFRESH) => {}
            _ = cluster.wake.notified() => {}
        }
    }
}

/// Copies messages between the client's WebSocket and the relayed one until either ends;
/// pings are answered on each leg by itself.
pub async fn pipe<C>(
    client: WebSocketStream<C>,
    upstream: WebSocketStream<MaybeTlsStream<TcpStream>>,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_tx, mut client_rx) = client.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let forward =
        |m: &Message| matches!(m, Message::Text(_) | Message::Binary(_) | Message::Close(_));
    let up = async {
        while let Some(Ok(m)) = client_rx.next().await {
            if forward(&m) && up_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = up_tx.close().await;
    };
    let down = async {
        while let Some(Ok(m)) = up_rx.next().await {
            if forward(&m) && client_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = client_tx.close().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn decode_answer<T: prost::Message + Default + serde::de::DeserializeOwned>(
    format: Format,
    r: Resp,
) -> Result<T, TwirpError> {
    let body = r
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    format.decode::<T>(&body)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Media bytes per second arriving on this node, from the per-track rates the shards publish.
fn media_bytes_per_sec(node: &Node) -> u64 {
    let media = node
        .counters
        .media
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    media.map_or(0, |m| {
        m.tracks()
            .iter()
            .flat_map(|t| t.layers.iter())
            .map(|l| l.bitrate_bps / 8)
            .sum()
    })
}

/// One-minute load average per core.
fn sys_load(cores: u32) -> f32 {
    let avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f32>().ok())
        .unwrap_or(0.0);
    avg / cores.max(1) as f32
}

/// The host's busy CPU share between two looks, from `/proc/stat`.
struct CpuSampler {
    cores: u32,
    last: Option<(u64, u64)>,
}

impl CpuSampler {
    fn new() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            last: None,
        }
    }

    fn sample(&mut self) -> f32 {
        let Some((idle, total)) = read_cpu() else {
            return 0.0;
        };
        let load = match self.last {
            Some((i0, t0)) if total > t0 => {
                1.0 - (idle.saturating_sub(i0)) as f32 / (total - t0) as f32
            }
            _ => 0.0,
        };
        self.last = Some((idle, total));
        load.clamp(0.0, 1.0)
    }
}

/// (idle + iowait, total) jiffies of all CPUs.
fn read_cpu() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((idle, v.iter().sum()))
}

/// What a Twirp call asks of the cluster.
#[derive(Debug, PartialEq)]
pub enum Target {
    /// The room's node answers (`create`: a room that lives nowhere is placed first).
    Room { name: String, create: bool },
    /// Every node answers (ListRooms, a room-less ListEgress).
    Everywhere,
    /// The first node that knows the object (StopEgress).
    FirstFound,
    /// This node answers.
    Here,
}

/// Reads which room a Twirp call is about. A body that does not decode is left to this
/// node, which gives the caller the decoding error.
pub fn twirp_target(service: &str, rpc: &str, format: Format, body: &[u8]) -> Target {
    fn room<T: prost::Message + Default + serde::de::DeserializeOwned>(
        format: Format,
        body: &[u8],
        create: bool,
        name: impl Fn(&T) -> &str,
    ) -> Target {
        match format.decode::<T>(body) {
            Ok(r) if !name(&r).is_empty() => Target::Room {
                name: name(&r).to_string(),
                create,
            },
            _ => Target::Here,
        }
    }
    match (service, rpc) {
        (crate::room_service::SERVICE, "ListRooms") => Target::Everywhere,
        (crate::room_service::SERVICE, "CreateRoom") => {
            room::<pb::CreateRoomRequest>(format, body, true, |r| &r.name)
        }
        (crate::room_service::SERVICE, "DeleteRoom") => {
            room::<pb::DeleteRoomRequest>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "ListParticipants") => {
            room::<pb::ListParticipantsRequest>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "GetParticipant" | "RemoveParticipant") => {
            room::<pb::RoomParticipantIdentity>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "MutePublishedTrack") => {
            room::<pb::MuteRoomTrackRequest>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "UpdateParticipant") => {
            room::<pb::UpdateParticipantRequest>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "UpdateSubscriptions") => {
            room::<pb::UpdateSubscriptionsRequest>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "SendData") => {
            room::<pb::SendDataRequest>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "UpdateRoomMetadata") => {
            room::<pb::UpdateRoomMetadataRequest>(format, body, false, |r| &r.room)
        }
        (crate::room_service::SERVICE, "PerformRpc") => {
            room::<pb::PerformRpcRequest>(format, body, false, |r| &r.room)
        }
        (crate::agent_service::SERVICE, "CreateDispatch") => {
            room::<pb::CreateAgentDispatchRequest>(format, body, true, |r| &r.room)
        }
        (crate::agent_service::SERVICE, "DeleteDispatch") => {
            room::<pb::DeleteAgentDispatchRequest>(format, body, false, |r| &r.room)
        }
        (crate::agent_service::SERVICE, "ListDispatch") => {
            room::<pb::ListAgentDispatchRequest>(format, body, false, |r| &r.room)
        }
        (crate::egress::SERVICE, "StartTrackEgress") => {
            room::<pb::TrackEgressRequest>(format, body, false, |r| &r.room_name)
        }
        (crate::egress::SERVICE, "ListEgress") => {
            match room::<pb::ListEgressRequest>(format, body, false, |r| &r.room_name) {
                Target::Here if format.decode::<pb::ListEgressRequest>(body).is_ok() => {
                    Target::Everywhere
                }
                t => t,
            }
        }
        (crate::egress::SERVICE, "StopEgress") => Target::FirstFound,
        _ => Target::Here,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_perform_rpc_waits_as_long_as_its_call() {
        let rpc = |ms: u32| {
            serde_json::to_vec(&serde_json::json!({
                "room": "r", "destination_identity": "a", "method": "m", "response_timeout_ms": ms
            }))
            .unwrap()
        };
        let svc = crate::room_service::SERVICE;
        let secs = |d: Duration| d.as_secs();
        // 2 s for the acknowledgement, the call's own timeout (LiveKit's 10 s when unset), 3 s.
        assert_eq!(
            secs(forward_timeout(svc, "PerformRpc", Format::Json, &rpc(0))),
            15
        );
        assert_eq!(
            secs(forward_timeout(
                svc,
                "PerformRpc",
                Format::Json,
                &rpc(30_000)
            )),
            35
        );
        assert_eq!(
            secs(forward_timeout(
                svc,
                "PerformRpc",
                Format::Json,
                &rpc(1_000)
            )),
            10
        );
        assert_eq!(
            secs(forward_timeout(
                svc,
                "PerformRpc",
                Format::Json,
                &rpc(u32::MAX)
            )),
            305,
            "the call's timeout is cut where the machine cuts it"
        );
        assert_eq!(
            forward_timeout(svc, "ListRooms", Format::Json, b"{}"),
            FORWARD_TIMEOUT
        );
    }

    #[test]
    fn twirp_calls_are_routed_by_their_room() {
        let json = |s: &str| s.as_bytes().to_vec();
        let rs = crate::room_service::SERVICE;
        assert_eq!(
            twirp_target(
                rs,
                "ListParticipants",
                Format::Json,
                &json(r#"{"room":"r1"}"#)
            ),
            Target::Room {
                name: "r1".into(),
                create: false
            }
        );
        assert_eq!(
            twirp_target(rs, "CreateRoom", Format::Json, &json(r#"{"name":"r2"}"#)),
            Target::Room {
                name: "r2".into(),
                create: true
            }
        );
        assert_eq!(
            twirp_target(rs, "ListRooms", Format::Json, &json("{}")),
            Target::Everywhere
        );
        let body = prost::Message::encode_to_vec(&pb::RoomParticipantIdentity {
            room: "r3".into(),
            identity: "alice".into(),
            ..Default::default()
        });
        assert_eq!(
            twirp_target(rs, "RemoveParticipant", Format::Protobuf, &body),
            Target::Room {
                name: "r3".into(),
                create: false
            }
        );
        // Undecodable or room-less: this node answers (with its own error, if any).
        assert_eq!(
            twirp_target(rs, "SendData", Format::Json, &json("{not json")),
            Target::Here
        );
        assert_eq!(
            twirp_target(rs, "SendData", Format::Json, &json("{}")),
            Target::Here
        );
        let eg = crate::egress::SERVICE;
        assert_eq!(
            twirp_target(eg, "ListEgress", Format::Json, &json("{}")),
            Target::Everywhere
        );
        assert_eq!(
            twirp_target(
                eg,
                "ListEgress",
                Format::Json,
                &json(r#"{"room_name":"r4"}"#)
            ),
            Target::Room {
                name: "r4".into(),
                create: false
            }
        );
        assert_eq!(
            twirp_target(
                eg,
                "StopEgress",
                Format::Json,
                &json(r#"{"egress_id":"EG_x"}"#)
            ),
            Target::FirstFound
        );
    }

    #[test]
    fn cpu_sampler_reads_a_share() {
        let mut c = CpuSampler::new();
        let _ = c.sample();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let load = c.sample();
        assert!((0.0..=1.0).contains(&load), "{load}");
        assert!(c.cores >= 1);
    }
}
