//! The running program's build identity: the GNU build-id note of `/proc/self/exe` (the linker
//! writes it by default on Linux distributions), or a SHA-256 of the whole file where there is none.
//! Read with plain file reads: no `unsafe`, nothing mapped.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// ELF program header type of a note segment.
const PT_NOTE: u32 = 4;
/// Note type of the GNU build-id.
const NT_GNU_BUILD_ID: u32 = 3;
/// Note segments larger than this are not read (build-id notes are tens of bytes).
const MAX_NOTE_SEGMENT: u64 = 1 << 20;

/// The running executable's build identity: `("gnu-build-id", id)` or `("sha256", digest)`.
///
/// # Errors
///
/// The executable could not be read.
pub(crate) fn build_identity() -> io::Result<(&'static str, Vec<u8>)> {
    let mut file = File::open("/proc/self/exe")?;
    if let Some(id) = gnu_build_id(&mut file)? {
        return Ok(("gnu-build-id", id));
    }
    use sha2::Digest;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(("sha256", hasher.finalize().to_vec()))
}

/// The build-id note of a 64-bit little-endian ELF file, if it has one.
fn gnu_build_id(file: &mut File) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 64];
    if file.read_exact(&mut header).is_err() || &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Ok(None);
    }
    let phoff = u64_at(&header, 32);
    let phentsize = u64::from(u16_at(&header, 54));
    let phnum = u64::from(u16_at(&header, 56));
    if phentsize < 56 {
        return Ok(None);
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        file.seek(SeekFrom::Start(phoff.saturating_add(i * phentsize)))?;
        file.read_exact(&mut ph)?;
        if u32_at(&ph, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(&ph, 8), u64_at(&ph, 32));
        if size > MAX_NOTE_SEGMENT {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut notes)?;
        if let Some(id) = find_build_id(&notes) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Walks the notes of one segment (each: name size, descriptor size, type, name, descriptor,
/// both padded to 4 bytes).
fn find_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0) as usize;
        let descsz = u32_at(notes, 4) as usize;
        let kind = u32_at(notes, 8);
        let name_end = 12usize.checked_add(pad(namesz)?)?;
        let desc_end = name_end.checked_add(pad(descsz)?)?;
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && namesz == 4 && &notes[12..16] == b"GNU\0" && descsz > 0 {
            return Some(notes[name_end..name_end + descsz].to_vec());
        }
        notes = &notes[desc_end..];
    }
    None
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_has_a_stable_identity() {
        let (kind, id) = build_identity().unwrap();
        assert!(!id.is_empty());
        assert_eq!(build_identity().unwrap(), (kind, id));
    }

    #[test]
    fn truncated_or_garbage_notes_are_none() {
        assert_eq!(find_build_id(&[]), None);
        assert_eq!(find_build_id(&[0xff; 40]), None);
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&3u32.to_le_bytes());
        note.extend_from_slice(&NT_GNU_BUILD_ID.to_le_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[1, 2, 3, 0]);
        assert_eq!(find_build_id(&note), Some(vec![1, 2, 3]));
        assert_eq!(find_build_id(&note[..note.len() - 2]), None);
    }
}
