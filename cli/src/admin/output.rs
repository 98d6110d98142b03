//! What a command prints: readable text for people, JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The outcome of a command, in both of its printed forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Text for a terminal, ending with a newline.
    pub human: String,
    /// The same outcome for `--json`.
    pub json: serde_json::Value,
}

impl Report {
    /// The text to print on stdout.
    pub fn render(&self, json: bool) -> String {
        if json {
            let mut s = serde_json::to_string_pretty(&self.json)
                .expect("a serde_json::Value always serialises");
            s.push('\n');
            s
        } else {
            self.human.clone()
        }
    }
}

/// `message` as JSON, through its protobuf-JSON (pbjson) serde impl: camelCase names,
/// 64-bit integers as strings, enums as names.
pub fn to_json<T: Serialize>(message: &T) -> serde_json::Value {
    serde_json::to_value(message)
        .expect("protobuf messages serialise to JSON: their map keys are strings")
}

/// A text table with a header row and columns padded to their widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header = self.header.iter().map(|h| h.to_string());
        for line in std::iter::once(header.collect::<Vec<_>>()).chain(self.rows.iter().cloned()) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Key: value` lines with the values aligned.
#[derive(Debug, Clone, Default)]
pub struct Fields(Vec<(&'static str, String)>);

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, value.into()));
        self
    }

    pub fn render(&self) -> String {
        let width = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        let mut out = String::new();
        for (key, value) in &self.0 {
            let label = format!("{key}:");
            let line = format!("{label:<width$} {value}");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`, or `-` for 0.
pub fn unix_time(secs: i64) -> String {
    if secs <= 0 {
        return "-".into();
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of the day `days` after 1970-01-01.
///
/// Counts in 400-year eras of 146 097 days, with years starting on March 1st so that the
/// leap day falls at the end of the year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    // Both are small and positive by construction: 1..=31 and 1..=12.
    (year, month as u32, day as u32)
}

/// A duration as `1d2h3m4s`, leaving out zero parts.
pub fn duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(unix_time(0), "-");
        assert_eq!(unix_time(1), "1970-01-01 00:00:01 UTC");
        assert_eq!(unix_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(unix_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(unix_time(4_107_542_400), "2100-03-01 00:00:00 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(300)), "5m");
        assert_eq!(duration(Duration::from_secs(90_061)), "1d1h1m1s");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn table_and_fields() {
        let mut t = Table::new(&["NAME", "SID"]);
        t.row(vec!["a-long-name".into(), "RM_1".into()]);
        t.row(vec!["b".into(), String::new()]);
        assert_eq!(t.render(), "NAME         SID\na-long-name  RM_1\nb\n");
        let f = Fields::new().field("Name", "x").field("Metadata", "");
        assert_eq!(f.render(), "Name:     x\nMetadata:\n");
    }
}
