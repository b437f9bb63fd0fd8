//! Logging setup for `--log.level` and `--log.format`: logfmt lines shaped like those of
//! Prometheus' Go exporters (`ts=… level=info target=… msg="…" key=value`), or JSON lines.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

/// Minimum severity that is logged (`--log.level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Everything down to debug messages.
    Debug,
    /// Informational messages and above.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// Output format of log lines (`--log.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, as Prometheus' Go exporters write them.
    Logfmt,
    /// One JSON object per line, with the event's fields at the top level.
    Json,
}

/// Failure to install the global subscriber.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A global subscriber (or `log` logger) was already installed.
    #[error("installing the log subscriber: {0}")]
    Install(#[from] TryInitError),
}

/// Installs the global subscriber writing to stderr.
pub fn init(level: LogLevel, format: LogFormat) -> Result<(), LoggingError> {
    init_with_writer(level, format, std::io::stderr)
}

/// Same, but writing to any MakeWriter (tests capture output with it).
pub fn init_with_writer<W>(
    level: LogLevel,
    format: LogFormat,
    writer: W,
) -> Result<(), LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // try_init also routes the `log` crate (used by reqwest and rustls) into tracing.
    subscriber(level, format, writer).try_init()?;
    Ok(())
}

/// Builds (without installing) the subscriber, so tests can use tracing::subscriber::with_default.
pub fn subscriber<W>(
    level: LogLevel,
    format: LogFormat,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter(level));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Logfmt => {
            Box::new(registry.with(layer.event_format(LogfmtEvents).fmt_fields(LogfmtFields)))
        }
        LogFormat::Json => Box::new(
            registry.with(
                layer
                    .with_timer(UtcMillis)
                    .json()
                    .flatten_event(true)
                    // The span list already carries the current span, with its fields.
                    .with_current_span(false)
                    .with_span_list(true),
            ),
        ),
    }
}

/// HTTP client and TLS crates whose debug output is connection-level noise, not exporter
/// behaviour; they are capped at warn.
const NOISY_TARGETS: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "h2",
    "rustls",
    "tokio_rustls",
];

fn filter(level: LogLevel) -> EnvFilter {
    let level = level.filter();
    // `min` is the less verbose of the two, so `--log.level=error` stays error for them.
    let cap = level.min(LevelFilter::WARN);
    let mut directives = level.to_string();
    for target in NOISY_TARGETS {
        let _ = write!(directives, ",{target}={cap}");
    }
    // Built only from the constants above; the tests check that every directive applies.
    EnvFilter::builder().parse_lossy(directives)
}

/// RFC 3339 UTC timestamps with milliseconds, the format of Go's exporters.
struct UtcMillis;

impl FormatTime for UtcMillis {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(w, "{}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Writes a logfmt value, quoted and escaped only when a plain value would be ambiguous.
fn write_value(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '=' || c == '"');
    if !needs_quotes {
        return w.write_str(value);
    }
    w.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            // Escaped rather than written so terminal control sequences can't get through.
            c if c.is_control() => write!(w, "\\u{:04x}", u32::from(c))?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// Writes a logfmt key; characters a logfmt parser would split on become `_`.
fn write_key(w: &mut impl fmt::Write, key: &str) -> fmt::Result {
    if key.is_empty() {
        return w.write_char('_');
    }
    for c in key.chars() {
        let bad = c.is_whitespace() || c.is_control() || c == '=' || c == '"';
        w.write_char(if bad { '_' } else { c })?;
    }
    Ok(())
}

/// Collects the fields of an event or span as logfmt pairs.
#[derive(Default)]
struct LogfmtVisitor {
    message: Option<String>,
    /// The real target of an event forwarded from the `log` crate (whose tracing target is "log").
    log_target: Option<String>,
    /// ` key=value` pairs, each with its leading space.
    pairs: String,
}

impl LogfmtVisitor {
    fn push(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            "log.target" => self.log_target = Some(value.to_owned()),
            // tracing-log's other metadata fields; the fmt formatters drop them as well.
            "log.module_path" | "log.file" | "log.line" => {}
            name => {
                // Writing to a String cannot fail.
                self.pairs.push(' ');
                let _ = write_key(&mut self.pairs, name);
                self.pairs.push('=');
                let _ = write_value(&mut self.pairs, value);
            }
        }
    }
}

impl Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
}

/// logfmt for span fields, stored per span and appended to each event inside it.
struct LogfmtFields;

impl<'writer> FormatFields<'writer> for LogfmtFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = LogfmtVisitor::default();
        fields.record(&mut visitor);
        let mut pairs = visitor.pairs.as_str();
        if let Some(message) = &visitor.message {
            writer.write_str("msg=")?;
            write_value(&mut writer, message)?;
        } else {
            // add_fields inserts the separator between separately recorded field sets.
            pairs = pairs.trim_start_matches(' ');
        }
        writer.write_str(pairs)
    }
}

/// logfmt event lines: `ts`, `level`, `target`, `msg`, the event's fields, then its spans' fields.
struct LogfmtEvents;

impl<S, N> FormatEvent<S, N> for LogfmtEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = LogfmtVisitor::default();
        event.record(&mut fields);
        let metadata = event.metadata();

        writer.write_str("ts=")?;
        UtcMillis.format_time(&mut writer)?;
        write!(writer, " level={}", level_name(metadata.level()))?;
        writer.write_str(" target=")?;
        write_value(
            &mut writer,
            fields.log_target.as_deref().unwrap_or(metadata.target()),
        )?;
        if let Some(message) = &fields.message {
            writer.write_str(" msg=")?;
            write_value(&mut writer, message)?;
        }
        writer.write_str(&fields.pairs)?;

        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(span_fields) = extensions.get::<FormattedFields<N>>() {
                    // Trimmed because add_fields may leave a separator after an empty record.
                    let span_fields = span_fields.fields.trim();
                    if !span_fields.is_empty() {
                        write!(writer, " {span_fields}")?;
                    }
                }
            }
        }
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use parking_lot::{Mutex, MutexGuard};

    use tracing::{debug, error, info, info_span, warn};

    use super::*;

    /// A MakeWriter that appends everything to a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        fn buf(&self) -> MutexGuard<'_, Vec<u8>> {
            self.0.lock()
        }

        fn text(&self) -> String {
            String::from_utf8(self.buf().clone()).expect("log output is UTF-8")
        }
    }

    impl io::Write for Capture {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.buf().extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(level: LogLevel, format: LogFormat, emit: impl FnOnce()) -> String {
        let out = Capture::default();
        tracing::subscriber::with_default(subscriber(level, format, out.clone()), emit);
        out.text()
    }

    /// Splits off and checks the `ts=` of a logfmt line, returning the rest.
    fn strip_ts(line: &str) -> &str {
        let rest = line.strip_prefix("ts=").expect("line starts with ts=");
        let (ts, rest) = rest.split_once(' ').expect("ts is followed by more");
        assert_eq!(ts.len(), "2026-11-27T20:21:00.123Z".len(), "{ts}");
        assert!(ts.ends_with('Z'), "{ts}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "unparsable ts {ts}"
        );
        rest
    }

    #[test]
    fn logfmt_line_shape_and_escaping() {
        let out = capture(LogLevel::Info, LogFormat::Logfmt, || {
            info!(
                target: "sas::poll",
                digest = "abc",
                detail = "say \"hi\" to C:\\tmp",
                multi = "a\nb",
                empty = "",
                eq = "k=v",
                count = 3,
                ok = true,
                debugged = ?Some(1),
                "polling started"
            );
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert_eq!(
            strip_ts(lines[0]),
            r#"level=info target=sas::poll msg="polling started" digest=abc detail="say \"hi\" to C:\\tmp" multi="a\nb" empty="" eq="k=v" count=3 ok=true debugged=Some(1)"#
        );
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn logfmt_includes_span_fields() {
        let out = capture(LogLevel::Info, LogFormat::Logfmt, || {
            let outer = info_span!("poll", region = "cn-hangzhou");
            let _outer = outer.enter();
            let inner = info_span!("page", page = 2, note = "two words");
            let _inner = inner.enter();
            warn!(target: "sas", "slow page");
        });
        assert_eq!(
            strip_ts(out.trim_end()),
            r#"level=warn target=sas msg="slow page" region=cn-hangzhou page=2 note="two words""#
        );
    }

    #[test]
    fn logfmt_value_escaping() {
        let cases = [
            ("plain", "plain"),
            ("", r#""""#),
            ("a b", r#""a b""#),
            ("a=b", r#""a=b""#),
            (r#"say "x""#, r#""say \"x\"""#),
            (r"back\slash", r"back\slash"),
            ("back\\slash and space", r#""back\\slash and space""#),
            ("tab\there", r#""tab\there""#),
            ("esc\u{1b}[31m", r#""esc\u001b[31m""#),
            ("ünïcödé", "ünïcödé"),
        ];
        for (input, expected) in cases {
            let mut out = String::new();
            write_value(&mut out, input).expect("write to String");
            assert_eq!(out, expected, "for {input:?}");
        }
        let mut key = String::new();
        write_key(&mut key, "a b=\"c").expect("write to String");
        assert_eq!(key, "a_b__c");
    }

    #[test]
    fn json_lines_parse_with_flattened_fields() {
        let out = capture(LogLevel::Info, LogFormat::Json, || {
            let span = info_span!("poll", region = "cn-hangzhou");
            let _span = span.enter();
            info!(target: "sas::poll", digest = "abc", detail = "say \"hi\"", count = 3, "polling started");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
        assert_eq!(v["level"], "INFO", "{v}");
        assert_eq!(v["target"], "sas::poll", "{v}");
        assert_eq!(v["message"], "polling started", "{v}");
        assert_eq!(v["digest"], "abc", "{v}");
        assert_eq!(v["detail"], "say \"hi\"", "{v}");
        assert_eq!(v["count"], 3, "{v}");
        assert_eq!(v["spans"][0]["region"], "cn-hangzhou", "{v}");
        let ts = v["timestamp"].as_str().expect("timestamp string");
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z'), "{ts}");
    }

    #[test]
    fn debug_dropped_at_info() {
        for format in [LogFormat::Logfmt, LogFormat::Json] {
            let out = capture(LogLevel::Info, format, || {
                debug!("hidden");
                info!("shown");
            });
            assert!(!out.contains("hidden"), "{out}");
            assert!(out.contains("shown"), "{out}");
        }
    }

    #[test]
    fn http_internals_capped_at_warn() {
        let out = capture(LogLevel::Debug, LogFormat::Logfmt, || {
            debug!("app debug");
            debug!(target: "reqwest::connect", "reqwest debug");
            debug!(target: "hyper_util::client::legacy", "hyper_util debug");
            info!(target: "rustls::client", "rustls info");
            debug!(target: "h2::codec", "h2 debug");
            warn!(target: "hyper::proto", "hyper warn");
        });
        assert!(out.contains("app debug"), "{out}");
        assert!(out.contains("hyper warn"), "{out}");
        for hidden in [
            "reqwest debug",
            "hyper_util debug",
            "rustls info",
            "h2 debug",
        ] {
            assert!(!out.contains(hidden), "{hidden} in {out}");
        }

        let out = capture(LogLevel::Error, LogFormat::Logfmt, || {
            warn!(target: "reqwest", "reqwest warn");
            warn!("app warn");
            error!(target: "reqwest", "reqwest error");
        });
        assert!(!out.contains("warn"), "{out}");
        assert!(out.contains("reqwest error"), "{out}");
    }

    #[test]
    fn filter_directives_all_parse() {
        for level in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ] {
            // One default directive plus one per noisy target, none dropped by parse_lossy.
            let shown = filter(level).to_string();
            assert_eq!(shown.split(',').count(), NOISY_TARGETS.len() + 1, "{shown}");
        }
    }
}
