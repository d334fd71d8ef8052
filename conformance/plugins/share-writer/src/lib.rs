//! Drives the `shares` interface from messages, so tests can ask a real plugin to touch shares:
//!
//! - topic `write`, payload `share\npath\ndata…`: writes `data` and replies `ok`;
//! - topic `read`, payload `share\npath`: replies with the file's bytes;
//! - topic `list`, payload `share\nprefix`: replies with the paths, one per line.
//!
//! A refusal is returned as the call's error, naming the variant and the host's message.

use outpost_sdk::pipeline::{Guest, Message};
use outpost_sdk::{ShareError, shares};

struct ShareWriter;

fn reply(payload: Vec<u8>) -> Result<Vec<Message>, String> {
    Ok(vec![Message {
        topic: "reply".into(),
        payload,
    }])
}

fn describe(e: ShareError) -> String {
    match e {
        ShareError::Denied(m) => format!("denied: {m}"),
        ShareError::BadPath(m) => format!("bad-path: {m}"),
        ShareError::NotFound(m) => format!("not-found: {m}"),
        ShareError::TooLarge(n) => format!("too-large: {n}"),
        ShareError::Io(m) => format!("io: {m}"),
    }
}

impl Guest for ShareWriter {
    fn handle(topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
        let mut parts = payload.splitn(3, |b| *b == b'\n');
        let share = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let data = parts.next().unwrap_or_default();
        match topic.as_str() {
            "write" => {
                shares::write(&share, &path, data).map_err(describe)?;
                reply(b"ok".to_vec())
            }
            "read" => reply(shares::read(&share, &path).map_err(describe)?),
            "list" => {
                let files = shares::list(&share, &path).map_err(describe)?;
                reply(files.join("\n").into_bytes())
            }
            other => Err(format!("unknown topic {other}")),
        }
    }
}

outpost_sdk::export_pipeline!(ShareWriter);
