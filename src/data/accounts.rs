//! The accounts file: JSON Lines, one account per line (data-formats.md).
//!
//! Loading is all or nothing: one bad line refuses the whole file. Blank
//! lines (and a UTF-8 byte-order mark, and CRLF line ends) are accepted.
//! Every line is checked; the first problem of each line is reported, up to
//! [`MAX_REPORTED`] problems, after which reading stops.
//!
//! Beyond what serde checks (JSON syntax, field types, unknown or missing
//! fields, money strings, `billing` / `blocks` / `location` values, dates
//! such as `saved.valid_until`), a line is refused for:
//!
//! * `msisdn` not 7 to 15 ASCII digits (E.164 without `+`), or already on
//!   an earlier line (the message names both lines);
//! * an empty `region`;
//! * `plan` + `plan_version` not in the catalog (**decided**: a region the
//!   plan does not offer is *valid* data — it is how R3 `NO_SERVICE` arises);
//! * a negative `balance` (**decided**: U3 lets a balance go below zero at
//!   run time, but an import file carrying one is refused);
//! * `anchor_day` outside 1..=31, `discount_pct` outside 0..=100.
//!
//! `next_charge` is not checked against `anchor_day` (**decided**): exports
//! from other systems may legitimately disagree for an account in daily
//! billing or in an unpaid period, and the engine recomputes both on the
//! next charge.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use rust_decimal::Decimal;

use super::{json_message, path_string, DataError, Problem, MAX_REPORTED};
use crate::engine::model::{money, Account, Catalog};

/// Reads and validates an accounts file against `catalog`. On any problem
/// nothing is returned but the error.
pub fn load_accounts(path: impl AsRef<Path>, catalog: &Catalog) -> Result<Vec<Account>, DataError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| DataError::Io {
        file: file.clone(),
        source,
    })?;
    parse_accounts(&file, BufReader::with_capacity(1 << 20, f), catalog)
}

/// [`load_accounts`] over any reader; `file` is only used in messages.
pub fn parse_accounts<R: BufRead>(
    file: &str,
    mut reader: R,
    catalog: &Catalog,
) -> Result<Vec<Account>, DataError> {
    let plans = PlanIndex::new(catalog);
    let mut accounts = Vec::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut problems: Vec<Problem> = Vec::new();
    let mut truncated = false;
    let mut buf = Vec::with_capacity(1024);
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| DataError::Io {
                file: file.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line += 1;
        let mut bytes = buf.as_slice();
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match check_line(bytes, line, &plans, &mut seen) {
            Ok(account) => {
                if problems.is_empty() {
                    accounts.push(account);
                }
            }
            Err(bad) => {
                if problems.len() == MAX_REPORTED {
                    truncated = true;
                    break;
                }
                if problems.is_empty() {
                    accounts = Vec::new(); // nothing will be loaded: free it now
                }
                problems.push(Problem {
                    file: file.to_string(),
                    line: Some(line),
                    column: bad.column,
                    field: bad.field,
                    message: bad.message,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(accounts)
    } else {
        Err(DataError::from_problems(file, problems, truncated))
    }
}

/// One account as one line of the accounts file (no line end). Loading the
/// line back gives an identical [`Account`].
pub fn account_line(account: &Account) -> String {
    serde_json::to_string(account).expect("an Account always serialises")
}

/// Writes accounts as an accounts file (one line each, `\n` ends); returns
/// how many were written.
pub fn write_accounts<W, I>(mut out: W, accounts: I) -> std::io::Result<u64>
where
    W: Write,
    I: IntoIterator,
    I::Item: Borrow<Account>,
{
    let mut n = 0;
    for account in accounts {
        serde_json::to_writer(&mut out, account.borrow())?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

struct Bad {
    column: Option<usize>,
    field: Option<String>,
    message: String,
}

impl Bad {
    fn field(field: &str, message: String) -> Self {
        Bad {
            column: None,
            field: Some(field.to_string()),
            message,
        }
    }
}

/// The catalog's (id → versions), for checking and for naming what exists.
struct PlanIndex<'c> {
    versions: HashMap<&'c str, Vec<&'c str>>,
}

impl<'c> PlanIndex<'c> {
    fn new(catalog: &'c Catalog) -> Self {
        let mut versions: HashMap<&str, Vec<&str>> = HashMap::new();
        for plan in &catalog.plans {
            versions.entry(&plan.id).or_default().push(&plan.version);
        }
        PlanIndex { versions }
    }

    fn check(&self, id: &str, version: &str) -> Result<(), String> {
        match self.versions.get(id) {
            Some(vs) if vs.contains(&version) => Ok(()),
            Some(vs) => Err(format!(
                "unknown plan {id:?} version {version:?}: the catalog has version(s) {}",
                vs.iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => Err(format!(
                "unknown plan {id:?} version {version:?}: no plan {id:?} in the catalog"
            )),
        }
    }
}

/// A number's digits as one key: length in the top bits keeps "0123456"
/// and "00123456" apart. Only called on 7..=15 ASCII digits.
fn msisdn_key(msisdn: &str) -> u64 {
    let value = msisdn
        .bytes()
        .fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
    ((msisdn.len() as u64) << 50) | value
}

fn check_line(
    bytes: &[u8],
    line: usize,
    plans: &PlanIndex<'_>,
    seen: &mut HashMap<u64, usize>,
) -> Result<Account, Bad> {
    let text = std::str::from_utf8(bytes).map_err(|e| Bad {
        column: Some(e.valid_up_to() + 1),
        field: None,
        message: "not valid UTF-8 text".into(),
    })?;
    let json_bad = |field: Option<String>, e: &serde_json::Error| Bad {
        column: (e.line() > 0 && e.column() > 0).then_some(e.column()),
        message: json_message(e, field.as_deref()),
        field,
    };
    // Fast path without path tracking; on failure parse again for the path.
    let mut de = serde_json::Deserializer::from_str(text);
    let account = match serde::Deserialize::deserialize(&mut de) {
        Ok(account) => account,
        Err(_) => {
            let mut de = serde_json::Deserializer::from_str(text);
            return Err(
                match serde_path_to_error::deserialize::<_, Account>(&mut de) {
                    Err(e) => {
                        let mut bad = json_bad(path_string(e.path()), e.inner());
                        if let Some(m) = date_message(text, e.path(), &bad.message) {
                            bad.message = m;
                        }
                        bad
                    }
                    Ok(_) => Bad {
                        column: None,
                        field: None,
                        message: "malformed JSON".into(),
                    },
                },
            );
        }
    };
    de.end().map_err(|e| json_bad(None, &e))?;
    check_account(&account, line, plans, seen)?;
    Ok(account)
}

/// chrono says only "input is out of range" for 2026-02-30: show the value.
fn date_message(text: &str, path: &serde_path_to_error::Path, message: &str) -> Option<String> {
    use serde_path_to_error::Segment;
    match path.iter().next_back()? {
        Segment::Map { key } if key == "next_charge" || key == "valid_until" => {}
        _ => return None,
    }
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut value = &doc;
    for segment in path {
        value = match segment {
            Segment::Map { key } => value.get(key)?,
            Segment::Seq { index } => value.get(index)?,
            _ => return None,
        };
    }
    let date = value.as_str()?;
    Some(format!(
        "{date:?} is not a valid date YYYY-MM-DD ({message})"
    ))
}

fn check_account(
    a: &Account,
    line: usize,
    plans: &PlanIndex<'_>,
    seen: &mut HashMap<u64, usize>,
) -> Result<(), Bad> {
    let digits = a.msisdn.bytes().all(|b| b.is_ascii_digit());
    if !digits || !(7..=15).contains(&a.msisdn.len()) {
        return Err(Bad::field(
            "msisdn",
            format!(
                "{:?} is not 7 to 15 digits (E.164 without \"+\", like \"79161234567\")",
                a.msisdn
            ),
        ));
    }
    if let Some(first) = seen.insert(msisdn_key(&a.msisdn), line) {
        seen.insert(msisdn_key(&a.msisdn), first);
        return Err(Bad::field(
            "msisdn",
            format!("duplicate {:?}: already on line {first}", a.msisdn),
        ));
    }
    if a.region.trim().is_empty() {
        return Err(Bad::field("region", "empty".into()));
    }
    plans
        .check(&a.plan, &a.plan_version)
        .map_err(|m| Bad::field("plan", m))?;
    money::in_range(a.balance).map_err(|m| Bad::field("balance", m))?;
    if !(1..=31).contains(&a.anchor_day) {
        return Err(Bad::field(
            "anchor_day",
            format!("{} is not a day of the month (1 to 31)", a.anchor_day),
        ));
    }
    if a.discount_pct < Decimal::ZERO || a.discount_pct > Decimal::ONE_HUNDRED {
        return Err(Bad::field(
            "discount_pct",
            format!("\"{}\" is outside \"0\" to \"100\"", a.discount_pct),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::demo::demo_catalog;

    const LINE: &str = r#"{"msisdn":"79161234567","region":"moscow","plan":"smart","plan_version":"2024","balance":"1000.00","billing":"monthly","next_charge":"2026-12-05","anchor_day":5,"blocks":[],"unpaid":false,"discount_pct":"0","services":["package"],"location":"home","main":{"minutes":120,"sms":300,"data_mb":2048},"saved":null}"#;

    fn parse(text: &str) -> Result<Vec<Account>, DataError> {
        parse_accounts("a.jsonl", text.as_bytes(), &demo_catalog())
    }

    #[test]
    fn data_accounts_spec_example_loads() {
        let accounts = parse(&format!("\u{feff}{LINE}\r\n\n   \n")).unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(account_line(&accounts[0]), LINE);
    }

    #[test]
    fn data_accounts_first_error_per_line_with_column() {
        let text = format!("{LINE}\n{}\n", LINE.replace("\"1000.00\"", "1000.00"));
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("a.jsonl:2:"), "{e}");
        assert!(e.contains(": balance: invalid type: floating point"), "{e}");
    }

    #[test]
    fn data_accounts_numbers_where_strings_belong_get_a_hint() {
        let e = parse(&LINE.replace("\"79161234567\"", "79161234567"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("msisdn: invalid type: integer `79161234567`, expected a string (write it in quotes"), "{e}");
        let e = parse(&LINE.replace("\"discount_pct\":\"0\"", "\"discount_pct\":33"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("discount_pct: invalid type: integer `33`") && e.contains("never numbers"),
            "{e}"
        );
    }

    #[test]
    fn data_accounts_trailing_garbage_refused() {
        let e = parse(&format!("{LINE} {LINE}\n")).unwrap_err().to_string();
        assert!(
            e.starts_with("a.jsonl:1:") && e.contains("trailing characters"),
            "{e}"
        );
    }

    #[test]
    fn data_accounts_invalid_utf8() {
        let mut bytes = LINE.as_bytes().to_vec();
        bytes[20] = 0xFF;
        let e = parse_accounts("a.jsonl", bytes.as_slice(), &demo_catalog()).unwrap_err();
        assert_eq!(e.to_string(), "a.jsonl:1:21: not valid UTF-8 text");
    }

    #[test]
    fn data_accounts_msisdn_key_distinguishes_leading_zeros() {
        assert_ne!(msisdn_key("0123456"), msisdn_key("00123456"));
        assert_eq!(
            msisdn_key("999999999999999"),
            (15 << 50) | 999_999_999_999_999
        );
    }
}
