//! The pipeline's configuration keys, parsed and checked.

use crate::timestamps::Params;

/// Everything the manifest's config block can set.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Model name in the host's registry (`model`, default `silero-vad`).
    pub model: String,
    /// Where the result goes (`output-topic`, default `vad/segments`).
    pub output_topic: String,
    /// Segment rules (`threshold`, `neg-threshold`, `min-speech-ms`, `min-silence-ms`,
    /// `speech-pad-ms`, `max-speech-s`).
    pub params: Params,
    /// Whether the reply lists every chunk's probability (`emit-probabilities = "true"`).
    pub emit_probabilities: bool,
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: f64,
    valid: impl Fn(f64) -> bool,
    rule: &str,
) -> Result<f64, String> {
    match get(key) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<f64>() {
            Ok(v) if valid(v) => Ok(v),
            _ => Err(format!("config {key} = {text:?}: expected {rule}")),
        },
    }
}

impl Settings {
    /// Reads the settings through `get` (the host's config lookup, or a map in tests).
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let defaults = Params::default();
        let probability = |v: f64| (0.0..=1.0).contains(&v);
        let duration = |v: f64| v.is_finite() && v >= 0.0;
        let threshold = number(
            &get,
            "threshold",
            defaults.threshold,
            probability,
            "a number in [0, 1]",
        )?;
        let neg_threshold = match get("neg-threshold") {
            None => None,
            Some(_) => Some(number(
                &get,
                "neg-threshold",
                0.0,
                probability,
                "a number in [0, 1]",
            )?),
        };
        let ms = "a finite number of milliseconds >= 0";
        let params = Params {
            threshold,
            neg_threshold,
            min_speech_ms: number(&get, "min-speech-ms", defaults.min_speech_ms, duration, ms)?,
            min_silence_ms: number(
                &get,
                "min-silence-ms",
                defaults.min_silence_ms,
                duration,
                ms,
            )?,
            speech_pad_ms: number(&get, "speech-pad-ms", defaults.speech_pad_ms, duration, ms)?,
            max_speech_s: number(
                &get,
                "max-speech-s",
                defaults.max_speech_s,
                |v| v > 0.0,
                "a number of seconds > 0 (inf for no limit)",
            )?,
            ..defaults
        };
        let emit_probabilities = match get("emit-probabilities").as_deref().map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "config emit-probabilities = {other:?}: expected \"true\" or \"false\""
                ));
            }
        };
        Ok(Settings {
            model: get("model").unwrap_or_else(|| "silero-vad".into()),
            output_topic: get("output-topic").unwrap_or_else(|| "vad/segments".into()),
            params,
            emit_probabilities,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_config(move |key| {
            pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        let s = from(&[]).unwrap();
        assert_eq!(s.model, "silero-vad");
        assert_eq!(s.output_topic, "vad/segments");
        assert_eq!(s.params, Params::default());
        assert!(!s.emit_probabilities);
    }

    #[test]
    fn overrides() {
        let s = from(&[
            ("model", "vad2"),
            ("output-topic", "out"),
            ("threshold", "0.6"),
            ("neg-threshold", "0.3"),
            ("min-speech-ms", "100"),
            ("min-silence-ms", "250.5"),
            ("speech-pad-ms", "0"),
            ("max-speech-s", "inf"),
            ("emit-probabilities", "true"),
        ])
        .unwrap();
        assert_eq!(s.model, "vad2");
        assert_eq!(s.output_topic, "out");
        assert_eq!(s.params.threshold, 0.6);
        assert_eq!(s.params.neg_threshold, Some(0.3));
        assert_eq!(s.params.min_speech_ms, 100.0);
        assert_eq!(s.params.min_silence_ms, 250.5);
        assert_eq!(s.params.speech_pad_ms, 0.0);
        assert_eq!(s.params.max_speech_s, f64::INFINITY);
        assert!(s.emit_probabilities);
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            from(&[("threshold", "1.5")]).unwrap_err(),
            "config threshold = \"1.5\": expected a number in [0, 1]"
        );
        assert_eq!(
            from(&[("min-silence-ms", "-3")]).unwrap_err(),
            "config min-silence-ms = \"-3\": expected a finite number of milliseconds >= 0"
        );
        assert!(from(&[("speech-pad-ms", "NaN")]).is_err());
        assert!(from(&[("max-speech-s", "0")]).is_err());
        assert_eq!(
            from(&[("emit-probabilities", "yes")]).unwrap_err(),
            "config emit-probabilities = \"yes\": expected \"true\" or \"false\""
        );
    }
}
