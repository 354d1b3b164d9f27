//! The process group: start + join per start method, the raw fork floor, an idle child's memory.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use multiproc::{Handle, Process, StartMethod};

use crate::{median, sample};

fn noop() {}

fn start_join(method: StartMethod) -> f64 {
    let run = || {
        let mut p = Process::new(noop, ()).with_start_method(method);
        p.start().expect("start");
        assert_eq!(p.join().expect("join"), 0);
    };
    for _ in 0..3 {
        run();
    }
    median(sample(Duration::from_secs(1), 20, 3000, run)) * 1e3
}

fn fork_waitpid() -> f64 {
    let run = || {
        // SAFETY: the bench process is single-threaded; the child only calls _exit.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(libc::WIFEXITED(status));
        }
    };
    for _ in 0..3 {
        run();
    }
    median(sample(Duration::from_secs(1), 20, 3000, run)) * 1e3
}

fn idle(go: Handle<UnixDatagram>) {
    let mut buf = [0u8; 8];
    let _ = go.recv(&mut buf);
}

fn rss_kb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

fn child_rss() -> f64 {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let (go, go_child) = UnixDatagram::pair().expect("pair");
        let (ready, ready_child) = UnixDatagram::pair().expect("pair");
        let mut p = Process::new(idle_after_ready, (Handle::new(go_child), Handle::new(ready_child)));
        p.start().expect("start");
        let mut buf = [0u8; 8];
        ready.recv(&mut buf).expect("ready");
        samples.push(rss_kb(p.pid().expect("pid")));
        go.send(b"go").expect("go");
        p.join().expect("join");
    }
    median(samples)
}

fn idle_after_ready(go: Handle<UnixDatagram>, ready: Handle<UnixDatagram>) {
    ready.send(b"ready").expect("ready");
    idle(go);
}

/// Measures the process metric `args` names.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    let value = match args {
        ["start_join", method] => start_join(method.parse().expect("method")),
        ["start_join_default"] => start_join(multiproc::get_start_method()),
        ["fork_waitpid"] => fork_waitpid(),
        ["child_rss"] => child_rss(),
        _ => return None,
    };
    Some(value.to_string())
}
