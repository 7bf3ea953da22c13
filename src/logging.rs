//! Logs go to stderr, one line per event, as text or as JSON objects; a line written
//! while a request is handled carries that request's id.

use std::io::Write;

use crate::config::LogFormat;
use crate::request_id;

/// Installs the logger once; later calls (tests starting several servers) do nothing.
pub fn init(format: LogFormat, filter: &str) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(filter);
    builder.target(env_logger::Target::Stderr);
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            let ts = buf.timestamp_micros();
            match request_id::current() {
                Some(id) => writeln!(buf, "{ts} {:<5} {} [{id}] {}", record.level(), record.target(), record.args()),
                None => writeln!(buf, "{ts} {:<5} {} {}", record.level(), record.target(), record.args()),
            }
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": callplane_schema::time::format(&callplane_schema::time::now()),
                "level": record.level().as_str(),
                "target": record.target(),
                "request_id": request_id::current(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        }),
    };
    // Fails only when a logger is already installed.
    let _ = builder.try_init();
}
