//! A `redis-server` of the test's own (free loopback port, no persistence, stopped by its PID), a
//! TCP relay that can stall or cut connections (a partition without namespaces), and the node
//! agents a test starts itself.
//!
//! Without `redis-server` on `PATH` the cluster tests print one line and skip, unless
//! `MULTIPROC_REQUIRE_REDIS` is set (CI), which turns the skip into a failure.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The variable CI sets to make a missing `redis-server` a failure.
pub const REQUIRE_VAR: &str = "MULTIPROC_REQUIRE_REDIS";

/// Kills the child when the thread that started it ends (a test that fails or is aborted by its
/// watchdog leaves no server or node behind).
fn die_with_test(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// The server binary: `MULTIPROC_REDIS_SERVER` (a path, or a name on `PATH`, for example
/// `valkey-server`), else `redis-server` from `PATH`.
fn server_binary() -> Option<std::path::PathBuf> {
    let name = std::env::var_os("MULTIPROC_REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
    let direct = std::path::PathBuf::from(&name);
    if direct.components().count() > 1 {
        return direct.is_file().then_some(direct);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(&name)).find(|p| p.is_file())
}

/// A `redis-server` started by this test.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts a server, or `None` (after one line saying so) when there is no `redis-server`.
    pub fn start() -> Option<RedisServer> {
        let Some(binary) = server_binary() else {
            if std::env::var_os(REQUIRE_VAR).is_some() {
                panic!(
                    "redis-server is not on PATH but {REQUIRE_VAR} is set: install it (apt-get install redis-server)"
                );
            }
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!("cluster tests skipped: redis-server is not on PATH (apt-get install redis-server)")
            });
            return None;
        };
        let dir = std::env::temp_dir().join(format!("multiproc-redis-{}-{}", std::process::id(), next_id()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer { child: None, port, dir: dir.clone() };
            if server.launch(&binary) {
                return Some(server);
            }
        }
        panic!("redis-server did not start on a free loopback port (five tries)");
    }

    fn launch(&mut self, binary: &std::path::Path) -> bool {
        let mut child = die_with_test(&mut Command::new(binary))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // port taken: try another
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Kills the server (SIGKILL, by its PID) and starts a fresh one on the same port: all data
    /// is gone, as after a restart without persistence.
    pub fn restart_empty(&mut self) {
        self.stop();
        let binary = server_binary().expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.launch(&binary) {
            assert!(Instant::now() < deadline, "redis-server did not restart on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server by its PID.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection for the test's own checks.
    pub fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("url");
        let conn = client.get_connection_with_timeout(Duration::from_secs(5)).expect("connect to the test's redis");
        conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        conn
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A node agent started by the test: this test binary with `MULTIPROC_WORKER` set (the start-up
/// hook makes it a node before `main`). It stops when dropped (its standard input closes), or is
/// killed by the test.
pub struct TestNode {
    pub child: Child,
}

impl TestNode {
    pub fn start(url: &str, pool: &str, processes: usize, key: &str, extra_env: &[(&str, &str)]) -> TestNode {
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .env("MULTIPROC_WORKER", format!("{url}?pool={pool}&processes={processes}"))
            .env("MULTIPROC_AUTHKEY", key)
            .env("__MULTIPROC_NODE_WATCH_STDIN", "1")
            .stdin(Stdio::piped());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        TestNode { child: die_with_test(&mut command).spawn().expect("start a node") }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a [`Relay`] treats its traffic.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum RelayMode {
    Forward = 0,
    /// Holds every byte (connections stay open, nothing passes): a partition.
    Stall = 1,
}

/// A TCP relay on a free loopback port in front of a server: it forwards, stalls, or resets
/// every connection on command.
pub struct Relay {
    pub port: u16,
    mode: Arc<RelayState>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let mode = Arc::new(RelayState { mode: AtomicU8::new(RelayMode::Forward as u8), resets: AtomicU64::new(0) });
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, c, s) = (Arc::clone(&mode), Arc::clone(&conns), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((down, _)) => {
                        let _ = down.set_nonblocking(false);
                        let Ok(up) = TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                        let mut list = c.lock().unwrap();
                        list.push(down.try_clone().unwrap());
                        list.push(up.try_clone().unwrap());
                        drop(list);
                        pump(down.try_clone().unwrap(), up.try_clone().unwrap(), Arc::clone(&m));
                        pump(up, down, Arc::clone(&m));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Relay { port, mode, conns, stop }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn set(&self, mode: RelayMode) {
        self.mode.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Resets every connection through the relay (both sides see it closed).
    pub fn reset_all(&self) {
        self.mode.resets.fetch_add(1, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.reset_all();
    }
}

struct RelayState {
    mode: AtomicU8,
    resets: AtomicU64,
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: Arc<RelayState>) {
    let born = state.resets.load(Ordering::SeqCst);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // A stalled relay holds what it read until it forwards again (or the link is reset).
            while state.mode.load(Ordering::SeqCst) == RelayMode::Stall as u8 {
                std::thread::sleep(Duration::from_millis(5));
                if state.resets.load(Ordering::SeqCst) != born {
                    return;
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
