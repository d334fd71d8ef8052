//! Echoes every message to the topic named by config `output-topic` (default: the input topic
//! with `.echo` appended), optionally upper-cased (config `uppercase = "true"`), and counts the
//! messages it has seen in kv under `count` when a kv grant exists.

use outpost_sdk::pipeline::{Guest, Message};
use outpost_sdk::{config, kv, log};

struct Echo;

impl Guest for Echo {
    fn handle(topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
        let output = config::get("output-topic").unwrap_or_else(|| format!("{topic}.echo"));
        let payload = if config::get("uppercase").as_deref() == Some("true") {
            payload.to_ascii_uppercase()
        } else {
            payload
        };
        if config::get("count").as_deref() == Some("true") {
            let seen = kv::increment("count", 1).map_err(|e| format!("kv: {e:?}"))?;
            log::debug(&format!("message {seen} on {topic}"));
        }
        Ok(vec![Message {
            topic: output,
            payload,
        }])
    }
}

outpost_sdk::export_pipeline!(Echo);
