//! Running this program's executable again through `posix_spawn(3)`.
//!
//! glibc's `posix_spawn` starts the child with `clone(CLONE_VM | CLONE_VFORK)`: the child borrows
//! the parent's memory until it execs, so nothing of the parent's address space is copied (no page
//! tables, no copy-on-write faults on either side afterwards). `std::process::Command` takes the
//! same road unless it is given a `pre_exec` closure, when it falls back to `fork` + `exec`; the
//! fork costs a spawned child about a quarter of a millisecond on the machine of
//! `bench/README.md` (`peers.start_join.spawn`), more as the parent's memory grows.
//!
//! What the child needs (its socket at descriptor 3, every other descriptor above 2 closed,
//! `/dev/null` as stdin, a clean signal mask and `SIGPIPE` at its default) is expressed as spawn
//! file actions and attributes. Closing the other descriptors needs
//! `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34); it is looked up at run time, so that
//! the crate still runs on older C libraries, where [`spawn_current_exe`] answers `None` and the
//! caller takes the `fork` road.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use super::process::INHERITED_FD;

/// `posix_spawn_file_actions_addclosefrom_np`.
type AddCloseFrom = unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;

/// The C library's `posix_spawn_file_actions_addclosefrom_np`, if it has one.
fn addclosefrom() -> Option<AddCloseFrom> {
    static FOUND: OnceLock<Option<AddCloseFrom>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT (a null handle on glibc) and a NUL-terminated name only
        // looks the symbol up.
        let symbol = unsafe { libc::dlsym(std::ptr::null_mut(), c"posix_spawn_file_actions_addclosefrom_np".as_ptr()) };
        if symbol.is_null() {
            return None;
        }
        // SAFETY: glibc's function of this name has exactly this signature (spawn.h, since 2.34).
        Some(unsafe { std::mem::transmute::<*mut libc::c_void, AddCloseFrom>(symbol) })
    })
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
}

fn check(code: libc::c_int) -> std::io::Result<()> {
    match code {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// The argument vector (this process's own, starting with its `argv[0]`) and the environment
/// (this process's, with `role_var=role` set), as NUL-terminated strings.
fn argv_and_envp(role_var: &str, role: &str) -> std::io::Result<(Vec<CString>, Vec<CString>)> {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "multiproc-child".into());
    let argv = std::iter::once(argv0).chain(args).map(|a| c_string(a.as_bytes())).collect::<std::io::Result<_>>()?;
    let mut envp = Vec::new();
    for (key, value) in std::env::vars_os() {
        if key != OsStr::new(role_var) {
            envp.push(c_string(&[key.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
    }
    envp.push(c_string(format!("{role_var}={role}").as_bytes())?);
    Ok((argv, envp))
}

/// A null-terminated array of pointers to `strings` (which must outlive it).
fn pointers(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings.iter().map(|s| s.as_ptr().cast_mut()).chain(std::iter::once(std::ptr::null_mut())).collect()
}

/// Spawn file actions, destroyed when dropped.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> std::io::Result<Box<FileActions>> {
        // SAFETY: an all-zero posix_spawn_file_actions_t is a valid place for init to write to.
        let mut actions = Box::new(FileActions(unsafe { std::mem::zeroed() }));
        // SAFETY: initializes the object in place.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut actions.0) })?;
        Ok(actions)
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// Spawn attributes, destroyed when dropped.
struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    fn new() -> std::io::Result<Box<Attributes>> {
        // SAFETY: an all-zero posix_spawnattr_t is a valid place for init to write to.
        let mut attributes = Box::new(Attributes(unsafe { std::mem::zeroed() }));
        // SAFETY: initializes the object in place.
        check(unsafe { libc::posix_spawnattr_init(&mut attributes.0) })?;
        Ok(attributes)
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// Starts `/proc/self/exe` with this process's arguments, `role_var=role` in the environment,
/// `socket` at descriptor [`INHERITED_FD`], stdin `/dev/null`, every other descriptor above 2
/// closed, no signal blocked and `SIGPIPE` at its default. `None`: this C library cannot close the
/// other descriptors in a spawn; use `fork` + `exec`.
pub(crate) fn spawn_current_exe(role_var: &str, role: &str, socket: BorrowedFd<'_>) -> Option<std::io::Result<i32>> {
    let closefrom = addclosefrom()?;
    Some(spawn_with(closefrom, role_var, role, socket))
}

fn spawn_with(closefrom: AddCloseFrom, role_var: &str, role: &str, socket: BorrowedFd<'_>) -> std::io::Result<i32> {
    let (argv, envp) = argv_and_envp(role_var, role)?;
    let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&envp));
    // The socket must land on INHERITED_FD without close-on-exec. A dup2 onto itself keeps the
    // flag on older C libraries, so a socket already there is moved out of the way first.
    let moved = match socket.as_raw_fd() {
        INHERITED_FD => Some(rustix::io::fcntl_dupfd_cloexec(socket, INHERITED_FD + 1)?),
        _ => None,
    };
    let source = moved.as_ref().map_or(socket.as_raw_fd(), |fd: &OwnedFd| fd.as_raw_fd());
    let mut actions = FileActions::new()?;
    let mut attributes = Attributes::new()?;
    // SAFETY: the objects were initialized above; the strings are NUL-terminated and outlive the
    // calls (glibc copies the path); `source` is a descriptor open in this process.
    unsafe {
        // The dup2 comes first: the socket may be descriptor 0, which the open replaces.
        check(libc::posix_spawn_file_actions_adddup2(&mut actions.0, source, INHERITED_FD))?;
        check(libc::posix_spawn_file_actions_addopen(&mut actions.0, 0, c"/dev/null".as_ptr(), libc::O_RDONLY, 0))?;
        check(closefrom(&mut actions.0, INHERITED_FD + 1))?;
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        let mut sigpipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut sigpipe);
        libc::sigaddset(&mut sigpipe, libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigmask(&mut attributes.0, &none))?;
        check(libc::posix_spawnattr_setsigdefault(&mut attributes.0, &sigpipe))?;
        let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        check(libc::posix_spawnattr_setflags(&mut attributes.0, flags as libc::c_short))?;
    }
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the path and the arrays are NUL-terminated
    // (the arrays by a null pointer), the actions and attributes initialized.
    check(unsafe {
        libc::posix_spawn(
            &mut pid,
            c"/proc/self/exe".as_ptr(),
            &actions.0,
            &attributes.0,
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
        )
    })?;
    drop(moved);
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_environment_carry_the_role() {
        let (argv, envp) = argv_and_envp("MULTIPROC_TEST_ROLE", "child").unwrap();
        assert!(!argv.is_empty());
        assert_eq!(envp.last().unwrap().as_bytes(), b"MULTIPROC_TEST_ROLE=child");
        assert_eq!(envp.iter().filter(|e| e.as_bytes().starts_with(b"MULTIPROC_TEST_ROLE=")).count(), 1);
        let ptrs = pointers(&argv);
        assert_eq!(ptrs.len(), argv.len() + 1);
        assert!(ptrs.last().unwrap().is_null());
    }

    #[test]
    fn a_nul_byte_is_an_error() {
        assert!(c_string(b"a\0b").is_err());
    }
}
