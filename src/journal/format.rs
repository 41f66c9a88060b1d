//! The bytes of a journal file: its header and its CRC-framed payloads.
//!
//! # File header (32 bytes, little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `CRRGJRNL` |
//! | 2 | format version ([`FORMAT_VERSION`]) |
//! | 1 | kind: 1 segment, 2 snapshot |
//! | 1 | reserved, 0 |
//! | 4 | shard that wrote the file |
//! | 4 | shard count of the process that wrote it |
//! | 8 | base sequence number: a segment's first record; a snapshot's starting point (see `journal`) |
//! | 4 | CRC-32 (IEEE) of the 28 bytes above |
//!
//! # Frame
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n` (at most [`MAX_FRAME_BYTES`]) |
//! | 4 | CRC-32 (IEEE) of the length's 4 bytes and the payload |
//! | n | payload: change records back to back, in the change stream's format |
//!
//! A snapshot ends with an empty frame (length 0): a snapshot without it was cut short.
//!
//! A segment is extended with zeros ahead of its frames (so that an fdatasync has data to write, not the
//! file's size): a frame header of eight zero bytes, which no frame has (the CRC of an empty frame is not
//! 0), ends the segment's data when every byte after it is zero too.

use thiserror::Error;

/// The file's first bytes.
pub const MAGIC: [u8; 8] = *b"CRRGJRNL";
/// The format this build writes and reads; files of any other version are refused.
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 32;
pub const FRAME_HEADER_BYTES: usize = 8;
/// The largest payload a frame may declare: a reader never allocates more for one frame, whatever a file
/// says. Writers split larger batches at record boundaries (one record is at most
/// [`crate::registrar::changes::MAX_RECORD_BYTES`], well under it).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// What a journal file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    /// Binding changes, in sequence order.
    Segment = 1,
    /// The live bindings, each as a `registered` record.
    Snapshot = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    pub shard: u32,
    pub shards: u32,
    pub base_seq: u64,
}

/// Why a header is not accepted.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("shorter than a journal header ({0} bytes)")]
    Short(usize),
    #[error("not a corereg journal file (bad magic)")]
    BadMagic,
    #[error("header checksum mismatch")]
    BadCrc,
    #[error(
        "journal format version {0}, this build reads version {FORMAT_VERSION} only: use the corereg \
         release that wrote it, or move the data directory away"
    )]
    UnknownVersion(u16),
    #[error("unknown file kind {0}")]
    UnknownKind(u8),
}

impl FileHeader {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[10] = self.kind as u8;
        h[12..16].copy_from_slice(&self.shard.to_le_bytes());
        h[16..20].copy_from_slice(&self.shards.to_le_bytes());
        h[20..28].copy_from_slice(&self.base_seq.to_le_bytes());
        let crc = crc32fast::hash(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Checks the magic and the version first, so that a file of another version is named as such even
    /// when its header is laid out differently.
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, HeaderError> {
        let h: &[u8; HEADER_BYTES] = bytes
            .get(..HEADER_BYTES)
            .and_then(|h| h.try_into().ok())
            .ok_or(HeaderError::Short(bytes.len()))?;
        if h[..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        let crc_ok = crc32fast::hash(&h[..28]) == le_u32(&h[28..32]);
        if version != FORMAT_VERSION {
            // A flipped bit in the version of a file of ours is damage, not a newer format.
            return Err(if crc_ok {
                HeaderError::UnknownVersion(version)
            } else {
                HeaderError::BadCrc
            });
        }
        if !crc_ok {
            return Err(HeaderError::BadCrc);
        }
        let kind = match h[10] {
            1 => FileKind::Segment,
            2 => FileKind::Snapshot,
            other => return Err(HeaderError::UnknownKind(other)),
        };
        Ok(FileHeader {
            kind,
            shard: le_u32(&h[12..16]),
            shards: le_u32(&h[16..20]),
            base_seq: u64::from_le_bytes(h[20..28].try_into().unwrap_or_default()),
        })
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().unwrap_or_default())
}

/// Appends `payload` as one frame.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_FRAME_BYTES);
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    out.reserve(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends encoded records as frames of at most `max_payload` bytes each (split at record boundaries; a
/// record longer than `max_payload` gets a frame of its own).
pub fn push_records(out: &mut Vec<u8>, records: &[u8], max_payload: usize) {
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        while end < records.len() {
            let len = records
                .get(end..end + 4)
                .map_or(usize::MAX, |b| le_u32(b) as usize);
            let next = end.saturating_add(4).saturating_add(len);
            if next > records.len() {
                // Not a record boundary: cannot happen for a change log's buffer; keep the rest whole.
                end = records.len();
                break;
            }
            if next - start > max_payload && end > start {
                break;
            }
            end = next;
        }
        push_frame(out, &records[start..end]);
        start = end;
    }
}

/// The end-of-snapshot frame.
pub fn push_end(out: &mut Vec<u8>) {
    push_frame(out, &[]);
}

/// Why a frame is not accepted.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame header cut short")]
    TruncatedHeader,
    #[error("frame declares {0} bytes, more than the {MAX_FRAME_BYTES} allowed")]
    TooLong(usize),
    #[error("frame payload cut short")]
    TruncatedPayload,
    #[error("frame checksum mismatch")]
    BadCrc,
    #[error("data after the zeros that end a segment")]
    Garbage,
}

/// Checks a frame's header and payload (as read) against each other.
pub fn check_frame(header: &[u8; FRAME_HEADER_BYTES], payload: &[u8]) -> Result<(), FrameError> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..4]);
    crc.update(payload);
    if crc.finalize() == le_u32(&header[4..8]) {
        Ok(())
    } else {
        Err(FrameError::BadCrc)
    }
}

/// The payload length a frame header declares, bounded.
pub fn frame_len(header: &[u8; FRAME_HEADER_BYTES]) -> Result<usize, FrameError> {
    let len = le_u32(&header[..4]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLong(len));
    }
    Ok(len)
}

/// Reads frames from a reader, one at a time, into one reused buffer (never more than
/// [`MAX_FRAME_BYTES`]).
pub struct FrameReader<R> {
    inner: R,
    /// Bytes of the file consumed by the frames returned so far (the header included).
    pub offset: u64,
    buf: Vec<u8>,
}

impl<R: std::io::Read> FrameReader<R> {
    /// A reader positioned after the file header, at `offset`.
    pub fn new(inner: R, offset: u64) -> Self {
        FrameReader {
            inner,
            offset,
            buf: Vec::new(),
        }
    }

    /// The next frame's payload; None at a clean end of file; an error (I/O or damage) otherwise. After an
    /// error, `offset` is where the bad frame starts.
    pub fn next_frame(&mut self) -> Option<Result<&[u8], ReadError>> {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        match read_full(&mut self.inner, &mut header) {
            Ok(0) => return None,
            Ok(n) if header[..n].iter().all(|&b| b == 0) => {
                // The zeros a segment is extended with: the end, when nothing but zeros follows.
                return match rest_is_zero(&mut self.inner) {
                    Ok(true) => None,
                    Ok(false) => Some(Err(ReadError::Frame(FrameError::Garbage))),
                    Err(e) => Some(Err(ReadError::Io(e))),
                };
            }
            Ok(n) if n < FRAME_HEADER_BYTES => {
                return Some(Err(ReadError::Frame(FrameError::TruncatedHeader)))
            }
            Ok(_) => {}
            Err(e) => return Some(Err(ReadError::Io(e))),
        }
        let len = match frame_len(&header) {
            Ok(len) => len,
            Err(e) => return Some(Err(ReadError::Frame(e))),
        };
        self.buf.clear();
        // Read into the buffer's spare room (no zeroing first); `len` is bounded above.
        use std::io::Read as _;
        let read = std::io::Read::by_ref(&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut self.buf);
        match read {
            Ok(n) if n < len => return Some(Err(ReadError::Frame(FrameError::TruncatedPayload))),
            Ok(_) => {}
            Err(e) => return Some(Err(ReadError::Io(e))),
        }
        if let Err(e) = check_frame(&header, &self.buf) {
            return Some(Err(ReadError::Frame(e)));
        }
        self.offset += (FRAME_HEADER_BYTES + len) as u64;
        Some(Ok(&self.buf))
    }
}

#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(FrameError),
    #[error("read error: {0}")]
    Io(std::io::Error),
}

/// Whether every byte left in `r` is zero.
fn rest_is_zero(r: &mut impl std::io::Read) -> std::io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        let n = read_full(r, &mut chunk)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < chunk.len() {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> FileHeader {
        FileHeader {
            kind: FileKind::Segment,
            shard: 1,
            shards: 2,
            base_seq: 42,
        }
    }

    #[test]
    fn headers_round_trip_and_damage_is_named() {
        let h = header().encode();
        assert_eq!(FileHeader::decode(&h), Ok(header()));
        assert_eq!(FileHeader::decode(&h[..10]), Err(HeaderError::Short(10)));
        let mut bad = h;
        bad[0] ^= 1;
        assert_eq!(FileHeader::decode(&bad), Err(HeaderError::BadMagic));
        let mut bad = h;
        bad[21] ^= 1;
        assert_eq!(FileHeader::decode(&bad), Err(HeaderError::BadCrc));
        // A future version, written whole: refused by name.
        let mut v2 = h;
        v2[8] = 2;
        let crc = crc32fast::hash(&v2[..28]);
        v2[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(FileHeader::decode(&v2), Err(HeaderError::UnknownVersion(2)));
        assert!(HeaderError::UnknownVersion(2)
            .to_string()
            .contains("version 2"));
        // A flipped version bit without a matching CRC is damage.
        let mut flipped = h;
        flipped[8] ^= 4;
        assert_eq!(FileHeader::decode(&flipped), Err(HeaderError::BadCrc));
    }

    fn frames(out: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>, u64) {
        let mut r = FrameReader::new(out, 0);
        let mut got = Vec::new();
        loop {
            match r.next_frame() {
                None => return (got, None, r.offset),
                Some(Ok(p)) => got.push(p.to_vec()),
                Some(Err(ReadError::Frame(e))) => return (got, Some(e), r.offset),
                Some(Err(ReadError::Io(e))) => panic!("io {e}"),
            }
        }
    }

    #[test]
    fn zeros_after_the_frames_end_them_and_anything_after_the_zeros_is_damage() {
        let mut out = Vec::new();
        push_frame(&mut out, b"one");
        push_frame(&mut out, b"");
        let end = out.len() as u64;
        out.extend_from_slice(&[0; 10_000]);
        let (got, err, offset) = frames(&out);
        assert_eq!(got, vec![b"one".to_vec(), Vec::new()]);
        assert_eq!((err, offset), (None, end));
        out[9_000] = 1;
        let (got, err, offset) = frames(&out);
        assert_eq!(got.len(), 2);
        assert_eq!((err, offset), (Some(FrameError::Garbage), end));
    }

    #[test]
    fn a_declared_length_over_the_bound_is_refused_before_any_allocation() {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let (got, err, offset) = frames(&out);
        assert!(got.is_empty());
        assert_eq!(err, Some(FrameError::TooLong(u32::MAX as usize)));
        assert_eq!(offset, 0);
    }

    proptest! {
        #[test]
        fn frames_round_trip_and_any_damage_keeps_exactly_a_prefix(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..8),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut out = Vec::new();
            let mut ends = Vec::new();
            for p in &payloads {
                push_frame(&mut out, p);
                ends.push(out.len() as u64);
            }
            let (got, err, _) = frames(&out);
            prop_assert_eq!(&got, &payloads);
            prop_assert_eq!(err, None);
            // Truncated anywhere: the frames wholly before the cut, nothing else.
            let cut = cut.index(out.len());
            let (got, err, offset) = frames(&out[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut as u64).count();
            prop_assert_eq!(got.len(), whole);
            prop_assert_eq!(&got[..], &payloads[..whole]);
            // The cut is reported, unless what it left of the frame is zeros (as good as unwritten).
            let left_zero = out[offset as usize..cut].iter().all(|&b| b == 0);
            prop_assert_eq!(err.is_some(), !left_zero);
            // One flipped bit: the frames before it, and the one it is in is refused.
            let at = flip.index(out.len());
            let mut bad = out.clone();
            bad[at] ^= 1 << bit;
            let (got, err, _) = frames(&bad);
            let before = ends.iter().filter(|&&e| e <= at as u64).count();
            prop_assert_eq!(&got[..], &payloads[..before]);
            prop_assert!(err.is_some());
        }

        #[test]
        fn records_split_into_frames_at_record_boundaries(sizes in prop::collection::vec(0usize..300, 1..20), max in 1usize..1000) {
            let mut records = Vec::new();
            for s in &sizes {
                records.extend_from_slice(&(*s as u32).to_le_bytes());
                records.extend(std::iter::repeat_n(7u8, *s));
            }
            let mut out = Vec::new();
            push_records(&mut out, &records, max);
            let (got, err, _) = frames(&out);
            prop_assert_eq!(err, None);
            prop_assert_eq!(got.concat(), records);
            for f in &got {
                // Over the bound only when it is one record.
                if f.len() > max {
                    prop_assert_eq!(le_u32(&f[..4]) as usize + 4, f.len());
                }
            }
        }
    }
}
