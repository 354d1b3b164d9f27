//! A broker connection split in two, for a node's feed: one thread (the feeder) reads the replies
//! in order, any thread writes commands (a chunk's sink, on the local pool's scheduler thread,
//! writes its chunk's publication and the node's next read the moment the outcome is in).
//!
//! The synchronous `redis` client owns its socket, so a thread blocked reading its replies keeps
//! every other thread from writing; this connection is the socket itself, with the client's RESP
//! encoder ([`redis::Cmd::write_packed_command`]) and whole replies cut out of the byte stream
//! here. The replies on every chunk's path (arrays, bulk strings, integers) are decoded here too,
//! in well under a microsecond; the rest (errors, RESP3 types) goes to the client's parser
//! ([`redis::parse_redis_value`], several microseconds for an `XREADGROUP` reply). Every read
//! and write has a timeout; a connection that failed once is shut down (both halves see it) and
//! replaced.
//!
//! Used by a node's feed, and by a client's callers that wait for a synchronous `apply` in
//! person (their chunk's `XADD` on one connection, their `BLPOP` on another).

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo, Value};

use crate::error::{Error, Result};
use crate::sys;

/// The socket under a connection.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => s.set_write_timeout(timeout),
            Stream::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How much one read of the connection takes in at most, at first.
const RECEIVE_SIZE: usize = 16 * 1024;
/// How much one read takes in at most while a large reply comes in.
const RECEIVE_MAX: usize = 4 << 20;

/// The writing half: commands, from any thread (behind the caller's lock).
pub(crate) struct Writer {
    stream: Stream,
}

impl Writer {
    /// Writes packed commands, whole. After a failure the connection is shut down (a command
    /// may be half written), so the reader fails too and the connection is replaced.
    ///
    /// # Errors
    ///
    /// The broker is gone, or took nothing for the write timeout.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let sent = self.stream.write_all(bytes);
        if sent.is_err() {
            self.stream.shutdown();
        }
        sent
    }

    /// Shuts the connection down (the reader's next read fails at once).
    pub(crate) fn close(&self) {
        self.stream.shutdown();
    }
}

/// The reading half: whole replies, in order, on one thread at a time.
pub(crate) struct Reader {
    stream: Stream,
    buf: Vec<u8>,
    /// Where the next reply starts in `buf`.
    start: usize,
    /// The read timeout last set on the socket: set again only when a wait needs another (a
    /// caller waiting for each result in person would otherwise make two `setsockopt` calls per
    /// round trip, one of them between the result's arrival and its return).
    read_timeout: Option<Duration>,
}

impl Reader {
    fn new(stream: Stream) -> Reader {
        Reader { stream, buf: Vec::new(), start: 0, read_timeout: None }
    }

    /// A reader of a socket already connected (and set up) by the caller: the fuzz target's.
    pub(super) fn over_unix(stream: UnixStream) -> Reader {
        Reader::new(Stream::Unix(stream))
    }

    /// A descriptor of the connection, to watch for readability.
    ///
    /// # Errors
    ///
    /// The descriptor could not be duplicated.
    pub(crate) fn watch_fd(&self) -> io::Result<OwnedFd> {
        self.stream.as_fd().try_clone_to_owned()
    }

    /// Takes in what has arrived, with one read that never waits (the caller was told the
    /// connection is readable); false when nothing had. Whole replies are then taken with
    /// [`buffered_reply`](Self::buffered_reply); a reply cut short waits in the buffer for the
    /// next readable event.
    ///
    /// # Errors
    ///
    /// The connection broke, or the broker closed it.
    pub(crate) fn receive(&mut self) -> io::Result<bool> {
        self.take_in(false)
    }

    /// The next reply if it is whole in the buffer (never reads).
    ///
    /// # Errors
    ///
    /// The bytes are not RESP.
    pub(crate) fn buffered_reply(&mut self) -> io::Result<Option<Value>> {
        let Some(end) = frame_end(&self.buf[self.start..])? else { return Ok(None) };
        let frame = &self.buf[self.start..self.start + end];
        let value = match decode(frame) {
            Some(value) => value,
            // Errors, RESP3 types, anything unusual: the client's own parser.
            None => redis::parse_redis_value(frame)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        };
        self.start += end;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(value))
    }

    /// Drops the replies already taken from the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Reads what has arrived (waiting up to `wait` for something); false when nothing came.
    fn fill(&mut self, wait: Duration) -> io::Result<bool> {
        if self.read_timeout != Some(wait) {
            self.read_timeout = None; // unknown until the call succeeds
            self.stream.set_read_timeout(wait)?;
            self.read_timeout = Some(wait);
        }
        self.take_in(true)
    }

    /// One read into the buffer's spare room (no zeroes written first), blocking up to the read
    /// timeout when `wait`, not at all otherwise; false when nothing came. While a reply is being
    /// taken in, the read takes as much again as is buffered (up to `RECEIVE_MAX`): a large reply
    /// then takes a few rounds of the caller's loop, not one per 16 KiB.
    fn take_in(&mut self, wait: bool) -> io::Result<bool> {
        self.compact();
        let want = self.buf.len().clamp(RECEIVE_SIZE, RECEIVE_MAX);
        self.buf.reserve(want);
        let fd = self.stream.as_fd();
        let read = if wait {
            sys::recv_into_spare(fd, &mut self.buf, want).map(Some)
        } else {
            sys::try_recv_into_spare(fd, &mut self.buf, want)
        };
        match read.map_err(io::Error::from) {
            Ok(Some(0)) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the broker closed the connection")),
            Ok(Some(_)) => Ok(true),
            Ok(None) => Ok(false),
            // The read timeout ran out.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Looks whether a reply has begun to arrive, without sleeping, again and again (yielding the
    /// CPU between looks) for up to `spin`; returns at once when bytes are buffered already. For a
    /// caller that expects its reply within microseconds, whose wake-up would cost more than the
    /// looks (see `client.rs`, [`IN_PERSON_SPIN`](super::client)).
    pub(crate) fn spin_until_readable(&self, spin: Duration) {
        if self.start < self.buf.len() {
            return;
        }
        let began = Instant::now();
        while began.elapsed() < spin {
            // An error is for the read that follows to report.
            if sys::poll_one(self.stream.as_fd(), sys::Interest::Read, Some(Duration::ZERO)).unwrap_or(true) {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// The next reply, waiting up to `wait` for it to begin and then up to `rest` for each
    /// further part; `Ok(None)` when none began (nothing was consumed, so a later call reads it
    /// whole).
    ///
    /// # Errors
    ///
    /// The connection broke or closed, a reply began and stalled for `rest`, or the bytes are not
    /// RESP.
    pub(crate) fn reply(&mut self, wait: Duration, rest: Duration) -> io::Result<Option<Value>> {
        loop {
            if let Some(value) = self.buffered_reply()? {
                return Ok(Some(value));
            }
            let began = self.start < self.buf.len();
            if !self.fill(if began { rest } else { wait })? {
                if began {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "a reply from the broker stalled"));
                }
                return Ok(None);
            }
        }
    }
}

/// Deepest nesting [`decode`] takes (deeper replies go to the client's parser).
const DECODE_DEPTH: usize = 8;

/// A whole frame (cut by [`frame_end`]) as the `redis` client's parser gives it, for the RESP2
/// replies a node's feed carries on every chunk: arrays, bulk strings, integers, simple
/// strings. `None` for anything else (errors, RESP3 types, a malformed or too deeply nested
/// frame), which the caller hands to [`redis::parse_redis_value`].
///
/// On the round trip of every chunk: the client's parser (`combine` combinators) takes several
/// microseconds for an `XREADGROUP` reply, this walk well under one.
pub(super) fn decode(frame: &[u8]) -> Option<Value> {
    let (value, end) = decode_at(frame, 0)?;
    (end == frame.len()).then_some(value)
}

/// The value that starts `bytes` and its length.
fn decode_at(bytes: &[u8], depth: usize) -> Option<(Value, usize)> {
    let kind = *bytes.first()?;
    let line = bytes.windows(2).position(|w| w == b"\r\n")?;
    let text = std::str::from_utf8(bytes.get(1..line)?).ok()?;
    let after_line = line + 2;
    match kind {
        b'+' if text == "OK" => Some((Value::Okay, after_line)),
        b'+' => Some((Value::SimpleString(text.to_string()), after_line)),
        b':' => Some((Value::Int(text.parse().ok()?), after_line)),
        b'$' => {
            let len: i64 = text.parse().ok()?;
            let Ok(len) = usize::try_from(len) else { return Some((Value::Nil, after_line)) };
            let end = after_line.checked_add(len)?;
            if bytes.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            Some((Value::BulkString(bytes[after_line..end].to_vec()), end + 2))
        }
        b'*' if depth < DECODE_DEPTH => {
            let items: i64 = text.parse().ok()?;
            let Ok(items) = usize::try_from(items) else { return Some((Value::Nil, after_line)) };
            // No allocation sized by a count the bytes cannot hold (each item takes 3 or more).
            let mut values = Vec::with_capacity(items.min(bytes.len() / 3));
            let mut at = after_line;
            for _ in 0..items {
                let (value, len) = decode_at(bytes.get(at..)?, depth + 1)?;
                values.push(value);
                at += len;
            }
            Some((Value::Array(values), at))
        }
        _ => None,
    }
}

/// Most aggregates (arrays, maps, sets) nested in one another in a reply: as many as the `redis`
/// client's parser takes.
const REPLY_DEPTH_MAX: usize = 99;

/// The length of the first whole RESP value in `bytes`, if it is all there.
///
/// # Errors
///
/// The bytes are not RESP, or nest deeper than [`REPLY_DEPTH_MAX`] (a broker never sends that:
/// followed down, such a reply would overflow the reading thread's stack).
pub(super) fn frame_end(bytes: &[u8]) -> io::Result<Option<usize>> {
    frame_end_at(bytes, 0)
}

fn frame_end_at(bytes: &[u8], depth: usize) -> io::Result<Option<usize>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "the broker sent a malformed reply");
    let Some(&kind) = bytes.first() else { return Ok(None) };
    let Some(line) = bytes.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
    let after_line = line + 2;
    let number = || -> io::Result<i64> {
        std::str::from_utf8(&bytes[1..line]).ok().and_then(|s| s.parse().ok()).ok_or_else(malformed)
    };
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(after_line)),
        b'$' | b'!' | b'=' => {
            let Ok(len) = usize::try_from(number()?) else { return Ok(Some(after_line)) };
            let end = after_line.checked_add(len).and_then(|end| end.checked_add(2)).ok_or_else(malformed)?;
            Ok((bytes.len() >= end).then_some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            if depth >= REPLY_DEPTH_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the broker sent a reply nested deeper than {REPLY_DEPTH_MAX} levels"),
                ));
            }
            let Ok(mut items) = usize::try_from(number()?) else { return Ok(Some(after_line)) };
            if matches!(kind, b'%' | b'|') {
                items = items.checked_mul(2).ok_or_else(malformed)?;
            }
            let mut at = after_line;
            for _ in 0..items {
                match frame_end_at(&bytes[at..], depth + 1)? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        _ => Err(malformed()),
    }
}

/// Opens a connection to `url` (authenticated, its database selected, `scripts` loaded), split.
///
/// # Errors
///
/// [`Error::Broker`] when the URL is not valid or the broker cannot be reached or refuses.
pub(crate) fn connect(url: &str, io_timeout: Duration, scripts: &[&str]) -> Result<(Reader, Writer)> {
    let failed = |detail: String| Error::Broker { action: format!("could not be reached at {url}"), detail };
    let info = url.into_connection_info().map_err(|e| failed(e.to_string()))?;
    let stream = match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            let mut last = None;
            let mut connected = None;
            for addr in (host.as_str(), *port).to_socket_addrs().map_err(|e| failed(e.to_string()))? {
                match TcpStream::connect_timeout(&addr, io_timeout) {
                    Ok(stream) => {
                        connected = Some(stream);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let stream = connected.ok_or_else(|| failed(last.map_or("no address".into(), |e| e.to_string())))?;
            stream.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
            Stream::Tcp(stream)
        }
        ConnectionAddr::Unix(path) => Stream::Unix(UnixStream::connect(path).map_err(|e| failed(e.to_string()))?),
        other => return Err(failed(format!("{other:?} is not supported for a node's feed"))),
    };
    stream.set_write_timeout(io_timeout).map_err(|e| failed(e.to_string()))?;
    let mut reader = Reader::new(stream.try_clone().map_err(|e| failed(e.to_string()))?);
    let mut writer = Writer { stream };
    let settings = info.redis_settings();
    let mut hello = Vec::new();
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        auth.arg(password).write_packed_command(&mut hello);
    }
    if settings.db() != 0 {
        redis::cmd("SELECT").arg(settings.db()).write_packed_command(&mut hello);
    }
    for script in scripts {
        redis::cmd("SCRIPT").arg("LOAD").arg(*script).write_packed_command(&mut hello);
    }
    if hello.is_empty() {
        return Ok((reader, writer));
    }
    let replies = (settings.password().is_some() as usize) + (settings.db() != 0) as usize + scripts.len();
    writer.send(&hello).map_err(|e| failed(e.to_string()))?;
    for _ in 0..replies {
        match reader.reply(io_timeout, io_timeout) {
            Ok(Some(Value::ServerError(e))) => return Err(failed(format!("{e:?}"))),
            Ok(Some(_)) => {}
            Ok(None) => return Err(failed("no answer to the connection's set-up".into())),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    Ok((reader, writer))
}

#[cfg(test)]
mod tests {
    use super::{REPLY_DEPTH_MAX, frame_end};
    use std::io;

    #[test]
    fn decoding_agrees_with_the_clients_parser() {
        let frames: [&[u8]; 12] = [
            b"*1\r\n*2\r\n$10\r\n{mp:p}:t:b\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nm\r\n$4\r\na\r\nb\r\n$1\r\ns\r\n$0\r\n\r\n",
            b"*-1\r\n",
            b"$-1\r\n",
            b"*0\r\n",
            b":1\r\n",
            b":-42\r\n",
            b"+OK\r\n",
            b"+QUEUED\r\n",
            b"$4\r\n\x00\xff\r\n\r\n",
            b"*2\r\n:1\r\n$-1\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:7\r\n",
            b"*2\r\n:1\r\n-ERR no\r\n",
        ];
        for frame in frames {
            let theirs = redis::parse_redis_value(frame).ok();
            match super::decode(frame) {
                Some(ours) => assert_eq!(Some(ours), theirs, "{:?}", String::from_utf8_lossy(frame)),
                // Only what it leaves to the client's parser: errors, and nesting past its depth.
                None => assert!(
                    frame.starts_with(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n")
                        || frame.ends_with(b"-ERR no\r\n"),
                    "{:?}",
                    String::from_utf8_lossy(frame)
                ),
            }
        }
        // Cut short, trailing bytes, bad lengths: no value (the caller then reports the frame).
        assert_eq!(super::decode(b"$4\r\nab\r\n"), None);
        assert_eq!(super::decode(b":1\r\n:2\r\n"), None);
        assert_eq!(super::decode(b"$2\r\nabcd\r\n"), None);
        assert_eq!(super::decode(b"*99999999999\r\n"), None);
        assert_eq!(super::decode(b":x\r\n"), None);
    }

    /// Garbage in the shape of replies (seed frames with bytes replaced, inserted, cut): whatever
    /// frame [`frame_end`] cuts, `decode` gives nothing or what the client's parser gives.
    #[test]
    fn decoding_garbage_never_disagrees_with_the_clients_parser() {
        let seeds: [&[u8]; 4] = [
            b"*1\r\n*2\r\n$3\r\nkey\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nm\r\n$2\r\nab\r\n",
            b"*2\r\n$4\r\nlist\r\n$5\r\nvalue\r\n",
            b":12\r\n",
            b"*3\r\n+OK\r\n$-1\r\n*-1\r\n",
        ];
        let alphabet = b"*$:+-\r\n0123456789ab \x00\xff";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut compared = 0;
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..=next() % 3 {
                let at = (next() as usize) % (bytes.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => bytes.truncate(at.max(1)),
                }
            }
            let Ok(Some(end)) = frame_end(&bytes) else { continue };
            let frame = &bytes[..end];
            if let Some(ours) = super::decode(frame) {
                assert_eq!(Some(ours), redis::parse_redis_value(frame).ok(), "{:?}", String::from_utf8_lossy(frame));
                compared += 1;
            }
        }
        assert!(compared > 1_000, "only {compared} frames decoded");
    }

    /// A reply nested far deeper than any the broker sends is refused as malformed, not followed
    /// down: a million levels, on a thread whose small stack a recursion that deep would overflow
    /// (a node or a waiting caller would then abort instead of dropping the connection).
    #[test]
    fn replies_nested_too_deep_are_refused() {
        let mut deep = b"*1\r\n".repeat(1_000_000);
        deep.extend_from_slice(b":1\r\n");
        let cut = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || frame_end(&deep).map_err(|e| (e.kind(), e.to_string())))
            .unwrap()
            .join()
            .unwrap();
        let (kind, message) = cut.unwrap_err();
        assert_eq!(kind, io::ErrorKind::InvalidData);
        assert!(message.contains("nested deeper than 99"), "{message}");
        // As deep as the client's parser takes (its limit): cut whole, and parsed by it.
        let mut deepest = b"*1\r\n".repeat(REPLY_DEPTH_MAX);
        deepest.extend_from_slice(b":1\r\n");
        assert_eq!(frame_end(&deepest).ok().flatten(), Some(deepest.len()));
        assert!(redis::parse_redis_value(&deepest).is_ok());
        // One level more: refused here, and by the client's parser too.
        let mut over = b"*1\r\n".to_vec();
        over.extend_from_slice(&deepest);
        assert!(frame_end(&over).is_err());
        assert!(redis::parse_redis_value(&over).is_err());
    }

    /// While a large reply comes in, one receive takes in as much again as is buffered (up to
    /// `RECEIVE_MAX`), not 16 KiB: a node's loop takes a 20 MB chunk in a few dozen rounds, not
    /// 1 280.
    #[test]
    fn a_large_reply_is_taken_in_large_reads() {
        use std::io::Write;
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut reader = super::Reader::over_unix(ours);
        // 1 MiB of a 2 MiB reply is in; 100 000 more bytes wait in the socket.
        reader.buf = format!("${}\r\n", 2 << 20).into_bytes();
        reader.buf.resize(1 << 20, b'x');
        theirs.write_all(&[b'x'; 100_000]).unwrap();
        assert!(reader.receive().unwrap());
        assert_eq!(reader.buf.len(), (1 << 20) + 100_000);
        assert!(reader.buffered_reply().unwrap().is_none());
        // A reply just begun takes 16 KiB at a time.
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut reader = super::Reader::over_unix(ours);
        theirs.write_all(&[b'x'; 100_000]).unwrap();
        assert!(reader.receive().unwrap());
        assert_eq!(reader.buf.len(), super::RECEIVE_SIZE);
    }

    #[test]
    fn frames_are_cut_whole_or_not_at_all() {
        let whole: &[u8] = b"*2\r\n$3\r\nabc\r\n*1\r\n:5\r\n+OK\r\n";
        assert_eq!(frame_end(whole).ok().flatten(), Some(whole.len() - 5));
        for cut in 0..whole.len() - 5 {
            assert_eq!(frame_end(&whole[..cut]).ok().flatten(), None, "cut at {cut}");
        }
        assert_eq!(frame_end(b"*-1\r\n").ok().flatten(), Some(5));
        assert_eq!(frame_end(b"$-1\r\n").ok().flatten(), Some(5));
        assert_eq!(frame_end(b"-ERR x\r\n").ok().flatten(), Some(8));
        assert!(frame_end(b"?what\r\n").is_err());
    }
}

#[cfg(test)]
mod spin_tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use super::Reader;

    /// The looks end as soon as a reply has begun to arrive, and the reply is then read whole.
    #[test]
    fn looking_for_a_reply_ends_when_it_arrives() {
        let (ours, mut broker) = UnixStream::pair().expect("pair");
        let mut reader = Reader::over_unix(ours);
        broker.write_all(b":7\r\n").expect("write");
        reader.spin_until_readable(Duration::from_secs(5));
        let reply = reader.reply(Duration::from_secs(5), Duration::from_secs(5)).expect("reply");
        assert_eq!(reply, Some(redis::Value::Int(7)));
    }

    /// With nothing arriving, the looks stop after their time and the read waits as asked
    /// (`None`: nothing came).
    #[test]
    fn looking_for_a_reply_that_does_not_come_stops() {
        let (ours, _broker) = UnixStream::pair().expect("pair");
        let mut reader = Reader::over_unix(ours);
        let started = Instant::now();
        reader.spin_until_readable(Duration::from_micros(200));
        assert!(started.elapsed() >= Duration::from_micros(200));
        assert_eq!(reader.reply(Duration::from_millis(5), Duration::from_millis(5)).expect("read"), None);
    }

    /// A reply already buffered (read along with an earlier one) ends the looks at once: the
    /// socket has nothing more to report.
    #[test]
    fn a_buffered_reply_needs_no_looks() {
        let (ours, mut broker) = UnixStream::pair().expect("pair");
        let mut reader = Reader::over_unix(ours);
        broker.write_all(b":1\r\n:2\r\n").expect("write");
        assert_eq!(
            reader.reply(Duration::from_secs(5), Duration::from_secs(5)).expect("reply"),
            Some(redis::Value::Int(1))
        );
        let started = Instant::now();
        reader.spin_until_readable(Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(1), "looked for {:?}", started.elapsed());
        assert_eq!(
            reader.reply(Duration::from_secs(5), Duration::from_secs(5)).expect("reply"),
            Some(redis::Value::Int(2))
        );
    }
}
