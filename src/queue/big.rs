//! Big items: an encoding longer than the queue's inline limit travels in an anonymous memory file
//! of its own (its descriptor on the side channel, see `core`). The producer writes the file as it
//! encodes the item ([`ItemWriter`]); a consumer maps it and decodes the item in place
//! ([`BigItem`]).
//!
//! A file's size is sealed before it is sent, so no holder can shrink it under a consumer's
//! mapping; nothing writes it once sent.

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, IoContext, Result};
use crate::sys::{self, Mapping};

/// The name big items' memory files carry (in `/proc/PID/fd`, for a reader of the system).
const FILE_NAME: &str = "multiproc-queue-item";

/// Once an encoding is in its file, small pieces gather in a buffer of this size before they are
/// written; longer ones are written straight from the item.
const STAGE: usize = 64 << 10;

/// An item's encoding on its way into the queue.
#[derive(Debug)]
pub(super) enum Encoding {
    /// In memory.
    InMemory(Vec<u8>),
    /// Already in a memory file of its own, `len` bytes long, its size sealed.
    Stored { file: OwnedFd, len: usize },
}

impl Encoding {
    /// The encoding's length in bytes.
    pub(super) fn len(&self) -> usize {
        match self {
            Encoding::InMemory(bytes) => bytes.len(),
            Encoding::Stored { len, .. } => *len,
        }
    }
}

/// Where a put encodes its item (a postcard flavor): a buffer while the encoding is at most
/// `limit` bytes long; past that, a memory file of its own, into which what was buffered goes
/// first and every further long piece (the bytes of a long string, byte buffer or packed array of
/// numbers) is written straight from the item, never copied into a buffer on the way.
///
/// So a 100 MB item costs its producer one copy of its bytes, where encoding it into a buffer first
/// cost two, and twice its size in memory for a moment (`queue.transfer.100mb` in
/// `bench/README.md`).
pub(super) struct ItemWriter<'a> {
    buf: Vec<u8>,
    /// The memory file, once the encoding is longer than `limit`.
    file: Option<OwnedFd>,
    /// Bytes already in the file.
    written: u64,
    limit: usize,
    /// What failed writing the file: postcard keeps no error of a flavor's, so the caller reports
    /// this one.
    failure: &'a mut Option<rustix::io::Errno>,
}

impl<'a> ItemWriter<'a> {
    /// A writer that keeps encodings of up to `limit` bytes in memory.
    pub(super) fn new(limit: usize, failure: &'a mut Option<rustix::io::Errno>) -> Self {
        ItemWriter { buf: Vec::new(), file: None, written: 0, limit, failure }
    }

    /// Writes what is buffered to the file, if there is one.
    fn flush(&mut self) -> rustix::io::Result<()> {
        if let Some(file) = &self.file {
            append(file, &mut self.written, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Whether `more` bytes still fit in the buffer of an encoding that is in memory (the path of
    /// every small item, kept short).
    #[inline]
    fn fits_in_memory(&self, more: usize) -> bool {
        self.file.is_none() && self.buf.len() + more <= self.limit
    }

    /// Appends `data` to an encoding that no longer fits in memory (what does fit, the flavor's
    /// methods append themselves).
    #[cold]
    fn extend(&mut self, data: &[u8]) -> rustix::io::Result<()> {
        if self.file.is_none() {
            // Past the limit: what is buffered goes to the file first.
            self.file = Some(sys::memfd_unsealed(FILE_NAME)?);
        }
        if data.len() >= STAGE {
            self.flush()?;
            if let Some(file) = &self.file {
                append(file, &mut self.written, data)?;
            }
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STAGE {
            self.flush()?;
        }
        Ok(())
    }

    /// The encoding: the buffer, or the file (written to its end and its size sealed).
    fn finish(&mut self) -> rustix::io::Result<Encoding> {
        self.flush()?;
        match self.file.take() {
            None => Ok(Encoding::InMemory(std::mem::take(&mut self.buf))),
            Some(file) => {
                sys::seal_size(file.as_fd())?;
                Ok(Encoding::Stored { file, len: self.written as usize })
            }
        }
    }

    /// Keeps `result`'s error for the caller, and tells postcard to stop.
    fn keep<T>(&mut self, result: rustix::io::Result<T>) -> postcard::Result<T> {
        result.map_err(|errno| {
            *self.failure = Some(errno);
            postcard::Error::SerializeBufferFull
        })
    }
}

/// Writes `bytes` at the end (`written`) of `file`.
fn append(file: &OwnedFd, written: &mut u64, bytes: &[u8]) -> rustix::io::Result<()> {
    sys::write_all_at(file.as_fd(), bytes, *written)?;
    *written += bytes.len() as u64;
    Ok(())
}

impl postcard::ser_flavors::Flavor for ItemWriter<'_> {
    type Output = Encoding;

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.fits_in_memory(1) {
            self.buf.push(data);
            return Ok(());
        }
        let result = self.extend(&[data]);
        self.keep(result)
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.fits_in_memory(data.len()) {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        let result = self.extend(data);
        self.keep(result)
    }

    fn finalize(mut self) -> postcard::Result<Encoding> {
        let result = self.finish();
        self.keep(result)
    }
}

/// A big item's bytes in a memory file of their own, mapped read-only in spirit (never written).
#[derive(Debug)]
pub(super) struct BigItem {
    mapping: Mapping,
    len: usize,
}

impl BigItem {
    /// Puts `bytes` in a new memory file, its size sealed.
    pub(super) fn store(bytes: &[u8]) -> Result<OwnedFd> {
        let fd = sys::memfd_sealed(FILE_NAME, bytes.len()).context("create a memory file for an item")?;
        sys::write_all_at(fd.as_fd(), bytes, 0).context("write an item into its memory file")?;
        Ok(fd)
    }

    /// The `len` bytes of a stored encoding, read back into memory (for a big item that goes to the
    /// spill after all: the side channel that would carry its file is full).
    pub(super) fn read_back(file: &OwnedFd, len: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; len];
        let got = sys::read_at(file.as_fd(), &mut bytes, 0).context("read an item back from its memory file")?;
        if got < len {
            return Err(Error::Protocol(format!("an item's memory file holds {got} bytes of {len}")));
        }
        Ok(bytes)
    }

    /// Maps a big item's memory file of `len` bytes, received from a producer.
    pub(super) fn open(fd: &OwnedFd, len: usize) -> Result<Self> {
        match sys::sealed_size(fd.as_fd()).context("inspect an item's memory file")? {
            Some(size) if size == len && len > 0 => {}
            _ => return Err(Error::Protocol("a queue item's memory file has the wrong size or is not sealed".into())),
        }
        let mapping = Mapping::new(fd.as_fd(), len).context("map an item's memory file")?;
        Ok(BigItem { mapping, len })
    }

    /// The item's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        debug_assert_eq!(self.mapping.len(), self.len);
        // SAFETY: the mapping holds `len` bytes (its file's sealed size, checked in `open`, so
        // no holder can shrink it), stays mapped as long as the returned borrow of `self`, and no
        // process writes the file after the producer sent it.
        unsafe { std::slice::from_raw_parts(self.mapping.as_ptr().as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use serde::Serialize;

    use super::*;

    const LIMIT: usize = 1024;

    /// A value whose encoding mixes short pieces (numbers, lengths) and long ones (byte runs).
    #[derive(Serialize)]
    struct Mixed {
        numbers: Vec<u64>,
        #[serde(with = "serde_bytes_like")]
        run: Vec<u8>,
        name: String,
        more: Vec<(u8, u32)>,
    }

    /// Serializes a byte vector as bytes (one long piece), as `serde_bytes` would.
    mod serde_bytes_like {
        pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(bytes)
        }
    }

    fn encode<T: Serialize>(value: &T) -> Encoding {
        let mut failure = None;
        let (encoding, fds) = crate::reduction::encode_with(value, ItemWriter::new(LIMIT, &mut failure)).unwrap();
        assert!(failure.is_none() && fds.is_empty());
        encoding
    }

    /// What `encoding` holds, checked against postcard's own encoding of the same value.
    fn check<T: Serialize>(value: &T) {
        let expected = postcard::to_stdvec(value).unwrap();
        match encode(value) {
            Encoding::InMemory(bytes) => {
                assert!(expected.len() <= LIMIT, "{} bytes stayed in memory", expected.len());
                assert_eq!(bytes, expected);
            }
            Encoding::Stored { file, len } => {
                assert!(expected.len() > LIMIT, "{} bytes went to a file", expected.len());
                assert_eq!(len, expected.len());
                assert_eq!(sys::sealed_size(file.as_fd()).unwrap(), Some(len), "the file's size is sealed");
                assert!(BigItem::read_back(&file, len).unwrap() == expected, "the file holds the encoding");
                let item = BigItem::open(&file, len).unwrap();
                assert!(item.bytes() == expected.as_slice());
            }
        }
    }

    #[test]
    fn encodings_up_to_the_limit_stay_in_memory_and_longer_ones_go_to_their_file_byte_for_byte() {
        // Byte runs of every length around the limit (a varint length, then the run).
        for len in [0, 1, LIMIT - 3, LIMIT - 2, LIMIT - 1, LIMIT, LIMIT + 1, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE] {
            check(&Mixed { numbers: Vec::new(), run: vec![7; len], name: String::new(), more: Vec::new() });
        }
        // Many short pieces past the limit and past the stage's size.
        for count in [10, 200, 20_000] {
            let numbers: Vec<u64> = (0..count).map(|i| i * 0x1_0001).collect();
            check(&Mixed { numbers, run: vec![1; 10], name: "short".into(), more: vec![(3, 70_000); 50] });
        }
        // Long and short pieces after each other, in a file from the first bytes on.
        let mixed = Mixed {
            numbers: (0..5_000).collect(),
            run: (0..(2 * STAGE + 5)).map(|i| i as u8).collect(),
            name: "x".repeat(STAGE / 2),
            more: (0..3_000).map(|i| (i as u8, i)).collect(),
        };
        check(&mixed);
        check(&vec![mixed.run.clone(); 3]);
    }

    #[test]
    fn a_file_that_cannot_be_written_is_reported_not_swallowed() {
        let mut failure = None;
        let mut writer = ItemWriter::new(LIMIT, &mut failure);
        // A descriptor open for reading only: every write fails with EBADF.
        writer.file = Some(OwnedFd::from(std::fs::File::open("/dev/null").unwrap()));
        let got = crate::reduction::encode_with(&vec![5u8; 4 * LIMIT], writer);
        assert!(got.is_err());
        assert_eq!(failure, Some(rustix::io::Errno::BADF));
    }
}
