//! The whole OCR pass over one image, independent of how inference runs: decode, rapidocr's
//! global resizing and letterboxing, detection, crops, optional direction classification,
//! recognition, and the result as JSON.

use std::time::Instant;

use crate::det::{
    DetParams, Quad, boxes_from_map, crop_quad, det_input, det_size, filter_boxes, round_to_32,
    sort_boxes,
};
use crate::image::{Bgr, decode, pad_vertical, resize_linear, rotate180};
use crate::rec::{
    CLS_WIDTH, Charset, INPUT_HEIGHT, ctc_decode, order_by_ratio, push_strip, rec_batch_width,
};

/// The three models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Text detection (DB).
    Det,
    /// Text direction (0 or 180 degrees).
    Cls,
    /// Text recognition (CTC).
    Rec,
}

/// Runs a model on one f32 tensor named `x` and returns its first output.
pub trait Engine {
    /// Runs `stage`'s model on the f32 tensor of shape `dims` whose values are `input`, as
    /// little-endian bytes; returns the output's shape and values.
    fn infer(
        &mut self,
        stage: Stage,
        dims: &[usize],
        input: Vec<u8>,
    ) -> Result<(Vec<usize>, Vec<f32>), String>;
}

/// f32 values as little-endian bytes.
pub fn f32_to_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes as f32 values (a trailing partial value is ignored).
pub fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Pipeline settings; the defaults are rapidocr 1.4.4's `config.yaml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Detection settings.
    pub det: DetParams,
    /// Run the direction classifier.
    pub use_cls: bool,
    /// Crops per classifier batch.
    pub cls_batch: usize,
    /// Classifier score above which a "180" crop is turned.
    pub cls_thresh: f32,
    /// Crops per recogniser batch.
    pub rec_batch: usize,
    /// Lines scoring below this are dropped.
    pub text_score: f64,
    /// Images larger than this (longer side) are scaled down first.
    pub max_side_len: usize,
    /// Images smaller than this (shorter side) are scaled up first.
    pub min_side_len: usize,
    /// Images this short or lower are letterboxed.
    pub min_height: usize,
    /// Images wider than this times their height are letterboxed.
    pub width_height_ratio: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            det: DetParams::default(),
            use_cls: false,
            cls_batch: 6,
            cls_thresh: 0.9,
            rec_batch: 6,
            text_score: 0.5,
            max_side_len: 2000,
            min_side_len: 30,
            min_height: 30,
            width_height_ratio: 8.0,
        }
    }
}

/// One recognised line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The text.
    pub text: String,
    /// Mean probability of its characters.
    pub confidence: f64,
    /// Its box in the input image: top-left, top-right, bottom-right, bottom-left.
    pub quad: Quad,
}

/// Milliseconds spent per phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Decoding the payload.
    pub decode: f64,
    /// Resizing, detection inference, post-processing and the crops.
    pub det: f64,
    /// Direction classification (0 when not run).
    pub cls: f64,
    /// Recognition.
    pub rec: f64,
}

/// The result for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct OcrResult {
    /// Input width.
    pub width: usize,
    /// Input height.
    pub height: usize,
    /// Lines, in reading order (rapidocr's).
    pub lines: Vec<Line>,
    /// Time per phase.
    pub timings: Timings,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// rapidocr's global `preprocess`: scale down when the longer side exceeds `max_side_len`, up
/// when the shorter is under `min_side_len`, both sides rounded to multiples of 32. Returns the
/// image and the factors mapping its coordinates back (original / new).
fn global_resize(img: Bgr, p: &Params) -> Result<(Bgr, f32, f32), String> {
    let (mut img, mut rh, mut rw) = (img, 1.0f64, 1.0f64);
    let resize = |img: &Bgr, ratio: f64| -> Result<(Bgr, f64, f64), String> {
        let h = round_to_32((img.height as f64 * ratio) as usize);
        let w = round_to_32((img.width as f64 * ratio) as usize);
        if w == 0 || h == 0 {
            return Err(format!(
                "image {}x{} is too elongated to process (it scales to {w}x{h})",
                img.width, img.height
            ));
        }
        Ok((
            resize_linear(img, w, h),
            img.height as f64 / h as f64,
            img.width as f64 / w as f64,
        ))
    };
    if img.width.max(img.height) > p.max_side_len {
        let ratio = p.max_side_len as f64 / img.width.max(img.height) as f64;
        (img, rh, rw) = resize(&img, ratio)?;
    }
    if img.width.min(img.height) < p.min_side_len {
        let ratio = p.min_side_len as f64 / img.width.min(img.height) as f64;
        (img, rh, rw) = resize(&img, ratio)?;
    }
    Ok((img, rh as f32, rw as f32))
}

/// rapidocr's `maybe_add_letterbox`: very low or very wide images get black bands above and
/// below. Returns the image and the band height.
fn letterbox(img: Bgr, p: &Params) -> (Bgr, usize) {
    let (w, h) = (img.width, img.height);
    let too_wide = p.width_height_ratio > 0.0 && w as f64 / h as f64 > p.width_height_ratio;
    if h > p.min_height && !too_wide {
        return (img, 0);
    }
    let new_h = (((w as f64 / p.width_height_ratio) as usize).max(p.min_height) * 2) as f64;
    let pad = ((new_h - h as f64).abs() / 2.0) as usize;
    (pad_vertical(&img, pad, pad), pad)
}

fn expect_dims(stage: Stage, dims: &[usize], rank: usize, len: usize) -> Result<(), String> {
    let n: usize = dims.iter().product();
    if dims.len() != rank || n != len {
        return Err(format!(
            "{stage:?} model returned a tensor of shape {dims:?} with {len} values; expected rank \
             {rank}"
        ));
    }
    Ok(())
}

/// Largest detector input accepted, in pixels (an ordinary 2000x2000 photo needs about 4 M;
/// only extreme aspect ratios, which rapidocr letterboxes into huge canvases, go beyond).
pub const MAX_DET_PIXELS: usize = 16_000_000;

/// Detection: boxes in `img`'s coordinates, sorted in reading order.
fn detect(img: &Bgr, p: &Params, engine: &mut dyn Engine) -> Result<Vec<Quad>, String> {
    let (dw, dh) = det_size(img.width, img.height, p.det.limit_side_len);
    if dw.saturating_mul(dh) > MAX_DET_PIXELS {
        return Err(format!(
            "image too large or too elongated: detection would run at {dw}x{dh} (at most \
             {MAX_DET_PIXELS} pixels)"
        ));
    }
    let Some((w, h, input)) = det_input(img, p.det.limit_side_len) else {
        return Ok(Vec::new());
    };
    let (dims, pred) = engine.infer(Stage::Det, &[1, 3, h, w], input)?;
    expect_dims(Stage::Det, &dims, 4, pred.len())?;
    if dims[0] < 1 || dims[1] < 1 {
        return Err(format!("Det model returned an empty map {dims:?}"));
    }
    let (mh, mw) = (dims[2], dims[3]);
    // First batch item, first channel.
    let map = &pred[..mh * mw];
    let boxes = boxes_from_map(map, mw, mh, img.width, img.height, &p.det);
    let mut quads = filter_boxes(&boxes, img.width, img.height);
    sort_boxes(&mut quads);
    Ok(quads)
}

/// Direction classification: crops judged upside down (score above the threshold) are turned.
fn classify(crops: &mut [Bgr], p: &Params, engine: &mut dyn Engine) -> Result<(), String> {
    let order = order_by_ratio(crops);
    for batch in order.chunks(p.cls_batch.max(1)) {
        let mut input = Vec::with_capacity(batch.len() * 3 * INPUT_HEIGHT * CLS_WIDTH);
        for &i in batch {
            push_strip(&crops[i], CLS_WIDTH, &mut input);
        }
        let dims = [batch.len(), 3, INPUT_HEIGHT, CLS_WIDTH];
        let (odims, probs) = engine.infer(Stage::Cls, &dims, f32_to_le(&input))?;
        expect_dims(Stage::Cls, &odims, 2, probs.len())?;
        if odims[0] != batch.len() || odims[1] < 2 {
            return Err(format!(
                "Cls model returned shape {odims:?} for a batch of {}",
                batch.len()
            ));
        }
        for (k, &i) in batch.iter().enumerate() {
            let row = &probs[k * odims[1]..(k + 1) * odims[1]];
            let (mut best, mut score) = (0usize, f32::NEG_INFINITY);
            for (j, v) in row.iter().enumerate() {
                if *v > score {
                    best = j;
                    score = *v;
                }
            }
            // Labels ['0', '180'].
            if best == 1 && score > p.cls_thresh {
                crops[i] = rotate180(&crops[i]);
            }
        }
    }
    Ok(())
}

/// Recognition: (text, confidence) per crop.
fn recognise(
    crops: &[Bgr],
    p: &Params,
    charset: &Charset,
    engine: &mut dyn Engine,
) -> Result<Vec<(String, f64)>, String> {
    let mut results = vec![(String::new(), 0.0); crops.len()];
    let order = order_by_ratio(crops);
    for batch in order.chunks(p.rec_batch.max(1)) {
        let members: Vec<&Bgr> = batch.iter().map(|&i| &crops[i]).collect();
        let width = rec_batch_width(&members);
        let mut input = Vec::with_capacity(batch.len() * 3 * INPUT_HEIGHT * width);
        for c in &members {
            push_strip(c, width, &mut input);
        }
        let dims = [batch.len(), 3, INPUT_HEIGHT, width];
        let (odims, probs) = engine.infer(Stage::Rec, &dims, f32_to_le(&input))?;
        expect_dims(Stage::Rec, &odims, 3, probs.len())?;
        let (n, steps, classes) = (odims[0], odims[1], odims[2]);
        if n != batch.len() {
            return Err(format!(
                "Rec model returned {n} results for a batch of {}",
                batch.len()
            ));
        }
        if classes != charset.classes() {
            return Err(format!(
                "Rec model has {classes} classes but the keys give {} (blank + {} characters + \
                 space): wrong keys file?",
                charset.classes(),
                charset.classes() - 2
            ));
        }
        for (k, &i) in batch.iter().enumerate() {
            let m = &probs[k * steps * classes..(k + 1) * steps * classes];
            results[i] = ctc_decode(m, steps, classes, charset)?;
        }
    }
    Ok(results)
}

/// Runs OCR over one payload (PNG, JPEG or raw RGB).
pub fn run(
    payload: &[u8],
    p: &Params,
    charset: &Charset,
    engine: &mut dyn Engine,
) -> Result<OcrResult, String> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let (img, _) = decode(payload)?;
    timings.decode = ms(t);
    let (raw_w, raw_h) = (img.width, img.height);

    let t = Instant::now();
    let (img, ratio_h, ratio_w) = global_resize(img, p)?;
    let (img, pad_top) = letterbox(img, p);
    let quads = detect(&img, p, engine)?;
    let mut crops = Vec::with_capacity(quads.len());
    let mut kept = Vec::with_capacity(quads.len());
    for q in &quads {
        if let Some(c) = crop_quad(&img, q) {
            crops.push(c);
            kept.push(*q);
        }
    }
    timings.det = ms(t);

    if p.use_cls && !crops.is_empty() {
        let t = Instant::now();
        classify(&mut crops, p, engine)?;
        timings.cls = ms(t);
    }

    let t = Instant::now();
    let texts = if crops.is_empty() {
        Vec::new()
    } else {
        recognise(&crops, p, charset, engine)?
    };
    timings.rec = ms(t);

    let mut lines = Vec::new();
    for (q, (text, confidence)) in kept.iter().zip(texts) {
        if confidence < p.text_score {
            continue;
        }
        // Back to the input's coordinates: remove the band, undo the global resize, clip.
        let quad = q.map(|pt| {
            let x = (pt[0] * ratio_w).max(0.0).min(raw_w as f32);
            let y = ((pt[1] - pad_top as f32) * ratio_h)
                .max(0.0)
                .min(raw_h as f32);
            [x, y]
        });
        lines.push(Line {
            text,
            confidence,
            quad,
        });
    }
    Ok(OcrResult {
        width: raw_w,
        height: raw_h,
        lines,
        timings,
    })
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_json_number(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(&format!("{v}"));
    } else {
        out.push_str("null");
    }
}

impl OcrResult {
    /// `{"width", "height", "lines": [{"text", "confidence", "box"}], "timings_ms"}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128 + self.lines.len() * 160);
        out.push_str(&format!(
            "{{\"width\":{},\"height\":{},\"lines\":[",
            self.width, self.height
        ));
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"text\":");
            push_json_string(&mut out, &line.text);
            out.push_str(",\"confidence\":");
            push_json_number(&mut out, line.confidence);
            out.push_str(",\"box\":[");
            for (k, p) in line.quad.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push('[');
                push_json_number(&mut out, p[0] as f64);
                out.push(',');
                push_json_number(&mut out, p[1] as f64);
                out.push(']');
            }
            out.push_str("]}");
        }
        out.push_str("],\"timings_ms\":{\"decode\":");
        push_json_number(&mut out, self.timings.decode);
        out.push_str(",\"det\":");
        push_json_number(&mut out, self.timings.det);
        out.push_str(",\"cls\":");
        push_json_number(&mut out, self.timings.cls);
        out.push_str(",\"rec\":");
        push_json_number(&mut out, self.timings.rec);
        out.push_str("}}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake engine: the detector marks dark pixels as text, the recogniser reads "ab" at
    /// fixed probabilities, the classifier says upright.
    struct Fake {
        calls: Vec<(Stage, Vec<usize>)>,
    }

    impl Engine for Fake {
        fn infer(
            &mut self,
            stage: Stage,
            dims: &[usize],
            input: Vec<u8>,
        ) -> Result<(Vec<usize>, Vec<f32>), String> {
            self.calls.push((stage, dims.to_vec()));
            let input = f32_from_le(&input);
            match stage {
                Stage::Det => {
                    let (h, w) = (dims[2], dims[3]);
                    // Channel B: dark (< 0) is text.
                    let map = input[..h * w]
                        .iter()
                        .map(|v| if *v < 0.0 { 0.9 } else { 0.0 })
                        .collect();
                    Ok((vec![1, 1, h, w], map))
                }
                Stage::Cls => Ok((vec![dims[0], 2], [0.99, 0.01].repeat(dims[0]))),
                Stage::Rec => {
                    // 4 steps x 4 classes: a, a, blank, b.
                    let one = [
                        0.0, 0.9, 0.1, 0.0, //
                        0.0, 0.8, 0.2, 0.0, //
                        1.0, 0.0, 0.0, 0.0, //
                        0.0, 0.3, 0.7, 0.0,
                    ];
                    Ok((vec![dims[0], 4, 4], one.repeat(dims[0])))
                }
            }
        }
    }

    fn raw_payload(w: usize, h: usize, dark: &[(usize, usize, usize, usize)]) -> Vec<u8> {
        let mut payload = b"RGB8".to_vec();
        payload.extend_from_slice(&(w as u32).to_le_bytes());
        payload.extend_from_slice(&(h as u32).to_le_bytes());
        let mut px = vec![255u8; w * h * 3];
        for &(x0, y0, x1, y1) in dark {
            for y in y0..y1 {
                for x in x0..x1 {
                    px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[0, 0, 0]);
                }
            }
        }
        payload.extend_from_slice(&px);
        payload
    }

    #[test]
    fn end_to_end_with_a_fake_engine() {
        let payload = raw_payload(200, 100, &[(20, 20, 180, 40), (20, 60, 120, 80)]);
        let mut engine = Fake { calls: Vec::new() };
        let params = Params {
            use_cls: true,
            ..Params::default()
        };
        let charset = Charset::from_keys("a\nb");
        let result = run(&payload, &params, &charset, &mut engine).unwrap();
        assert_eq!((result.width, result.height), (200, 100));
        assert_eq!(result.lines.len(), 2);
        // Reading order: the upper line first.
        assert!(result.lines[0].quad[0][1] < result.lines[1].quad[0][1]);
        for line in &result.lines {
            assert_eq!(line.text, "ab");
            let expected = (0.9f32 as f64 + 0.7f32 as f64) / 2.0;
            assert!((line.confidence - expected).abs() < 1e-12);
        }
        // The first box surrounds the first bar (grown a little).
        let q = result.lines[0].quad;
        assert!(q[0][0] <= 20.0 && q[0][1] <= 20.0 && q[2][0] >= 179.0 && q[2][1] >= 39.0);
        assert!(q[0][0] >= 5.0 && q[2][0] <= 195.0, "{q:?}");
        // Det ran at 736 on the short side: 100 -> 736, 200 -> 1472.
        assert_eq!(engine.calls[0], (Stage::Det, vec![1, 3, 736, 1472]));
        assert_eq!(engine.calls[1].0, Stage::Cls);
        assert_eq!(engine.calls[1].1[1..], [3, 48, 192]);
        assert_eq!(engine.calls[2].0, Stage::Rec);

        let json = result.to_json();
        assert!(json.starts_with("{\"width\":200,\"height\":100,\"lines\":[{\"text\":\"ab\""));
        assert!(json.contains("\"timings_ms\":{\"decode\":"));
    }

    #[test]
    fn blank_image_has_no_lines() {
        let payload = raw_payload(64, 64, &[]);
        let mut engine = Fake { calls: Vec::new() };
        let result = run(
            &payload,
            &Params::default(),
            &Charset::from_keys("a\nb"),
            &mut engine,
        )
        .unwrap();
        assert!(result.lines.is_empty());
        assert_eq!(engine.calls.len(), 1, "no recogniser call without boxes");
    }

    #[test]
    fn wrong_keys_are_reported() {
        let payload = raw_payload(200, 100, &[(20, 20, 180, 40)]);
        let mut engine = Fake { calls: Vec::new() };
        let err = run(
            &payload,
            &Params::default(),
            &Charset::from_keys("a\nb\nc"),
            &mut engine,
        )
        .unwrap_err();
        assert!(err.contains("wrong keys file"), "{err}");
    }

    #[test]
    fn extreme_aspect_ratios_are_refused() {
        // 1x500: scaled to 15008x32, letterboxed to 15008x3784: far too large to detect on.
        let payload = raw_payload(500, 1, &[]);
        let mut engine = Fake { calls: Vec::new() };
        let err = run(
            &payload,
            &Params::default(),
            &Charset::from_keys("a\nb"),
            &mut engine,
        )
        .unwrap_err();
        assert!(err.contains("too elongated"), "{err}");
        assert!(engine.calls.is_empty());
        // A single pixel is fine (scaled up to 32x32).
        let payload = raw_payload(1, 1, &[]);
        let r = run(
            &payload,
            &Params::default(),
            &Charset::from_keys("a\nb"),
            &mut engine,
        )
        .unwrap();
        assert_eq!((r.width, r.height, r.lines.len()), (1, 1, 0));
    }

    #[test]
    fn letterbox_and_global_resize() {
        let p = Params::default();
        // 400x20: shorter side < 30 -> scaled by 1.5 -> 600x30 -> rounded 608x32.
        let (img, rh, rw) = global_resize(Bgr::new(400, 20), &p).unwrap();
        assert_eq!((img.width, img.height), (608, 32));
        assert_eq!((rh, rw), (20.0 / 32.0, 400.0 / 608.0));
        // Then 608/32 = 19 > 8: bands of (max(76, 30) * 2 - 32) / 2 = 60 rows.
        let (img, pad) = letterbox(img, &p);
        assert_eq!((pad, img.height), (60, 152));
        // Tall images: untouched.
        let (img, pad) = letterbox(Bgr::new(50, 100), &p);
        assert_eq!((pad, img.height), (0, 100));
    }

    #[test]
    fn json_escapes() {
        let r = OcrResult {
            width: 1,
            height: 2,
            lines: vec![Line {
                text: "a\"b\\c\u{1}é".into(),
                confidence: 0.5,
                quad: [[1.0, 2.0], [3.5, 2.0], [3.5, 4.0], [1.0, 4.0]],
            }],
            timings: Timings::default(),
        };
        assert_eq!(
            r.to_json(),
            "{\"width\":1,\"height\":2,\"lines\":[{\"text\":\"a\\\"b\\\\c\\u0001é\",\
             \"confidence\":0.5,\"box\":[[1,2],[3.5,2],[3.5,4],[1,4]]}],\"timings_ms\":\
             {\"decode\":0,\"det\":0,\"cls\":0,\"rec\":0}}"
        );
    }
}
