//! Recognition and direction classification around the CRNN/SVTR models: the normalised,
//! padded input strips and the CTC greedy decoding, as rapidocr 1.4.4 does them
//! (`ch_ppocr_rec`, `ch_ppocr_cls`).

use crate::image::{Bgr, resize_linear};

/// Input height of both the recogniser and the classifier.
pub const INPUT_HEIGHT: usize = 48;
/// Narrowest recogniser input (rapidocr's `rec_img_shape` [3, 48, 320]).
pub const REC_MIN_WIDTH: usize = 320;
/// Classifier input width (`cls_image_shape` [3, 48, 192]).
pub const CLS_WIDTH: usize = 192;

/// The recogniser's output classes: index 0 is the CTC blank, then the model's characters, then
/// a space (rapidocr's `CTCLabelDecode` appends " " and prepends "blank").
#[derive(Clone, Debug, PartialEq)]
pub struct Charset {
    chars: Vec<String>,
}

impl Charset {
    /// From the model's character list (the `character` metadata, one entry per line; lines are
    /// split as Python's `str.splitlines` splits them, as rapidocr does).
    pub fn from_keys(text: &str) -> Charset {
        let mut chars = vec![String::new()];
        chars.extend(splitlines(text));
        chars.push(" ".to_string());
        Charset { chars }
    }

    /// Number of output classes the model must have (blank + characters + space).
    pub fn classes(&self) -> usize {
        self.chars.len()
    }

    /// The text of class `index` (empty for the blank).
    pub fn get(&self, index: usize) -> Option<&str> {
        self.chars.get(index).map(String::as_str)
    }
}

/// Python's `str.splitlines()`: splits on \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028 and
/// U+2029; no empty entry after a final line break.
pub fn splitlines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => lines.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `v / 255` then `(x - 0.5) / 0.5`, in single precision, for every byte value.
fn strip_lut() -> [f32; 256] {
    let mut lut = [0f32; 256];
    for (v, out) in lut.iter_mut().enumerate() {
        *out = (v as f32 / 255.0 - 0.5) / 0.5;
    }
    lut
}

/// `resize_norm_img` of both models: the crop resized to `INPUT_HEIGHT` high and
/// `ceil(48 * w / h)` wide (at most `width`), normalised to [-1, 1] into planes B, G, R of a
/// 3 x 48 x `width` tensor whose padding on the right is 0. Appends to `out`.
pub fn push_strip(img: &Bgr, width: usize, out: &mut Vec<f32>) {
    let ratio = img.width as f64 / img.height as f64;
    let wanted = (INPUT_HEIGHT as f64 * ratio).ceil();
    let resized_w = if wanted > width as f64 {
        width
    } else {
        wanted as usize
    };
    let lut = strip_lut();
    let start = out.len();
    out.resize(start + 3 * INPUT_HEIGHT * width, 0.0);
    if resized_w == 0 {
        return;
    }
    let resized = resize_linear(img, resized_w, INPUT_HEIGHT);
    let plane = INPUT_HEIGHT * width;
    for y in 0..INPUT_HEIGHT {
        for x in 0..resized_w {
            let s = (y * resized_w + x) * 3;
            for c in 0..3 {
                out[start + c * plane + y * width + x] = lut[resized.data[s + c] as usize];
            }
        }
    }
}

/// The recogniser input width for a batch: `int(48 * max(320 / 48, max w/h in the batch))`.
pub fn rec_batch_width(crops: &[&Bgr]) -> usize {
    let mut max_ratio = REC_MIN_WIDTH as f64 / INPUT_HEIGHT as f64;
    for c in crops {
        max_ratio = max_ratio.max(c.width as f64 / c.height as f64);
    }
    (INPUT_HEIGHT as f64 * max_ratio) as usize
}

/// Indices of `crops` ordered by aspect ratio (w/h), as rapidocr batches them (it uses NumPy's
/// default, unstable argsort; ties keep their order here).
pub fn order_by_ratio(crops: &[Bgr]) -> Vec<usize> {
    let ratios: Vec<f64> = crops
        .iter()
        .map(|c| c.width as f64 / c.height as f64)
        .collect();
    let mut idx: Vec<usize> = (0..crops.len()).collect();
    idx.sort_by(|a, b| ratios[*a].total_cmp(&ratios[*b]));
    idx
}

/// NumPy's `np.mean` of float64 values (its pairwise summation, bit for bit).
pub fn np_mean(values: &[f64]) -> f64 {
    fn pairwise(v: &[f64]) -> f64 {
        let n = v.len();
        if n < 8 {
            let mut s = 0.0;
            for x in v {
                s += x;
            }
            s
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&v[..8]);
            let mut i = 8;
            while i < n - (n % 8) {
                for k in 0..8 {
                    r[k] += v[i + k];
                }
                i += 8;
            }
            let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for x in &v[i..] {
                s += x;
            }
            s
        } else {
            let mut half = n / 2;
            half -= half % 8;
            pairwise(&v[..half]) + pairwise(&v[half..])
        }
    }
    if values.is_empty() {
        return f64::NAN;
    }
    pairwise(values) / values.len() as f64
}

/// CTC greedy decoding of one `steps` x `classes` probability matrix: the best class per step,
/// repeats merged, blanks dropped. The confidence is the mean probability of the kept steps
/// (0 when none is kept). Fails on a class the charset does not have.
pub fn ctc_decode(
    probs: &[f32],
    steps: usize,
    classes: usize,
    charset: &Charset,
) -> Result<(String, f64), String> {
    let mut text = String::new();
    let mut confs: Vec<f64> = Vec::new();
    let mut prev: Option<usize> = None;
    for t in 0..steps {
        let row = &probs[t * classes..(t + 1) * classes];
        let (mut best, mut best_p) = (0usize, f32::NEG_INFINITY);
        for (i, p) in row.iter().enumerate() {
            // First maximum wins, as numpy's argmax; NaN counts as the maximum like numpy.
            if *p > best_p || (p.is_nan() && !best_p.is_nan()) {
                best = i;
                best_p = *p;
            }
        }
        let repeat = prev == Some(best);
        prev = Some(best);
        if repeat || best == 0 {
            continue;
        }
        let ch = charset.get(best).ok_or_else(|| {
            format!(
                "recogniser class {best} has no character (the keys list gives {})",
                charset.classes()
            )
        })?;
        text.push_str(ch);
        confs.push(best_p as f64);
    }
    let conf = if confs.is_empty() {
        0.0
    } else {
        np_mean(&confs)
    };
    Ok((text, conf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_mapping() {
        let cs = Charset::from_keys("a\nb\r\nc\u{2028}d\n");
        assert_eq!(cs.classes(), 6);
        assert_eq!(cs.get(0), Some(""));
        assert_eq!(cs.get(1), Some("a"));
        assert_eq!(cs.get(3), Some("c"));
        assert_eq!(cs.get(4), Some("d"));
        assert_eq!(cs.get(5), Some(" "));
        assert_eq!(cs.get(6), None);
        assert_eq!(splitlines("x\n\ny"), vec!["x", "", "y"]);
        assert_eq!(splitlines("'\n\"\n"), vec!["'", "\""]);
    }

    #[test]
    fn ctc_greedy_decode() {
        // classes: blank, a, b, space
        let cs = Charset::from_keys("a\nb");
        let p = |v: [f32; 4]| v;
        let rows = [
            p([0.1, 0.8, 0.05, 0.05]),  // a
            p([0.1, 0.7, 0.1, 0.1]),    // a (repeat, merged)
            p([0.9, 0.05, 0.03, 0.02]), // blank
            p([0.2, 0.6, 0.1, 0.1]),    // a (new after blank)
            p([0.1, 0.1, 0.5, 0.3]),    // b
            p([0.1, 0.1, 0.2, 0.6]),    // space
            p([0.1, 0.1, 0.2, 0.6]),    // space (merged)
        ];
        let probs: Vec<f32> = rows.iter().flatten().copied().collect();
        let (text, conf) = ctc_decode(&probs, rows.len(), 4, &cs).unwrap();
        assert_eq!(text, "aab ");
        let expected = (0.8f32 as f64 + 0.6f32 as f64 + 0.5f32 as f64 + 0.6f32 as f64) / 4.0;
        assert!((conf - expected).abs() < 1e-12, "{conf} vs {expected}");

        // All blank: empty text, confidence 0.
        let (text, conf) = ctc_decode(&[1.0, 0.0, 0.0, 0.0], 1, 4, &cs).unwrap();
        assert_eq!((text.as_str(), conf), ("", 0.0));

        // A class outside the charset is an error, not a panic.
        let cs_small = Charset::from_keys("a");
        assert!(ctc_decode(&[0.0, 0.0, 0.0, 1.0], 1, 4, &cs_small).is_err());
    }

    #[test]
    fn numpy_mean_matches_pairwise() {
        let v: Vec<f64> = (1..=20).map(|i| i as f64 * 0.1).collect();
        assert!((np_mean(&v) - 1.05).abs() < 1e-12);
        assert_eq!(np_mean(&[0.5, 0.25]), 0.375);
        let long: Vec<f64> = (0..300).map(|i| (i % 7) as f64).collect();
        let exact = long.iter().sum::<f64>() / 300.0;
        assert!((np_mean(&long) - exact).abs() < 1e-12);
    }

    #[test]
    fn strips_are_resized_normalised_and_padded() {
        // A 96x48 crop of a single colour: resized to 96 wide (ceil(48 * 2)), padded to 100.
        let mut img = Bgr::new(96, 48);
        for px in img.data.chunks_exact_mut(3) {
            px.copy_from_slice(&[255, 0, 51]);
        }
        let mut out = Vec::new();
        push_strip(&img, 100, &mut out);
        assert_eq!(out.len(), 3 * 48 * 100);
        let plane = 48 * 100;
        assert_eq!(out[0], 1.0);
        assert_eq!(out[plane], -1.0);
        assert!((out[2 * plane] + 0.6).abs() < 1e-6);
        assert_eq!(out[95], 1.0);
        assert_eq!(out[96], 0.0, "padding");
        // Wider than the target: squeezed to the target width, no padding.
        let mut out = Vec::new();
        push_strip(&img, 40, &mut out);
        assert_eq!(out.len(), 3 * 48 * 40);
        assert_eq!(out[39], 1.0);
    }

    #[test]
    fn batch_width_and_order() {
        let a = Bgr::new(100, 50);
        let b = Bgr::new(400, 40);
        let c = Bgr::new(30, 30);
        assert_eq!(rec_batch_width(&[&a, &c]), 320);
        assert_eq!(rec_batch_width(&[&a, &b]), 480);
        assert_eq!(order_by_ratio(&[a, b, c]), vec![2, 0, 1]);
    }
}
