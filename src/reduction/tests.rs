use std::io::{Read, Seek, Write};

use super::*;

#[test]
fn plain_values_round_trip() {
    let value = (1u32, "two".to_string(), vec![3.5f64, 4.25], Some(true));
    let message = encode(&value).unwrap();
    assert!(message.fds.is_empty());
    let back: (u32, String, Vec<f64>, Option<bool>) = decode(message).unwrap();
    assert_eq!(back, value);
}

#[test]
fn handle_carries_a_duplicated_descriptor() {
    let mut file = tempfile_with(b"hello");
    let message = encode(&Handle::new(file.try_clone().unwrap())).unwrap();
    assert_eq!(message.fds.len(), 1);
    let mut back: Handle<std::fs::File> = decode(message).unwrap();
    // The same open file description: the offset is shared.
    file.seek(std::io::SeekFrom::Start(1)).unwrap();
    let mut rest = String::new();
    back.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "ello");
}

#[test]
fn handle_refuses_foreign_serializers() {
    let file = tempfile_with(b"x");
    let err = postcard::to_stdvec(&Handle::new(file)).unwrap_err();
    assert!(matches!(err, postcard::Error::SerdeSerCustom), "{err:?}");
}

#[test]
fn decoding_an_index_not_carried_is_an_error() {
    let file = tempfile_with(b"x");
    let mut message = encode(&Handle::new(file)).unwrap();
    message.fds.clear();
    let err = decode::<Handle<std::fs::File>>(message).unwrap_err();
    assert!(err.to_string().contains("does not carry"), "{err}");
    // Outside a multiproc decode, a handle refuses to appear from bytes alone.
    let bytes = encode(&Handle::new(tempfile_with(b"y"))).unwrap().bytes;
    assert!(postcard::from_bytes::<Handle<std::fs::File>>(&bytes).is_err());
}

#[test]
fn unclaimed_descriptors_are_closed() {
    let file = tempfile_with(b"x");
    let message = encode(&(Handle::new(file), 7u8)).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&message.fds[0]);
    // Decode as a type that ignores the handle's slot.
    let (_, n): (u32, u8) = decode(Message { bytes: message.bytes.clone(), fds: message.fds }).unwrap();
    assert_eq!(n, 7);
    assert!(rustix::io::fcntl_getfd(unsafe_borrow(raw)).is_err(), "descriptor {raw} should be closed");
}

#[test]
fn garbage_is_a_codec_error() {
    let err = decode::<(String, Vec<u64>)>(Message { bytes: vec![0xff; 9], fds: Vec::new() }).unwrap_err();
    assert!(matches!(err, Error::Codec { action: "decode", .. }), "{err}");
}

fn tempfile_with(content: &[u8]) -> std::fs::File {
    let fd = rustix::fs::memfd_create("multiproc-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut file = std::fs::File::from(fd);
    file.write_all(content).unwrap();
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file
}

#[allow(unsafe_code, reason = "borrows a raw descriptor number to query it")]
fn unsafe_borrow(raw: i32) -> BorrowedFd<'static> {
    // SAFETY: only used to query a descriptor number that may be closed; fcntl on a closed number
    // fails with EBADF and touches nothing.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// Refuses to be encoded, through this crate's error path or a plain serde error.
struct Refuses {
    ours: bool,
}

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
        if self.ours {
            Err(encode_failure("this value stays here"))
        } else {
            Err(<S::Error as serde::ser::Error>::custom("lost by postcard"))
        }
    }
}

#[test]
fn our_encode_failures_keep_their_message() {
    let error = encode(&(1u8, Refuses { ours: true })).unwrap_err().to_string();
    assert!(error.contains("this value stays here"), "{error}");
    // The next encode on this thread does not see the old failure.
    assert!(encode(&1u8).is_ok());
}

#[test]
fn foreign_encode_failures_say_where_to_look() {
    let error = encode(&Refuses { ours: false }).unwrap_err().to_string();
    assert!(error.contains("Serialize implementation returned an error"), "{error}");
}

#[test]
fn packed_chunks_carry_descriptors_once() {
    // A descriptor makes the sequence postcard; the attempt at records must not leave a second
    // copy of it in the message (the index written would then point past the one meant).
    let file = tempfile_with(b"packed");
    let items = vec![(Handle::new(file), "text".to_string())];
    let mut bytes = Vec::new();
    let fds = encode_packed(&items, &mut bytes).unwrap();
    assert_eq!(fds.len(), 1);
    let back: Vec<(Handle<std::fs::File>, String)> = decode_packed(&bytes, fds).unwrap();
    let (mut file, text) = back.into_iter().next().unwrap();
    assert_eq!(text, "text");
    let mut read = String::new();
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.read_to_string(&mut read).unwrap();
    assert_eq!(read, "packed");
}
