//! What a replay prints: the text report and the JUnit XML.
//!
//! This module owns both formats. Neither carries a wall-clock time, a
//! duration or an absolute path, so two runs of the same fixtures give
//! byte-identical output (G1).

use std::fmt::Write as _;

use super::check::Mismatch;
use super::fixture::FixtureError;
use super::run::{ScenarioRun, StepRun};

/// One fixture's result: it ran, or it was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Ran(ScenarioRun),
    Refused(FixtureError),
}

/// Totals over a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub scenarios: usize,
    pub refused: usize,
    pub steps: usize,
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn of(entries: &[Entry]) -> Summary {
        let mut s = Summary {
            scenarios: entries.len(),
            ..Summary::default()
        };
        for e in entries {
            match e {
                Entry::Ran(run) => {
                    s.steps += run.total_steps;
                    s.passed += run.passed_steps();
                    s.failed += run.failed_steps();
                }
                Entry::Refused(_) => s.refused += 1,
            }
        }
        s
    }

    /// Everything ran and every step passed.
    pub fn ok(&self) -> bool {
        self.refused == 0 && self.failed == 0
    }
}

/// Values longer than this are shown one under the other, not side by side.
const SIDE_BY_SIDE_MAX: usize = 36;

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
    out
}

/// The mismatches of one step: a side-by-side table for short values, a
/// block per field for long ones (replies, SMS).
pub fn diff_text(mismatches: &[Mismatch], indent: &str) -> String {
    let mut out = String::new();
    let (short, long): (Vec<&Mismatch>, Vec<&Mismatch>) = mismatches.iter().partition(|m| {
        width(&m.expected) <= SIDE_BY_SIDE_MAX && width(&m.actual) <= SIDE_BY_SIDE_MAX
    });
    if !short.is_empty() {
        let fw = short
            .iter()
            .map(|m| width(&m.field))
            .max()
            .unwrap_or(0)
            .max(5);
        let ew = short
            .iter()
            .map(|m| width(&m.expected))
            .max()
            .unwrap_or(0)
            .max(8);
        let _ = writeln!(
            out,
            "{indent}{}  {}  actual",
            pad("field", fw),
            pad("expected", ew)
        );
        for m in &short {
            let _ = writeln!(
                out,
                "{indent}{}  {}  {}",
                pad(&m.field, fw),
                pad(&m.expected, ew),
                m.actual
            );
        }
    }
    for m in long {
        let _ = writeln!(out, "{indent}{}:", m.field);
        let _ = writeln!(out, "{indent}  expected  {}", m.expected);
        let _ = writeln!(out, "{indent}  actual    {}", m.actual);
    }
    out
}

fn step_header(s: &StepRun) -> String {
    format!("step {}, line {}, {}: {}", s.index, s.line, s.at, s.summary)
}

/// The text report: one line per scenario, every failure with its diff,
/// and the summary line last.
pub fn text(entries: &[Entry], mode: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "shortcode-gw replay ({mode})");
    for e in entries {
        match e {
            Entry::Ran(run) => {
                let verdict = if run.passed() { "PASS" } else { "FAIL" };
                let _ = writeln!(
                    out,
                    "{verdict}  {}  {}/{} steps passed  ({})",
                    run.file,
                    run.passed_steps(),
                    run.total_steps,
                    run.name
                );
                for s in run.steps.iter().filter(|s| !s.passed()) {
                    let _ = writeln!(out, "      {}", step_header(s));
                    out.push_str(&diff_text(&s.mismatches, "        "));
                }
                if let Some(fatal) = &run.fatal {
                    let _ = writeln!(
                        out,
                        "      stopped at {fatal}; {} step(s) not run",
                        run.total_steps - run.steps.len()
                    );
                }
            }
            Entry::Refused(err) => {
                let _ = writeln!(out, "REFUSED  {}", err.file);
                for line in err.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let s = Summary::of(entries);
    let refused = if s.refused > 0 {
        format!(" ({} refused)", s.refused)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "summary: {} scenarios{refused}, {} steps, {} passed, {} failed",
        s.scenarios, s.steps, s.passed, s.failed
    );
    out
}

/// Text safe inside XML 1.0 character data and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // As references, so attribute values keep them too.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            // XML 1.0 has no way to write the other C0 controls, nor the
            // non-characters U+FFFE/U+FFFF, even as references.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML (the Ant/Surefire dialect CI systems read): a testsuite per
/// scenario, a testcase per step; a refused fixture is one errored case.
pub fn junit(entries: &[Entry]) -> String {
    let s = Summary::of(entries);
    let errors = entries
        .iter()
        .filter(|e| match e {
            Entry::Refused(_) => true,
            Entry::Ran(r) => r.fatal.is_some(),
        })
        .count();
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"shortcode-gw replay\" tests=\"{}\" failures=\"{}\" errors=\"{errors}\">",
        s.steps + s.refused,
        s.failed
    );
    for e in entries {
        match e {
            Entry::Ran(run) => {
                let fatal = usize::from(run.fatal.is_some());
                let _ = writeln!(
                    out,
                    "  <testsuite name=\"{}\" file=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{fatal}\">",
                    xml_escape(&run.name),
                    xml_escape(&run.file),
                    run.steps.len() + fatal,
                    run.steps.iter().filter(|s| !s.passed()).count(),
                );
                for st in &run.steps {
                    let _ = write!(
                        out,
                        "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\"",
                        xml_escape(&format!("step {}: {}", st.index, st.summary)),
                        xml_escape(&run.name),
                        xml_escape(&run.file),
                        st.line
                    );
                    if st.passed() {
                        out.push_str("/>\n");
                        continue;
                    }
                    let first = &st.mismatches[0];
                    let message = format!(
                        "{}: expected {}, actual {}",
                        first.field, first.expected, first.actual
                    );
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"mismatch\">{}</failure>\n    </testcase>",
                        xml_escape(&message),
                        xml_escape(&format!("{}\n{}", step_header(st), diff_text(&st.mismatches, "  ")))
                    );
                }
                if let Some(fatal) = &run.fatal {
                    let _ = writeln!(
                        out,
                        "    <testcase name=\"run\" classname=\"{}\" file=\"{}\">\n      <error message=\"{}\" type=\"stopped\"/>\n    </testcase>",
                        xml_escape(&run.name),
                        xml_escape(&run.file),
                        xml_escape(&format!(
                            "stopped at {fatal}; {} step(s) not run",
                            run.total_steps - run.steps.len()
                        ))
                    );
                }
                out.push_str("  </testsuite>\n");
            }
            Entry::Refused(err) => {
                let _ = writeln!(
                    out,
                    "  <testsuite name=\"{0}\" file=\"{0}\" tests=\"1\" failures=\"0\" errors=\"1\">\n    <testcase name=\"load\" classname=\"{0}\" file=\"{0}\">\n      <error message=\"{1}\" type=\"refused\">{2}</error>\n    </testcase>\n  </testsuite>",
                    xml_escape(&err.file),
                    xml_escape(err.lines().first().map(String::as_str).unwrap_or("refused")),
                    xml_escape(&err.lines().join("\n"))
                );
            }
        }
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_markup_quotes_and_controls() {
        assert_eq!(
            xml_escape("a<b>&\"c'\n\u{1}\u{FFFF}д"),
            "a&lt;b&gt;&amp;&quot;c&apos;&#10;\u{FFFD}\u{FFFD}д"
        );
    }

    #[test]
    fn short_values_side_by_side_long_ones_below_each_other() {
        let m = |f: &str, e: &str, a: &str| Mismatch {
            field: f.into(),
            expected: e.into(),
            actual: a.into(),
        };
        let long = "x".repeat(SIDE_BY_SIDE_MAX + 1);
        let text = diff_text(
            &[m("balance", "1.00", "0.00"), m("reply", &long, "\"y\"")],
            "",
        );
        assert_eq!(
            text,
            format!(
                "field    expected  actual\nbalance  1.00      0.00\nreply:\n  expected  {long}\n  actual    \"y\"\n"
            )
        );
    }
}
