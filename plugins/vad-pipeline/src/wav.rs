//! Audio payloads: a RIFF/WAVE file holding 16-bit PCM, mono, 16 kHz, or bare s16le samples at
//! 16 kHz when the payload does not start with `RIFF`.
//!
//! The WAV reader walks the chunk list: chunks it does not need (`LIST`, `fact`, `cue `, ...)
//! are skipped, odd-sized chunks have their pad byte honoured, and `fmt ` may come before or
//! after `data`. A `data` size of `0xFFFF_FFFF` (what streaming writers put when the length is
//! unknown) means "to the end of the payload". Anything else malformed is an error that says
//! what is wrong; nothing here panics.

/// The only sample rate the model runs at.
pub const SAMPLE_RATE: u32 = 16_000;

const PCM: u16 = 1;
const EXTENSIBLE: u16 = 0xFFFE;

/// Decodes a payload into samples scaled to [-1, 1) (`s16 / 32768`).
pub fn decode_audio(payload: &[u8]) -> Result<Vec<f32>, String> {
    let pcm = if payload.starts_with(b"RIFF") {
        wav_pcm(payload)?
    } else if payload.starts_with(b"RIFX") || payload.starts_with(b"RF64") {
        return Err(format!(
            "{} WAV files are not supported: send little-endian RIFF/WAVE or raw s16le",
            String::from_utf8_lossy(&payload[..4])
        ));
    } else {
        if !payload.len().is_multiple_of(2) {
            return Err(format!(
                "raw s16le payload has an odd length ({} bytes)",
                payload.len()
            ));
        }
        payload
    };
    Ok(pcm
        .chunks_exact(2)
        .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0)
        .collect())
}

/// The format fields the pipeline checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Format {
    tag: u16,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits: u16,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse_fmt(body: &[u8]) -> Result<Format, String> {
    if body.len() < 16 {
        return Err(format!(
            "WAV fmt chunk is {} bytes, needs at least 16",
            body.len()
        ));
    }
    let mut tag = le16(body, 0);
    if tag == EXTENSIBLE {
        // cbSize, valid bits, channel mask, then a GUID whose first two bytes are the format.
        if body.len() < 40 {
            return Err(format!(
                "WAV fmt chunk is WAVE_FORMAT_EXTENSIBLE but only {} bytes, needs 40",
                body.len()
            ));
        }
        tag = le16(body, 24);
    }
    Ok(Format {
        tag,
        channels: le16(body, 2),
        sample_rate: le32(body, 4),
        block_align: le16(body, 12),
        bits: le16(body, 14),
    })
}

fn check_format(f: &Format) -> Result<(), String> {
    if f.tag != PCM {
        let what = match f.tag {
            3 => " (IEEE float)",
            6 => " (A-law)",
            7 => " (mu-law)",
            0x11 => " (IMA ADPCM)",
            _ => "",
        };
        return Err(format!(
            "WAV format tag {}{what} is not supported: need 16-bit PCM",
            f.tag
        ));
    }
    if f.bits != 16 {
        return Err(format!(
            "WAV has {} bits per sample: need 16-bit PCM",
            f.bits
        ));
    }
    if f.channels != 1 {
        return Err(format!("WAV has {} channels: need mono", f.channels));
    }
    if f.sample_rate != SAMPLE_RATE {
        return Err(format!(
            "WAV sample rate is {} Hz: need {SAMPLE_RATE} Hz",
            f.sample_rate
        ));
    }
    if f.block_align != 2 {
        return Err(format!(
            "WAV block align is {}: 16-bit mono needs 2",
            f.block_align
        ));
    }
    Ok(())
}

/// The `data` chunk's bytes of a WAV file whose format the pipeline accepts.
fn wav_pcm(file: &[u8]) -> Result<&[u8], String> {
    if file.len() < 12 {
        return Err(format!(
            "WAV truncated: {} bytes, the RIFF header alone is 12",
            file.len()
        ));
    }
    if &file[8..12] != b"WAVE" {
        return Err(format!(
            "RIFF file of form {:?}, not WAVE",
            String::from_utf8_lossy(&file[8..12])
        ));
    }
    let mut format = None;
    let mut data = None;
    let mut pos = 12;
    while format.is_none() || data.is_none() {
        let rest = file.len() - pos;
        if rest == 0 {
            break;
        }
        if rest < 8 {
            return Err(format!(
                "WAV truncated: {rest} bytes at offset {pos} cannot hold a chunk header"
            ));
        }
        let id = &file[pos..pos + 4];
        let size = le32(file, pos + 4);
        let body_at = pos + 8;
        let available = file.len() - body_at;
        let len = if id == b"data" && size == u32::MAX {
            available - available % 2
        } else {
            size as usize
        };
        if len > available {
            return Err(format!(
                "WAV truncated: chunk {:?} at offset {pos} declares {len} bytes, {available} present",
                String::from_utf8_lossy(id)
            ));
        }
        let body = &file[body_at..body_at + len];
        match id {
            b"fmt " if format.is_none() => format = Some(parse_fmt(body)?),
            b"data" if data.is_none() => data = Some(body),
            _ => {}
        }
        // Chunks are word-aligned: an odd size is followed by a pad byte (absent at the very end
        // of some files, which is tolerated).
        pos = (body_at + len + len % 2).min(file.len());
    }
    let format = format.ok_or("WAV has no fmt chunk")?;
    check_format(&format)?;
    let data = data.ok_or("WAV has no data chunk")?;
    if !data.len().is_multiple_of(2) {
        return Err(format!(
            "WAV data chunk is {} bytes, not a whole number of 16-bit samples",
            data.len()
        ));
    }
    Ok(data)
}

/// Builds a WAV file (for tests): `extra_chunks` go between `fmt ` and `data`.
#[cfg(test)]
pub(crate) fn build_wav(
    fmt: &[u8],
    extra_chunks: &[(&[u8; 4], &[u8])],
    samples: &[i16],
) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, id: &[u8; 4], body: &[u8]) {
        out.extend_from_slice(id);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(0);
        }
    }
    let mut body = b"WAVE".to_vec();
    chunk(&mut body, b"fmt ", fmt);
    for (id, b) in extra_chunks {
        chunk(&mut body, id, b);
    }
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    chunk(&mut body, b"data", &pcm);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A 16-byte PCM `fmt ` body.
#[cfg(test)]
pub(crate) fn pcm_fmt(channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = channels * bits / 8;
    let mut f = Vec::new();
    f.extend_from_slice(&PCM.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    f.extend_from_slice(&align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: [i16; 5] = [0, 16384, -32768, 32767, -1];
    const SCALED: [f32; 5] = [0.0, 0.5, -1.0, 32767.0 / 32768.0, -1.0 / 32768.0];

    #[test]
    fn plain_wav() {
        let wav = build_wav(&pcm_fmt(1, 16000, 16), &[], &SAMPLES);
        assert_eq!(wav.len(), 44 + 10);
        assert_eq!(decode_audio(&wav).unwrap(), SCALED);
    }

    #[test]
    fn skips_list_and_odd_sized_chunks() {
        let list = b"INFOISFT\x05\0\0\0test\0\0";
        let wav = build_wav(
            &pcm_fmt(1, 16000, 16),
            &[(b"LIST", list), (b"junk", b"abc"), (b"fact", &[4, 0, 0, 0])],
            &SAMPLES,
        );
        assert_eq!(decode_audio(&wav).unwrap(), SCALED);
    }

    #[test]
    fn fmt_after_data_and_extended_fmt() {
        // fmt with cbSize = 0 (18 bytes), placed after data.
        let mut fmt = pcm_fmt(1, 16000, 16);
        fmt.extend_from_slice(&[0, 0]);
        let pcm: Vec<u8> = SAMPLES.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut wav = b"RIFF\0\0\0\0WAVE".to_vec();
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
        wav.extend_from_slice(&pcm);
        wav.extend_from_slice(b"fmt ");
        wav.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        wav.extend_from_slice(&fmt);
        assert_eq!(decode_audio(&wav).unwrap(), SCALED);
    }

    #[test]
    fn wave_format_extensible_pcm() {
        let mut fmt = pcm_fmt(1, 16000, 16);
        fmt[0..2].copy_from_slice(&EXTENSIBLE.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        fmt.extend_from_slice(&16u16.to_le_bytes()); // valid bits
        fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        fmt.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71,
        ]);
        let wav = build_wav(&fmt, &[], &SAMPLES);
        assert_eq!(decode_audio(&wav).unwrap(), SCALED);
        let mut float = fmt.clone();
        float[24] = 3;
        let err = decode_audio(&build_wav(&float, &[], &SAMPLES)).unwrap_err();
        assert_eq!(
            err,
            "WAV format tag 3 (IEEE float) is not supported: need 16-bit PCM"
        );
    }

    #[test]
    fn streaming_data_size() {
        let mut wav = build_wav(&pcm_fmt(1, 16000, 16), &[], &SAMPLES);
        let at = wav.len() - 10 - 4;
        wav[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_audio(&wav).unwrap(), SCALED);
    }

    #[test]
    fn rejects_other_formats() {
        let cases = [
            (pcm_fmt(2, 16000, 16), "WAV has 2 channels: need mono"),
            (
                pcm_fmt(1, 8000, 16),
                "WAV sample rate is 8000 Hz: need 16000 Hz",
            ),
            (
                pcm_fmt(1, 16000, 8),
                "WAV has 8 bits per sample: need 16-bit PCM",
            ),
            (
                pcm_fmt(1, 16000, 24),
                "WAV has 24 bits per sample: need 16-bit PCM",
            ),
        ];
        for (fmt, message) in cases {
            let wav = build_wav(&fmt, &[], &SAMPLES);
            assert_eq!(decode_audio(&wav).unwrap_err(), message);
        }
        let mut float = pcm_fmt(1, 16000, 32);
        float[0] = 3;
        assert!(
            decode_audio(&build_wav(&float, &[], &[0, 0]))
                .unwrap_err()
                .contains("IEEE float")
        );
        assert_eq!(
            decode_audio(b"RIFF\x04\0\0\0AVI ").unwrap_err(),
            "RIFF file of form \"AVI \", not WAVE"
        );
        assert!(
            decode_audio(b"RIFX\0\0\0\0WAVE")
                .unwrap_err()
                .contains("RIFX")
        );
        let no_data = {
            let mut w = b"RIFF\0\0\0\0WAVE".to_vec();
            w.extend_from_slice(b"fmt \x10\0\0\0");
            w.extend_from_slice(&pcm_fmt(1, 16000, 16));
            w
        };
        assert_eq!(decode_audio(&no_data).unwrap_err(), "WAV has no data chunk");
        assert_eq!(
            decode_audio(b"RIFF\0\0\0\0WAVEdata\0\0\0\0").unwrap_err(),
            "WAV has no fmt chunk"
        );
    }

    #[test]
    fn truncated_wav_is_rejected_at_every_length() {
        let wav = build_wav(&pcm_fmt(1, 16000, 16), &[(b"LIST", b"INFOabcd")], &SAMPLES);
        // Every cut inside the headers or the data chunk must fail; none may panic.
        for len in 4..wav.len() {
            let err = decode_audio(&wav[..len]).expect_err("truncated WAV accepted");
            assert!(
                err.contains("truncated") || err.contains("no fmt") || err.contains("no data"),
                "{len}: {err}"
            );
        }
        let cut = &wav[..wav.len() - 3];
        assert_eq!(
            decode_audio(cut).unwrap_err(),
            "WAV truncated: chunk \"data\" at offset 52 declares 10 bytes, 7 present"
        );
    }

    #[test]
    fn odd_data_chunk_rejected() {
        let mut wav = build_wav(&pcm_fmt(1, 16000, 16), &[], &[]);
        // Replace the empty data chunk with a 3-byte one.
        wav.truncate(wav.len() - 8);
        wav.extend_from_slice(b"data\x03\0\0\0\x01\x02\x03\0");
        assert_eq!(
            decode_audio(&wav).unwrap_err(),
            "WAV data chunk is 3 bytes, not a whole number of 16-bit samples"
        );
    }

    #[test]
    fn raw_s16le() {
        let raw: Vec<u8> = SAMPLES.iter().flat_map(|s| s.to_le_bytes()).collect();
        assert_eq!(decode_audio(&raw).unwrap(), SCALED);
        assert_eq!(decode_audio(&[]).unwrap(), Vec::<f32>::new());
        assert_eq!(
            decode_audio(&[1, 2, 3]).unwrap_err(),
            "raw s16le payload has an odd length (3 bytes)"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let wav = build_wav(&pcm_fmt(1, 16000, 16), &[(b"LIST", b"xy")], &SAMPLES);
        for pos in 0..wav.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut c = wav.clone();
                c[pos] = v;
                let _ = decode_audio(&c);
            }
        }
    }
}
