//! The server log as JSON lines with flat fields (`log_format = "json"`):
//! `time`, `level`, `msg`, `target`, then each field of the event by its
//! own name (`trace_id` and `span_id` on the events of a call), so that a
//! log pipeline needs no nested lookups. A field named like one of the four
//! fixed keys is written with a `field.` prefix instead of repeating a key.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `log_format = "json"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlatJson;

/// The keys every line starts with.
const FIXED: [&str; 4] = ["time", "level", "msg", "target"];

/// An event's fields as JSON members, and its message apart.
#[derive(Default)]
struct Fields {
    message: String,
    members: String,
}

impl Fields {
    fn member(&mut self, name: &str, value: &serde_json::Value) {
        self.members.push(',');
        let key = if FIXED.contains(&name) {
            format!("field.{name}")
        } else {
            name.to_owned()
        };
        self.members
            .push_str(&serde_json::Value::String(key).to_string());
        self.members.push(':');
        self.members.push_str(&value.to_string());
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.member(field.name(), &value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field.name(), &value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field.name(), &value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field.name(), &value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field.name(), &value.into());
    }

    /// Values given with `%` (Display) arrive here as their text.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.member(field.name(), &text.into());
        }
    }
}

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let level = meta.level().as_str().to_ascii_lowercase();
        let text = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        writeln!(
            writer,
            "{{\"time\":{},\"level\":{},\"msg\":{},\"target\":{}{}}}",
            text(&time),
            text(&level),
            text(&fields.message),
            text(meta.target()),
            fields.members
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::FlatJson;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_flat_json_with_fixed_keys_first() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(FlatJson)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let addr: std::net::SocketAddr =
                "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
            tracing::warn!(
                peer = %addr,
                trace_id = "0af7651916cd43dd8448eb211c80319c",
                streams = 3u64,
                time = "shadowed",
                "a \"quoted\" message"
            );
        });
        let text = String::from_utf8(buffer.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
        assert!(text.starts_with("{\"time\":\""), "{text}");
        assert_eq!(line["level"], "warn");
        assert_eq!(line["msg"], "a \"quoted\" message");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["peer"], "127.0.0.1:9");
        assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(line["streams"], 3);
        assert_eq!(line["field.time"], "shadowed");
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
