//! The host's recent log, kept in memory for the web UI, `GET /v1/logs` and support bundles.
//!
//! [`layer`] is a `tracing` layer the binary installs beside its writer; every event that passes
//! the log filter is also kept here, up to [`CAPACITY`] records (the oldest go first). Plugin
//! output is logged with a `plugin` field, which the views filter on.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Records kept.
pub const CAPACITY: usize = 5000;
/// Longest message kept per record, bytes.
const MAX_MESSAGE: usize = 4096;

/// One log record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogRecord {
    /// Increasing number, so a reader can ask for what came after.
    pub seq: u64,
    /// RFC 3339 UTC time.
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module or `plugin`.
    pub target: String,
    /// The plugin the record is about, if any.
    pub plugin: Option<String>,
    /// The message.
    pub message: String,
    /// The other fields, `key=value` separated by spaces.
    pub fields: String,
}

/// What a reader asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only records at least this severe.
    pub level: Option<Level>,
    /// Only records about this plugin.
    pub plugin: Option<String>,
    /// At most this many, the newest.
    pub limit: usize,
}

/// The in-memory log.
#[derive(Debug, Default)]
pub struct LogBuffer {
    inner: Mutex<(u64, VecDeque<LogRecord>)>,
}

impl LogBuffer {
    /// Keeps `record`, giving it the next sequence number.
    pub fn push(&self, mut record: LogRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 += 1;
        record.seq = inner.0;
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        inner.1.push_back(record);
    }

    /// The newest records that match `query`, oldest first.
    pub fn query(&self, query: &LogQuery) -> Vec<LogRecord> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<LogRecord> = inner
            .1
            .iter()
            .rev()
            .filter(|r| {
                query
                    .level
                    .is_none_or(|min| r.level.parse::<Level>().is_ok_and(|level| level <= min))
            })
            .filter(|r| {
                query
                    .plugin
                    .as_deref()
                    .is_none_or(|p| r.plugin.as_deref() == Some(p))
            })
            .take(if query.limit == 0 {
                CAPACITY
            } else {
                query.limit
            })
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The plugins that appear in the log.
    pub fn plugins(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = inner.1.iter().filter_map(|r| r.plugin.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The process's log buffer.
pub fn buffer() -> &'static LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER.get_or_init(LogBuffer::default)
}

/// The layer that fills [`buffer`].
pub fn layer<S: Subscriber>() -> impl Layer<S> {
    BufferLayer
}

struct BufferLayer;

impl<S: Subscriber> Layer<S> for BufferLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        buffer().push(LogRecord {
            seq: 0,
            time,
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            plugin: visitor.plugin,
            message: visitor.message,
            fields: visitor.fields,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    plugin: Option<String>,
    fields: String,
}

impl Fields {
    fn add(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = truncate(value),
            "plugin" => self.plugin = Some(truncate(value)),
            name => {
                if !self.fields.is_empty() {
                    self.fields.push(' ');
                }
                let _ = write!(self.fields, "{name}={}", truncate(value));
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, format!("{value:?}"));
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_are_kept_with_their_plugin_and_filtered_by_level_and_plugin() {
        let subscriber = tracing_subscriber::registry().with(layer());
        let before = buffer()
            .query(&LogQuery::default())
            .last()
            .map_or(0, |r| r.seq);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "plugin", plugin = "echo", stream = "stdout", "hello from echo");
            tracing::warn!(plugin = "ocr", attempts = 3, "slow model");
            tracing::debug!("host detail");
        });
        let mine = |q: LogQuery| -> Vec<LogRecord> {
            buffer()
                .query(&q)
                .into_iter()
                .filter(|r| r.seq > before)
                .collect()
        };
        let all = mine(LogQuery::default());
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[0].plugin.as_deref(), Some("echo"));
        assert_eq!(all[0].message, "hello from echo");
        assert_eq!(all[0].fields, "stream=stdout");
        assert_eq!(all[1].fields, "attempts=3");
        let warn = mine(LogQuery {
            level: Some(Level::WARN),
            ..Default::default()
        });
        assert_eq!(warn.len(), 1);
        assert_eq!(warn[0].message, "slow model");
        let echo = mine(LogQuery {
            plugin: Some("echo".into()),
            ..Default::default()
        });
        assert_eq!(echo.len(), 1);
        assert!(buffer().plugins().contains(&"ocr".to_string()));
    }

    #[test]
    fn the_buffer_keeps_the_newest_records_and_numbers_them_in_order() {
        let buf = LogBuffer::default();
        for i in 0..CAPACITY + 10 {
            buf.push(LogRecord {
                seq: 0,
                time: String::new(),
                level: "INFO".into(),
                target: "t".into(),
                plugin: None,
                message: i.to_string(),
                fields: String::new(),
            });
        }
        let all = buf.query(&LogQuery::default());
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].message, "10");
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        let last = buf.query(&LogQuery {
            limit: 2,
            ..Default::default()
        });
        assert_eq!(last.len(), 2);
        assert_eq!(last[1].message, (CAPACITY + 9).to_string());
    }
}
