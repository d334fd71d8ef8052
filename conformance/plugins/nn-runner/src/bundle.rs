//! Guest-side codec for the tensor bundle (`conformance/src/bundle.rs` holds the host's).
//!
//! Layout, all little-endian: `OTB1`, u32 tensor count, then per tensor a u16 name length, the
//! UTF-8 name, a u8 wasi:nn type code (fp16=0 fp32=1 fp64=2 bf16=3 u8=4 i32=5 i64=6), a u8 rank,
//! rank u32 dims, a u64 data length and the data. Nothing may follow the last tensor.

/// One tensor as carried in a bundle; `code` is the wasi:nn `tensor-type` discriminant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Input or output name.
    pub name: String,
    /// Element type code.
    pub code: u8,
    /// Dimensions, empty for a scalar.
    pub dims: Vec<u32>,
    /// Little-endian elements.
    pub data: Vec<u8>,
}

/// Bytes per element for a type code, `None` for codes wasi:nn does not define.
pub fn element_size(code: u8) -> Option<u64> {
    match code {
        4 => Some(1),
        0 | 3 => Some(2),
        1 | 5 => Some(4),
        2 | 6 => Some(8),
        _ => None,
    }
}

/// Whether `decode` insists that each data length equals product(dims) × element size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizes {
    /// Reject a tensor whose data length disagrees with its dims and type.
    Checked,
    /// Only the framing is checked: lets a test hand the host a tensor whose data and dims
    /// disagree.
    Unchecked,
}

/// Writes `tensors` as a bundle. The format caps names at 65 535 bytes and ranks at 255: a
/// longer name or rank is an error rather than a silently corrupt bundle.
pub fn encode(tensors: &[Tensor]) -> Result<Vec<u8>, String> {
    let mut out = Vec::from(*b"OTB1");
    let count = u32::try_from(tensors.len()).map_err(|_| "too many tensors for a bundle")?;
    out.extend_from_slice(&count.to_le_bytes());
    for t in tensors {
        let name_len = u16::try_from(t.name.len()).map_err(|_| {
            let start: String = t.name.chars().take(16).collect();
            format!("tensor name {start:?}... is too long for a bundle")
        })?;
        let rank = u8::try_from(t.dims.len()).map_err(|_| {
            format!(
                "tensor {:?} has {} dims, a bundle allows 255",
                t.name,
                t.dims.len()
            )
        })?;
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(t.name.as_bytes());
        out.push(t.code);
        out.push(rank);
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&(t.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&t.data);
    }
    Ok(out)
}

/// Reads fields off the front of a byte slice; every short read names the field.
pub struct Cursor<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor {
            rest: bytes,
            offset: 0,
        }
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// The next `len` bytes; `what` names the field in the error.
    pub fn bytes(&mut self, len: u64, what: &str) -> Result<&'a [u8], String> {
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= self.rest.len())
            .ok_or_else(|| {
                format!(
                    "truncated {what} at offset {}: needs {len} bytes, {} left",
                    self.offset,
                    self.rest.len()
                )
            })?;
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.offset += n;
        Ok(head)
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N as u64, what)?);
        Ok(out)
    }

    /// A `u8`.
    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.fixed::<1>(what)?[0])
    }
    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &str) -> Result<u16, String> {
        self.fixed(what).map(u16::from_le_bytes)
    }
    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.fixed(what).map(u32::from_le_bytes)
    }
    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.fixed(what).map(u64::from_le_bytes)
    }
}

/// Parses a bundle; the error says which field of which tensor is wrong. Never panics.
pub fn decode(bytes: &[u8], sizes: Sizes) -> Result<Vec<Tensor>, String> {
    let mut cur = Cursor::new(bytes);
    let magic = cur.bytes(4, "magic")?;
    if magic != b"OTB1" {
        return Err(format!("bad magic {magic:02x?}, expected \"OTB1\""));
    }
    let count = cur.u32("tensor count")?;
    let mut tensors = Vec::new();
    for i in 0..count {
        let name_len = cur.u16(&format!("name length of tensor {i}"))?;
        let name = cur.bytes(u64::from(name_len), &format!("name of tensor {i}"))?;
        let name = core::str::from_utf8(name)
            .map_err(|_| format!("name of tensor {i} is not UTF-8"))?
            .to_string();
        let code = cur.u8(&format!("type of tensor {i} ({name:?})"))?;
        let size = element_size(code).ok_or_else(|| {
            format!("tensor {i} ({name:?}) has unknown type code {code} (expected 0..=6)")
        })?;
        let rank = cur.u8(&format!("rank of tensor {i} ({name:?})"))?;
        let mut dims = Vec::with_capacity(usize::from(rank));
        for _ in 0..rank {
            dims.push(cur.u32(&format!("dims of tensor {i} ({name:?})"))?);
        }
        let data_len = cur.u64(&format!("data length of tensor {i} ({name:?})"))?;
        if sizes == Sizes::Checked {
            let expected = dims
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(u64::from(d)));
            if expected != Some(data_len) {
                let expected = expected.map_or("more than u64::MAX".to_string(), |e| e.to_string());
                return Err(format!(
                    "tensor {i} ({name:?}) has {data_len} data bytes, dims {dims:?} need {expected}"
                ));
            }
        }
        let data = cur
            .bytes(data_len, &format!("data of tensor {i} ({name:?})"))?
            .to_vec();
        tensors.push(Tensor {
            name,
            code,
            dims,
            data,
        });
    }
    if !cur.rest().is_empty() {
        return Err(format!(
            "{} trailing bytes after the last tensor",
            cur.rest().len()
        ));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors() -> Vec<Tensor> {
        vec![
            Tensor {
                name: "input".into(),
                code: 1,
                dims: vec![1, 2],
                data: [1.5f32, -2.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            },
            Tensor {
                name: "sr".into(),
                code: 6,
                dims: vec![],
                data: 16000i64.to_le_bytes().to_vec(),
            },
        ]
    }

    #[test]
    fn round_trip_and_exact_layout() {
        let bytes = encode(&tensors()).unwrap();
        assert_eq!(&bytes[..8], b"OTB1\x02\0\0\0");
        assert_eq!(&bytes[8..10], &[5, 0]);
        assert_eq!(&bytes[10..15], b"input");
        assert_eq!(&bytes[15..17], &[1, 2]);
        assert_eq!(&bytes[17..25], &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&bytes[25..33], &8u64.to_le_bytes());
        assert_eq!(decode(&bytes, Sizes::Checked).unwrap(), tensors());
    }

    #[test]
    fn every_prefix_fails_with_truncated() {
        let bytes = encode(&tensors()).unwrap();
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len], Sizes::Checked).unwrap_err();
            assert!(err.starts_with("truncated"), "{len}: {err}");
        }
    }

    #[test]
    fn problems_are_named() {
        let mut bytes = encode(&tensors()).unwrap();
        bytes[15] = 8;
        assert_eq!(
            decode(&bytes, Sizes::Checked).unwrap_err(),
            "tensor 0 (\"input\") has unknown type code 8 (expected 0..=6)"
        );
        let mut wrong = tensors();
        wrong[0].data.pop();
        let bytes = encode(&wrong).unwrap();
        assert_eq!(
            decode(&bytes, Sizes::Checked).unwrap_err(),
            "tensor 0 (\"input\") has 7 data bytes, dims [1, 2] need 8"
        );
        assert_eq!(decode(&bytes, Sizes::Unchecked).unwrap(), wrong);
        let mut extra = encode(&tensors()).unwrap();
        extra.push(0);
        assert_eq!(
            decode(&extra, Sizes::Checked).unwrap_err(),
            "1 trailing bytes after the last tensor"
        );
        assert!(
            decode(b"WAVE\0\0\0\0", Sizes::Checked)
                .unwrap_err()
                .starts_with("bad magic")
        );
        let mut overflow = b"OTB1\x01\0\0\0\x01\0x\x06\x03".to_vec();
        for _ in 0..3 {
            overflow.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        overflow.extend_from_slice(&0u64.to_le_bytes());
        assert!(
            decode(&overflow, Sizes::Checked)
                .unwrap_err()
                .contains("more than u64::MAX")
        );
    }

    #[test]
    fn corruption_never_panics() {
        let bytes = encode(&tensors()).unwrap();
        for pos in 0..bytes.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut c = bytes.clone();
                c[pos] = v;
                let _ = decode(&c, Sizes::Checked);
                let _ = decode(&c, Sizes::Unchecked);
            }
        }
    }
}
