//! Output helpers every subcommand shares: tables, JSON, CSV, the output formats, and how
//! numbers and durations are shown.

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets};

/// `--format` of commands that print a report: a table or one JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

/// `--format` of commands whose report is also a table of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// `--format` of listings: a table, CSV, one JSON array, or JSON Lines (one object per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Csv,
    Json,
    Jsonl,
}

/// Parses a number that must be finite and ≥ 0 (a clap value parser).
pub fn non_negative(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number, 0 or more".into()),
        Err(_) => Err("not a number".into()),
    }
}

/// Parses a number of seconds that must be finite and between 0.2 and 3,600.
pub fn interval(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.2..=3600.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be a number of seconds from 0.2 to 3600".into()),
        Err(_) => Err("not a number".into()),
    }
}

/// A table in the style every subcommand uses.
pub fn table(header: Vec<String>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    t
}

/// Writes rows as a table in the common style.
pub fn write_table(
    out: &mut impl Write,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
) -> std::io::Result<()> {
    let mut t = table(header);
    for row in rows {
        t.add_row(row);
    }
    writeln!(out, "{t}")
}

/// Writes a value as pretty JSON.
pub fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)
}

/// Writes a header and rows as CSV (RFC 4180 quoting, by the csv crate).
pub fn write_csv(
    out: &mut impl Write,
    header: &[String],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(header)?;
    for row in rows {
        w.write_record(row)?;
    }
    w.flush()
}

/// Seconds as a short duration: "42s", "3m 05s", "2h 10m".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// 1234567 → "1.23M".
pub fn si(n: f64) -> String {
    let (v, unit) = if n >= 1e9 {
        (n / 1e9, "G")
    } else if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "k")
    } else {
        return format!("{n}");
    };
    format!("{v:.2}{unit}")
}

/// Standard output for commands whose work must not depend on anyone reading what they
/// print (`xp run m.toml | head -1`): a write that fails is dropped and the work goes on.
pub struct Lossy<W: Write>(pub W);

impl<W: Write> Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// A line on stderr for the person watching. A closed or broken stderr loses the line, never
/// the work: progress output must not change how a run ends.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A measured value, or a dash where there is none.
pub fn or_dash<T>(value: Option<T>, format: impl FnOnce(T) -> String) -> String {
    value.map(format).unwrap_or_else(|| "—".into())
}

/// A loss or similar figure to four decimals, or a dash.
pub fn fixed4(value: Option<f64>) -> String {
    or_dash(value, |v| format!("{v:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        write_csv(
            &mut out,
            &["a".into(), "b".into()],
            &[vec!["x,y".into(), "line\rbreak \"q\"".into()]],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b\n\"x,y\",\"line\rbreak \"\"q\"\"\"\n"
        );
    }
}
