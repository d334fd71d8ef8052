//! Images as rapidocr sees them: 8-bit BGR, interleaved, rows top to bottom.
//!
//! Decoding follows rapidocr's `LoadImage` (Pillow, then OpenCV channel conversions, including
//! its treatment of alpha), and the resampling functions reproduce OpenCV 5's arithmetic for the
//! two calls rapidocr makes: `cv2.resize` with `INTER_LINEAR` on 8-bit images (11-bit fixed-point
//! weights) and `cv2.warpPerspective` with `INTER_CUBIC` and `BORDER_REPLICATE` (single-precision
//! weights and sums). Both were checked pixel for pixel against opencv-python 5.0 (OpenCV 4.x
//! quantises warp coordinates to 1/32 pixel instead and would differ by a grey level here and
//! there).

use std::io::Cursor;

/// Largest image accepted, in pixels (about 150 MB of BGR).
pub const MAX_PIXELS: usize = 50_000_000;

/// An 8-bit, 3-channel image in B, G, R order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bgr {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes, B, G, R per pixel.
    pub data: Vec<u8>,
}

impl Bgr {
    /// A black image.
    pub fn new(width: usize, height: usize) -> Bgr {
        Bgr {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    /// The B, G, R values at (`x`, `y`).
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// An image from R, G, B bytes (the channel order is swapped to B, G, R).
    pub fn from_rgb(width: usize, height: usize, rgb: &[u8]) -> Bgr {
        let mut data = Vec::with_capacity(width * height * 3);
        for px in rgb.chunks_exact(3).take(width * height) {
            data.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        Bgr {
            width,
            height,
            data,
        }
    }
}

/// What the payload was, once decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A PNG file.
    Png,
    /// A JPEG file.
    Jpeg,
    /// `RGB8` + width + height + pixels.
    RawRgb,
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = b"\xff\xd8\xff";
const RAW_MAGIC: &[u8] = b"RGB8";

/// Decodes a PNG, a JPEG or a raw `RGB8` payload into BGR the way rapidocr loads an image.
pub fn decode(payload: &[u8]) -> Result<(Bgr, Format), String> {
    if payload.starts_with(PNG_MAGIC) {
        decode_png(payload).map(|img| (img, Format::Png))
    } else if payload.starts_with(JPEG_MAGIC) {
        decode_jpeg(payload).map(|img| (img, Format::Jpeg))
    } else if payload.starts_with(RAW_MAGIC) {
        decode_raw(payload).map(|img| (img, Format::RawRgb))
    } else {
        let head: Vec<String> = payload.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(format!(
            "unrecognised payload ({} bytes, starting {}): expected a PNG, a JPEG or raw RGB \
             ('RGB8', u32 LE width, u32 LE height, width*height*3 bytes)",
            payload.len(),
            if head.is_empty() {
                "with nothing".to_string()
            } else {
                head.join(" ")
            }
        ))
    }
}

fn check_dims(width: usize, height: usize) -> Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("image is empty ({width}x{height})"));
    }
    match width.checked_mul(height) {
        Some(n) if n <= MAX_PIXELS => Ok(()),
        _ => Err(format!(
            "image too large ({width}x{height}; at most {MAX_PIXELS} pixels)"
        )),
    }
}

fn decode_raw(payload: &[u8]) -> Result<Bgr, String> {
    if payload.len() < 12 {
        return Err(format!(
            "raw RGB payload too short for its header ({} bytes, need 12)",
            payload.len()
        ));
    }
    let width = u32::from_le_bytes([payload[4], payload[5], payload[6], payload[7]]) as usize;
    let height = u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]) as usize;
    check_dims(width, height)?;
    let expected = width * height * 3;
    let pixels = &payload[12..];
    if pixels.len() != expected {
        return Err(format!(
            "raw RGB payload for {width}x{height} needs {expected} pixel bytes, got {}",
            pixels.len()
        ));
    }
    Ok(Bgr::from_rgb(width, height, pixels))
}

fn decode_png(payload: &[u8]) -> Result<Bgr, String> {
    let mut decoder = png::Decoder::new(Cursor::new(payload));
    // Palette to RGB(A), low bit depths to 8 bits (scaled, as Pillow does), 16 bits to their
    // high byte (as Pillow does for RGB; for 16-bit grey rapidocr would feed raw 16-bit values).
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("invalid PNG: {e}"))?;
    let (source_color, width, height) = {
        let info = reader.info();
        (info.color_type, info.width as usize, info.height as usize)
    };
    check_dims(width, height)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "PNG too large to decode".to_string())?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("invalid PNG: {e}"))?;
    let stride = frame.line_size;
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("PNG palette was not expanded".into()),
    };
    let mut packed = Vec::with_capacity(width * height * channels);
    for row in buf.chunks(stride).take(height) {
        packed.extend_from_slice(&row[..width * channels]);
    }
    // Pillow keeps a tRNS colour key of a grey or RGB image out of the pixel array; only a
    // palette's transparency becomes an alpha channel.
    let keep_alpha = matches!(
        source_color,
        png::ColorType::GrayscaleAlpha | png::ColorType::Rgba | png::ColorType::Indexed
    );
    Ok(to_bgr(width, height, channels, &packed, keep_alpha))
}

fn decode_jpeg(payload: &[u8]) -> Result<Bgr, String> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(payload), options);
    decoder
        .decode_headers()
        .map_err(|e| format!("invalid JPEG: {e:?}"))?;
    let info = decoder
        .info()
        .ok_or_else(|| "invalid JPEG: no frame header".to_string())?;
    let (width, height) = (info.width as usize, info.height as usize);
    check_dims(width, height)?;
    let pixels = decoder
        .decode()
        .map_err(|e| format!("invalid JPEG: {e:?}"))?;
    let channels = decoder
        .output_colorspace()
        .map(|c| c.num_components())
        .unwrap_or(3);
    Ok(to_bgr(width, height, channels, &pixels, false))
}

/// Converts decoded pixels to BGR following rapidocr's `LoadImage.convert_img`.
///
/// Grey is replicated. Grey+alpha becomes `(grey where alpha != 0) + (255 - alpha)`,
/// saturating. RGBA becomes B, G, R where alpha != 0 and 0 elsewhere, and then, unless that image
/// is black throughout, is inverted (`255 - v`): that is what rapidocr 1.4.4 does.
fn to_bgr(width: usize, height: usize, channels: usize, px: &[u8], keep_alpha: bool) -> Bgr {
    let n = width * height;
    let mut out = Bgr::new(width, height);
    match (channels, keep_alpha) {
        (1, _) | (2, false) => {
            for i in 0..n {
                let g = px[i * channels];
                out.data[i * 3..i * 3 + 3].copy_from_slice(&[g, g, g]);
            }
        }
        (2, true) => {
            for i in 0..n {
                let (g, a) = (px[i * 2], px[i * 2 + 1]);
                let masked = if a != 0 { g } else { 0 };
                let v = masked.saturating_add(255 - a);
                out.data[i * 3..i * 3 + 3].copy_from_slice(&[v, v, v]);
            }
        }
        (4, true) => {
            let mut sum: u64 = 0;
            for i in 0..n {
                let p = &px[i * 4..i * 4 + 4];
                if p[3] != 0 {
                    out.data[i * 3..i * 3 + 3].copy_from_slice(&[p[2], p[1], p[0]]);
                    sum += p[0] as u64 + p[1] as u64 + p[2] as u64;
                }
            }
            if sum == 0 {
                for i in 0..n {
                    let v = 255 - px[i * 4 + 3];
                    out.data[i * 3..i * 3 + 3].copy_from_slice(&[v, v, v]);
                }
            } else {
                for v in out.data.iter_mut() {
                    *v = 255 - *v;
                }
            }
        }
        _ => {
            for i in 0..n {
                let p = &px[i * channels..i * channels + 3];
                out.data[i * 3..i * 3 + 3].copy_from_slice(&[p[2], p[1], p[0]]);
            }
        }
    }
    out
}

/// One axis of a linear resize: the first source index and the two fixed-point weights
/// (summing to about 2048) of each destination index.
struct Taps {
    index: Vec<i64>,
    w0: Vec<i32>,
    w1: Vec<i32>,
}

/// OpenCV's linear-resize coefficients. Along x, positions left of the first or right of the
/// last source sample are clamped to it (weight 1, 0); along y the weights are kept and only
/// the row indices are clamped.
fn linear_taps(src: usize, dst: usize, clamp_weights: bool) -> Taps {
    let scale = 1.0 / (dst as f64 / src as f64);
    let mut taps = Taps {
        index: Vec::with_capacity(dst),
        w0: Vec::with_capacity(dst),
        w1: Vec::with_capacity(dst),
    };
    for d in 0..dst {
        let pos = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let mut s = pos.floor() as i64;
        let mut f = pos - s as f32;
        if clamp_weights {
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                f = 0.0;
            }
        }
        taps.index.push(s);
        taps.w0
            .push(((1.0f32 - f) * 2048.0f32).round_ties_even() as i32);
        taps.w1.push((f * 2048.0f32).round_ties_even() as i32);
    }
    taps
}

/// `cv2.resize(img, (dst_w, dst_h))` (bilinear, 8-bit) as OpenCV 5 computes it.
pub fn resize_linear(src: &Bgr, dst_w: usize, dst_h: usize) -> Bgr {
    if dst_w == src.width && dst_h == src.height {
        return src.clone();
    }
    let mut out = Bgr::new(dst_w, dst_h);
    if dst_w == 0 || dst_h == 0 || src.width == 0 || src.height == 0 {
        return out;
    }
    let xt = linear_taps(src.width, dst_w, true);
    let yt = linear_taps(src.height, dst_h, false);
    let row_len = dst_w * 3;
    let last_x = src.width - 1;
    let horizontal = |y: usize, row: &mut [i32]| {
        let line = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
        for dx in 0..dst_w {
            let s0 = xt.index[dx] as usize;
            let s1 = (s0 + 1).min(last_x);
            let (a0, a1) = (xt.w0[dx], xt.w1[dx]);
            for c in 0..3 {
                row[dx * 3 + c] = line[s0 * 3 + c] as i32 * a0 + line[s1 * 3 + c] as i32 * a1;
            }
        }
    };
    // Two cached horizontal rows, keyed by source row.
    let mut cache: [(usize, Vec<i32>); 2] = [
        (usize::MAX, vec![0; row_len]),
        (usize::MAX, vec![0; row_len]),
    ];
    let last_y = src.height as i64 - 1;
    for dy in 0..dst_h {
        let sy = yt.index[dy];
        let r0 = sy.clamp(0, last_y) as usize;
        let r1 = (sy + 1).clamp(0, last_y) as usize;
        for r in [r0, r1] {
            if cache[0].0 != r && cache[1].0 != r {
                // Evict the slot not holding the other row we need.
                let slot = if cache[0].0 == r0 || cache[0].0 == r1 {
                    1
                } else {
                    0
                };
                horizontal(r, &mut cache[slot].1);
                cache[slot].0 = r;
            }
        }
        let h0 = if cache[0].0 == r0 {
            &cache[0].1
        } else {
            &cache[1].1
        };
        let h1 = if cache[0].0 == r1 {
            &cache[0].1
        } else {
            &cache[1].1
        };
        let (b0, b1) = (yt.w0[dy], yt.w1[dy]);
        let dst = &mut out.data[dy * row_len..(dy + 1) * row_len];
        // OpenCV's vector path: drop 4 bits, keep the high half of the 16x16-bit product, add the
        // two and round off the last 2 bits.
        for i in 0..row_len {
            let v = (((h0[i] >> 4) * b0) >> 16) + (((h1[i] >> 4) * b1) >> 16);
            dst[i] = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

/// `a * b + c` rounded once to f32, as a fused multiply-add gives it (the product of two f32
/// is exact in f64; what is left is a double rounding in the rare case where the f64 sum lands
/// exactly halfway between two f32 values).
fn fma32(a: f32, b: f32, c: f32) -> f32 {
    (a as f64 * b as f64 + c as f64) as f32
}

/// Bicubic weights (a = -0.75) for a fractional offset `t`, in single precision and in the
/// operation order of OpenCV 5's vectorised kernel.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let t2 = t * t;
    let u = 1.0 - t;
    let w0 = A * (t * (u * u));
    let w3 = A * (t2 * u);
    let w1 = fma32(t2, fma32(A + 2.0, t, -(A + 3.0)), 1.0);
    let w2 = ((1.0 - w0) - w1) - w3;
    [w0, w1, w2, w3]
}

/// `cv2.warpPerspective(src, M, (dst_w, dst_h), flags=INTER_CUBIC,
/// borderMode=BORDER_REPLICATE)` as OpenCV 5 computes it, given `inverse` = M⁻¹ (destination
/// to source, row-major): the matrix in single precision, each row's constant terms in single
/// precision, the per-pixel projection in double rounded to single, source coordinates clamped
/// to [-max(w, 16), 2 max(w, 16)], weights and sums in single precision with fused
/// multiply-adds (rows first), rounded half to even.
pub fn warp_perspective_cubic(src: &Bgr, inverse: &[f64; 9], dst_w: usize, dst_h: usize) -> Bgr {
    let mut out = Bgr::new(dst_w, dst_h);
    if src.width == 0 || src.height == 0 {
        return out;
    }
    let m: Vec<f32> = inverse.iter().map(|v| *v as f32).collect();
    let (w, h) = (src.width as i64, src.height as i64);
    let big_w = src.width.max(16) as f32;
    let big_h = src.height.max(16) as f32;
    let stride = src.width * 3;
    for y in 0..dst_h {
        let yf = y as f32;
        let row_x = (yf * m[1] + m[2]) as f64;
        let row_y = (yf * m[4] + m[5]) as f64;
        let row_w = (yf * m[7] + m[8]) as f64;
        for x in 0..dst_w {
            let xd = x as f64;
            let inv_w = 1.0 / (row_w + m[6] as f64 * xd);
            let sx = ((row_x + m[0] as f64 * xd) * inv_w) as f32;
            let sy = ((row_y + m[3] as f64 * xd) * inv_w) as f32;
            // NaN (a degenerate matrix) ends up at the left/top edge.
            let sx = if sx.is_nan() {
                0.0
            } else {
                sx.clamp(-big_w, 2.0 * big_w)
            };
            let sy = if sy.is_nan() {
                0.0
            } else {
                sy.clamp(-big_h, 2.0 * big_h)
            };
            let (fx, fy) = (sx.floor(), sy.floor());
            let wx = cubic_weights(sx - fx);
            let wy = cubic_weights(sy - fy);
            let (ix, iy) = (fx as i64, fy as i64);
            let cols: [usize; 4] =
                core::array::from_fn(|k| (ix + k as i64 - 1).clamp(0, w - 1) as usize * 3);
            let rows: [usize; 4] =
                core::array::from_fn(|k| (iy + k as i64 - 1).clamp(0, h - 1) as usize * stride);
            let o = (y * dst_w + x) * 3;
            for c in 0..3 {
                let mut acc = 0.0f32;
                for (r, wr) in rows.iter().zip(wy) {
                    let line = &src.data[r + c..];
                    let mut s = line[cols[0]] as f32 * wx[0];
                    s = fma32(line[cols[1]] as f32, wx[1], s);
                    s = fma32(line[cols[2]] as f32, wx[2], s);
                    s = fma32(line[cols[3]] as f32, wx[3], s);
                    acc = fma32(s, wr, acc);
                }
                out.data[o + c] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// `np.rot90(img)`: a quarter turn counter-clockwise.
pub fn rotate90_ccw(src: &Bgr) -> Bgr {
    let mut out = Bgr::new(src.height, src.width);
    for i in 0..src.width {
        for j in 0..src.height {
            let s = (j * src.width + (src.width - 1 - i)) * 3;
            let d = (i * src.height + j) * 3;
            out.data[d..d + 3].copy_from_slice(&src.data[s..s + 3]);
        }
    }
    out
}

/// `cv2.rotate(img, cv2.ROTATE_180)`.
pub fn rotate180(src: &Bgr) -> Bgr {
    let mut out = src.clone();
    let n = src.width * src.height;
    for i in 0..n {
        let s = (n - 1 - i) * 3;
        out.data[i * 3..i * 3 + 3].copy_from_slice(&src.data[s..s + 3]);
    }
    out
}

/// Adds `top` and `bottom` black rows (`cv2.copyMakeBorder` with a constant 0 border).
pub fn pad_vertical(src: &Bgr, top: usize, bottom: usize) -> Bgr {
    let mut out = Bgr::new(src.width, src.height + top + bottom);
    let start = top * src.width * 3;
    out.data[start..start + src.data.len()].copy_from_slice(&src.data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: usize, height: usize, values: &[u8]) -> Bgr {
        let mut img = Bgr::new(width, height);
        for (i, v) in values.iter().enumerate() {
            img.data[i * 3..i * 3 + 3].copy_from_slice(&[*v, *v, *v]);
        }
        img
    }

    fn channel0(img: &Bgr) -> Vec<u8> {
        img.data.iter().step_by(3).copied().collect()
    }

    #[test]
    fn raw_rgb_is_swapped_to_bgr() {
        let mut payload = b"RGB8".to_vec();
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let (img, format) = decode(&payload).unwrap();
        assert_eq!(format, Format::RawRgb);
        assert_eq!((img.width, img.height), (2, 1));
        assert_eq!(img.data, vec![3, 2, 1, 6, 5, 4]);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let err = decode(b"hello").unwrap_err();
        assert!(err.contains("unrecognised payload"), "{err}");
        let mut short = b"RGB8".to_vec();
        short.extend_from_slice(&4u32.to_le_bytes());
        short.extend_from_slice(&4u32.to_le_bytes());
        short.extend_from_slice(&[0; 47]);
        let err = decode(&short).unwrap_err();
        assert!(err.contains("needs 48 pixel bytes, got 47"), "{err}");
        let err = decode(b"RGB8\x00\x00").unwrap_err();
        assert!(err.contains("too short"), "{err}");
        let mut empty = b"RGB8".to_vec();
        empty.extend_from_slice(&[0; 8]);
        assert!(decode(&empty).unwrap_err().contains("empty"));
        let mut huge = b"RGB8".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).unwrap_err().contains("too large"));
        let err = decode(b"\x89PNG\r\n\x1a\nbroken").unwrap_err();
        assert!(err.starts_with("invalid PNG"), "{err}");
        let err = decode(b"\xff\xd8\xff\xe0broken").unwrap_err();
        assert!(err.starts_with("invalid JPEG"), "{err}");
    }

    #[test]
    fn png_round_trip() {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, 2, 2);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120])
                .unwrap();
        }
        let (img, format) = decode(&bytes).unwrap();
        assert_eq!(format, Format::Png);
        assert_eq!(img.pixel(0, 0), [30, 20, 10]);
        assert_eq!(img.pixel(1, 1), [120, 110, 100]);
    }

    #[test]
    fn rgba_follows_rapidocr() {
        // Opaque content: masked by alpha, then inverted.
        let img = to_bgr(2, 1, 4, &[10, 20, 30, 255, 40, 50, 60, 0], true);
        assert_eq!(img.data, vec![225, 235, 245, 255, 255, 255]);
        // Black throughout: 255 - alpha.
        let img = to_bgr(2, 1, 4, &[0, 0, 0, 255, 9, 9, 9, 0], true);
        assert_eq!(img.data, vec![0, 0, 0, 255, 255, 255]);
        // Grey + alpha.
        let img = to_bgr(2, 1, 2, &[100, 255, 100, 55], true);
        assert_eq!(img.data, vec![100, 100, 100, 255, 255, 255]);
    }

    #[test]
    fn resize_identity_and_upscale() {
        let img = gray(2, 1, &[0, 100]);
        assert_eq!(resize_linear(&img, 2, 1), img);
        // 2 -> 4 along x: positions -0.25, 0.25, 0.75, 1.25 -> 0, 25, 75, 100.
        let up = resize_linear(&img, 4, 1);
        assert_eq!(channel0(&up), vec![0, 25, 75, 100]);
        // 2x2 -> 1x1 averages (bit-exact with INTER_AREA's 2x case).
        let img = gray(2, 2, &[0, 10, 20, 31]);
        assert_eq!(channel0(&resize_linear(&img, 1, 1)), vec![15]);
    }

    #[test]
    fn resize_matches_opencv_reference() {
        // cv2.resize(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, (7, 5)) as computed by
        // opencv-python 5.0.0.
        let values: Vec<u8> = (0..12).map(|v| v * 20).collect();
        let img = gray(4, 3, &values);
        let out = resize_linear(&img, 7, 5);
        let expected: Vec<u8> = vec![
            0, 7, 18, 30, 41, 53, 60, //
            32, 39, 50, 62, 73, 85, 92, //
            80, 87, 99, 110, 121, 133, 140, //
            128, 135, 146, 158, 169, 181, 188, //
            160, 167, 178, 190, 201, 213, 220,
        ];
        assert_eq!(channel0(&out), expected);
    }

    #[test]
    fn warp_identity_and_shift() {
        let values: Vec<u8> = (0..20).map(|v| v * 10).collect();
        let img = gray(5, 4, &values);
        let id = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(warp_perspective_cubic(&img, &id, 5, 4), img);
        // Destination (x, y) samples source (x + 1, y + 2); beyond the edge replicates.
        let shift = [1.0, 0.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0];
        let out = warp_perspective_cubic(&img, &shift, 5, 2);
        assert_eq!(
            channel0(&out),
            vec![110, 120, 130, 140, 140, 160, 170, 180, 190, 190]
        );
    }

    #[test]
    fn warp_half_pixel_is_cubic() {
        // Sampling halfway between 0 and 100 with a step edge: cubic weights at 0.5 are
        // (-0.09375, 0.59375, 0.59375, -0.09375) -> 0*(-0.094+0.594) + 100*(0.594-0.094) = 50.
        let img = gray(4, 1, &[0, 0, 100, 100]);
        let half = [1.0, 0.0, 1.5, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(
            channel0(&warp_perspective_cubic(&img, &half, 1, 1)),
            vec![50]
        );
        // A single bright sample: 100 * 0.59375 = 59.375 -> 59 (cv2 gives 59 too).
        let img = gray(4, 1, &[0, 0, 100, 0]);
        assert_eq!(
            channel0(&warp_perspective_cubic(&img, &half, 1, 1)),
            vec![59]
        );
    }

    #[test]
    fn rotations() {
        // 3x2:  a b c / d e f
        let img = gray(3, 2, &[1, 2, 3, 4, 5, 6]);
        // np.rot90: c f / b e / a d
        let r = rotate90_ccw(&img);
        assert_eq!((r.width, r.height), (2, 3));
        assert_eq!(channel0(&r), vec![3, 6, 2, 5, 1, 4]);
        assert_eq!(channel0(&rotate180(&img)), vec![6, 5, 4, 3, 2, 1]);
        let p = pad_vertical(&img, 1, 2);
        assert_eq!(p.height, 5);
        assert_eq!(
            channel0(&p),
            vec![0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0]
        );
    }
}
