//! Cutting audio into the frames Silero VAD's ONNX model takes at 16 kHz, the way silero's
//! `OnnxWrapper` does it when driven by `get_speech_timestamps`.
//!
//! The audio is split into 512-sample chunks; the last, partial chunk is zero-padded to 512.
//! Each model input is the previous input's last 64 samples (the "context"; zeros before the
//! first chunk) followed by the 512 new ones, 576 samples in all, shaped `[1, 576]`. Since the
//! context is cut from the padded frame, padding zeros would carry into a following frame, but
//! only the final chunk is ever padded.

/// New samples per chunk at 16 kHz.
pub const WINDOW: usize = 512;
/// Samples carried over from the previous frame.
pub const CONTEXT: usize = 64;
/// Samples per model input.
pub const FRAME: usize = CONTEXT + WINDOW;

/// Number of chunks (model calls) for `samples` samples: one per started 512-sample window.
pub fn chunk_count(samples: usize) -> usize {
    samples.div_ceil(WINDOW)
}

/// Iterates the model inputs for `audio`, reusing one buffer.
pub struct Frames<'a> {
    chunks: core::slice::Chunks<'a, f32>,
    buffer: [f32; FRAME],
}

impl<'a> Frames<'a> {
    /// Frames for `audio`, starting with a zero context.
    pub fn new(audio: &'a [f32]) -> Self {
        Frames {
            chunks: audio.chunks(WINDOW),
            buffer: [0.0; FRAME],
        }
    }

    /// The next model input, or `None` after the last chunk.
    pub fn next_frame(&mut self) -> Option<&[f32; FRAME]> {
        let chunk = self.chunks.next()?;
        // The context is the tail of the previous frame (all zeros before the first).
        self.buffer.copy_within(WINDOW.., 0);
        let (_, fresh) = self.buffer.split_at_mut(CONTEXT);
        fresh[..chunk.len()].copy_from_slice(chunk);
        fresh[chunk.len()..].fill(0.0);
        Some(&self.buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(audio: &[f32]) -> Vec<Vec<f32>> {
        let mut frames = Frames::new(audio);
        let mut out = Vec::new();
        while let Some(f) = frames.next_frame() {
            out.push(f.to_vec());
        }
        out
    }

    #[test]
    fn counts() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(512), 1);
        assert_eq!(chunk_count(513), 2);
        assert_eq!(chunk_count(16000), 32);
    }

    #[test]
    fn context_and_padding_follow_silero() {
        // 1200 samples: chunks of 512, 512 and 176 (padded with 336 zeros).
        let audio: Vec<f32> = (1..=1200).map(|i| i as f32).collect();
        let frames = collect(&audio);
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() == FRAME));

        assert!(frames[0][..64].iter().all(|&v| v == 0.0));
        assert_eq!(frames[0][64..], audio[..512]);

        assert_eq!(frames[1][..64], audio[448..512]);
        assert_eq!(frames[1][64..], audio[512..1024]);

        assert_eq!(frames[2][..64], audio[960..1024]);
        assert_eq!(frames[2][64..64 + 176], audio[1024..]);
        assert!(frames[2][64 + 176..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn empty_audio_has_no_frames() {
        assert!(collect(&[]).is_empty());
    }
}
