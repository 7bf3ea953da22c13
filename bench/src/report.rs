//! The table and its JSON.

use serde::Serialize;

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Row {
    pub measure: String,
    /// Human-readable figures.
    pub result: String,
    /// Against what, measured in the same run.
    pub ratio: String,
    pub goal: String,
    /// The raw figures.
    pub figures: serde_json::Value,
}

impl Row {
    pub fn new(
        measure: impl Into<String>,
        result: impl Into<String>,
        ratio: impl Into<String>,
        goal: impl Into<String>,
    ) -> Row {
        Row {
            measure: measure.into(),
            result: result.into(),
            ratio: ratio.into(),
            goal: goal.into(),
            figures: serde_json::Value::Null,
        }
    }

    pub fn figures(mut self, figures: serde_json::Value) -> Row {
        self.figures = figures;
        self
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let profile = if cfg!(debug_assertions) { "debug build (figures meaningless)" } else { "release build" };
    format!("{cores} cores, {cpu}, {profile}")
}

pub fn table(rows: &[Row], quick: bool) -> String {
    let mut out = format!(
        "callplane benchmark — {} — {}{}\n\n| measure | result | ratio | goal |\n|---|---|---|---|\n",
        machine(),
        chrono::Utc::now().format("%Y-%m-%d"),
        if quick { " — --quick" } else { "" }
    );
    for row in rows {
        out.push_str(&format!("| {} | {} | {} | {} |\n", row.measure, row.result, row.ratio, row.goal));
    }
    out
}

pub fn json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({"machine": machine(), "rows": rows})).unwrap_or_default()
}

pub fn rate(r: f64) -> String {
    let r = r.round() as u64;
    let s = r.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn ms(d: std::time::Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
