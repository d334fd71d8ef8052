//! Voice-activity detection: Silero VAD (v6, `silero_vad.onnx`) through `wasi:nn`, speech
//! segments out.
//!
//! Each message carries 16 kHz mono audio, as a WAV file (16-bit PCM) or as raw s16le samples.
//! The audio is cut into 512-sample chunks, each fed to the model with the previous 64 samples
//! of context and the recurrent state from the previous chunk, exactly as silero's Python
//! `OnnxWrapper` does; the per-chunk speech probabilities then go through silero's
//! `get_speech_timestamps` rules. The reply is one message on the output topic:
//!
//! ```json
//! {"sample_rate":16000,"samples":48000,"chunks":94,
//!  "segments":[{"start_sample":4640,"end_sample":15840,"start_ms":290,"end_ms":990}],
//!  "probabilities":[0.0017, ...]}
//! ```
//!
//! (`probabilities` only with `emit-probabilities = "true"`.) Config keys: `model` (default
//! `silero-vad`), `output-topic` (default `vad/segments`), `threshold` (0.5), `neg-threshold`
//! (threshold - 0.15, at least 0.01), `min-speech-ms` (250), `min-silence-ms` (100),
//! `speech-pad-ms` (30), `max-speech-s` (inf), `emit-probabilities` (false).
//!
//! The model's tensors: inputs `input` f32 `[1, 576]`, `state` f32 `[2, 1, 128]`, `sr` i64
//! scalar (16000); outputs `output` f32 `[1, 1]` (the probability) and `stateN` f32
//! `[2, 1, 128]`.

pub mod frames;
pub mod report;
pub mod settings;
pub mod timestamps;
pub mod wav;

use frames::{FRAME, Frames, chunk_count};
use settings::Settings;

/// One step of the model: the speech probability of a frame (the model keeps its own state).
pub trait FrameModel {
    /// Runs the model on one `[1, 576]` frame.
    fn speech_probability(&mut self, frame: &[f32; FRAME]) -> Result<f32, String>;
}

/// Handles one payload: decodes the audio, runs the model over every chunk (opening it with
/// `open` only if there is at least one chunk) and renders the JSON reply.
pub fn process<M: FrameModel>(
    payload: &[u8],
    settings: &Settings,
    open: impl FnOnce() -> Result<M, String>,
) -> Result<String, String> {
    let audio = wav::decode_audio(payload)?;
    let chunks = chunk_count(audio.len());
    let mut probabilities = Vec::with_capacity(chunks);
    if chunks > 0 {
        let mut model = open()?;
        let mut frames = Frames::new(&audio);
        while let Some(frame) = frames.next_frame() {
            let p = model
                .speech_probability(frame)
                .map_err(|e| format!("chunk {} of {chunks}: {e}", probabilities.len()))?;
            probabilities.push(p);
        }
    }
    let segments =
        timestamps::speech_segments(&probabilities, audio.len() as u64, &settings.params);
    Ok(report::to_json(
        audio.len(),
        chunks,
        &segments,
        settings.emit_probabilities.then_some(&probabilities[..]),
    ))
}

#[cfg(target_arch = "wasm32")]
mod glue {
    use super::{FRAME, FrameModel, Settings, process};
    use outpost_sdk::config;
    use outpost_sdk::nn::{Context, Input, Model, NnError, Output, TensorType};
    use outpost_sdk::pipeline::{Guest, Message};
    use std::cell::RefCell;

    /// Elements of silero's recurrent state, `[2, 1, 128]`.
    const STATE_LEN: usize = 2 * 128;

    thread_local! {
        /// The loaded model, by name: loading is the expensive part, so it outlives a message.
        static MODEL: RefCell<Option<(String, Model)>> = const { RefCell::new(None) };
    }

    fn describe(e: NnError) -> String {
        let code = format!("{:?}", e.code);
        let code = code.rsplit("::").next().unwrap_or(&code);
        format!("{code}: {}", e.message)
    }

    /// One context for the whole message, plus the state carried from chunk to chunk.
    struct Silero {
        ctx: Context,
        state: Vec<u8>,
        sr: Input,
    }

    impl Silero {
        fn open(name: &str) -> Result<Silero, String> {
            MODEL.with_borrow_mut(|cached| {
                if cached.as_ref().is_none_or(|(n, _)| n != name) {
                    let model = Model::load(name)
                        .map_err(|e| format!("loading model {name:?}: {}", describe(e)))?;
                    *cached = Some((name.to_string(), model));
                }
                let (_, model) = cached.as_ref().ok_or("model cache empty")?;
                let ctx = model.context().map_err(describe)?;
                Ok(Silero {
                    ctx,
                    state: vec![0; STATE_LEN * 4],
                    sr: Input::i64(&[], &[16_000]),
                })
            })
        }
    }

    fn output<'a>(outputs: &'a [Output], name: &str) -> Result<&'a Output, String> {
        outputs.iter().find(|o| o.name == name).ok_or_else(|| {
            let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
            format!("model returned no {name:?} output (got {names:?})")
        })
    }

    impl FrameModel for Silero {
        fn speech_probability(&mut self, frame: &[f32; FRAME]) -> Result<f32, String> {
            let state = std::mem::take(&mut self.state);
            let outputs = self
                .ctx
                .compute(&[
                    ("input", Input::f32(&[1, FRAME as u32], frame)),
                    ("state", Input::raw(TensorType::Fp32, &[2, 1, 128], state)),
                    ("sr", self.sr.clone()),
                ])
                .map_err(describe)?;
            let probability = output(&outputs, "output")?
                .to_f32()
                .map_err(describe)?
                .first()
                .copied()
                .ok_or("the model's \"output\" tensor is empty")?;
            let state_n = output(&outputs, "stateN")?;
            if state_n.ty != TensorType::Fp32 || state_n.data.len() != STATE_LEN * 4 {
                return Err(format!(
                    "the model's \"stateN\" is {:?} {:?} ({} bytes), expected fp32 [2, 1, 128]",
                    state_n.ty,
                    state_n.dims,
                    state_n.data.len()
                ));
            }
            self.state.clone_from(&state_n.data);
            Ok(probability)
        }
    }

    struct Plugin;

    impl Guest for Plugin {
        fn handle(_topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
            let settings = Settings::from_config(config::get)?;
            let json = process(&payload, &settings, || Silero::open(&settings.model))?;
            Ok(vec![Message {
                topic: settings.output_topic,
                payload: json.into_bytes(),
            }])
        }
    }

    outpost_sdk::export_pipeline!(Plugin);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::{build_wav, pcm_fmt};

    /// A stand-in model: the probability is the mean magnitude of the frame's 512 new samples;
    /// it also checks that each frame's context is the previous frame's tail.
    struct Loudness {
        previous_tail: Vec<f32>,
        calls: usize,
    }

    impl FrameModel for Loudness {
        fn speech_probability(&mut self, frame: &[f32; FRAME]) -> Result<f32, String> {
            assert_eq!(frame[..64], self.previous_tail[..]);
            self.previous_tail = frame[512..].to_vec();
            self.calls += 1;
            Ok(frame[64..].iter().map(|s| s.abs()).sum::<f32>() / 512.0)
        }
    }

    fn loudness() -> Result<Loudness, String> {
        Ok(Loudness {
            previous_tail: vec![0.0; 64],
            calls: 0,
        })
    }

    #[test]
    fn end_to_end_with_a_stand_in_model() {
        // 0.5 s silence, 1 s of a loud square wave, 0.5 s silence: 32000 samples, 63 chunks.
        let mut samples = vec![0i16; 8000];
        samples.extend((0..16000).map(|i| if i % 2 == 0 { 30000 } else { -30000 }));
        samples.extend(vec![0i16; 8000]);
        let wav = build_wav(&pcm_fmt(1, 16000, 16), &[(b"LIST", b"INFO")], &samples);
        let settings =
            Settings::from_config(|key| (key == "emit-probabilities").then(|| "true".to_string()))
                .unwrap();
        let json = process(&wav, &settings, loudness).unwrap();
        // Loud chunks: those overlapping samples 8000..24000, i.e. chunks 15 (7680..8192,
        // partly loud: 192/512 * 0.9155 = 0.34 < 0.5: not speech) to 46 (23552..24064,
        // 448/512 * 0.9155 = 0.80 speech). Speech opens at chunk 16 (8192), closes at chunk
        // 47 (24064) once chunk 51 (26112) is 2048 samples on: [8192, 24064) padded to
        // [7712, 24544).
        assert!(
            json.starts_with(
                "{\"sample_rate\":16000,\"samples\":32000,\"chunks\":63,\"segments\":[\
                 {\"start_sample\":7712,\"end_sample\":24544,\"start_ms\":482,\"end_ms\":1534}],\
                 \"probabilities\":[0,0,"
            ),
            "{json}"
        );
        let raw: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let from_raw = process(&raw, &settings, loudness).unwrap();
        assert_eq!(from_raw, json);
    }

    #[test]
    fn model_is_not_opened_for_empty_audio_and_errors_carry_the_chunk() {
        let settings = Settings::from_config(|_| None).unwrap();
        let json = process(&[], &settings, || -> Result<Loudness, String> {
            Err("must not open".into())
        })
        .unwrap();
        assert_eq!(
            json,
            "{\"sample_rate\":16000,\"samples\":0,\"chunks\":0,\"segments\":[]}"
        );

        struct Failing(usize);
        impl FrameModel for Failing {
            fn speech_probability(&mut self, _: &[f32; FRAME]) -> Result<f32, String> {
                self.0 += 1;
                if self.0 == 3 {
                    Err("RuntimeError: boom".into())
                } else {
                    Ok(0.0)
                }
            }
        }
        let err = process(&[0; 4000], &settings, || Ok(Failing(0))).unwrap_err();
        assert_eq!(err, "chunk 2 of 4: RuntimeError: boom");
        let err = process(b"RIFF\0\0\0\0WAVE", &settings, loudness).unwrap_err();
        assert_eq!(err, "WAV has no fmt chunk");
    }
}
