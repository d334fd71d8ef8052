//! Text detection around the DB (Differentiable Binarization) model: the input tensor, the
//! probability map to boxes, the box filtering and ordering, and the crops, all as rapidocr
//! 1.4.4 does them (`ch_ppocr_det`, `main.py`).

use crate::contours::find_contours;
use crate::geometry::{
    Point, clipper_output_order, fill_convex, invert3, mini_box, offset_round,
    perspective_transform, polygon_area, polygon_perimeter,
};
use crate::image::{Bgr, resize_linear, rotate90_ccw, warp_perspective_cubic};

/// A quadrilateral in image coordinates: top-left, top-right, bottom-right, bottom-left.
pub type Quad = [[f32; 2]; 4];

/// Detection settings (rapidocr's `Det` section).
#[derive(Clone, Debug, PartialEq)]
pub struct DetParams {
    /// The shorter side is scaled up to this (`limit_type: min`).
    pub limit_side_len: u32,
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Mean probability a box needs to be kept.
    pub box_thresh: f64,
    /// How far boxes are grown: area * ratio / perimeter.
    pub unclip_ratio: f64,
    /// Contours looked at, at most.
    pub max_candidates: usize,
    /// Dilate the text mask with a 2x2 kernel first.
    pub use_dilation: bool,
}

impl Default for DetParams {
    fn default() -> Self {
        DetParams {
            limit_side_len: 736,
            thresh: 0.3,
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            max_candidates: 1000,
            use_dilation: true,
        }
    }
}

/// Smallest side a box may have before and (plus 2) after growing.
const MIN_SIZE: f32 = 3.0;

/// Python's `int(round(v / 32) * 32)` (round half to even).
pub fn round_to_32(v: usize) -> usize {
    (v as f64 / 32.0).round_ties_even() as usize * 32
}

/// The size the detector sees: the shorter side scaled up to `limit` (never down), both sides
/// then rounded to a multiple of 32. Either may be 0 for tiny images.
pub fn det_size(width: usize, height: usize, limit: u32) -> (usize, usize) {
    let limit = limit as f64;
    let ratio = if width.min(height) as f64 >= limit {
        1.0
    } else if height < width {
        limit / height as f64
    } else {
        limit / width as f64
    };
    let rh = (height as f64 * ratio) as usize;
    let rw = (width as f64 * ratio) as usize;
    (round_to_32(rw), round_to_32(rh))
}

/// The detector input, NCHW with channels B, G, R, values `(v / 255 - 0.5) / 0.5` computed as
/// rapidocr does (single-precision scale, double-precision mean and std, then single), as
/// little-endian f32 bytes (what `wasi:nn` takes; the input is the largest buffer of the pass,
/// so it is built only once). Returns the resized image's width and height too; `None` if the
/// image would shrink to nothing.
pub fn det_input(img: &Bgr, limit: u32) -> Option<(usize, usize, Vec<u8>)> {
    let (w, h) = det_size(img.width, img.height, limit);
    if w == 0 || h == 0 {
        return None;
    }
    let resized = resize_linear(img, w, h);
    let scale = (1.0f64 / 255.0) as f32;
    let lut: Vec<[u8; 4]> = (0..256)
        .map(|v| (((((v as f32) * scale) as f64 - 0.5) / 0.5) as f32).to_le_bytes())
        .collect();
    let plane = w * h * 4;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in resized.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            let o = c * plane + i * 4;
            out[o..o + 4].copy_from_slice(&lut[px[c] as usize]);
        }
    }
    Some((w, h, out))
}

/// rapidocr's `box_score_fast`: the mean probability inside the box (edges included), over the
/// box's bounding rectangle clipped to the map.
pub fn box_score_fast(pred: &[f32], width: usize, height: usize, quad: &Quad) -> f64 {
    let xs = quad.iter().map(|p| p[0]);
    let ys = quad.iter().map(|p| p[1]);
    let clip = |v: f32, hi: usize| (v as i64).clamp(0, hi as i64 - 1) as usize;
    let xmin = clip(xs.clone().fold(f32::MAX, f32::min).floor(), width);
    let xmax = clip(xs.fold(f32::MIN, f32::max).ceil(), width);
    let ymin = clip(ys.clone().fold(f32::MAX, f32::min).floor(), height);
    let ymax = clip(ys.fold(f32::MIN, f32::max).ceil(), height);
    let local: Vec<[i32; 2]> = quad
        .iter()
        .map(|p| {
            [
                (p[0] as f64 - xmin as f64) as f32 as i32,
                (p[1] as f64 - ymin as f64) as f32 as i32,
            ]
        })
        .collect();
    let (mw, mh) = (xmax - xmin + 1, ymax - ymin + 1);
    let mut sum = 0.0f64;
    let mut count = 0usize;
    for (y, x0, x1) in fill_convex(&local, mw, mh) {
        let row = &pred[(ymin + y) * width + xmin..];
        for v in &row[x0..=x1] {
            sum += *v as f64;
        }
        count += x1 - x0 + 1;
    }
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// Grows a box by `area * ratio / perimeter` (pyclipper with round joins, on the box's
/// corners truncated to integers, as pyclipper converts them) and returns the outline in the
/// order pyclipper returns it.
pub fn unclip(quad: &Quad, ratio: f64) -> Vec<Point> {
    let poly: Vec<Point> = quad.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    let perimeter = polygon_perimeter(&poly);
    if perimeter <= 0.0 {
        return Vec::new();
    }
    let distance = polygon_area(&poly) * ratio / perimeter;
    let path: Vec<[i64; 2]> = quad.iter().map(|p| [p[0] as i64, p[1] as i64]).collect();
    clipper_output_order(offset_round(&path, distance))
        .into_iter()
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect()
}

/// The DB post-processing (`DBPostProcess`): boxes in the coordinates of a `dest_w` x
/// `dest_h` image from a `width` x `height` probability map. In contour order; each box is the
/// grown minimum-area rectangle, corners rounded (half to even) and clipped to the image.
pub fn boxes_from_map(
    pred: &[f32],
    width: usize,
    height: usize,
    dest_w: usize,
    dest_h: usize,
    params: &DetParams,
) -> Vec<[[i32; 2]; 4]> {
    let mut mask: Vec<u8> = pred.iter().map(|p| u8::from(*p > params.thresh)).collect();
    if params.use_dilation {
        // 2x2 kernel anchored at its lower-right cell: each pixel takes the max of itself and
        // its left, upper and upper-left neighbours.
        let src = mask.clone();
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                let mut v = src[i];
                if x > 0 {
                    v |= src[i - 1];
                }
                if y > 0 {
                    v |= src[i - width];
                    if x > 0 {
                        v |= src[i - width - 1];
                    }
                }
                mask[i] = v;
            }
        }
    }
    let contours = find_contours(&mask, width, height);
    let mut boxes = Vec::new();
    for contour in contours.iter().take(params.max_candidates) {
        let pts: Vec<Point> = contour.iter().map(|p| [p.0 as f64, p.1 as f64]).collect();
        let (quad, sside) = mini_box(&pts);
        if sside < MIN_SIZE {
            continue;
        }
        let score = box_score_fast(pred, width, height, &quad);
        if params.box_thresh > score {
            continue;
        }
        let grown = unclip(&quad, params.unclip_ratio);
        if grown.is_empty() {
            continue;
        }
        let (quad, sside) = mini_box(&grown);
        if sside < MIN_SIZE + 2.0 {
            continue;
        }
        let scale = |v: f32, from: usize, to: usize| -> i32 {
            (v / from as f32 * to as f32)
                .round_ties_even()
                .clamp(0.0, to as f32) as i32
        };
        boxes.push(quad.map(|p| [scale(p[0], width, dest_w), scale(p[1], height, dest_h)]));
    }
    boxes
}

/// `filter_tag_det_res`: corners reordered clockwise from the top-left, clipped inside the
/// image, and boxes with a side of 3 pixels or less dropped.
pub fn filter_boxes(boxes: &[[[i32; 2]; 4]], img_w: usize, img_h: usize) -> Vec<Quad> {
    let mut out = Vec::new();
    for b in boxes {
        let mut pts: Vec<[f32; 2]> = b.iter().map(|p| [p[0] as f32, p[1] as f32]).collect();
        pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let (mut left, mut right) = ([pts[0], pts[1]], [pts[2], pts[3]]);
        left.sort_by(|a, b| a[1].total_cmp(&b[1]));
        right.sort_by(|a, b| a[1].total_cmp(&b[1]));
        let mut quad: Quad = [left[0], right[0], right[1], left[1]];
        for p in quad.iter_mut() {
            p[0] = p[0].max(0.0).min(img_w as f32 - 1.0).trunc();
            p[1] = p[1].max(0.0).min(img_h as f32 - 1.0).trunc();
        }
        let w = dist(quad[0], quad[1]) as i64;
        let h = dist(quad[0], quad[3]) as i64;
        if w <= 3 || h <= 3 {
            continue;
        }
        out.push(quad);
    }
    out
}

/// Euclidean distance in single precision (as `np.linalg.norm` on float32 points).
fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    let (dx, dy) = (a[0] - b[0], a[1] - b[1]);
    (dx * dx + dy * dy).sqrt()
}

/// `sorted_boxes`: by the top-left corner's y then x, then boxes whose top-left y differ by less
/// than 10 are put left to right (rapidocr's single bubbling pass).
pub fn sort_boxes(boxes: &mut [Quad]) {
    boxes.sort_by(|a, b| {
        a[0][1]
            .total_cmp(&b[0][1])
            .then(a[0][0].total_cmp(&b[0][0]))
    });
    let n = boxes.len();
    for i in 0..n.saturating_sub(1) {
        for j in (0..=i).rev() {
            if (boxes[j + 1][0][1] - boxes[j][0][1]).abs() < 10.0
                && boxes[j + 1][0][0] < boxes[j][0][0]
            {
                boxes.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
}

/// `get_rotate_crop_image`: the quadrilateral rectified to an upright image (bicubic, edges
/// replicated); turned a quarter counter-clockwise when it comes out at least 1.5 times as
/// tall as wide.
pub fn crop_quad(img: &Bgr, quad: &Quad) -> Option<Bgr> {
    let w = dist(quad[0], quad[1]).max(dist(quad[2], quad[3])) as usize;
    let h = dist(quad[0], quad[3]).max(dist(quad[1], quad[2])) as usize;
    if w == 0 || h == 0 {
        return None;
    }
    let (wf, hf) = (w as f32, h as f32);
    let target = [[0.0, 0.0], [wf, 0.0], [wf, hf], [0.0, hf]];
    let m = perspective_transform(quad, &target)?;
    let inverse = invert3(&m)?;
    let crop = warp_perspective_cubic(img, &inverse, w, h);
    if crop.height as f64 / crop.width as f64 >= 1.5 {
        Some(rotate90_ccw(&crop))
    } else {
        Some(crop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn det_sizes_follow_rapidocr() {
        // 516x88: ratio 736/88 -> 4315.6 -> 4315 -> 134.8 -> 4320.
        assert_eq!(det_size(516, 88, 736), (4320, 736));
        // Already large: only rounded (half to even: 1008 / 32 = 31.5 -> 32; 784 -> 24.5 -> 24).
        assert_eq!(det_size(1008, 784, 736), (1024, 768));
        assert_eq!(round_to_32(16), 0);
        assert_eq!(round_to_32(48), 64);
        assert_eq!(round_to_32(80), 64);
    }

    #[test]
    fn det_input_is_normalised_bgr_planes() {
        let mut img = Bgr::new(32, 32);
        for px in img.data.chunks_exact_mut(3) {
            px.copy_from_slice(&[0, 255, 51]);
        }
        let (w, h, bytes) = det_input(&img, 32).unwrap();
        let t = crate::pipeline::f32_from_le(&bytes);
        assert_eq!((w, h, t.len()), (32, 32, 3 * 32 * 32));
        assert_eq!(t[0], -1.0);
        assert_eq!(t[32 * 32], 1.0);
        assert!((t[2 * 32 * 32] - (-0.6)).abs() < 1e-6);
    }

    /// A probability map with two text-like blobs.
    fn two_blobs() -> (Vec<f32>, usize, usize) {
        let (w, h) = (64, 40);
        let mut pred = vec![0.05f32; w * h];
        for y in 5..13 {
            for x in 4..40 {
                pred[y * w + x] = 0.9;
            }
        }
        for y in 22..34 {
            for x in 10..58 {
                pred[y * w + x] = 0.8;
            }
        }
        (pred, w, h)
    }

    #[test]
    fn db_boxes_from_two_blobs() {
        let (pred, w, h) = two_blobs();
        let params = DetParams::default();
        // Same scale: boxes in map coordinates.
        let boxes = boxes_from_map(&pred, w, h, w, h, &params);
        assert_eq!(boxes.len(), 2);
        // Contours come bottom-up. Lower blob: mask (dilated) x 10..=58, y 22..=34, i.e. a
        // 48x12 rectangle of pixel centres; area 576, perimeter 120, grown by 7.68 (clipper
        // rounds to 8 on the straight sides) -> x 2..66 (clipped to 64), y 14..42 (clipped
        // to 40).
        assert_eq!(boxes[0], [[2, 14], [64, 14], [64, 40], [2, 40]]);
        // Upper blob: x 4..=40, y 5..=13 (36x8): grown by 36*8*1.6/88 = 5.24 -> 5.
        assert_eq!(boxes[1], [[0, 0], [45, 0], [45, 18], [0, 18]]);

        // Scaled to an image twice as large.
        let scaled = boxes_from_map(&pred, w, h, 2 * w, 2 * h, &params);
        assert_eq!(scaled[0], [[4, 28], [128, 28], [128, 80], [4, 80]]);
        assert_eq!(scaled[1], [[0, 0], [90, 0], [90, 36], [0, 36]]);
        // (All of the above is what rapidocr's DBPostProcess returns for this map.)

        // Above the box threshold nothing survives.
        let strict = DetParams {
            box_thresh: 0.95,
            ..params
        };
        assert!(boxes_from_map(&pred, w, h, w, h, &strict).is_empty());
    }

    #[test]
    fn box_score_is_mean_inside() {
        let (pred, w, _) = two_blobs();
        let q: Quad = [[4.0, 5.0], [39.0, 5.0], [39.0, 12.0], [4.0, 12.0]];
        assert!((box_score_fast(&pred, w, 40, &q) - 0.9).abs() < 1e-6);
        let q: Quad = [[0.0, 5.0], [39.0, 5.0], [39.0, 12.0], [0.0, 12.0]];
        let expected = (36.0 * 0.9 + 4.0 * 0.05) / 40.0;
        assert!((box_score_fast(&pred, w, 40, &q) - expected).abs() < 1e-6);
    }

    #[test]
    fn filter_and_sort() {
        let boxes = [
            [[300, 21], [10, 21], [10, 60], [300, 60]],
            [[2, 2], [4, 2], [4, 30], [2, 30]],
            [[320, 15], [400, 15], [400, 60], [320, 60]],
            [[5, 100], [80, 100], [80, 130], [5, 130]],
        ];
        let mut quads = filter_boxes(&boxes, 350, 200);
        assert_eq!(quads.len(), 3, "the 2-pixel-wide box is dropped");
        assert_eq!(
            quads[0],
            [[10.0, 21.0], [300.0, 21.0], [300.0, 60.0], [10.0, 60.0]]
        );
        // Clipped to width - 1.
        assert_eq!(quads[1][1], [349.0, 15.0]);
        sort_boxes(&mut quads);
        // The box at y=15 sorts first by y, then moves right of the one at y=21 (|dy| < 10).
        assert_eq!(quads[0][0], [10.0, 21.0]);
        assert_eq!(quads[1][0], [320.0, 15.0]);
        assert_eq!(quads[2][0], [5.0, 100.0]);
    }

    #[test]
    fn crops_are_rectified_and_tall_ones_turned() {
        let mut img = Bgr::new(40, 30);
        for y in 0..30 {
            for x in 0..40 {
                let v = (x * 6) as u8;
                img.data[(y * 40 + x) * 3..(y * 40 + x) * 3 + 3].copy_from_slice(&[v, v, v]);
            }
        }
        let quad: Quad = [[5.0, 4.0], [25.0, 4.0], [25.0, 14.0], [5.0, 14.0]];
        let crop = crop_quad(&img, &quad).unwrap();
        assert_eq!((crop.width, crop.height), (20, 10));
        assert_eq!(crop.pixel(0, 0), [30, 30, 30]);
        assert_eq!(crop.pixel(19, 9), [144, 144, 144]);
        // 6 wide, 20 tall: rotated to 20 wide, 6 tall; the right edge becomes the top.
        let tall: Quad = [[5.0, 4.0], [11.0, 4.0], [11.0, 24.0], [5.0, 24.0]];
        let crop = crop_quad(&img, &tall).unwrap();
        assert_eq!((crop.width, crop.height), (20, 6));
        assert_eq!(crop.pixel(0, 0), [(10 * 6) as u8; 3]);
        assert_eq!(crop.pixel(0, 5), [30, 30, 30]);
    }
}
