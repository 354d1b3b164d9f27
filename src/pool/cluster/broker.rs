//! The broker side: key names, the Lua scripts that make each outcome visible once, and a
//! connection that always has a timeout and reconnects (the synchronous `redis` client never
//! reconnects by itself, and a read without a timeout hangs forever on a partition).
//!
//! Keys of pool `P` share the hash tag `{mp:P}` (one cluster slot, so every script may touch them
//! all):
//!
//! | key | type | content |
//! |---|---|---|
//! | `{mp:P}:meta` | hash | `epoch` (random, set by the first client; gone = the broker lost its data), `lease_ms` |
//! | `{mp:P}:tasks:<build>` | stream, group `nodes` | one entry per chunk: `m` message, `s` MAC; deleted when its outcome is published, so its length is the work queued and running |
//! | `{mp:P}:res:<client>` | list | signed results for one client; expires unless the client's heartbeat refreshes it (the push that creates it, and the client's wake-up, give it its time to live) |
//! | `{mp:P}:res:<client>:<seq>` | list | the signed result of one chunk whose caller waits for it in person (a synchronous `apply`); popped by that caller, expires like the above |
//! | `{mp:P}:clients` | sorted set | client → last heartbeat (broker clock, ms) |
//! | `{mp:P}:nodes` | hash | node → `build slots pid host` |
//! | `{mp:P}:alive` | sorted set | node → last heartbeat (broker clock, ms) |
//! | `{mp:P}:stats` | hash | counters the scripts keep: `published`, `dropped_late`, `redelivered`, `node_lost`, `refused`, `skipped` |

use std::time::Duration;

use redis::{Connection, RedisError, Value};

use crate::error::{Error, Result};

/// The consumer group of the task streams.
pub(crate) const GROUP: &str = "nodes";

/// The keys of one pool.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) pool: String,
    prefix: String,
}

impl Keys {
    pub(crate) fn new(pool: &str) -> Keys {
        Keys { pool: pool.to_string(), prefix: format!("{{mp:{pool}}}") }
    }
    pub(crate) fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }
    pub(crate) fn tasks(&self, build: &str) -> String {
        format!("{}:tasks:{build}", self.prefix)
    }
    pub(crate) fn results(&self, client: &str) -> String {
        format!("{}:res:{client}", self.prefix)
    }
    /// The result list of one chunk whose caller waits for it in person (see `TaskMessage`).
    pub(crate) fn waiting(&self, client: &str, seq: u64) -> String {
        format!("{}:res:{client}:{seq}", self.prefix)
    }
    pub(crate) fn clients(&self) -> String {
        format!("{}:clients", self.prefix)
    }
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    pub(crate) fn alive(&self) -> String {
        format!("{}:alive", self.prefix)
    }
    pub(crate) fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }
}

/// Publishes one outcome, once: the first completer of an entry (the one whose `XACK` removes it
/// from the pending list) deletes the entry and pushes the result; a late duplicate (the entry was
/// reclaimed, cancelled, or the broker forgot it) gets 0 and is dropped.
///
/// Only the entry's owner may publish: `XACK` takes no consumer name, so without the owner check a
/// stalled node that wakes up after its entry was reclaimed could publish over the new owner.
///
/// The result list gets its time to live when this push creates it (the client's heartbeat
/// renews it while the client lives); a result for a client that is gone is pushed all the same
/// and expires with the list. Every call of the script costs the broker a few microseconds on
/// the round trip of every chunk, so it makes no more than it must: no liveness check of the
/// client (a client that closed has withdrawn its entries, so its chunks' results are dropped as
/// late above; one that died leaves a list that expires), no `PEXPIRE` on a list that has one.
///
/// KEYS: stream, result list, stats. ARGV: group, entry id, signed result, result ttl ms,
/// counter to bump besides `published` (or empty), node.
pub(crate) const COMPLETE: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if p[1] and p[1][2] == ARGV[6] and redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  if redis.call('RPUSH', KEYS[2], ARGV[3]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
  if ARGV[5] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[5], 1) end
  redis.call('HINCRBY', KEYS[3], 'published', 1)
  return 1
end
redis.call('HINCRBY', KEYS[3], 'dropped_late', 1)
return 0
";

/// Renews a node's leases: resets the idle time of every entry it owns (ownership checked in the
/// same atomic step, so an entry another node reclaimed is never taken back), records its
/// heartbeat, and returns the ids it still owns.
///
/// KEYS: stream, alive. ARGV: group, node, max entries.
pub(crate) const RENEW: &str = r"
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[2])
local mine = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
if #mine == 0 then return {} end
local ids = {}
for i, e in ipairs(mine) do ids[i] = e[1] end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids), 'JUSTID')
";

/// Takes over entries of other nodes whose lease ran out (idle longer than the lease), and
/// returns each with the number of times it has now been delivered and the node that held it,
/// and when to look again: the milliseconds until the next entry of another node idle longer
/// than `lease - horizon` runs out of lease (0: more are due than were taken; -1: none is that
/// idle, so none runs out within the horizon). Entries deleted while pending leave the pending
/// list as they are met.
///
/// KEYS: stream. ARGV: group, node, lease ms, max entries, horizon ms.
/// Returns { { {id, fields, deliveries, from}... }, wait ms }.
pub(crate) const RECLAIM: &str = r"
local lease = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local since = math.max(lease - tonumber(ARGV[5]), 0)
local idle = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', since, '-', '+', 4 * max)
local out = {}
local wait = -1
for _, p in ipairs(idle) do
  if p[2] ~= ARGV[2] then
    if p[3] < lease then
      if wait < 0 or lease - p[3] < wait then wait = lease - p[3] end
    elseif #out >= max then
      wait = 0
    else
      local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], lease, p[1])
      if claimed[1] and claimed[1][2] then
        out[#out + 1] = {claimed[1][1], claimed[1][2], p[4] + 1, p[2]}
      else
        redis.call('XACK', KEYS[1], ARGV[1], p[1])
      end
    end
  end
end
return {out, wait}
";

/// Touches a client: records its heartbeat (broker clock) and keeps its result list from
/// expiring. KEYS: clients, result list. ARGV: client, ttl ms.
pub(crate) const TOUCH: &str = r"
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// Which of the given clients are alive: heartbeat within ARGV[1] ms (broker clock).
/// KEYS: clients. ARGV: ttl ms, clients... Returns one 0/1 per client.
pub(crate) const ALIVE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and now - tonumber(s) <= tonumber(ARGV[1]) then out[i - 1] = 1 else out[i - 1] = 0 end
end
return out
";

/// Withdraws entries: with ARGV[2] = 'queued' only those no node has taken (not pending),
/// otherwise all of them (a terminated client: a node still running one sees its lease gone).
/// KEYS: stream. ARGV: group, mode, ids... Returns the ids withdrawn.
pub(crate) const WITHDRAW: &str = r"
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if ARGV[2] ~= 'queued' or #pending == 0 then
    if #pending > 0 then redis.call('XACK', KEYS[1], ARGV[1], id) end
    if redis.call('XDEL', KEYS[1], id) == 1 or #pending > 0 then out[#out + 1] = id end
  end
end
return out
";

/// Removes nodes silent for longer than ARGV[1] ms that hold no entry (a consumer that still holds
/// entries is never deleted: `XGROUP DELCONSUMER` would drop them). KEYS: alive, nodes, streams...
/// ARGV: ttl ms, group. Returns the nodes removed.
pub(crate) const REAP: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local out = {}
for _, node in ipairs(stale) do
  local holds = false
  for k = 3, #KEYS do
    if redis.call('EXISTS', KEYS[k]) == 1 then
      local p = redis.call('XPENDING', KEYS[k], ARGV[2], '-', '+', 1, node)
      if #p > 0 then holds = true end
    end
  end
  if not holds then
    for k = 3, #KEYS do
      if redis.call('EXISTS', KEYS[k]) == 1 then
        pcall(redis.call, 'XGROUP', 'DELCONSUMER', KEYS[k], ARGV[2], node)
      end
    end
    redis.call('ZREM', KEYS[1], node)
    redis.call('HDEL', KEYS[2], node)
    out[#out + 1] = node
  end
end
return out
";

/// How much longer than a command needs a connection's read timeout may stay (see [`Link::run`]).
const READ_TIMEOUT_SLACK: Duration = Duration::from_secs(1);

/// The scripts, loaded once per connection (a restarted broker has none, and `EVALSHA` in a
/// pipeline does not fall back to `EVAL`).
const ALL: [&str; 7] = [COMPLETE, RENEW, RECLAIM, TOUCH, ALIVE, WITHDRAW, REAP];

/// The SHA-1 of a script, as `EVALSHA` names it.
pub(crate) fn sha(script: &str) -> String {
    // Hashed once: a publication names its script per chunk.
    static SHAS: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    let table = SHAS.get_or_init(|| ALL.iter().map(|s| (*s, redis::Script::new(s).get_hash().to_string())).collect());
    match table.iter().find(|(s, _)| *s == script) {
        Some((_, sha)) => sha.clone(),
        None => redis::Script::new(script).get_hash().to_string(),
    }
}

/// A `redis` error as this crate's.
pub(crate) fn broker_error(action: &str, e: &RedisError) -> Error {
    Error::Broker { action: action.to_string(), detail: e.to_string() }
}

/// A connection to the broker that is opened on demand, with timeouts on every read and write,
/// and dropped after any error so that the next use reconnects (and reloads the scripts).
pub(crate) struct Link {
    client: redis::Client,
    url: String,
    conn: Option<Connection>,
    io_timeout: Duration,
    /// The read timeout set on `conn` (set again only when a command needs more, or far less:
    /// one `setsockopt` per command adds up at thousands of round trips a second).
    read_timeout: Duration,
    /// The last error was a broken or refused connection (not a server's answer).
    dropped: bool,
}

impl Link {
    /// A link to `url` (not connected yet).
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] for a URL the client cannot parse.
    pub(crate) fn new(url: &str, io_timeout: Duration) -> Result<Link> {
        use redis::IntoConnectionInfo;
        let invalid = |e: RedisError| Error::Broker {
            action: format!("URL {url:?} is not valid"),
            detail: format!("{e}; write redis://HOST:PORT/DB"),
        };
        // No Nagle delay: a command written while an earlier one is unacknowledged (a pipeline's
        // tail, a command right after a reply) goes out at once.
        let info = url.into_connection_info().map_err(invalid)?;
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(tcp)).map_err(invalid)?;
        Ok(Link { client, url: url.to_string(), conn: None, io_timeout, read_timeout: io_timeout, dropped: false })
    }

    /// Runs `f` on the connection, connecting first if needed; `block` is how long a blocking
    /// command in `f` may wait on the server (added to the read timeout). After an error the
    /// connection is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] when the broker cannot be reached or the command fails.
    pub(crate) fn run<T>(
        &mut self,
        action: &str,
        block: Duration,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.dropped = false;
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                self.read_timeout = self.io_timeout;
                self.conn.insert(self.connect()?)
            }
        };
        // The read timeout only bounds how long a dead broker goes unnoticed: one up to a
        // second longer than this command needs is kept rather than set again.
        let needed = self.io_timeout + block;
        let set = if needed > self.read_timeout || needed + READ_TIMEOUT_SLACK < self.read_timeout {
            self.read_timeout = needed;
            conn.set_read_timeout(Some(needed))
        } else {
            Ok(())
        };
        let outcome = set.and_then(|()| f(conn)).map_err(|e| {
            self.dropped = e.is_connection_dropped() || e.is_connection_refusal();
            broker_error(action, &e)
        });
        if outcome.is_err() {
            self.conn = None;
        }
        outcome
    }

    /// Whether the last [`run`](Self::run) failed because the connection was broken (the
    /// command reached no live server when the link had been idle across a broker restart).
    pub(crate) fn was_dropped(&self) -> bool {
        self.dropped
    }

    fn connect(&self) -> Result<Connection> {
        let unreachable = |e: RedisError| Error::Broker {
            action: format!("could not be reached at {}", self.url),
            detail: format!("{e}; is redis-server (or valkey-server) running there?"),
        };
        let mut conn = self.client.get_connection_with_timeout(self.io_timeout).map_err(unreachable)?;
        conn.set_read_timeout(Some(self.io_timeout)).map_err(unreachable)?;
        conn.set_write_timeout(Some(self.io_timeout)).map_err(unreachable)?;
        let mut load = redis::pipe();
        for script in ALL {
            load.cmd("SCRIPT").arg("LOAD").arg(script);
        }
        load.query::<Vec<String>>(&mut conn).map_err(|e| broker_error("did not load multiproc's scripts", &e))?;
        Ok(conn)
    }

    /// Forgets the connection (the next use reconnects).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }
}

/// Creates the task stream and its group if missing (after a broker restart too).
pub(crate) fn ensure_group(conn: &mut Connection, stream: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<Value> =
        redis::cmd("XGROUP").arg("CREATE").arg(stream).arg(GROUP).arg("0").arg("MKSTREAM").query(conn);
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other.map(drop),
    }
}

/// The broker's text or bytes as a string.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A stream entry's fields, by name.
pub(crate) type Fields = Vec<(String, Vec<u8>)>;

/// The stream entries of an `XREADGROUP`/`XAUTOCLAIM` reply part: `[[id, [field, value, ...]], ...]`.
pub(crate) fn entries(value: &Value) -> Vec<(String, Fields)> {
    let Value::Array(list) = value else { return Vec::new() };
    list.iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else { return None };
            let id = text(parts.first()?)?;
            let fields = match parts.get(1) {
                Some(Value::Array(flat)) => flat
                    .chunks(2)
                    .filter_map(|pair| match pair {
                        [name, Value::BulkString(v)] => Some((text(name)?, v.clone())),
                        _ => None,
                    })
                    .collect(),
                // A deleted entry still pending comes back without fields.
                _ => Vec::new(),
            };
            Some((id, fields))
        })
        .collect()
}

/// The field `name` of an entry.
pub(crate) fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// An integer reply (or 0).
pub(crate) fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
    }
}

/// A fresh random name part (16 hex digits).
pub(crate) fn random_hex() -> String {
    let bytes: [u8; 8] = crate::sys::random_bytes().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (nanos.as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes()
    });
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This host's name (for node and client names).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into())
}
