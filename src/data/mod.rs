//! Loading the files operators and testers hand to the gateway, and the
//! bundled demo data.
//!
//! The shapes are the public contract of `shared/spec/data-formats.md`:
//!
//! * [`load_catalog`] reads the tariff catalog, one JSON or TOML document;
//! * [`load_accounts`] reads the accounts file, JSON Lines, all or nothing;
//! * [`account_line`] / [`write_accounts`] write accounts back in that schema;
//! * [`demo`] holds the bundled demo catalog and a deterministic, fast
//!   generator of demo accounts.
//!
//! A bad file is refused as a whole with a [`DataError`] whose text names
//! the file, the line (and column) or key, the field and the problem, e.g.
//!
//! ```text
//! accounts.jsonl:7: msisdn: duplicate "79161234561": already on line 2
//! catalog.json:14:38: plans[3] (id "smart" version "2024"): regions.spb.monthly_fee: bad money string "5,50" (expected like "550.00")
//! ```

pub mod accounts;
pub mod catalog;
pub mod demo;

use std::fmt;

pub use accounts::{account_line, load_accounts, parse_accounts, write_accounts};
pub use catalog::{load_catalog, parse_catalog, CatalogFormat};

/// How many problems one refused file reports at most; reading stops there.
pub const MAX_REPORTED: usize = 20;

/// One problem found in a file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known (syntax and type errors).
    pub column: Option<usize>,
    /// Where inside the document or line: `balance`, `saved.valid_until`,
    /// `plans[3] (id "smart" version "2024"): regions.spb.monthly_fee`.
    pub field: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a file was refused. Nothing of a refused file is loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read at all.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// One problem (the file's only one).
    #[error("{0}")]
    Invalid(Problem),
    /// Several problems, one per line of the message. `truncated` is set
    /// when reading stopped at [`MAX_REPORTED`] problems.
    #[error("{}", many(file, problems, *truncated))]
    Many {
        file: String,
        problems: Vec<Problem>,
        truncated: bool,
    },
}

fn many(file: &str, problems: &[Problem], truncated: bool) -> String {
    let mut out = if truncated {
        format!(
            "{file}: refused, nothing loaded; stopped after the first {} problems:",
            problems.len()
        )
    } else {
        format!(
            "{file}: refused, nothing loaded; {} problems:",
            problems.len()
        )
    };
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

impl DataError {
    /// The problems found (empty for an I/O error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            DataError::Io { .. } => &[],
            DataError::Invalid(p) => std::slice::from_ref(p),
            DataError::Many { problems, .. } => problems,
        }
    }

    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            DataError::Io { file, .. } | DataError::Many { file, .. } => file,
            DataError::Invalid(p) => &p.file,
        }
    }

    /// Turns a non-empty list of problems into an error.
    pub(crate) fn from_problems(file: &str, mut problems: Vec<Problem>, truncated: bool) -> Self {
        debug_assert!(!problems.is_empty());
        if problems.len() == 1 && !truncated {
            DataError::Invalid(problems.remove(0))
        } else {
            DataError::Many {
                file: file.to_string(),
                problems,
                truncated,
            }
        }
    }
}

/// serde_json's message without its " at line L column C" tail (we print
/// the position ourselves), with a hint when a string came as a number.
pub(crate) fn json_message(e: &serde_json::Error, field: Option<&str>) -> String {
    let full = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&tail).unwrap_or(&full).to_string();
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON: {msg}")
        }
        _ => number_hint(msg, field),
    }
}

/// Fields holding money in the catalog and accounts files.
const MONEY_FIELDS: [&str; 6] = ["balance", "monthly_fee", "daily_fee", "minute", "sms", "mb"];

/// Money, `discount_pct`, MSISDNs and plan versions are strings; a number
/// there is the most common hand-editing mistake, so say so.
pub(crate) fn number_hint(msg: String, field: Option<&str>) -> String {
    let number = ["invalid type: floating point", "invalid type: integer"]
        .iter()
        .any(|p| msg.starts_with(p));
    if !number {
        return msg;
    }
    let last = field
        .and_then(|f| f.rsplit(['.', ' ']).next())
        .unwrap_or("");
    if msg.contains("a Decimal") {
        format!("{msg} (percentages are JSON strings like \"33\", never numbers)")
    } else if !msg.contains("expected a string") {
        msg
    } else if MONEY_FIELDS.contains(&last) {
        format!("{msg} (money is a string like \"550.00\", never a number)")
    } else {
        format!("{msg} (write it in quotes: this field is a string)")
    }
}

/// A serde_path_to_error path as `a.b[3].c`, or None at the root.
/// Segments serde could not name (inside malformed input) are left out.
pub(crate) fn path_string(path: &serde_path_to_error::Path) -> Option<String> {
    let s = segments_string(path.iter());
    (!s.is_empty()).then_some(s)
}

pub(crate) fn segments_string<'a>(
    segments: impl IntoIterator<Item = &'a serde_path_to_error::Segment>,
) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: Option<usize>, column: Option<usize>, field: Option<&str>) -> Problem {
        Problem {
            file: "a.jsonl".into(),
            line,
            column,
            field: field.map(str::to_string),
            message: "bad".into(),
        }
    }

    #[test]
    fn data_problem_display_forms() {
        assert_eq!(p(None, None, None).to_string(), "a.jsonl: bad");
        assert_eq!(
            p(Some(3), None, Some("balance")).to_string(),
            "a.jsonl:3: balance: bad"
        );
        assert_eq!(
            p(Some(3), Some(9), Some("x")).to_string(),
            "a.jsonl:3:9: x: bad"
        );
    }

    #[test]
    fn data_many_is_one_line_per_problem() {
        let e = DataError::from_problems(
            "a.jsonl",
            vec![p(Some(1), None, None), p(Some(2), None, None)],
            false,
        );
        let text = e.to_string();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("a.jsonl: refused, nothing loaded; 2 problems:"));
        assert!(text.contains("\n  a.jsonl:2: bad"));
        let one = DataError::from_problems("a.jsonl", vec![p(Some(1), None, None)], false);
        assert_eq!(one.to_string(), "a.jsonl:1: bad");
        assert_eq!(one.problems().len(), 1);
    }
}
