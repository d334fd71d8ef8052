//! The streaming AEAD: an encrypting writer, a decrypting reader, range reads and rewrapping.
//!
//! Segment `i` (0-based) holds plaintext bytes `i*S .. (i+1)*S` sealed with AES-256-GCM under the
//! per-object data key, nonce `prefix(7) || i as u32 BE || last_flag(1)` (STREAM, as in
//! RustCrypto's `StreamBE32`), associated data = the header's stable part. Only the final segment
//! carries flag 1 and it is the only one that may be shorter than `S` (it is empty only for an
//! empty object), so truncation and appending are both detected.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use crate::header::{Header, NONCE_PREFIX_LEN, TAG_LEN, read_full, validate_segment_size};
use crate::{DataKey, KeyProvider, KeysError};

/// Default plaintext bytes per segment (64 KiB).
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;

/// How far from its position a failing segment is searched for, to tell reordering from tampering.
const REORDER_PROBE: u64 = 64;

/// How many appended bytes merged into a short final segment are recognised as appended data.
const APPEND_PROBE: usize = 64;

/// The per-object cipher state shared by writer and readers. AES-256-GCM comes from `ring`
/// (BoringSSL's AES-NI/CLMUL assembly; already in the host through rustls): the RustCrypto
/// implementation ran at about a sixth of a plain file write.
struct SegmentCipher {
    aead: LessSafeKey,
    prefix: [u8; NONCE_PREFIX_LEN],
    ad: Vec<u8>,
}

impl SegmentCipher {
    fn new(key: &DataKey, header: &Header) -> Self {
        SegmentCipher {
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, key.as_bytes())
                    .expect("a data key is 32 bytes, the AES-256 key size"),
            ),
            prefix: header.nonce_prefix,
            ad: header.stable_bytes(),
        }
    }

    fn nonce(&self, counter: u32, flag: u8) -> Nonce {
        let mut n = [0u8; 12];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.prefix);
        n[7..11].copy_from_slice(&counter.to_be_bytes());
        n[11] = flag;
        Nonce::assume_unique_for_key(n)
    }

    /// The header tag: a GCM tag over nothing with the header as associated data. Flag 2 keeps
    /// its nonce outside the segment nonce space.
    fn header_tag(&self, tagged: &[u8]) -> [u8; TAG_LEN] {
        let tag = self
            .aead
            .seal_in_place_separate_tag(self.nonce(u32::MAX, 2), Aad::from(tagged), &mut [])
            .expect("an empty message always seals");
        tag_bytes(&tag)
    }

    fn seal(&self, index: u64, last: bool, buf: &mut [u8]) -> Result<[u8; TAG_LEN], KeysError> {
        let counter = u32::try_from(index).map_err(|_| KeysError::TooManySegments)?;
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                self.nonce(counter, last as u8),
                Aad::from(&self.ad[..]),
                buf,
            )
            .map_err(|_| KeysError::TooManySegments)?;
        Ok(tag_bytes(&tag))
    }

    /// Decrypts `buf` in place; on failure `buf` may have been overwritten.
    fn try_open(&self, index: u64, last: bool, buf: &mut [u8], tag: &[u8]) -> bool {
        let (Ok(counter), Ok(tag)) = (u32::try_from(index), Tag::try_from(tag)) else {
            return false;
        };
        self.aead
            .open_in_place_separate_tag(
                self.nonce(counter, last as u8),
                Aad::from(&self.ad[..]),
                tag,
                buf,
                0..,
            )
            .is_ok()
    }

    /// Opens segment `index`; on failure works out *why* (truncation, appending, reordering or
    /// tampering) by trying the segment under other positions and flags.
    fn open(&self, index: u64, last: bool, buf: &mut [u8], tag: &[u8]) -> Result<(), KeysError> {
        // A failed open may scribble on its buffer: keep the ciphertext for the diagnosis.
        let ciphertext = buf.to_vec();
        if self.try_open(index, last, buf, tag) {
            return Ok(());
        }
        buf.copy_from_slice(&ciphertext);
        let probe = |j: u64, flag: bool| self.try_open(j, flag, &mut ciphertext.clone(), tag);
        if probe(index, !last) {
            return Err(if last {
                KeysError::Truncated {
                    segments: index + 1,
                }
            } else {
                KeysError::TrailingData { final_index: index }
            });
        }
        let lo = index.saturating_sub(REORDER_PROBE);
        for j in lo..=index + REORDER_PROBE {
            if j != index && (probe(j, false) || probe(j, true)) {
                return Err(KeysError::SegmentOutOfOrder {
                    position: index,
                    sealed_at: j,
                });
            }
        }
        Err(KeysError::SegmentTampered { index })
    }
}

impl SegmentCipher {
    /// Whether a failing final chunk is a valid final segment followed by up to
    /// [`APPEND_PROBE`] appended bytes (bounded so a hostile file cannot make this expensive).
    fn ends_early(&self, index: u64, chunk: &[u8]) -> bool {
        (1..=APPEND_PROBE.min(chunk.len().saturating_sub(TAG_LEN))).any(|cut| {
            let end = chunk.len() - cut;
            let mut data = chunk[..end - TAG_LEN].to_vec();
            self.try_open(index, true, &mut data, &chunk[end - TAG_LEN..end])
        })
    }
}

/// Builds the cipher for an existing header: checks the key id, unwraps the data key and
/// verifies the header tag.
fn open_header(
    provider: &dyn KeyProvider,
    header: &Header,
    raw: &[u8],
) -> Result<SegmentCipher, KeysError> {
    if header.key_id != provider.key_id() {
        return Err(KeysError::KeyIdMismatch {
            expected: provider.key_id().to_owned(),
            found: header.key_id.clone(),
        });
    }
    let key = provider.unwrap(&header.key_id, &header.wrapped)?;
    let cipher = SegmentCipher::new(&key, header);
    let expected = cipher.header_tag(&raw[..raw.len() - TAG_LEN]);
    // Not secret-dependent timing in a useful way (the tag is public once written), but compare
    // fully anyway.
    if expected
        .iter()
        .zip(&header.tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        != 0
    {
        return Err(KeysError::HeaderTampered);
    }
    Ok(cipher)
}

/// Encrypts everything written to it into `inner`, one sealed segment at a time.
///
/// Call [`EncryptingWriter::finish`]: dropping the writer without it leaves an object without a
/// final segment, which readers reject as truncated.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    cipher: SegmentCipher,
    segment_size: usize,
    buf: Vec<u8>,
    index: u64,
}

impl<W: Write> EncryptingWriter<W> {
    /// Starts an object with the default 64 KiB segments, writing its header to `inner`.
    pub fn new(provider: &dyn KeyProvider, inner: W) -> Result<Self, KeysError> {
        Self::with_segment_size(provider, inner, DEFAULT_SEGMENT_SIZE)
    }

    /// Starts an object with `segment_size` plaintext bytes per segment (1 ..= 16 MiB).
    pub fn with_segment_size(
        provider: &dyn KeyProvider,
        mut inner: W,
        segment_size: u32,
    ) -> Result<Self, KeysError> {
        validate_segment_size(segment_size)?;
        let key = DataKey::generate()?;
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        crate::error::random(&mut nonce_prefix)?;
        let mut header = Header {
            segment_size,
            nonce_prefix,
            key_id: provider.key_id().to_owned(),
            wrapped: provider.wrap(&key)?,
            tag: [0; TAG_LEN],
        };
        let cipher = SegmentCipher::new(&key, &header);
        header.tag = cipher.header_tag(&header.tagged_bytes());
        inner
            .write_all(&header.emit())
            .map_err(|e| KeysError::io("writing encrypted-object header", e))?;
        let segment_size = segment_size as usize;
        Ok(EncryptingWriter {
            inner,
            cipher,
            segment_size,
            buf: Vec::with_capacity(segment_size),
            index: 0,
        })
    }

    fn seal_buffered(&mut self, last: bool) -> io::Result<()> {
        let tag = self.cipher.seal(self.index, last, &mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        self.inner.write_all(&tag)?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Seals the final segment, flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W, KeysError> {
        self.seal_buffered(true)
            .map_err(|e| KeysError::from_io_owned(e, "writing final segment"))?;
        self.inner
            .flush()
            .map_err(|e| KeysError::io("flushing encrypted object", e))?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            // A full buffer is sealed only once more data arrives, so the final segment is
            // never empty unless the whole object is.
            if self.buf.len() == self.segment_size {
                self.seal_buffered(false)?;
            }
            let take = (self.segment_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts an object as it is read; every byte returned has been authenticated.
pub struct DecryptingReader<R: Read> {
    inner: R,
    header: Header,
    cipher: SegmentCipher,
    segment_size: usize,
    buf: Vec<u8>,
    carry: Option<u8>,
    plain: std::ops::Range<usize>,
    index: u64,
    done: bool,
}

impl<R: Read> DecryptingReader<R> {
    /// Reads and authenticates the header of `inner`, unwrapping its data key with `provider`.
    pub fn new(provider: &dyn KeyProvider, mut inner: R) -> Result<Self, KeysError> {
        let (header, raw) = Header::read_from(&mut inner)?;
        let cipher = open_header(provider, &header, &raw)?;
        let segment_size = header.segment_size as usize;
        Ok(DecryptingReader {
            inner,
            header,
            cipher,
            segment_size,
            buf: vec![0; segment_size + TAG_LEN + 1],
            carry: None,
            plain: 0..0,
            index: 0,
            done: false,
        })
    }

    /// The object's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn next_segment(&mut self) -> Result<(), KeysError> {
        let sealed = self.segment_size + TAG_LEN;
        let mut have = 0;
        if let Some(b) = self.carry.take() {
            self.buf[0] = b;
            have = 1;
        }
        // One byte of look-ahead tells a full non-final segment from a full final one.
        have += read_full(&mut self.inner, &mut self.buf[have..sealed + 1])?;
        if have < TAG_LEN {
            return Err(KeysError::Truncated {
                segments: self.index,
            });
        }
        let last = have <= sealed;
        let body = if last {
            have - TAG_LEN
        } else {
            self.segment_size
        };
        if !last {
            self.carry = Some(self.buf[sealed]);
        }
        let (data, rest) = self.buf.split_at_mut(body);
        if let Err(e) = self.cipher.open(self.index, last, data, &rest[..TAG_LEN]) {
            if last && self.cipher.ends_early(self.index, &self.buf[..have]) {
                return Err(KeysError::TrailingData {
                    final_index: self.index,
                });
            }
            return Err(e);
        }
        self.plain = 0..body;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.plain.is_empty() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = self.plain.len().min(out.len());
        out[..n].copy_from_slice(&self.buf[self.plain.start..self.plain.start + n]);
        self.plain.start += n;
        Ok(n)
    }
}

/// Random access into an object on a seekable source: decrypts only the segments a range covers.
pub struct RangeReader<R: Read + Seek> {
    inner: R,
    header: Header,
    cipher: SegmentCipher,
    body_start: u64,
    segments: u64,
    plaintext_len: u64,
}

impl<R: Read + Seek> RangeReader<R> {
    /// Opens the object starting at the current position of `inner`; authenticates the header
    /// and the final segment so the plaintext length is trustworthy.
    pub fn new(provider: &dyn KeyProvider, mut inner: R) -> Result<Self, KeysError> {
        let (header, raw) = Header::read_from(&mut inner)?;
        let cipher = open_header(provider, &header, &raw)?;
        let body_start = inner
            .stream_position()
            .map_err(|e| KeysError::io("seeking encrypted object", e))?;
        let end = inner
            .seek(SeekFrom::End(0))
            .map_err(|e| KeysError::io("seeking encrypted object", e))?;
        let body = end.saturating_sub(body_start);
        let sealed = header.segment_size as u64 + TAG_LEN as u64;
        let segments = body.div_ceil(sealed);
        let last_len = body - segments.saturating_sub(1) * sealed;
        if segments == 0 || last_len < TAG_LEN as u64 {
            return Err(KeysError::Truncated {
                segments: segments.saturating_sub(1),
            });
        }
        let plaintext_len = body - segments * TAG_LEN as u64;
        let mut reader = RangeReader {
            inner,
            header,
            cipher,
            body_start,
            segments,
            plaintext_len,
        };
        reader.open_segment(segments - 1)?;
        Ok(reader)
    }

    /// The object's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The authenticated plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    fn open_segment(&mut self, index: u64) -> Result<Vec<u8>, KeysError> {
        let s = self.header.segment_size as u64;
        let start = index * s;
        let len = (self.plaintext_len - start.min(self.plaintext_len)).min(s) as usize;
        let mut buf = vec![0u8; len + TAG_LEN];
        self.inner
            .seek(SeekFrom::Start(
                self.body_start + index * (s + TAG_LEN as u64),
            ))
            .and_then(|_| self.inner.read_exact(&mut buf))
            .map_err(|e| KeysError::io(format!("reading segment {index}"), e))?;
        let (data, tag) = buf.split_at_mut(len);
        self.cipher
            .open(index, index + 1 == self.segments, data, tag)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Returns plaintext bytes `offset .. offset + len`, decrypting only the segments covering them.
    pub fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, KeysError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.plaintext_len)
            .ok_or(KeysError::RangeOutOfBounds {
                offset,
                len,
                plaintext_len: self.plaintext_len,
            })?;
        let mut out = Vec::with_capacity(len as usize);
        if len == 0 {
            return Ok(out);
        }
        let s = self.header.segment_size as u64;
        for index in offset / s..=(end - 1) / s {
            let seg = self.open_segment(index)?;
            let seg_start = index * s;
            let from = offset.saturating_sub(seg_start) as usize;
            let to = ((end - seg_start) as usize).min(seg.len());
            out.extend_from_slice(&seg[from..to]);
        }
        Ok(out)
    }
}

/// Encrypts `plaintext` into a new object with the default segment size.
pub fn seal(provider: &dyn KeyProvider, plaintext: &[u8]) -> Result<Vec<u8>, KeysError> {
    let mut w = EncryptingWriter::new(provider, Vec::new())?;
    w.write_all(plaintext)
        .map_err(|e| KeysError::from_io_owned(e, "sealing"))?;
    w.finish()
}

/// Decrypts and authenticates a whole object.
pub fn open(provider: &dyn KeyProvider, object: &[u8]) -> Result<Vec<u8>, KeysError> {
    let mut r = DecryptingReader::new(provider, object)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| KeysError::from_io_owned(e, "opening"))?;
    Ok(out)
}

/// Rewraps the data key in `header_bytes` (a header, optionally followed by anything) under the
/// provider's current KEK version. Returns the new header; segments stay valid because they
/// authenticate only the stable part of the header.
pub fn rewrap(provider: &dyn KeyProvider, header_bytes: &[u8]) -> Result<Vec<u8>, KeysError> {
    let (header, len) = Header::parse(header_bytes)?;
    let raw = &header_bytes[..len];
    open_header(provider, &header, raw)?;
    let key = provider.unwrap(&header.key_id, &header.wrapped)?;
    let mut new = Header {
        wrapped: provider.wrap(&key)?,
        ..header
    };
    let cipher = SegmentCipher::new(&key, &new);
    new.tag = cipher.header_tag(&new.tagged_bytes());
    Ok(new.emit())
}

/// Rewraps the header of the encrypted file at `path` under the current KEK version, leaving
/// every segment untouched. Returns the new header.
///
/// The new header and the unchanged segments are written to a temporary file next to `path`,
/// synced, and renamed over it, so a concurrent reader sees either the old object or the new
/// one, never a half-written header; a reader that already opened the old file keeps reading
/// it (its KEK version stays usable until disabled). The replacement keeps the file's permission
/// bits but is a new inode: owner, extended attributes and hard links are not carried over.
pub fn rewrap_file(provider: &dyn KeyProvider, path: &Path) -> Result<Header, KeysError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let mut file = File::open(path).map_err(|e| KeysError::io(ctx("opening"), e))?;
    let (_, raw) = Header::read_from(&mut file)?;
    let new = rewrap(provider, &raw)?;
    let permissions = file
        .metadata()
        .map_err(|e| KeysError::io(ctx("inspecting"), e))?
        .permissions();
    let name = path
        .file_name()
        .ok_or_else(|| KeysError::io(ctx("rewrapping"), io::ErrorKind::InvalidInput.into()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut suffix = [0u8; 6];
    crate::error::random(&mut suffix)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{}.rewrap-{suffix}", name.to_string_lossy()));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| KeysError::io(format!("creating {}", tmp.display()), e))?;
    let written = out
        .write_all(&new)
        .and_then(|_| io::copy(&mut file, &mut out))
        .and_then(|_| out.set_permissions(permissions))
        .and_then(|_| out.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(KeysError::io(ctx("rewriting"), e));
    }
    // Make the rename itself durable; a failure here leaves a correct file, so only log it.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not sync directory after rewrap");
    }
    Ok(Header::parse(&new)?.0)
}

fn tag_bytes(tag: &Tag) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}
