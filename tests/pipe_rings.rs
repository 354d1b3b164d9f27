//! The shared-memory rings under `pipe()` (`src/connection/ring.rs`): order across the ring and the
//! socket, full rings, many senders and receivers, wake-ups for `poll` and `wait`, timeouts, and
//! processes killed at any point.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::connection::{ReadOnly, WriteOnly};
use multiproc::{Connection, Error, Handle, Process, pipe, simplex_pipe, wait};

const WATCHDOG_SECS: u64 = 60;

fn started(mut p: Process) -> Process {
    p.start().expect("start");
    p
}

/// A message of every path: small through the ring, large and with a descriptor through the socket.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum Item {
    Small(u64),
    Large(Vec<u8>),
    WithFile(u64, Handle<File>),
}

fn file_with(text: &str) -> File {
    let mut f = tempfile_in_memory();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn tempfile_in_memory() -> File {
    let fd = rustix::fs::memfd_create("pipe-rings-test", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    File::from(fd)
}

fn send_mixed(mut conn: Connection, count: u64) {
    for i in 0..count {
        let item = match i % 3 {
            0 => Item::Small(i),
            1 => Item::Large(vec![(i % 251) as u8; 20_000 + i as usize]),
            _ => Item::WithFile(i, Handle::new(file_with(&format!("file {i}")))),
        };
        conn.send(&item).expect("send");
    }
}

fn check_mixed(conn: &mut Connection, count: u64) {
    for i in 0..count {
        match conn.recv::<Item>().expect("recv") {
            Item::Small(n) => assert_eq!((n, i % 3), (i, 0)),
            Item::Large(bytes) => {
                assert_eq!(i % 3, 1);
                assert_eq!(bytes.len(), 20_000 + i as usize);
                assert!(bytes.iter().all(|&b| b == (i % 251) as u8));
            }
            Item::WithFile(n, file) => {
                assert_eq!((n, i % 3), (i, 2));
                let mut file = file.into_inner();
                file.seek(SeekFrom::Start(0)).unwrap();
                let mut text = String::new();
                file.read_to_string(&mut text).unwrap();
                assert_eq!(text, format!("file {i}"));
            }
        }
    }
}

#[test]
fn ring_and_socket_messages_keep_their_order_in_one_process() {
    common::watchdog("mixed order, one process", WATCHDOG_SECS, || {
        let (a, mut b) = pipe().unwrap();
        let sender = std::thread::spawn(move || send_mixed(a, 300));
        check_mixed(&mut b, 300);
        sender.join().unwrap();
        assert!(matches!(b.recv::<Item>(), Err(Error::Eof)));
    });
}

#[test]
fn ring_and_socket_messages_keep_their_order_from_a_child() {
    common::watchdog("mixed order, child", WATCHDOG_SECS, || {
        let (mut a, b) = pipe().unwrap();
        let mut p = started(Process::new(send_mixed, (b, 300u64)));
        check_mixed(&mut a, 300);
        assert!(matches!(a.recv::<Item>(), Err(Error::Eof)));
        assert_eq!(p.join().unwrap(), 0);
    });
}

#[test]
fn a_full_ring_overflows_into_the_socket_in_order() {
    // One thread sends far more than the ring holds before anything is received: the sender must
    // neither block (the receiver is this very thread) nor reorder.
    common::watchdog("full ring", WATCHDOG_SECS, || {
        let (mut a, mut b) = pipe().unwrap();
        for i in 0u64..4000 {
            a.send(&i).unwrap();
        }
        for i in 0u64..4000 {
            assert_eq!(b.recv::<u64>().unwrap(), i);
        }
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    });
}

fn stream_numbers(mut conn: Connection<WriteOnly>, count: u64) {
    for i in 0..count {
        conn.send(&i).expect("send");
    }
}

#[test]
fn a_long_stream_wraps_the_ring_many_times() {
    common::watchdog("long stream", WATCHDOG_SECS, || {
        let (mut r, w) = simplex_pipe().unwrap();
        let count = 200_000u64;
        let mut p = started(Process::new(stream_numbers, (w, count)));
        for i in 0..count {
            assert_eq!(r.recv::<u64>().unwrap(), i);
        }
        assert!(matches!(r.recv::<u64>(), Err(Error::Eof)));
        assert_eq!(p.join().unwrap(), 0);
    });
}

fn tagged_sender(mut conn: Connection<WriteOnly>, tag: u32, count: u32) {
    for seq in 0..count {
        conn.send(&(tag, seq)).expect("send");
    }
}

fn collect_until_stop(conn: &mut Connection<ReadOnly>) -> Vec<(u32, u32)> {
    let mut got = Vec::new();
    loop {
        let (tag, seq) = conn.recv::<(u32, u32)>().expect("recv");
        if tag == u32::MAX {
            return got;
        }
        got.push((tag, seq));
    }
}

fn reader_child(mut conn: Connection<ReadOnly>, mut report: Connection<WriteOnly>) {
    let got = collect_until_stop(&mut conn);
    report.send(&got).expect("report");
}

#[test]
fn many_senders_and_receivers_lose_and_duplicate_nothing() {
    common::watchdog("many to many", WATCHDOG_SECS, || {
        const PER_SENDER: u32 = 3000;
        let (r, w) = simplex_pipe().unwrap();
        let (mut reports, report_w) = simplex_pipe().unwrap();
        // Receivers: two threads here and one child.
        let mut reader = started(Process::new(reader_child, (r.try_clone().unwrap(), report_w)));
        let results = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut r = r.try_clone().unwrap();
                let results = Arc::clone(&results);
                std::thread::spawn(move || {
                    let got = collect_until_stop(&mut r);
                    results.lock().unwrap().push(got);
                })
            })
            .collect();
        // Senders: two children and two threads.
        let mut senders: Vec<Process> =
            (0..2).map(|tag| started(Process::new(tagged_sender, (w.try_clone().unwrap(), tag, PER_SENDER)))).collect();
        let sender_threads: Vec<_> = (2..4)
            .map(|tag| {
                let w = w.try_clone().unwrap();
                std::thread::spawn(move || tagged_sender(w, tag, PER_SENDER))
            })
            .collect();
        for p in &mut senders {
            assert_eq!(p.join().unwrap(), 0);
        }
        for t in sender_threads {
            t.join().unwrap();
        }
        let mut w = w;
        for _ in 0..3 {
            w.send(&(u32::MAX, 0u32)).unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        let mut all = results.lock().unwrap().clone();
        all.push(reports.recv::<Vec<(u32, u32)>>().unwrap());
        assert_eq!(reader.join().unwrap(), 0);
        // Each receiver sees each sender's messages in order; together they see each exactly once.
        let mut seen = BTreeSet::new();
        for got in &all {
            let mut last: BTreeMap<u32, u32> = BTreeMap::new();
            for &(tag, seq) in got {
                if let Some(&before) = last.get(&tag) {
                    assert!(seq > before, "sender {tag}: {seq} after {before}");
                }
                last.insert(tag, seq);
                assert!(seen.insert((tag, seq)), "({tag}, {seq}) received twice");
            }
        }
        assert_eq!(seen.len(), 4 * PER_SENDER as usize);
    });
}

fn endless_numbers(mut conn: Connection<WriteOnly>) {
    let mut i = 0u64;
    while conn.send(&(i, vec![i as u8; (i % 97) as usize])).is_ok() {
        i += 1;
    }
}

#[test]
fn a_sender_killed_mid_stream_leaves_whole_messages_then_end_of_file() {
    common::watchdog("killed sender", WATCHDOG_SECS, || {
        for round in 0..5u64 {
            let (mut r, w) = simplex_pipe().unwrap();
            let mut p = started(Process::new(endless_numbers, (w,)));
            let mut next = 0u64;
            let kill_after = 1000 + round * 7919;
            loop {
                match r.recv::<(u64, Vec<u8>)>() {
                    Ok((i, bytes)) => {
                        assert_eq!(i, next);
                        assert_eq!(bytes, vec![i as u8; (i % 97) as usize]);
                        next += 1;
                        if next == kill_after {
                            p.kill().unwrap();
                        }
                    }
                    Err(Error::Eof) => break,
                    Err(e) => panic!("round {round}: after {next} messages: {e}"),
                }
            }
            assert!(next >= kill_after);
            assert_eq!(p.join().unwrap(), -9);
        }
    });
}

fn count_until_stop(mut conn: Connection<ReadOnly>, mut report: Connection<WriteOnly>) {
    let mut n = 0u64;
    while let Ok(i) = conn.recv::<u64>() {
        if i == u64::MAX {
            break;
        }
        n += 1;
        if n.is_multiple_of(500) {
            let _ = report.send(&n);
        }
    }
    let _ = report.send(&u64::MAX);
}

#[test]
fn a_receiver_killed_mid_stream_does_not_block_the_others() {
    common::watchdog("killed receiver", WATCHDOG_SECS, || {
        let (r, mut w) = simplex_pipe().unwrap();
        let (victim_reports, victim_report_w) = simplex_pipe().unwrap();
        let (mut survivor_reports, survivor_report_w) = simplex_pipe().unwrap();
        let mut victim = started(Process::new(count_until_stop, (r.try_clone().unwrap(), victim_report_w)));
        let mut survivor = started(Process::new(count_until_stop, (r, survivor_report_w)));
        let mut sent = 0u64;
        // Stream until the victim has received some, kill it, then keep streaming.
        while !victim_reports.poll(Some(Duration::ZERO)).unwrap() || sent < 2000 {
            w.send(&sent).unwrap();
            sent += 1;
        }
        victim.kill().unwrap();
        assert_eq!(victim.join().unwrap(), -9);
        for _ in 0..20_000 {
            w.send(&sent).unwrap();
            sent += 1;
        }
        w.send(&u64::MAX).unwrap();
        let mut survivor_count = 0;
        loop {
            match survivor_reports.recv::<u64>().unwrap() {
                u64::MAX => break,
                n => survivor_count = n,
            }
        }
        assert_eq!(survivor.join().unwrap(), 0);
        // The survivor got at least everything sent after the kill.
        assert!(survivor_count >= 20_000, "survivor received {survivor_count}");
    });
}

fn hold_and_wait(_conn: Connection, go: Connection<ReadOnly>) {
    let mut go = go;
    let _ = go.recv::<()>();
}

#[test]
fn sending_to_a_closed_or_killed_peer_fails() {
    common::watchdog("closed peer", WATCHDOG_SECS, || {
        let (mut a, b) = pipe().unwrap();
        drop(b);
        let e = a.send(&1u8).unwrap_err();
        assert!(matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe), "{e}");

        // A killed process closes nothing itself: the sender learns it from the socket.
        let (mut a, b) = pipe().unwrap();
        let (go, _go_w) = simplex_pipe().unwrap();
        let mut p = started(Process::new(hold_and_wait, (b, go)));
        a.send(&0u8).unwrap();
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        let mut sent = 0u64;
        let e = loop {
            match a.send_bytes(&[0u8; 64]) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe), "{e}");
        assert!(sent < 1_000_000);
    });
}

fn send_on_go(mut conn: Connection, go: Connection<ReadOnly>) {
    let mut go = go;
    while go.recv::<u32>().is_ok() {
        conn.send(&7u32).unwrap();
    }
}

#[test]
fn poll_and_wait_see_ring_messages_without_stale_wake_ups() {
    common::watchdog("poll and wait", WATCHDOG_SECS, || {
        let (mut a, b) = pipe().unwrap();
        let (go_r, mut go) = simplex_pipe().unwrap();
        let mut p = started(Process::new(send_on_go, (b, go_r)));
        for _ in 0..50 {
            assert!(wait(&[&a], Some(Duration::ZERO)).unwrap().is_empty());
            go.send(&1u32).unwrap();
            assert_eq!(wait(&[&a], Some(Duration::from_secs(10))).unwrap(), vec![0]);
            assert!(a.poll(Some(Duration::ZERO)).unwrap());
            assert_eq!(a.recv::<u32>().unwrap(), 7);
            // Whatever wake bytes the sender wrote, nothing is reported any more.
            assert!(!a.poll(Some(Duration::from_millis(1))).unwrap());
            go.send(&1u32).unwrap();
            assert!(a.poll(Some(Duration::from_secs(10))).unwrap());
            assert_eq!(a.recv::<u32>().unwrap(), 7);
        }
        drop(go);
        assert_eq!(p.join().unwrap(), 0);
        // End of file is ready too.
        assert_eq!(wait(&[&a], Some(Duration::from_secs(10))).unwrap(), vec![0]);
        assert!(matches!(a.recv::<u32>(), Err(Error::Eof)));
    });
}

#[test]
fn a_send_that_times_out_on_a_full_pipe_leaves_it_usable() {
    common::watchdog("send timeout", WATCHDOG_SECS, || {
        let (mut a, mut b) = pipe().unwrap();
        a.set_timeout(Some(Duration::from_millis(100)));
        let mut sent = 0u64;
        let e = loop {
            match a.send(&(sent, [7u8; 32])) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(e, Error::Timeout(_)), "{e}");
        for i in 0..sent {
            assert_eq!(b.recv::<(u64, [u8; 32])>().unwrap(), (i, [7u8; 32]));
        }
        a.send(&(sent, [7u8; 32])).unwrap();
        assert_eq!(b.recv::<(u64, [u8; 32])>().unwrap(), (sent, [7u8; 32]));
        b.set_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(b.recv::<u64>(), Err(Error::Timeout(_))));
    });
}

fn send_huge(mut conn: Connection<WriteOnly>) {
    let _ = conn.send_bytes(&vec![1u8; 64 << 20]);
}

#[test]
fn a_sender_killed_inside_a_large_message_breaks_the_pipe_instead_of_hanging() {
    common::watchdog("killed inside a large message", WATCHDOG_SECS, || {
        let (mut r, w) = simplex_pipe().unwrap();
        // This process keeps a writer too, so no end of file will come.
        let mut w2 = w.try_clone().unwrap();
        let mut p = started(Process::new(send_huge, (w,)));
        assert!(r.poll(Some(Duration::from_secs(20))).unwrap());
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        let e = r.recv_bytes().unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        assert!(matches!(r.recv_bytes(), Err(Error::Protocol(_))));
        assert!(matches!(w2.send_bytes(b"after"), Err(Error::Protocol(_))));
    });
}

#[test]
fn pipe_ends_sent_through_a_pipe_share_its_rings() {
    common::watchdog("ends through a pipe", WATCHDOG_SECS, || {
        let (mut carrier_a, mut carrier_b) = pipe().unwrap();
        let (mut x, y) = pipe().unwrap();
        carrier_a.send(&y).unwrap();
        drop(y);
        let mut y: Connection = carrier_b.recv().unwrap();
        for i in 0u32..5000 {
            x.send(&i).unwrap();
            assert_eq!(y.recv::<u32>().unwrap(), i);
        }
        drop(y);
        assert!(matches!(x.recv::<u32>(), Err(Error::Eof)));
    });
}

#[test]
fn socket_pipes_keep_every_message_on_the_socket() {
    common::watchdog("socket pipe", WATCHDOG_SECS, || {
        let (mut a, b) = multiproc::socket_pipe().unwrap();
        a.send(&5u32).unwrap();
        // The message is on the socket itself: an outside poll of the descriptor sees it.
        let fd = b.into_fd().unwrap();
        let mut raw = std::os::unix::net::UnixStream::from(fd);
        let mut frame = [0u8; 5];
        raw.read_exact(&mut frame).unwrap();
        assert_eq!(frame, [0, 0, 0, 1, 5]);
    });
}

#[test]
fn garbage_in_a_ring_is_refused_not_read_out_of_bounds() {
    // A few thousand random rings (a fixed-seed xorshift), plus records that claim too much.
    let mut next = common::xorshift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let len = (next() % 512) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        multiproc::__private::fuzz::ring_records(&bytes);
    }
    let mut claims_too_much = vec![0u8; 16];
    claims_too_much[..4].copy_from_slice(&1000u32.to_le_bytes());
    claims_too_much[4..8].copy_from_slice(&1u32.to_le_bytes());
    multiproc::__private::fuzz::ring_records(&claims_too_much);
    // Streamed messages (kind 3: the length; kind 4: a piece): pieces beyond the claimed length,
    // beyond what was published, of another kind midway, or none at all.
    let record = |kind: u32, payload: &[u8]| {
        let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&kind.to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes.resize(8 + payload.len().div_ceil(8) * 8, 0);
        bytes
    };
    let start = |len: u64| record(3, &len.to_le_bytes());
    let cases: Vec<Vec<u8>> = vec![
        [start(10), record(4, &[1; 24])].concat(),
        [start(100), record(4, &[1; 24]), record(1, &[2; 8])].concat(),
        [start(u64::MAX), record(4, &[1; 64]), record(4, &[1; 64])].concat(),
        [start(16), record(4, &[])].concat(),
        [start(16), record(4, &[1; 16])[..12].to_vec()].concat(),
        [start(16), record(3, &[1; 8])].concat(),
        [record(4, &[1; 16]), start(16)].concat(),
        record(3, &[1; 4]),
    ];
    for case in cases {
        multiproc::__private::fuzz::ring_records(&case);
    }
}

/// A message of `len` bytes whose content says where it is (so a piece out of place shows).
fn patterned(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ (i >> 12) as u8)).collect()
}

/// Whether bytes wait on the socket under `conn` (through a clone's descriptor; a byte found is
/// taken, so a connection for which this says yes is spoilt, which fails its test anyway).
fn socket_holds_bytes(conn: &Connection) -> bool {
    let fd = conn.try_clone().unwrap().into_fd().unwrap();
    let mut raw = std::os::unix::net::UnixStream::from(fd);
    raw.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    matches!(raw.read(&mut byte), Ok(n) if n > 0)
}

#[test]
fn a_large_message_that_fits_streams_through_the_ring_not_the_socket() {
    common::watchdog("large message in the ring", WATCHDOG_SECS, || {
        let (mut a, mut b) = pipe().unwrap();
        let message = patterned(40_000, 1);
        a.send_bytes(&message).unwrap();
        assert!(!socket_holds_bytes(&b), "a 40 000-byte message went through the socket");
        assert_eq!(b.recv_bytes().unwrap(), message);
        let mut into = vec![0u8; 50_000];
        a.send_bytes(&message).unwrap();
        assert_eq!(b.recv_bytes_into(&mut into).unwrap(), message.len());
        assert_eq!(&into[..message.len()], &message[..]);
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    });
}

#[test]
fn a_large_message_to_this_very_thread_overflows_into_the_socket_without_blocking() {
    // More than the ring holds, received later by the sending thread itself: the ring takes what
    // it can, the rest goes on the socket (a pipe holds at least what its socket alone would).
    common::watchdog("large message to itself", WATCHDOG_SECS, || {
        let (mut a, mut b) = pipe().unwrap();
        let large = patterned(150_000, 2);
        a.send_bytes(&large).unwrap();
        a.send(&7u32).unwrap();
        a.send_bytes(&large[..30_000]).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), large);
        assert_eq!(b.recv::<u32>().unwrap(), 7);
        let mut short = vec![0u8; 100];
        match b.recv_bytes_into(&mut short) {
            Err(Error::BufferTooShort { message, .. }) => assert_eq!(message, &large[..30_000]),
            other => panic!("expected BufferTooShort, got {other:?}"),
        }
        a.send_bytes(&large).unwrap();
        let mut into = vec![0u8; 150_000];
        assert_eq!(b.recv_bytes_into(&mut into).unwrap(), 150_000);
        assert_eq!(into, large);
    });
}

fn send_patterned(mut conn: Connection<WriteOnly>, sizes: Vec<usize>) {
    for (i, size) in sizes.into_iter().enumerate() {
        conn.send_bytes(&patterned(size, i as u8)).unwrap();
        conn.send(&(i as u64)).unwrap();
    }
}

#[test]
fn large_messages_of_every_size_stream_between_processes_whole_and_in_order() {
    common::watchdog("streamed sizes between processes", WATCHDOG_SECS, || {
        let (mut r, w) = simplex_pipe().unwrap();
        // Around the piece and ring sizes, and a few MiB.
        let sizes: Vec<usize> = vec![
            16 << 10,
            (16 << 10) + 1,
            16_376,
            16_377,
            32_752,
            49_128,
            65_536,
            65_537,
            1 << 20,
            (3 << 20) + 5,
            200_000,
        ];
        let mut p = started(Process::new(send_patterned, (w, sizes.clone())));
        for (i, &size) in sizes.iter().enumerate() {
            let got = r.recv_bytes().unwrap();
            assert_eq!(got.len(), size, "message {i}");
            assert!(got == patterned(size, i as u8), "message {i} of {size} bytes differs");
            assert_eq!(r.recv::<u64>().unwrap(), i as u64);
        }
        assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
        assert_eq!(p.join().unwrap(), 0);
    });
}

fn receive_large_until_killed(mut conn: Connection<ReadOnly>, mut report: Connection<WriteOnly>) {
    while let Ok(bytes) = conn.recv_bytes() {
        let _ = report.send(&bytes.len());
    }
}

#[test]
fn a_receiver_killed_inside_a_streamed_message_never_hangs_the_sender_or_the_other_readers() {
    common::watchdog("receiver killed inside a stream", WATCHDOG_SECS, || {
        let (mut r, mut w) = simplex_pipe().unwrap();
        let (mut reports, report_w) = simplex_pipe().unwrap();
        let mut victim = started(Process::new(receive_large_until_killed, (r.try_clone().unwrap(), report_w)));
        let message = patterned(4 << 20, 3);
        let sender = {
            let message = message.clone();
            std::thread::spawn(move || {
                // Until the pipe breaks (the victim died inside a message) or 40 messages went.
                for _ in 0..40 {
                    if let Err(e) = w.send_bytes(&message) {
                        assert!(matches!(e, Error::Protocol(_)), "{e}");
                        return;
                    }
                }
            })
        };
        // The victim is receiving the next message as soon as it reported one.
        assert_eq!(reports.recv::<usize>().unwrap(), 4 << 20);
        victim.kill().unwrap();
        assert_eq!(victim.join().unwrap(), -9);
        // This process's reader gets whole messages, or the error of a broken direction.
        loop {
            match r.recv_bytes() {
                Ok(bytes) => assert!(bytes == message, "a corrupted message"),
                Err(Error::Protocol(_)) | Err(Error::Eof) => break,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        sender.join().unwrap();
    });
}

fn endless_large(mut conn: Connection<WriteOnly>) {
    let message = patterned(1 << 20, 9);
    while conn.send_bytes(&message).is_ok() {}
}

#[test]
fn a_sender_killed_inside_a_streamed_message_fails_the_reader_instead_of_hanging_it() {
    // The reader keeps up (the messages stream through the ring) and holds a writer end of its
    // own, so no end of file comes. The sender spends its time in the middle of messages, so its
    // death almost always lands inside one, which the reader must see; one that lands between two
    // messages leaves the reader waiting for the next until its timeout. Never a corrupted message.
    common::watchdog("sender killed inside a stream", WATCHDOG_SECS, || {
        let message = patterned(1 << 20, 9);
        let mut inside = 0;
        for round in 0..4 {
            let (mut r, w) = simplex_pipe().unwrap();
            r.set_timeout(Some(Duration::from_secs(3)));
            let _writer = w.try_clone().unwrap();
            let mut p = started(Process::new(endless_large, (w,)));
            let mut received = 0;
            let ended = loop {
                match r.recv_bytes() {
                    Ok(bytes) => {
                        assert!(bytes == message, "round {round}: message {received} differs");
                        received += 1;
                        if received == 3 + round * 5 {
                            p.kill().unwrap();
                        }
                    }
                    Err(e) => break e,
                }
            };
            match ended {
                Error::Protocol(_) => {
                    inside += 1;
                    assert!(matches!(r.recv_bytes(), Err(Error::Protocol(_))));
                }
                Error::Timeout(_) => {}
                e => panic!("round {round}: {e}"),
            }
            assert_eq!(p.join().unwrap(), -9);
        }
        assert!(inside > 0, "no kill landed inside a message in 4 rounds");
    });
}
