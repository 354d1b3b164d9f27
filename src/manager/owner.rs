//! [`BaseManager`]: starts a manager's server in a child process and owns it.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Mutex;
use std::time::Duration;

use super::client::ManagerClient;
use super::protocol::MAX_MESSAGE;
use super::proxy::Endpoint;
use super::registry::Registry;
use super::server::{run_server_process, run_server_process_with};
use crate::connection::Address;
use crate::deadline::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::{Connection, Process, current_process, pipe};

/// How long a starting server may take to report that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after it was asked to stop, before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A manager: a server process holding shared objects, and a client for it (CPython
/// `BaseManager`; with `R = ()`, [`Manager`] is CPython's `SyncManager`).
///
/// `R` lists the user types the server can hold (see [`Registry`]). The manager dereferences to
/// its [`ManagerClient`], whose methods create objects and return their proxies; proxies can be
/// given to other processes as arguments or messages.
///
/// The server stops when [`shutdown`](Self::shutdown) is called or the manager is dropped, and it
/// never outlives the process that started it, even one killed with `SIGKILL`.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Manager, Process};
/// use multiproc::manager::{DictProxy, ListProxy};
///
/// fn f(d: DictProxy<String, i32>, l: ListProxy<i32>) -> multiproc::Result<()> {
///     d.insert(&"answer".into(), &42)?;
///     l.reverse()
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, i32>()?;
/// let l = manager.list(&[0, 1, 2])?;
/// let mut p = Process::new(f, (d.clone(), l.clone()));
/// p.start()?;
/// p.join()?;
/// assert_eq!(d.get(&"answer".into())?, Some(42));
/// assert_eq!(l.to_vec()?, [2, 1, 0]);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "SyncManager")]
pub struct BaseManager<R: Registry = ()> {
    client: ManagerClient,
    /// In a mutex only so that the manager can be shared between threads (`Process` is not `Sync`).
    server: Mutex<Option<Process>>,
    /// The server's exit code, once it was stopped.
    exitcode: Option<i32>,
    /// The process that started the server: only it stops it (a forked child drops its copy).
    owner: u32,
    registry: PhantomData<fn() -> R>,
}

/// CPython's `multiprocessing.Manager()`: a manager of the built-in types.
#[doc(alias = "SyncManager")]
pub type Manager = BaseManager<()>;

impl<R: Registry> std::fmt::Debug for BaseManager<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseManager")
            .field("address", self.client.address())
            .field("server_pid", &self.server_pid())
            .finish()
    }
}

impl<R: Registry> BaseManager<R> {
    /// Starts the server process (CPython `Manager()`, `manager.start()`), listening on a fresh
    /// abstract Unix socket with this process's authkey.
    pub fn start() -> Result<Self> {
        Self::start_at(fresh_address()?, current_process().authkey())
    }

    /// Starts the server process listening at `address` with `authkey` (CPython
    /// `BaseManager(address, authkey).start()`); other processes reach it with
    /// [`ManagerClient::connect`]. A TCP port 0 picks a free port; [`address`](ManagerClient::address)
    /// tells which.
    pub fn start_at(address: Address, authkey: &[u8]) -> Result<Self> {
        let (ours, theirs) = pipe()?;
        let server = Process::new(run_server_process::<R>, (address, authkey.to_vec(), theirs));
        Self::launch(server, ours, authkey)
    }

    /// Like [`start`](Self::start), calling `initializer(args)` in the server process before it
    /// serves (CPython `manager.start(initializer, initargs)`); an initializer that fails (returns
    /// an error or a non-zero code) makes this fail.
    #[doc(alias = "initializer")]
    pub fn start_with_initializer<F, A>(initializer: F, args: A) -> Result<Self>
    where
        F: crate::Target<A>,
        A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        let _ = initializer;
        let (ours, theirs) = pipe()?;
        let address = fresh_address()?;
        let authkey = current_process().authkey().to_vec();
        let server = Process::new(run_server_process_with::<R, F, A>, (address, authkey.clone(), theirs, args));
        Self::launch(server, ours, &authkey)
    }

    /// Starts `server` (a server process) and waits for it to report its address on `ours`, which
    /// then becomes the manager's control connection.
    pub(super) fn launch(server: Process, mut ours: Connection, authkey: &[u8]) -> Result<Self> {
        let mut server = server.with_name("manager-server").with_daemon(!current_process().daemon());
        server.start()?;
        ours.set_timeout(Some(START_TIMEOUT));
        let address = match ours.recv::<std::result::Result<Address, String>>() {
            Ok(Ok(bound)) => bound,
            Ok(Err(reason)) => {
                let _ = server.join();
                return Err(Error::InvalidState(format!("the manager's server could not start: {reason}")));
            }
            Err(e) => {
                let _ = server.kill();
                let _ = server.join();
                return Err(e);
            }
        };
        // The pipe stays open as the client's control connection: the server serves it as an
        // authenticated client, so `shutdown` needs no new connection and handshake.
        ours.set_timeout(None);
        ours.set_max_message_size(MAX_MESSAGE);
        let client = ManagerClient::with_control(Endpoint::new(address, Some(authkey.to_vec())), ours);
        Ok(BaseManager {
            client,
            server: Mutex::new(Some(server)),
            exitcode: None,
            owner: std::process::id(),
            registry: PhantomData,
        })
    }

    /// The server's process id.
    pub fn server_pid(&self) -> Option<i32> {
        self.server.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(Process::pid)
    }

    /// Stops the server and waits for it to exit (CPython `shutdown()`). Proxies fail from then on.
    /// In a child forked with the manager, this (and dropping the manager) leaves the server alone.
    ///
    /// The request goes over the pipe the server was started with, not a new connection. A server
    /// that does not answer and exit within 5 seconds (stopped, hung, or dead already) is killed
    /// ([`server_exitcode`](Self::server_exitcode) then tells the signal), so this never hangs.
    ///
    /// # Errors
    ///
    /// Waiting for the server process failed (the system's error).
    pub fn shutdown(&mut self) -> Result<()> {
        let server = self.server.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut server) = server else { return Ok(()) };
        if std::process::id() != self.owner {
            // A copy inherited through fork: the server belongs to the parent.
            std::mem::forget(server);
            return Ok(());
        }
        let deadline = Deadline::after(Some(STOP_TIMEOUT));
        let asked = self.client.ask_to_stop(STOP_TIMEOUT);
        let code = match asked.map(|()| server.join_timeout(deadline.left().unwrap_or_default())) {
            Ok(Ok(Some(code))) => code,
            _ => {
                let _ = server.kill();
                server.join()?
            }
        };
        self.exitcode = Some(code);
        Ok(())
    }

    /// The server's exit code after [`shutdown`](Self::shutdown): 0 when it stopped as asked, a
    /// negative signal number when it had to be killed (CPython `manager._process.exitcode`).
    pub fn server_exitcode(&self) -> Option<i32> {
        self.exitcode
    }
}

/// A fresh abstract Unix socket address for a manager's server.
pub(super) fn fresh_address() -> Result<Address> {
    let name: [u8; 8] = crate::sys::random_bytes().context("draw a random manager address")?;
    let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Address::Abstract(format!("multiproc-manager-{}-{name}", std::process::id()).into_bytes()))
}

impl<R: Registry> Deref for BaseManager<R> {
    type Target = ManagerClient;

    fn deref(&self) -> &ManagerClient {
        &self.client
    }
}

impl<R: Registry> Drop for BaseManager<R> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
