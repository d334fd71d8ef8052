//! The tensor bundle: how conformance tests hand tensors to the `nn-runner` plugin and read its
//! results back.
//!
//! A bundle is a flat, little-endian byte string:
//!
//! ```text
//! "OTB1"                      magic, 4 bytes
//! count: u32                  number of tensors
//! count times:
//!   name_len: u16             length of the name in bytes
//!   name: [u8; name_len]      UTF-8
//!   type: u8                  wasi:nn tensor-type: fp16=0 fp32=1 fp64=2 bf16=3 u8=4 i32=5 i64=6
//!   rank: u8                  number of dimensions (0 for a scalar)
//!   dims: [u32; rank]
//!   data_len: u64             must equal product(dims) * element size
//!   data: [u8; data_len]      little-endian elements
//! ```
//!
//! Nothing may follow the last tensor. [`decode`] checks all of that and reports the first
//! problem it finds (which field of which tensor, at which offset) as a [`BundleError`]; it never
//! panics, whatever the input. [`encode`] writes whatever it is given, so a test can build a
//! tensor whose data does not match its dimensions on purpose.
//!
//! The plugin side (`conformance/plugins/nn-runner`) carries its own copy of this codec, since
//! guests build in a different workspace.

use std::fmt;

/// The four bytes every bundle starts with.
pub const MAGIC: [u8; 4] = *b"OTB1";

/// Element type of a tensor, numbered as `wasi:nn`'s `tensor-type` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    /// IEEE 754 half precision.
    Fp16,
    /// IEEE 754 single precision.
    Fp32,
    /// IEEE 754 double precision.
    Fp64,
    /// bfloat16.
    Bf16,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
}

impl TensorType {
    /// Every type, in code order.
    pub const ALL: [TensorType; 7] = [
        TensorType::Fp16,
        TensorType::Fp32,
        TensorType::Fp64,
        TensorType::Bf16,
        TensorType::U8,
        TensorType::I32,
        TensorType::I64,
    ];

    /// The type's code on the wire (its position in `wasi:nn`'s enum).
    pub fn code(self) -> u8 {
        match self {
            TensorType::Fp16 => 0,
            TensorType::Fp32 => 1,
            TensorType::Fp64 => 2,
            TensorType::Bf16 => 3,
            TensorType::U8 => 4,
            TensorType::I32 => 5,
            TensorType::I64 => 6,
        }
    }

    /// The type with wire code `code`, if there is one.
    pub fn from_code(code: u8) -> Option<TensorType> {
        TensorType::ALL.get(usize::from(code)).copied()
    }

    /// Bytes per element.
    pub fn element_size(self) -> usize {
        match self {
            TensorType::U8 => 1,
            TensorType::Fp16 | TensorType::Bf16 => 2,
            TensorType::Fp32 | TensorType::I32 => 4,
            TensorType::Fp64 | TensorType::I64 => 8,
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TensorType::Fp16 => "fp16",
            TensorType::Fp32 => "fp32",
            TensorType::Fp64 => "fp64",
            TensorType::Bf16 => "bf16",
            TensorType::U8 => "u8",
            TensorType::I32 => "i32",
            TensorType::I64 => "i64",
        };
        f.write_str(name)
    }
}

/// One named tensor of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleTensor {
    /// The tensor's name (a model input or output name).
    pub name: String,
    /// Element type.
    pub ty: TensorType,
    /// Dimensions; empty for a scalar.
    pub dims: Vec<u32>,
    /// Little-endian element bytes.
    pub data: Vec<u8>,
}

/// Why a bundle could not be decoded, or a tensor not read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// The input does not start with `OTB1`.
    BadMagic {
        /// The first bytes found (up to four).
        found: Vec<u8>,
    },
    /// The input ended inside a field.
    Truncated {
        /// Which field was being read (`"tensor count"`, `"dims"`, `"data"`, ...).
        field: &'static str,
        /// Index of the tensor being read, if past the header.
        tensor: Option<usize>,
        /// Offset where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input from `offset`.
        available: usize,
    },
    /// A tensor name is not UTF-8.
    InvalidName {
        /// Index of the tensor.
        tensor: usize,
    },
    /// A type code outside `0..=6`.
    UnknownType {
        /// Index of the tensor.
        tensor: usize,
        /// Its name.
        name: String,
        /// The code found.
        code: u8,
    },
    /// The dimensions describe more bytes than a `u64` can count.
    DimsOverflow {
        /// Index of the tensor.
        tensor: usize,
        /// Its name.
        name: String,
    },
    /// The data length does not match the dimensions and element type.
    DataLength {
        /// Index of the tensor.
        tensor: usize,
        /// Its name.
        name: String,
        /// `product(dims) * element size`.
        expected: u64,
        /// The `data_len` field.
        actual: u64,
    },
    /// Bytes follow the last tensor.
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
        /// How many extra bytes there are.
        count: usize,
    },
    /// A value helper was asked for a type the tensor does not have.
    WrongType {
        /// The tensor's name.
        name: String,
        /// Its type.
        actual: TensorType,
        /// The type asked for.
        wanted: &'static str,
    },
    /// A tensor's data is not a whole number of elements (only for tensors built by hand).
    RaggedData {
        /// The tensor's name.
        name: String,
        /// Its data length.
        len: usize,
        /// Its element size.
        element_size: usize,
    },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::BadMagic { found } => {
                write!(
                    f,
                    "bundle does not start with \"OTB1\" (found {found:02x?})"
                )
            }
            BundleError::Truncated {
                field,
                tensor,
                offset,
                needed,
                available,
            } => {
                write!(f, "bundle truncated in {field}")?;
                if let Some(index) = tensor {
                    write!(f, " of tensor {index}")?;
                }
                write!(
                    f,
                    " at offset {offset}: needs {needed} bytes, {available} left"
                )
            }
            BundleError::InvalidName { tensor } => {
                write!(f, "name of tensor {tensor} is not valid UTF-8")
            }
            BundleError::UnknownType { tensor, name, code } => write!(
                f,
                "tensor {tensor} ({name:?}) has unknown type code {code} (expected 0..=6)"
            ),
            BundleError::DimsOverflow { tensor, name } => write!(
                f,
                "dims of tensor {tensor} ({name:?}) describe more bytes than fit in a u64"
            ),
            BundleError::DataLength {
                tensor,
                name,
                expected,
                actual,
            } => write!(
                f,
                "tensor {tensor} ({name:?}) has {actual} data bytes, its dims and type need {expected}"
            ),
            BundleError::TrailingBytes { offset, count } => write!(
                f,
                "{count} trailing bytes after the last tensor at offset {offset}"
            ),
            BundleError::WrongType {
                name,
                actual,
                wanted,
            } => write!(f, "tensor {name:?} is {actual}, not {wanted}"),
            BundleError::RaggedData {
                name,
                len,
                element_size,
            } => write!(
                f,
                "tensor {name:?} has {len} data bytes, not a multiple of {element_size}"
            ),
        }
    }
}

impl std::error::Error for BundleError {}

/// Encodes `tensors` as a bundle.
///
/// The data is written as given, even when it does not match the dimensions, so tests can send
/// malformed tensors on purpose ([`decode`] would reject such a bundle).
///
/// # Panics
///
/// If a name is longer than 65 535 bytes, a tensor has more than 255 dimensions or there are
/// more than `u32::MAX` tensors: the format cannot express those.
pub fn encode(tensors: &[BundleTensor]) -> Vec<u8> {
    let size: usize = 8 + tensors
        .iter()
        .map(|t| 2 + t.name.len() + 2 + 4 * t.dims.len() + 8 + t.data.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&MAGIC);
    let count = u32::try_from(tensors.len()).expect("a bundle holds at most u32::MAX tensors");
    out.extend_from_slice(&count.to_le_bytes());
    for tensor in tensors {
        let name_len =
            u16::try_from(tensor.name.len()).expect("tensor names are at most 65535 bytes");
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(tensor.name.as_bytes());
        out.push(tensor.ty.code());
        let rank = u8::try_from(tensor.dims.len()).expect("tensors have at most 255 dimensions");
        out.push(rank);
        for dim in &tensor.dims {
            out.extend_from_slice(&dim.to_le_bytes());
        }
        out.extend_from_slice(&(tensor.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&tensor.data);
    }
    out
}

/// A cursor over the input that turns every short read into [`BundleError::Truncated`].
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    tensor: Option<usize>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, needed: u64, field: &'static str) -> Result<&'a [u8], BundleError> {
        let available = self.bytes.len() - self.pos;
        match usize::try_from(needed) {
            Ok(n) if n <= available => {
                let slice = &self.bytes[self.pos..self.pos + n];
                self.pos += n;
                Ok(slice)
            }
            _ => Err(BundleError::Truncated {
                field,
                tensor: self.tensor,
                offset: self.pos,
                needed,
                available,
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BundleError> {
        let slice = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
}

/// Smallest possible encoded tensor: name length, type, rank and data length.
const MIN_TENSOR_BYTES: usize = 2 + 1 + 1 + 8;

/// Decodes a bundle, checking every length, type code and the data size of every tensor.
pub fn decode(bytes: &[u8]) -> Result<Vec<BundleTensor>, BundleError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        if MAGIC.starts_with(bytes) {
            // A prefix of the magic itself: the input is short, not wrong.
            return Err(BundleError::Truncated {
                field: "magic",
                tensor: None,
                offset: 0,
                needed: MAGIC.len() as u64,
                available: bytes.len(),
            });
        }
        return Err(BundleError::BadMagic {
            found: bytes.iter().take(MAGIC.len()).copied().collect(),
        });
    }
    let mut reader = Reader {
        bytes,
        pos: MAGIC.len(),
        tensor: None,
    };
    let count = u32::from_le_bytes(reader.array("tensor count")?) as usize;
    // Never trust the count for an allocation: each tensor needs at least MIN_TENSOR_BYTES.
    let mut tensors = Vec::with_capacity(count.min((bytes.len() - reader.pos) / MIN_TENSOR_BYTES));
    for index in 0..count {
        reader.tensor = Some(index);
        let name_len = u16::from_le_bytes(reader.array("name length")?);
        let name = std::str::from_utf8(reader.take(u64::from(name_len), "name")?)
            .map_err(|_| BundleError::InvalidName { tensor: index })?
            .to_owned();
        let [code] = reader.array("type code")?;
        let ty = TensorType::from_code(code).ok_or_else(|| BundleError::UnknownType {
            tensor: index,
            name: name.clone(),
            code,
        })?;
        let [rank] = reader.array("rank")?;
        let raw_dims = reader.take(4 * u64::from(rank), "dims")?;
        let dims: Vec<u32> = raw_dims
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let expected = dims
            .iter()
            .try_fold(ty.element_size() as u64, |acc, &d| {
                acc.checked_mul(u64::from(d))
            })
            .ok_or_else(|| BundleError::DimsOverflow {
                tensor: index,
                name: name.clone(),
            })?;
        let data_len = u64::from_le_bytes(reader.array("data length")?);
        if data_len != expected {
            return Err(BundleError::DataLength {
                tensor: index,
                name,
                expected,
                actual: data_len,
            });
        }
        let data = reader.take(data_len, "data")?.to_vec();
        tensors.push(BundleTensor {
            name,
            ty,
            dims,
            data,
        });
    }
    if reader.pos != bytes.len() {
        return Err(BundleError::TrailingBytes {
            offset: reader.pos,
            count: bytes.len() - reader.pos,
        });
    }
    Ok(tensors)
}

/// Finds the tensor called `name`.
pub fn find<'a>(tensors: &'a [BundleTensor], name: &str) -> Option<&'a BundleTensor> {
    tensors.iter().find(|t| t.name == name)
}

macro_rules! constructor {
    ($fn_name:ident, $t:ty, $ty:expr) => {
        #[doc = concat!("A tensor of `", stringify!($t), "` elements.")]
        pub fn $fn_name(name: &str, dims: &[u32], values: &[$t]) -> BundleTensor {
            BundleTensor {
                name: name.to_owned(),
                ty: $ty,
                dims: dims.to_vec(),
                data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            }
        }
    };
}

macro_rules! reader {
    ($fn_name:ident, $t:ty, $ty:pat, $label:literal) => {
        #[doc = concat!("The elements as `", stringify!($t), "`; the tensor must be ", $label, ".")]
        pub fn $fn_name(&self) -> Result<Vec<$t>, BundleError> {
            if !matches!(self.ty, $ty) {
                return Err(self.wrong_type($label));
            }
            self.elements::<{ size_of::<$t>() }>()
                .map(|raw| raw.map(<$t>::from_le_bytes).collect())
        }
    };
}

impl BundleTensor {
    constructor!(f32, f32, TensorType::Fp32);
    constructor!(f64, f64, TensorType::Fp64);
    constructor!(i32, i32, TensorType::I32);
    constructor!(i64, i64, TensorType::I64);
    constructor!(u8, u8, TensorType::U8);

    /// A tensor of raw little-endian bytes of any type (fp16 and bf16 included).
    pub fn raw(name: &str, ty: TensorType, dims: &[u32], data: Vec<u8>) -> BundleTensor {
        BundleTensor {
            name: name.to_owned(),
            ty,
            dims: dims.to_vec(),
            data,
        }
    }

    reader!(to_f32, f32, TensorType::Fp32, "fp32");
    reader!(to_f64, f64, TensorType::Fp64, "fp64");
    reader!(to_i32, i32, TensorType::I32, "i32");
    reader!(to_i64, i64, TensorType::I64, "i64");

    /// The elements as `u8`; the tensor must be u8.
    pub fn to_u8(&self) -> Result<Vec<u8>, BundleError> {
        if self.ty != TensorType::U8 {
            return Err(self.wrong_type("u8"));
        }
        Ok(self.data.clone())
    }

    /// Every element widened to `f64`, whatever the type (fp16 and bf16 are decoded exactly;
    /// i64 values beyond 2^53 round).
    pub fn to_f64_lossy(&self) -> Result<Vec<f64>, BundleError> {
        Ok(match self.ty {
            TensorType::Fp16 => self
                .elements::<2>()?
                .map(|b| f64::from(f16_bits_to_f32(u16::from_le_bytes(b))))
                .collect(),
            TensorType::Bf16 => self
                .elements::<2>()?
                .map(|b| f64::from(bf16_bits_to_f32(u16::from_le_bytes(b))))
                .collect(),
            TensorType::Fp32 => self.to_f32()?.into_iter().map(f64::from).collect(),
            TensorType::Fp64 => self.to_f64()?,
            TensorType::U8 => self.data.iter().map(|&v| f64::from(v)).collect(),
            TensorType::I32 => self.to_i32()?.into_iter().map(f64::from).collect(),
            TensorType::I64 => self.to_i64()?.into_iter().map(|v| v as f64).collect(),
        })
    }

    /// Number of elements the dimensions describe (1 for a scalar), `None` on overflow.
    pub fn element_count(&self) -> Option<usize> {
        self.dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
    }

    fn wrong_type(&self, wanted: &'static str) -> BundleError {
        BundleError::WrongType {
            name: self.name.clone(),
            actual: self.ty,
            wanted,
        }
    }

    fn elements<const N: usize>(&self) -> Result<impl Iterator<Item = [u8; N]> + '_, BundleError> {
        if !self.data.len().is_multiple_of(N) {
            return Err(BundleError::RaggedData {
                name: self.name.clone(),
                len: self.data.len(),
                element_size: N,
            });
        }
        Ok(self.data.chunks_exact(N).map(|c| {
            let mut raw = [0u8; N];
            raw.copy_from_slice(c);
            raw
        }))
    }
}

/// Converts IEEE 754 half-precision bits to `f32` (exactly: every f16 is an f32).
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        // Subnormal: mantissa * 2^-24, which is a normal f32.
        (0, m) => return signed(sign, m as f32 * 2f32.powi(-24)),
        (0x1f, m) => 0x7f80_0000 | (m << 13),
        (e, m) => ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

fn signed(sign: u32, magnitude: f32) -> f32 {
    if sign != 0 { -magnitude } else { magnitude }
}

/// Converts bfloat16 bits to `f32` (exactly: bf16 is the top half of an f32).
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<BundleTensor> {
        vec![
            BundleTensor::f32("input", &[1, 3], &[0.5, -1.25, 3.0]),
            BundleTensor::i64("sr", &[], &[16000]),
            BundleTensor::u8("mask", &[2, 2], &[1, 0, 0, 1]),
            BundleTensor::raw("half", TensorType::Fp16, &[2], vec![0x00, 0x3c, 0x00, 0xc0]),
            BundleTensor::f64("empty", &[0, 4], &[]),
        ]
    }

    #[test]
    fn round_trips_every_type() {
        let tensors = sample();
        let bytes = encode(&tensors);
        assert_eq!(decode(&bytes).unwrap(), tensors);
        for ty in TensorType::ALL {
            let t = BundleTensor::raw("t", ty, &[3], vec![7; 3 * ty.element_size()]);
            assert_eq!(decode(&encode(std::slice::from_ref(&t))).unwrap(), vec![t]);
            assert_eq!(TensorType::from_code(ty.code()), Some(ty));
        }
        assert_eq!(TensorType::from_code(7), None);
    }

    #[test]
    fn layout_matches_the_format_byte_for_byte() {
        let bytes = encode(&[BundleTensor::i32("ab", &[2], &[1, -1])]);
        let expected: Vec<u8> = [
            &b"OTB1"[..],
            &[1, 0, 0, 0], // count
            &[2, 0],       // name length
            b"ab",         // name
            &[5],          // i32
            &[1],          // rank
            &[2, 0, 0, 0], // dims
            &[8, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(encode(&[]), b"OTB1\0\0\0\0");
        assert_eq!(decode(b"OTB1\0\0\0\0").unwrap(), vec![]);
    }

    #[test]
    fn every_proper_prefix_is_rejected_cleanly() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).expect_err("a prefix must not decode");
            assert!(
                matches!(err, BundleError::Truncated { .. }),
                "prefix of {len} bytes gave {err}"
            );
            assert!(err.to_string().contains("truncated"), "{err}");
        }
    }

    #[test]
    fn every_single_byte_corruption_decodes_or_errors_without_panicking() {
        let bytes = encode(&sample());
        for pos in 0..bytes.len() {
            for value in [0x00, 0x01, 0x07, 0x80, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[pos] = value;
                let _ = decode(&corrupt);
            }
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            decode(b"RIFF....").unwrap_err(),
            BundleError::BadMagic {
                found: b"RIFF".to_vec()
            }
        );
        assert!(decode(b"").unwrap_err().to_string().contains("magic"));

        let mut bad_type = encode(&[BundleTensor::f32("x", &[1], &[1.0])]);
        bad_type[4 + 4 + 2 + 1] = 9;
        let err = decode(&bad_type).unwrap_err();
        assert_eq!(
            err,
            BundleError::UnknownType {
                tensor: 0,
                name: "x".into(),
                code: 9
            }
        );
        assert!(err.to_string().contains("unknown type code 9"));

        let short = encode(&[BundleTensor::raw(
            "x",
            TensorType::Fp32,
            &[2, 3],
            vec![0; 20],
        )]);
        let err = decode(&short).unwrap_err();
        assert_eq!(
            err,
            BundleError::DataLength {
                tensor: 0,
                name: "x".into(),
                expected: 24,
                actual: 20
            }
        );
        assert!(err.to_string().contains("20 data bytes"), "{err}");

        let mut trailing = encode(&sample());
        let end = trailing.len();
        trailing.extend_from_slice(b"zz");
        assert_eq!(
            decode(&trailing).unwrap_err(),
            BundleError::TrailingBytes {
                offset: end,
                count: 2
            }
        );

        let mut bad_name = encode(&[BundleTensor::u8("ok", &[1], &[1])]);
        bad_name[4 + 4 + 2] = 0xff;
        assert_eq!(
            decode(&bad_name).unwrap_err(),
            BundleError::InvalidName { tensor: 0 }
        );
    }

    #[test]
    fn huge_counts_and_dims_do_not_allocate_or_overflow() {
        let mut many = b"OTB1".to_vec();
        many.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&many).unwrap_err();
        assert!(matches!(
            err,
            BundleError::Truncated {
                field: "name length",
                tensor: Some(0),
                ..
            }
        ));

        let giant = encode(&[BundleTensor::raw(
            "g",
            TensorType::I64,
            &[u32::MAX, u32::MAX, u32::MAX],
            vec![],
        )]);
        assert_eq!(
            decode(&giant).unwrap_err(),
            BundleError::DimsOverflow {
                tensor: 0,
                name: "g".into()
            }
        );

        // Dims that fit but a data length the input cannot hold.
        let mut big = encode(&[BundleTensor::raw("b", TensorType::U8, &[u32::MAX], vec![])]);
        let len_at = big.len() - 8;
        big[len_at..].copy_from_slice(&u64::from(u32::MAX).to_le_bytes());
        assert!(matches!(
            decode(&big).unwrap_err(),
            BundleError::Truncated { field: "data", .. }
        ));
    }

    #[test]
    fn value_helpers_check_the_type() {
        let tensors = decode(&encode(&sample())).unwrap();
        let input = find(&tensors, "input").unwrap();
        assert_eq!(input.to_f32().unwrap(), vec![0.5, -1.25, 3.0]);
        assert_eq!(input.element_count(), Some(3));
        let err = input.to_i64().unwrap_err();
        assert_eq!(err.to_string(), "tensor \"input\" is fp32, not i64");
        let sr = find(&tensors, "sr").unwrap();
        assert_eq!(sr.to_i64().unwrap(), vec![16000]);
        assert_eq!(sr.element_count(), Some(1));
        assert_eq!(
            find(&tensors, "mask").unwrap().to_u8().unwrap(),
            vec![1, 0, 0, 1]
        );
        assert_eq!(
            find(&tensors, "half").unwrap().to_f64_lossy().unwrap(),
            vec![1.0, -2.0]
        );
        assert!(
            find(&tensors, "empty")
                .unwrap()
                .to_f64()
                .unwrap()
                .is_empty()
        );
        assert!(find(&tensors, "nope").is_none());
        let ragged = BundleTensor::raw("r", TensorType::I32, &[1], vec![1, 2, 3]);
        assert!(matches!(
            ragged.to_i32().unwrap_err(),
            BundleError::RaggedData { len: 3, .. }
        ));
    }

    #[test]
    fn half_precision_conversions_are_exact() {
        assert_eq!(f16_bits_to_f32(0x3c00), 1.0);
        assert_eq!(f16_bits_to_f32(0xc000), -2.0);
        assert_eq!(f16_bits_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_bits_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_bits_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_bits_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_bits_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_bits_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_bits_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_bits_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_bits_to_f32(0x7e00).is_nan());
        assert!(f16_bits_to_f32(0x8000).is_sign_negative());
        assert_eq!(bf16_bits_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_bits_to_f32(0xc040), -3.0);
    }
}
