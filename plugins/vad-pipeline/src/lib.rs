//! Placeholder: being written.

use outpost_sdk::pipeline::{Guest, Message};

struct Plugin;

impl Guest for Plugin {
    fn handle(_topic: String, _payload: Vec<u8>) -> Result<Vec<Message>, String> {
        Err("not implemented yet".into())
    }
}

outpost_sdk::export_pipeline!(Plugin);
