//! Speech segments from per-chunk speech probabilities: a port of the decision rules of
//! silero-vad's `get_speech_timestamps` (silero-vad 6.2.3, `utils_vad.py`) for 16 kHz audio
//! and 512-sample chunks, returning sample positions.
//!
//! The rules, for chunk `i` starting at sample `512 * i` with probability `p`:
//!
//! - Speech opens at the first chunk with `p >= threshold`.
//! - While in speech, a chunk with `p < neg_threshold` (default `max(threshold - 0.15, 0.01)`)
//!   marks a tentative end (the first such chunk's start). The segment closes there once a
//!   later low chunk lies at least `min_silence` samples after the tentative end; it is kept
//!   only if longer than `min_speech` samples. A chunk with `p >= threshold` before that
//!   cancels the tentative end (chunks in between leave it alone).
//! - Segments longer than `max_speech` are split, preferring the longest silence seen inside
//!   them (`use_max_poss_sil_at_max_speech`, silero's default), else the last one, else cut
//!   hard.
//! - Speech still open at the end runs to the end of the audio, if longer than `min_speech`.
//! - Finally each segment is widened by `speech_pad` on each side, clamped to the audio; when
//!   the gap between two segments is under twice the pad they split it, each taking half.
//!
//! Silero mixes integer sample positions with float thresholds (`16000 * ms / 1000`); this port
//! keeps positions as integers and the thresholds as `f64`, compared the same way, so that
//! fractional settings round exactly as they do in Python. A tentative end, `prev_end` and
//! `next_start` of 0 mean "unset", as in the original.

/// Samples per second.
const SAMPLE_RATE: f64 = 16_000.0;
/// Samples per chunk.
const WINDOW: i64 = 512;

/// Tuning knobs, named and defaulted as in `get_speech_timestamps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Probability at or above which a chunk is speech.
    pub threshold: f64,
    /// Probability below which a chunk ends speech; `None` for `max(threshold - 0.15, 0.01)`.
    pub neg_threshold: Option<f64>,
    /// Segments must be longer than this to be kept.
    pub min_speech_ms: f64,
    /// Silence must last this long to end a segment.
    pub min_silence_ms: f64,
    /// Padding added on each side of a segment.
    pub speech_pad_ms: f64,
    /// Segments longer than this are split (infinite by default).
    pub max_speech_s: f64,
    /// A silence inside speech counts as a split point at max length only if longer than this.
    pub min_silence_at_max_speech_ms: f64,
    /// Split over-long speech at its longest silence (true) or its last one (false).
    pub use_max_poss_sil_at_max_speech: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250.0,
            min_silence_ms: 100.0,
            speech_pad_ms: 30.0,
            max_speech_s: f64::INFINITY,
            min_silence_at_max_speech_ms: 98.0,
            use_max_poss_sil_at_max_speech: true,
        }
    }
}

impl Params {
    /// The exit threshold actually used.
    pub fn effective_neg_threshold(&self) -> f64 {
        self.neg_threshold
            .unwrap_or_else(|| (self.threshold - 0.15).max(0.01))
    }
}

/// A speech segment in samples: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First sample of speech.
    pub start: u64,
    /// One past the last sample of speech.
    pub end: u64,
}

fn ms_to_samples(ms: f64) -> f64 {
    SAMPLE_RATE * ms / 1000.0
}

/// Python's `int(x)` on a non-negative float.
fn truncate(x: f64) -> i64 {
    x as i64
}

/// Segments for `probs` (one per 512-sample chunk) over audio of `audio_samples` samples.
pub fn speech_segments(probs: &[f32], audio_samples: u64, params: &Params) -> Vec<Segment> {
    let audio_len = audio_samples as i64;
    let threshold = params.threshold;
    let neg_threshold = params.effective_neg_threshold();
    let min_speech = ms_to_samples(params.min_speech_ms);
    let pad = ms_to_samples(params.speech_pad_ms);
    let max_speech = SAMPLE_RATE * params.max_speech_s - WINDOW as f64 - 2.0 * pad;
    let min_silence = ms_to_samples(params.min_silence_ms);
    let min_silence_at_max = ms_to_samples(params.min_silence_at_max_speech_ms);

    // (start, end) pairs before padding.
    let mut found: Vec<(i64, i64)> = Vec::new();
    // The open segment's start; `Some` exactly while silero's `triggered` is true.
    let mut open: Option<i64> = None;
    let mut temp_end: i64 = 0;
    let mut prev_end: i64 = 0;
    let mut next_start: i64 = 0;
    // Silences inside the open segment long enough to split at: (start, length).
    let mut silences: Vec<(i64, i64)> = Vec::new();

    for (i, &p) in probs.iter().enumerate() {
        let p = f64::from(p);
        let here = WINDOW * i as i64;
        let loud = p >= threshold;

        if loud && temp_end != 0 {
            // Speech is back before the tentative end became final.
            let gap = here - temp_end;
            if gap as f64 > min_silence_at_max {
                silences.push((temp_end, gap));
            }
            temp_end = 0;
            if next_start < prev_end {
                next_start = here;
            }
        }

        let Some(start) = open else {
            if loud {
                open = Some(here);
            }
            continue;
        };

        if (here - start) as f64 > max_speech {
            let longest = silences
                .iter()
                .fold(None, |best: Option<(i64, i64)>, &s| match best {
                    Some(b) if b.1 >= s.1 => Some(b),
                    _ => Some(s),
                });
            match longest {
                Some((cut, length)) if params.use_max_poss_sil_at_max_speech => {
                    found.push((start, cut));
                    next_start = cut + length;
                    // Silero compares against `prev_end + cur_sample`: reproduced as written.
                    open = if next_start < cut + here {
                        Some(next_start)
                    } else {
                        None
                    };
                    prev_end = 0;
                    next_start = 0;
                    temp_end = 0;
                    silences.clear();
                }
                _ if prev_end != 0 => {
                    found.push((start, prev_end));
                    open = if next_start < prev_end {
                        None
                    } else {
                        Some(next_start)
                    };
                    prev_end = 0;
                    next_start = 0;
                    temp_end = 0;
                    silences.clear();
                }
                _ => {
                    found.push((start, here));
                    open = None;
                    prev_end = 0;
                    next_start = 0;
                    temp_end = 0;
                    silences.clear();
                    continue;
                }
            }
        }

        let Some(start) = open else { continue };
        if p < neg_threshold {
            if temp_end == 0 {
                temp_end = here;
            }
            let silent_for = here - temp_end;
            if !params.use_max_poss_sil_at_max_speech && silent_for as f64 > min_silence_at_max {
                prev_end = temp_end;
            }
            if (silent_for as f64) >= min_silence {
                if (temp_end - start) as f64 > min_speech {
                    found.push((start, temp_end));
                }
                open = None;
                prev_end = 0;
                next_start = 0;
                temp_end = 0;
                silences.clear();
            }
        }
    }

    if let Some(start) = open
        && (audio_len - start) as f64 > min_speech
    {
        found.push((start, audio_len));
    }

    pad_segments(&mut found, pad, audio_len);
    found
        .into_iter()
        .map(|(start, end)| Segment {
            start: start.max(0) as u64,
            end: end.max(0) as u64,
        })
        .collect()
}

/// Widens segments by `pad` samples per side, sharing short gaps, as silero's final loop does
/// (including its order of updates: a segment's start is settled by its predecessor).
fn pad_segments(segments: &mut [(i64, i64)], pad: f64, audio_len: i64) {
    let n = segments.len();
    for i in 0..n {
        if i == 0 {
            segments[0].0 = truncate((segments[0].0 as f64 - pad).max(0.0));
        }
        let end_padded = truncate((segments[i].1 as f64 + pad).min(audio_len as f64));
        if i + 1 == n {
            segments[i].1 = end_padded;
            break;
        }
        let gap = segments[i + 1].0 - segments[i].1;
        if (gap as f64) < 2.0 * pad {
            let half = gap.div_euclid(2);
            segments[i].1 += half;
            segments[i + 1].0 = (segments[i + 1].0 - half).max(0);
        } else {
            segments[i].1 = end_padded;
            segments[i + 1].0 = truncate((segments[i + 1].0 as f64 - pad).max(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: u64, end: u64) -> Segment {
        Segment { start, end }
    }

    /// `n` chunks of probability `p`.
    fn run(parts: &[(usize, f32)]) -> Vec<f32> {
        parts
            .iter()
            .flat_map(|&(n, p)| std::iter::repeat_n(p, n))
            .collect()
    }

    #[test]
    fn defaults_match_silero() {
        let p = Params::default();
        assert_eq!(p.threshold, 0.5);
        // 0.5 - 0.15 in f64 is 0.35000000000000003, exactly as Python computes it.
        assert_eq!(p.effective_neg_threshold(), 0.5 - 0.15);
        assert_eq!(
            Params {
                threshold: 0.1,
                ..Params::default()
            }
            .effective_neg_threshold(),
            0.01
        );
    }

    #[test]
    fn one_segment_closed_by_silence() {
        // Chunks 0-9 silent, 10-29 speech, 30-49 silent; 50 chunks = 25600 samples.
        // Speech opens at 5120. Tentative end at chunk 30 (15360); the first chunk at least
        // 1600 samples (100 ms) later is chunk 34 (17408 - 15360 = 2048 >= 1600): the segment
        // [5120, 15360) closes, 10240 samples > 4000, kept. Padding 480: [4640, 15840).
        let probs = run(&[(10, 0.1), (20, 0.9), (20, 0.1)]);
        let segs = speech_segments(&probs, 25600, &Params::default());
        assert_eq!(segs, vec![seg(4640, 15840)]);
    }

    #[test]
    fn short_speech_dropped_and_open_speech_runs_to_the_end() {
        // Chunks 0-6 speech (3584 samples, not > 4000: dropped once chunk 11 closes it); speech
        // again from chunk 18 (9216) to the end at 12800: 3584 samples, dropped as well.
        let probs = run(&[(7, 0.8), (11, 0.0), (7, 0.8)]);
        assert_eq!(speech_segments(&probs, 12800, &Params::default()), vec![]);
        // One chunk earlier (8704) the open speech lasts 4096 > 4000 samples: kept.
        let probs = run(&[(7, 0.8), (10, 0.0), (8, 0.8)]);
        assert_eq!(
            speech_segments(&probs, 12800, &Params::default()),
            vec![seg(8224, 12800)]
        );

        // Open speech from chunk 2 (1024) to the end at 6000 samples (not a chunk multiple):
        // 4976 > 4000, kept as [1024, 6000), padded to [544, 6000) (end clamped).
        let probs = run(&[(2, 0.2), (10, 0.7)]);
        assert_eq!(
            speech_segments(&probs, 6000, &Params::default()),
            vec![seg(544, 6000)]
        );
    }

    #[test]
    fn hysteresis_between_thresholds() {
        // 0.4 is between neg (0.35) and threshold (0.5): it neither opens nor closes speech.
        let probs = run(&[(3, 0.4), (10, 0.6), (20, 0.4), (10, 0.2)]);
        // Opens at chunk 3 (1536); 0.4 keeps it open; 0.2 from chunk 33 (16896) sets the
        // tentative end; chunk 37 (18944): 2048 >= 1600 closes [1536, 16896).
        // 43 chunks = 22016 samples. Padded: [1056, 17376).
        assert_eq!(
            speech_segments(&probs, 22016, &Params::default()),
            vec![seg(1056, 17376)]
        );
    }

    #[test]
    fn brief_dip_is_bridged_and_cancelled() {
        // Speech 0-9, 2 chunks of silence (1024 < 1600 samples), speech 12-29, silence.
        // Tentative end 5120 is cancelled at chunk 12. Close at chunk 34 from 15360.
        let probs = run(&[(10, 0.9), (2, 0.1), (18, 0.9), (10, 0.05)]);
        assert_eq!(
            speech_segments(&probs, 20480, &Params::default()),
            vec![seg(0, 15840)]
        );
    }

    #[test]
    fn close_segments_share_the_gap() {
        // A 4-chunk dip (chunks 10-13): at chunk 13 the silence is 1536 < 1600 samples, and
        // speech at chunk 14 cancels the tentative end: one segment. It closes at chunk 28
        // (2048 samples after the tentative end 12288): [0, 12288), padded end 12768.
        let bridged = run(&[(10, 0.9), (4, 0.1), (10, 0.9), (10, 0.1)]);
        assert_eq!(
            speech_segments(&bridged, 17408, &Params::default()),
            vec![seg(0, 12768)]
        );
        // A 5-chunk dip: chunk 14 (7168) is 2048 >= 1600 after 5120, closing [0, 5120).
        // Speech reopens at chunk 15 (7680) and closes at chunk 29: [7680, 12800).
        // The gap, 2560, is at least twice the pad: A ends at 5600, B spans [7200, 13280).
        let split = run(&[(10, 0.9), (5, 0.1), (10, 0.9), (10, 0.1)]);
        assert_eq!(
            speech_segments(&split, 17920, &Params::default()),
            vec![seg(0, 5600), seg(7200, 13280)]
        );
        // With a 100 ms pad (1600 samples) the gap is under 3200: each side takes 1280.
        let wide = Params {
            speech_pad_ms: 100.0,
            ..Params::default()
        };
        assert_eq!(
            speech_segments(&split, 17920, &wide),
            vec![seg(0, 6400), seg(6400, 14400)]
        );
    }

    #[test]
    fn max_speech_splits_at_the_longest_silence() {
        // max 1 s: segments may last 16000 - 512 - 2 * 480 = 14528 samples. A 200 ms minimum
        // silence keeps the dips below from closing speech on their own.
        let params = Params {
            max_speech_s: 1.0,
            min_silence_ms: 200.0,
            ..Params::default()
        };
        // Speech 0-9, dip 10-13, speech 14-39. The dip (tentative end 5120, speech back at
        // 7168: 2048 > 1568 samples) is a split candidate. At chunk 29 (14848 > 14528) the
        // segment is cut there: [0, 5120), and since 7168 < 5120 + 14848 speech reopens at
        // 7168 and runs to the end (20480; 13312 samples, under the limit again).
        // Padding: the gap 2048 is >= 960, so [0, 5600) and [6688, 20480).
        let probs = run(&[(10, 0.9), (4, 0.1), (26, 0.9)]);
        assert_eq!(
            speech_segments(&probs, 20480, &params),
            vec![seg(0, 5600), seg(6688, 20480)]
        );
        // No silence at all: a hard cut at chunk 29, [0, 14848); speech reopens at chunk 30
        // (15360) and runs to the end. The gap 512 < 960 is split 256 / 256.
        let solid = run(&[(40, 0.9)]);
        assert_eq!(
            speech_segments(&solid, 20480, &params),
            vec![seg(0, 15104), seg(15104, 20480)]
        );
    }

    #[test]
    fn fractional_settings_truncate_like_python() {
        // pad 10.03 ms = 160.48 samples: start 5120 - 160.48 = 4959.52 -> 4959; end
        // 15360 + 160.48 = 15520.48 -> 15520.
        let params = Params {
            speech_pad_ms: 10.03,
            ..Params::default()
        };
        let probs = run(&[(10, 0.1), (20, 0.9), (20, 0.1)]);
        assert_eq!(
            speech_segments(&probs, 25600, &params),
            vec![seg(4959, 15520)]
        );
    }

    #[test]
    fn threshold_is_inclusive_and_neg_threshold_exclusive() {
        // p == threshold is speech.
        let probs = run(&[(10, 0.5), (10, 0.0)]);
        assert_eq!(
            speech_segments(&probs, 10240, &Params::default()),
            vec![seg(0, 5600)]
        );
        // 0.35f32 (0.3499999940...) is below 0.5 - 0.15 (0.3500000000000000055...): it ends
        // speech; 0.35000002f32 does not.
        let closing = run(&[(10, 0.9), (10, 0.35)]);
        assert_eq!(
            speech_segments(&closing, 10240, &Params::default()),
            vec![seg(0, 5600)]
        );
        let holding = run(&[(10, 0.9), (10, 0.350_000_02)]);
        assert_eq!(
            speech_segments(&holding, 10240, &Params::default()),
            vec![seg(0, 10240)]
        );
        assert_eq!(speech_segments(&[], 0, &Params::default()), vec![]);
    }
}
