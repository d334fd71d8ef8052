//! The reply: a small JSON document, written by hand (the guest carries no JSON library).

use crate::timestamps::Segment;
use crate::wav::SAMPLE_RATE;
use core::fmt::Write as _;

/// Renders the result. Times in ms are exact (`sample / 16`, at most four decimals). A
/// probability is written as its exact value widened to `f64` (shortest form that reads back
/// as the same double), so a reader parsing doubles gets precisely the model's `f32`; `null`
/// if the model produced a NaN or infinity.
pub fn to_json(
    samples: usize,
    chunks: usize,
    segments: &[Segment],
    probabilities: Option<&[f32]>,
) -> String {
    let mut out = String::with_capacity(96 + 64 * segments.len() + 12 * chunks);
    let per_ms = f64::from(SAMPLE_RATE) / 1000.0;
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{{\"sample_rate\":{SAMPLE_RATE},\"samples\":{samples},\"chunks\":{chunks},\"segments\":["
    );
    for (i, s) in segments.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"start_sample\":{},\"end_sample\":{},\"start_ms\":{},\"end_ms\":{}}}",
            if i == 0 { "" } else { "," },
            s.start,
            s.end,
            s.start as f64 / per_ms,
            s.end as f64 / per_ms,
        );
    }
    out.push(']');
    if let Some(probs) = probabilities {
        out.push_str(",\"probabilities\":[");
        for (i, p) in probs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if p.is_finite() {
                let _ = write!(out, "{}", f64::from(*p));
            } else {
                out.push_str("null");
            }
        }
        out.push(']');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_segments_and_probabilities() {
        let json = to_json(
            20000,
            40,
            &[
                Segment {
                    start: 4640,
                    end: 15841,
                },
                Segment {
                    start: 16000,
                    end: 20000,
                },
            ],
            Some(&[0.25, 0.001_669_79, f32::NAN]),
        );
        assert_eq!(
            json,
            "{\"sample_rate\":16000,\"samples\":20000,\"chunks\":40,\"segments\":[\
             {\"start_sample\":4640,\"end_sample\":15841,\"start_ms\":290,\"end_ms\":990.0625},\
             {\"start_sample\":16000,\"end_sample\":20000,\"start_ms\":1000,\"end_ms\":1250}],\
             \"probabilities\":[0.25,0.001669790013693273,null]}"
        );
        assert_eq!(
            to_json(0, 0, &[], None),
            "{\"sample_rate\":16000,\"samples\":0,\"chunks\":0,\"segments\":[]}"
        );
    }
}
