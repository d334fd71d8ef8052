//! OCR pipeline plugin: PP-OCR (the models of rapidocr-onnxruntime 1.4.4: PP-OCRv4 detection
//! and recognition, the mobile v2.0 direction classifier) through `wasi:nn`, with rapidocr's
//! pre- and post-processing reimplemented so that the results match it.
//!
//! The algorithm modules ([`image`], [`contours`], [`geometry`], [`det`], [`rec`],
//! [`pipeline`]) do not touch the SDK and are tested natively (`cargo test -p ocr-pipeline`);
//! only the component glue (`plugin`) is built for wasm32.
//!
//! Matching rapidocr means matching the library versions its reference environment pins
//! (`scripts/pyenv.sh`: opencv-python 5.0.0.93, pyclipper 1.4.0, numpy 2.4.6). OpenCV's
//! `resize` (bilinear), `warpPerspective` (bicubic), `findContours`, `convexHull` order,
//! `minAreaRect` and `boxPoints` are reproduced down to their single-precision rounding, and
//! pyclipper's offset (and its output order) too, because rapidocr truncates those float
//! corners to integers: a corner at 371.99994 instead of 372 moves a box by a pixel.
//!
//! Known differences from rapidocr (see README.md):
//! - the DB box score rasterises the box with its own scan conversion, not OpenCV's
//!   `fillPoly`: scores of slanted boxes differ by ~1e-4 (only decisive at `box-thresh`);
//! - JPEG is decoded by zune-jpeg, not libjpeg-turbo: about 0.5 % of the samples differ by one
//!   level, which moved confidences by up to 4e-4 in tests;
//! - palette PNGs are expanded to their colours (rapidocr feeds the palette indices as grey),
//!   16-bit PNGs keep their high byte, and a truncated JPEG decodes as far as it goes;
//! - crops with exactly equal aspect ratios keep their order in the recogniser batches
//!   (rapidocr uses NumPy's unstable argsort), which can change batch padding;
//! - a detector input over [`pipeline::MAX_DET_PIXELS`] (extreme aspect ratios that rapidocr
//!   letterboxes into huge canvases) is refused instead of attempted.

pub mod contours;
pub mod det;
pub mod geometry;
pub mod image;
pub mod pipeline;
pub mod rec;

#[cfg(target_arch = "wasm32")]
mod plugin;
