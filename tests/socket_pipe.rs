//! `socket_pipe()`: a `SOCK_SEQPACKET` pair carrying frames as records (`src/connection/record.rs`):
//! messages of every size and descriptors, in order; `recv_bytes_into`; size limits; the socket
//! given away and taken back; readiness for outside event loops; a sender killed inside a message.

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use multiproc::{Connection, Error, Handle, Process, socket_pipe};

const WATCHDOG_SECS: u64 = 60;

/// One record holds this much payload after a 4-byte header.
const FIRST_RECORD_PAYLOAD: usize = 64 * 1024 - 4;

// The last two cross a huge page of bytes (the receiver asks for huge pages) and the size from which
// the sender widens its send buffer.
const SIZES: [usize; 8] =
    [0, 1, FIRST_RECORD_PAYLOAD, FIRST_RECORD_PAYLOAD + 1, 64 * 1024, 200_000, 3 << 20, (5 << 20) + 7];

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) % 251) as u8).collect()
}

fn memfd_with(text: &str) -> File {
    let fd = rustix::fs::memfd_create("socket-pipe-test", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    let mut file = File::from(fd);
    file.write_all(text.as_bytes()).unwrap();
    file
}

/// Sends every size of [`SIZES`] as bytes, then each with a file attached.
fn send_all_sizes(mut conn: Connection) {
    for (seed, len) in SIZES.into_iter().enumerate() {
        conn.send_bytes(&pattern(len, seed)).unwrap();
    }
    for (seed, len) in SIZES.into_iter().enumerate() {
        let file = Handle::new(memfd_with(&format!("file {seed}")));
        conn.send(&(pattern(len, seed), file)).unwrap();
    }
}

#[test]
fn messages_of_every_size_and_descriptors_arrive_whole_and_in_order() {
    common::watchdog("socket pipe sizes", WATCHDOG_SECS, || {
        let (mut conn, child_end) = socket_pipe().unwrap();
        let mut child = Process::new(send_all_sizes, (child_end,));
        child.start().unwrap();
        for (seed, len) in SIZES.into_iter().enumerate() {
            assert_eq!(conn.recv_bytes().unwrap(), pattern(len, seed), "message {seed} of {len} bytes");
        }
        for (seed, len) in SIZES.into_iter().enumerate() {
            let (bytes, file): (Vec<u8>, Handle<File>) = conn.recv().unwrap();
            assert_eq!(bytes, pattern(len, seed));
            let mut file = file.into_inner();
            let mut text = String::new();
            file.seek(SeekFrom::Start(0)).unwrap();
            file.read_to_string(&mut text).unwrap();
            assert_eq!(text, format!("file {seed}"));
        }
        assert_eq!(child.join().unwrap(), 0);
        assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
    });
}

#[test]
fn recv_bytes_into_takes_records_in_place_or_reports_a_short_buffer() {
    common::watchdog("socket pipe recv_bytes_into", WATCHDOG_SECS, || {
        let (mut a, mut b) = socket_pipe().unwrap();
        let big = pattern(200_000, 3);
        let sender = std::thread::spawn(move || {
            a.send_bytes(&big).unwrap();
            a.send_bytes(&big).unwrap();
            a.send_bytes(b"after").unwrap();
            a
        });
        let mut buf = vec![0u8; 300_000];
        assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 200_000);
        assert_eq!(&buf[..200_000], &pattern(200_000, 3)[..]);
        match b.recv_bytes_into(&mut buf[..1000]) {
            Err(Error::BufferTooShort { capacity: 1000, message }) => assert_eq!(message, pattern(200_000, 3)),
            other => panic!("expected BufferTooShort, got {other:?}"),
        }
        assert_eq!(b.recv_bytes().unwrap(), b"after");
        drop(sender.join().unwrap());
    });
}

#[test]
fn a_message_over_the_limit_is_refused_and_leaves_the_end_unreadable() {
    common::watchdog("socket pipe limit", WATCHDOG_SECS, || {
        let (mut a, mut b) = socket_pipe().unwrap();
        b.set_max_message_size(100_000);
        let sender = std::thread::spawn(move || {
            // Blocks until the reader is gone (its records fill the socket): ignore how it ends.
            let _ = a.send_bytes(&pattern(300_000, 0));
        });
        assert!(matches!(b.recv_bytes(), Err(Error::MessageTooLarge { len: 300_000, limit: 100_000 })));
        assert!(matches!(b.recv_bytes(), Err(Error::Protocol(_))), "the rest of the message was not read");
        drop(b);
        sender.join().unwrap();
    });
}

#[test]
fn the_socket_given_away_and_wrapped_again_keeps_its_framing() {
    common::watchdog("socket pipe from_fd", WATCHDOG_SECS, || {
        let (a, b) = socket_pipe().unwrap();
        let mut a: Connection = Connection::from_fd(a.into_fd().unwrap());
        let mut b: Connection = Connection::from_fd(b.into_fd().unwrap());
        let big = pattern(150_000, 9);
        let sent = big.clone();
        let sender = std::thread::spawn(move || {
            a.send_bytes(&sent).unwrap();
            a
        });
        assert_eq!(b.recv_bytes().unwrap(), big);
        drop(sender.join().unwrap());
    });
}

#[test]
fn the_socket_is_readable_exactly_while_a_message_waits() {
    common::watchdog("socket pipe readiness", WATCHDOG_SECS, || {
        let (mut a, mut b) = socket_pipe().unwrap();
        let readable = |conn: &Connection| {
            let fd = conn.fd().unwrap();
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
            rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })).unwrap() == 1
        };
        assert!(!readable(&b));
        a.send_bytes(b"one").unwrap();
        a.send_bytes(b"two").unwrap();
        assert!(readable(&b));
        assert_eq!(b.recv_bytes().unwrap(), b"one");
        assert!(readable(&b), "the second message is still on the socket");
        assert_eq!(b.recv_bytes().unwrap(), b"two");
        assert!(!readable(&b), "nothing was read ahead");
        assert!(!b.poll(Some(std::time::Duration::ZERO)).unwrap());
    });
}

/// Sends one message far larger than the socket holds; blocks in the middle of it.
fn send_huge(mut conn: Connection) {
    let _ = conn.send_bytes(&vec![7u8; 16 << 20]);
}

#[test]
fn a_sender_killed_inside_a_message_is_an_error_not_a_hang() {
    common::watchdog("socket pipe killed sender", WATCHDOG_SECS, || {
        let (mut conn, child_end) = socket_pipe().unwrap();
        let mut child = Process::new(send_huge, (child_end,));
        child.start().unwrap();
        // The first record arrives once the child is in the middle of the message.
        assert!(conn.poll(None).unwrap());
        child.kill().unwrap();
        child.join().unwrap();
        assert!(matches!(conn.recv_bytes(), Err(Error::Protocol(_))));
    });
}
