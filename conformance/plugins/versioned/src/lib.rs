//! Behaviour by config, so one component can play several versions in swap tests:
//!
//! - `version`: included in every reply (`<version>:<payload>`);
//! - `healthy = "false"`: the `health` probe topic returns an error;
//! - `trap-every = N`: every Nth call (counted in kv) panics;
//! - topic `remember`: stores the payload in kv under `memo`; topic `recall`: returns it.

use outpost_sdk::pipeline::{Guest, Message};
use outpost_sdk::{config, kv};

struct Versioned;

fn reply(payload: Vec<u8>) -> Result<Vec<Message>, String> {
    Ok(vec![Message {
        topic: "reply".into(),
        payload,
    }])
}

impl Guest for Versioned {
    fn handle(topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
        let version = config::get_or("version", "v0");
        if let Some(every) = config::get("trap-every").and_then(|n| n.parse::<u64>().ok()) {
            let calls = kv::increment("calls", 1).map_err(|e| format!("{e:?}"))?;
            if every > 0 && calls % every == 0 {
                panic!("{version} traps on call {calls}");
            }
        }
        match topic.as_str() {
            "health" if config::get("healthy").as_deref() == Some("false") => {
                Err(format!("{version} is unhealthy"))
            }
            "remember" => {
                kv::set("memo", &payload).map_err(|e| format!("{e:?}"))?;
                reply(version.into_bytes())
            }
            "recall" => {
                let memo = kv::get("memo")
                    .map_err(|e| format!("{e:?}"))?
                    .unwrap_or_default();
                let mut out = format!("{version}:").into_bytes();
                out.extend(memo);
                reply(out)
            }
            _ => {
                let mut out = format!("{version}:").into_bytes();
                out.extend(payload);
                reply(out)
            }
        }
    }
}

outpost_sdk::export_pipeline!(Versioned);
