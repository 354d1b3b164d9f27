//! The records of a queue's ring and spill.
//!
//! ```text
//! record := [len: u32][kind: u32][payload: len bytes][padding to 8]   (little-endian)
//! ```
//!
//! The kinds are `core`'s.

/// The bytes before a record's payload.
pub(super) const HEADER: usize = 8;

/// A record's size: header and payload, rounded up to 8 bytes.
pub(super) fn size(payload: usize) -> usize {
    HEADER + payload.div_ceil(8) * 8
}

/// A record's header.
pub(super) fn header(len: u32, kind: u32) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&kind.to_le_bytes());
    header
}

/// The payload length and kind in the header at the start of `bytes` (`None` if shorter).
pub(super) fn parse_header(bytes: &[u8]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let kind = u32::from_le_bytes(bytes.get(4..HEADER)?.try_into().ok()?);
    Some((len as usize, kind))
}
