//! The cluster's shared state in Redis: node records and room placements.
//!
//! Keys (one hash tag, so that a Redis Cluster keeps them in one slot and the scripts may
//! touch several):
//! - `{lkr}:nodes`: the set of node ids that registered;
//! - `{lkr}:node:<id>`: a node's record (JSON), set with a TTL of [`NODE_TTL`] and refreshed
//!   every [`REFRESH`]; a node that stops refreshing is gone when it expires;
//! - `{lkr}:room:<name>`: the id of the node that owns the room, with a TTL of [`ROOM_TTL`]
//!   refreshed by its owner. A placement whose owner's record is gone counts as free;
//! - `{lkr}:up` (no TTL) and `{lkr}:settle` (TTL [`SETTLE_WINDOW`]): when a script finds
//!   `{lkr}:up` missing, Redis lost its data (a restart without persistence, a flush), so the
//!   placements of running rooms are gone until their owners write them again on their next
//!   refresh. For [`SETTLE_WINDOW`] from then, a room without a placement is neither placed
//!   nor reported missing: callers wait, so that a join through another node cannot open a
//!   second room of a running room's name.
//!
//! Every change that must be atomic is one Lua script: placing a room (two joins racing on
//! two nodes get the same answer), refreshing a node's rooms (only those still its own),
//! releasing a room (only by its owner).

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use crate::node::NodeInfo;

/// How long a node's record lives without a refresh.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How long a room's placement lives without a refresh by its owner.
pub const ROOM_TTL: Duration = Duration::from_secs(10);
/// How often a node refreshes its record and its rooms' placements.
pub const REFRESH: Duration = Duration::from_secs(1);
/// The longest one Redis call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long after Redis lost its data rooms without a placement wait for their owners to
/// write it again (three refresh periods).
pub const SETTLE_WINDOW: Duration = Duration::from_secs(3);
/// How many settle waits one placement or lookup sits through before it gives up.
const MAX_SETTLE_WAITS: usize = 4;

const UP: &str = "{lkr}:up";
const SETTLE: &str = "{lkr}:settle";
const NODES: &str = "{lkr}:nodes";
const NODE_PREFIX: &str = "{lkr}:node:";
const ROOM_PREFIX: &str = "{lkr}:room:";

/// A Redis failure: the cluster's shared state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis configuration: {0}")]
    Config(String),
    #[error("redis keeps losing its data: placements did not settle")]
    Unsettled,
}

/// `redis:` of the configuration, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisSettings {
    /// `host:port` of a single Redis (or of the master, without sentinels).
    pub address: String,
    pub username: String,
    pub password: String,
    pub db: i64,
    pub use_tls: bool,
    pub sentinel_master_name: String,
    pub sentinel_addresses: Vec<String>,
    pub sentinel_username: String,
    pub sentinel_password: String,
    /// Redis Cluster seed nodes; when set, `address` is not used.
    pub cluster_addresses: Vec<String>,
}

impl RedisSettings {
    fn url(&self, addr: &str, username: &str, password: &str, db: i64) -> String {
        let scheme = if self.use_tls { "rediss" } else { "redis" };
        let cred = match (username.is_empty(), password.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!(":{}@", enc(password)),
            (false, _) => format!("{}:{}@", enc(username), enc(password)),
        };
        format!("{scheme}://{cred}{addr}/{db}")
    }
}

/// Percent-encodes what may not stand in a URL's user-info.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A connection that reconnects by itself (a single Redis, or a Redis Cluster).
#[derive(Clone)]
enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The cluster's state in Redis. Cheap to clone; every call gives up after
/// [`CALL_TIMEOUT`], so a Redis outage never holds a request for long.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    register: Script,
    place: Script,
    owner: Script,
    refresh: Script,
    release: Script,
    list: Script,
}

/// Shared by the scripts: KEYS[1] is [`UP`], KEYS[2] is [`SETTLE`], ARGV[1] the settle
/// window in ms. Returns how many ms placements still wait (0: none), starting the window
/// when Redis has lost its data.
const SETTLING: &str = r"
local function settling()
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], '1')
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
    return tonumber(ARGV[1])
  end
  local t = redis.call('PTTL', KEYS[2])
  if t > 0 then return t end
  return 0
end
";

/// Writes a node's record (KEYS[4], ARGV[3] for ARGV[4] ms) and adds ARGV[2] to the set of
/// nodes (KEYS[3]).
const REGISTER: &str = r"
settling()
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
";

/// Places a room (KEYS[3]): {the live owner, 0} if it has one; {'', ms} while placements
/// settle; else {the candidate ARGV[3], 0}, placed for ARGV[4] ms. ARGV[2]: node key prefix.
const PLACE: &str = r"
local cur = redis.call('GET', KEYS[3])
if cur and redis.call('EXISTS', ARGV[2] .. cur) == 1 then return {cur, 0} end
local wait = settling()
if wait > 0 then return {'', wait} end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return {ARGV[3], 0}
";

/// The room's (KEYS[3]) owner if that node is alive: {owner, 0}; {'', ms} while placements
/// settle; else {'', 0}.
const OWNER: &str = r"
local cur = redis.call('GET', KEYS[3])
if cur and redis.call('EXISTS', ARGV[2] .. cur) == 1 then return {cur, 0} end
return {'', settling()}
";

/// For each room key (KEYS[3..]): 1 if it is (now) ARGV[2]'s for another ARGV[3] ms (it
/// was, it was free, or its owner is gone), 0 if a live node owns it. ARGV[4]: node key prefix.
const REFRESH_ROOMS: &str = r"
settling()
local out = {}
for i = 3, #KEYS do
  local key = KEYS[i]
  local cur = redis.call('GET', key)
  if (not cur) or cur == ARGV[2] or redis.call('EXISTS', ARGV[4] .. cur) == 0 then
    redis.call('SET', key, ARGV[2], 'PX', ARGV[3])
    out[i - 2] = 1
  else
    out[i - 2] = 0
  end
end
return out
";

/// Deletes each room key that is still ARGV[1]'s.
const RELEASE: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
";

/// The records of the registered nodes that are alive; forgets the others.
const LIST: &str = r"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then table.insert(out, v) else redis.call('SREM', KEYS[1], id) end
end
return out
";

/// A script with the [`SETTLING`] function in front.
fn settling(body: &str) -> String {
    format!("{SETTLING}{body}")
}

/// Sleeps out a settle wait Redis reported (bounded by [`SETTLE_WINDOW`]).
async fn settle(wait_ms: u64) {
    let wait = Duration::from_millis(wait_ms).min(SETTLE_WINDOW);
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

impl Store {
    /// Connects to the configured Redis (single, TLS, sentinel-resolved master, or
    /// cluster). Fails when it cannot be reached within a few seconds.
    pub async fn connect(s: &RedisSettings) -> Result<Self, StoreError> {
        let conn = timeout(Duration::from_secs(5), Self::open(s)).await??;
        Ok(Self {
            conn,
            register: Script::new(&settling(REGISTER)),
            place: Script::new(&settling(PLACE)),
            owner: Script::new(&settling(OWNER)),
            refresh: Script::new(&settling(REFRESH_ROOMS)),
            release: Script::new(RELEASE),
            list: Script::new(LIST),
        })
    }

    async fn open(s: &RedisSettings) -> Result<Conn, StoreError> {
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        if !s.cluster_addresses.is_empty() {
            let urls: Vec<String> = s
                .cluster_addresses
                .iter()
                .map(|a| s.url(a, &s.username, &s.password, 0))
                .collect();
            let client = redis::cluster::ClusterClient::builder(urls)
                .connection_timeout(CALL_TIMEOUT)
                .response_timeout(CALL_TIMEOUT)
                .build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let client = if !s.sentinel_addresses.is_empty() {
            if s.sentinel_master_name.is_empty() {
                return Err(StoreError::Config(
                    "sentinel_addresses needs sentinel_master_name".into(),
                ));
            }
            let sentinels: Vec<String> = s
                .sentinel_addresses
                .iter()
                .map(|a| s.url(a, &s.sentinel_username, &s.sentinel_password, 0))
                .collect();
            let mut sentinel = redis::sentinel::SentinelClient::build(
                sentinels,
                s.sentinel_master_name.clone(),
                Some(
                    redis::sentinel::SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(master_info(s)),
                ),
                redis::sentinel::SentinelServerType::Master,
            )?;
            sentinel.async_get_client().await?
        } else {
            if s.address.is_empty() {
                return Err(StoreError::Config("redis.address is empty".into()));
            }
            redis::Client::open(s.url(&s.address, &s.username, &s.password, s.db))?
        };
        let manager =
            redis::aio::ConnectionManager::new_with_config(client, manager_config).await?;
        Ok(Conn::Single(manager))
    }

    /// Writes `node`'s record for another [`NODE_TTL`].
    pub async fn register(&self, node: &NodeInfo) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.register.key(UP);
        inv.key(SETTLE)
            .key(NODES)
            .key(format!("{NODE_PREFIX}{}", node.id))
            .arg(ms(SETTLE_WINDOW))
            .arg(&node.id)
            .arg(node.to_json())
            .arg(ms(NODE_TTL));
        let _: i64 = timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn)).await??;
        Ok(())
    }

    /// Removes `id`'s record (a node that stops cleanly).
    pub async fn deregister(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut p = redis::pipe();
        p.cmd("DEL")
            .arg(format!("{NODE_PREFIX}{id}"))
            .ignore()
            .cmd("SREM")
            .arg(NODES)
            .arg(id)
            .ignore();
        timeout(CALL_TIMEOUT, p.query_async::<()>(&mut conn)).await??;
        Ok(())
    }

    /// The records of every live node.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.list.key(NODES);
        inv.arg(NODE_PREFIX);
        let raw: Vec<String> = timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn)).await??;
        Ok(raw.iter().filter_map(|s| NodeInfo::from_json(s)).collect())
    }

    /// The id of the live node that owns `room`, if any. While placements settle after
    /// Redis lost its data, waits for them (up to [`SETTLE_WINDOW`]).
    pub async fn owner(&self, room: &str) -> Result<Option<String>, StoreError> {
        for _ in 0..MAX_SETTLE_WAITS {
            let mut conn = self.conn.clone();
            let mut inv = self.owner.key(UP);
            inv.key(SETTLE)
                .key(room_key(room))
                .arg(ms(SETTLE_WINDOW))
                .arg(NODE_PREFIX);
            let (owner, wait): (String, u64) =
                timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn)).await??;
            if wait == 0 {
                return Ok((!owner.is_empty()).then_some(owner));
            }
            settle(wait).await;
        }
        Err(StoreError::Unsettled)
    }

    /// Places `room` on `candidate` unless a live node owns it already; returns the owner.
    /// While placements settle after Redis lost its data, waits for them first.
    pub async fn place(&self, room: &str, candidate: &str) -> Result<String, StoreError> {
        for _ in 0..MAX_SETTLE_WAITS {
            let mut conn = self.conn.clone();
            let mut inv = self.place.key(UP);
            inv.key(SETTLE)
                .key(room_key(room))
                .arg(ms(SETTLE_WINDOW))
                .arg(NODE_PREFIX)
                .arg(candidate)
                .arg(ms(ROOM_TTL));
            let (owner, wait): (String, u64) =
                timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn)).await??;
            if wait == 0 {
                return Ok(owner);
            }
            settle(wait).await;
        }
        Err(StoreError::Unsettled)
    }

    /// Refreshes `me`'s placements of `rooms` for another [`ROOM_TTL`] (taking back those
    /// that are free); returns the rooms a live other node owns now.
    pub async fn refresh_rooms(
        &self,
        me: &str,
        rooms: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut lost = Vec::new();
        for chunk in rooms.chunks(256) {
            let mut conn = self.conn.clone();
            let mut inv = self.refresh.key(UP);
            inv.key(SETTLE);
            for r in chunk {
                inv.key(room_key(r));
            }
            inv.arg(ms(SETTLE_WINDOW))
                .arg(me)
                .arg(ms(ROOM_TTL))
                .arg(NODE_PREFIX);
            let held: Vec<i64> = timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn)).await??;
            lost.extend(
                chunk
                    .iter()
                    .zip(held)
                    .filter(|(_, h)| *h == 0)
                    .map(|(r, _)| r.clone()),
            );
        }
        Ok(lost)
    }

    /// Gives up `me`'s placements of `rooms` (those another node took are left alone).
    pub async fn release_rooms(&self, me: &str, rooms: &[String]) -> Result<(), StoreError> {
        for chunk in rooms.chunks(256) {
            let mut conn = self.conn.clone();
            let mut inv = self.release.prepare_invoke();
            for r in chunk {
                inv.key(room_key(r));
            }
            inv.arg(me);
            let _: i64 = timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn)).await??;
        }
        Ok(())
    }
}

/// Database and credentials of the master a sentinel names.
fn master_info(s: &RedisSettings) -> redis::RedisConnectionInfo {
    let mut info = redis::RedisConnectionInfo::default().set_db(s.db);
    if !s.username.is_empty() {
        info = info.set_username(&s.username);
    }
    if !s.password.is_empty() {
        info = info.set_password(&s.password);
    }
    info
}

async fn timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| StoreError::Timeout(d))
}
