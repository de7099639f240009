//! The tariff catalog: one JSON or TOML document (data-formats.md).
//!
//! Beyond what serde checks (shape, types, money strings, unknown
//! top-level keys) the loader refuses:
//!
//! * an empty `currency`, or one with spaces around it;
//! * a `timezone` that is not an IANA zone name known to chrono-tz;
//! * a catalog without plans;
//! * a plan with an empty `id`, `name` or `version`;
//! * two plans with the same (`id`, `version`);
//! * a plan offered in no region (**decided**: a plan that can be sold
//!   nowhere is a mistake, not a way of switching it off — that is what
//!   `renewal: false` or leaving it out is for), or an empty region name;
//! * a negative fee or out-of-bundle rate (zero is allowed).
//!
//! Errors name the file, the line and column for syntax and type errors,
//! and the plan by index, id and version plus the key for the rest.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::{
    json_message, number_hint, path_string, segments_string, DataError, Problem, MAX_REPORTED,
};
use crate::engine::model::{money, Catalog, Plan};

/// The catalog's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogFormat {
    Json,
    Toml,
}

impl CatalogFormat {
    /// By extension: `.json` or `.toml` (any case); None otherwise.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(CatalogFormat::Json),
            "toml" => Some(CatalogFormat::Toml),
            _ => None,
        }
    }

    /// A document whose first non-blank character is `{` is JSON; anything
    /// else is read as TOML.
    pub fn sniff(text: &str) -> Self {
        match text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .chars()
            .next()
        {
            Some('{') => CatalogFormat::Json,
            _ => CatalogFormat::Toml,
        }
    }
}

/// Reads and validates a catalog file; the format comes from the extension
/// (`.json`, `.toml`) or, failing that, from the content.
pub fn load_catalog(path: impl AsRef<Path>) -> Result<Catalog, DataError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        file: file.clone(),
        source,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bad = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..bad].iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(DataError::Invalid(Problem {
                file,
                line: Some(line),
                column: None,
                field: None,
                message: "not valid UTF-8 text".into(),
            }));
        }
    };
    let format = CatalogFormat::from_path(path).unwrap_or_else(|| CatalogFormat::sniff(&text));
    parse_catalog(&file, &text, format)
}

/// Parses and validates catalog text; `file` is only used in messages.
pub fn parse_catalog(file: &str, text: &str, format: CatalogFormat) -> Result<Catalog, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let catalog = match format {
        CatalogFormat::Json => from_json(file, text)?,
        CatalogFormat::Toml => from_toml(file, text)?,
    };
    validate(file, &catalog)?;
    Ok(catalog)
}

fn from_json(file: &str, text: &str) -> Result<Catalog, DataError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let located = |field: Option<String>, e: &serde_json::Error| {
        DataError::Invalid(Problem {
            file: file.to_string(),
            line: (e.line() > 0).then_some(e.line()),
            column: (e.line() > 0 && e.column() > 0).then_some(e.column()),
            message: json_message(e, field.as_deref()),
            field,
        })
    };
    match serde_path_to_error::deserialize::<_, Catalog>(&mut de) {
        Ok(catalog) => {
            de.end().map_err(|e| located(None, &e))?;
            // A map keeps the last of two equal keys; a region given twice
            // would silently lose a fee, so look for it.
            let mut de = serde_json::Deserializer::from_str(text);
            if let Err(e) = serde_path_to_error::deserialize::<_, RegionsOnly>(&mut de) {
                let plan = |i: usize| {
                    let p: &Plan = catalog.plans.get(i)?;
                    Some((p.id.clone(), p.version.clone()))
                };
                let field = describe_path(e.path(), plan);
                return Err(located(field, e.inner()));
            }
            Ok(catalog)
        }
        Err(e) => {
            let ids = |i: usize| {
                let doc: serde_json::Value = serde_json::from_str(text).ok()?;
                let plan = doc.get("plans")?.get(i)?;
                Some((
                    plan.get("id")?.as_str()?.to_string(),
                    plan.get("version")?.as_str()?.to_string(),
                ))
            };
            let field = describe_path(e.path(), ids);
            Err(located(field, e.inner()))
        }
    }
}

/// Just the region keys of each plan, refusing a key given twice. (TOML
/// itself forbids duplicate keys.)
#[derive(serde::Deserialize)]
struct RegionsOnly {
    #[serde(default)]
    #[allow(dead_code)]
    plans: Vec<PlanRegions>,
}

#[derive(serde::Deserialize)]
struct PlanRegions {
    #[serde(default)]
    #[allow(dead_code)]
    regions: UniqueKeys,
}

#[derive(Default)]
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of regions")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::BTreeSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "region {key:?} is given twice"
                        )));
                    }
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_map(Keys)
    }
}

fn from_toml(file: &str, text: &str) -> Result<Catalog, DataError> {
    let located = |field: Option<String>, e: &toml::de::Error, syntax: bool| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        DataError::Invalid(Problem {
            file: file.to_string(),
            line,
            column,
            message: toml_message(e, syntax, field.as_deref()),
            field,
        })
    };
    // Syntax first, so that a type error is never mistaken for one.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(located(None, &e, true));
    }
    match serde_path_to_error::deserialize::<_, Catalog>(toml::Deserializer::new(text)) {
        Ok(catalog) => Ok(catalog),
        Err(e) => {
            let ids = |i: usize| {
                let doc: toml::Table = toml::from_str(text).ok()?;
                let plan = doc.get("plans")?.as_array()?.get(i)?;
                Some((
                    plan.get("id")?.as_str()?.to_string(),
                    plan.get("version")?.as_str()?.to_string(),
                ))
            };
            let field = describe_path(e.path(), ids);
            Err(located(field, e.inner(), false))
        }
    }
}

/// The toml message on one line; syntax errors say so.
fn toml_message(e: &toml::de::Error, syntax: bool, field: Option<&str>) -> String {
    let msg = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if syntax {
        format!("malformed TOML: {msg}")
    } else {
        number_hint(msg, field)
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `plans[3] (id "smart" version "2024")`, or `plans[3]` without ids.
fn plan_label(index: usize, ids: Option<(&str, &str)>) -> String {
    match ids {
        Some((id, version)) => format!("plans[{index}] (id {id:?} version {version:?})"),
        None => format!("plans[{index}]"),
    }
}

/// The serde path, with a plan named by index, id and version:
/// `plans[3] (id "smart" version "2024"): regions.spb.monthly_fee`.
fn describe_path(
    path: &serde_path_to_error::Path,
    ids: impl FnOnce(usize) -> Option<(String, String)>,
) -> Option<String> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    if let [Segment::Map { key }, Segment::Seq { index }, rest @ ..] = segments.as_slice() {
        if key == "plans" {
            let ids = ids(*index);
            let label = plan_label(*index, ids.as_ref().map(|(i, v)| (i.as_str(), v.as_str())));
            let tail = segments_string(rest.iter().copied());
            return Some(if tail.is_empty() {
                label
            } else {
                format!("{label}: {tail}")
            });
        }
    }
    path_string(path)
}

/// The checks serde cannot make; every problem found, up to [`MAX_REPORTED`].
fn validate(file: &str, catalog: &Catalog) -> Result<(), DataError> {
    let mut problems = Vec::new();
    let mut add = |field: String, message: String| {
        problems.push(Problem {
            file: file.to_string(),
            line: None,
            column: None,
            field: Some(field),
            message,
        })
    };

    if catalog.currency.trim().is_empty() {
        add(
            "currency".into(),
            "empty (expected a currency code like \"RUB\")".into(),
        );
    } else if catalog.currency.trim() != catalog.currency {
        add(
            "currency".into(),
            format!("{:?} has spaces around it", catalog.currency),
        );
    }
    if chrono_tz::Tz::from_str(&catalog.timezone).is_err() {
        add(
            "timezone".into(),
            format!(
                "unknown time zone {:?} (expected an IANA name like \"Europe/Moscow\")",
                catalog.timezone
            ),
        );
    }
    if catalog.plans.is_empty() {
        add("plans".into(), "the catalog has no plans".into());
    }

    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, plan) in catalog.plans.iter().enumerate() {
        let label = plan_label(index, Some((&plan.id, &plan.version)));
        for (key, value) in [
            ("id", &plan.id),
            ("name", &plan.name),
            ("version", &plan.version),
        ] {
            if value.trim().is_empty() {
                add(format!("{label}: {key}"), "empty".into());
            }
        }
        if let Some(first) = seen.insert((&plan.id, &plan.version), index) {
            // Keep the first index for later duplicates too.
            seen.insert((&plan.id, &plan.version), first);
            add(
                label.clone(),
                format!(
                    "duplicate plan: id {:?} version {:?} is also plans[{first}]",
                    plan.id, plan.version
                ),
            );
        }
        if plan.regions.is_empty() {
            add(
                format!("{label}: regions"),
                "no regions (a plan must be offered in at least one region)".into(),
            );
        }
        let mut amounts: Vec<(String, Decimal)> = vec![
            ("overage.minute".into(), plan.overage.minute),
            ("overage.sms".into(), plan.overage.sms),
            ("overage.mb".into(), plan.overage.mb),
        ];
        for (region, fees) in &plan.regions {
            if region.trim().is_empty() {
                add(
                    format!("{label}: regions.{region:?}"),
                    "empty region name".into(),
                );
            }
            amounts.push((format!("regions.{region}.monthly_fee"), fees.monthly_fee));
            amounts.push((format!("regions.{region}.daily_fee"), fees.daily_fee));
        }
        for (key, amount) in amounts {
            if let Err(m) = money::in_range(amount) {
                add(format!("{label}: {key}"), m);
            } else if amount.is_sign_negative() && !amount.is_zero() {
                add(
                    format!("{label}: {key}"),
                    format!(
                        "negative amount \"{}\" (fees and rates must be 0 or more)",
                        money::format(amount)
                    ),
                );
            }
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        let truncated = problems.len() > MAX_REPORTED;
        problems.truncate(MAX_REPORTED);
        Err(DataError::from_problems(file, problems, truncated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
  "currency": "RUB",
  "timezone": "Europe/Moscow",
  "plans": [
    {
      "id": "smart", "name": "Smart", "version": "2024", "archived": false,
      "renewal": true,
      "package": { "minutes": 500, "sms": 500, "data_mb": 15360 },
      "overage": { "minute": "2.00", "sms": "1.50", "mb": "0.10" },
      "regions": {
        "moscow": { "monthly_fee": "550.00", "daily_fee": "19.00" },
        "spb":    { "monthly_fee": "500.00", "daily_fee": "17.50" }
      }
    }
  ]
}"#;

    fn err(text: &str, format: CatalogFormat) -> String {
        parse_catalog("c.json", text, format)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn data_catalog_spec_example_loads() {
        let c = parse_catalog("c.json", GOOD, CatalogFormat::Json).unwrap();
        assert_eq!(c.plans.len(), 1);
        assert_eq!(c.plans[0].regions["spb"].daily_fee.to_string(), "17.50");
        // With a BOM, as Windows editors save it.
        let bom = format!("\u{feff}{GOOD}");
        assert!(parse_catalog("c.json", &bom, CatalogFormat::Json).is_ok());
    }

    #[test]
    fn data_catalog_bad_money_names_plan_and_key() {
        let text = GOOD.replace("\"500.00\"", "\"5,50\"");
        let e = err(&text, CatalogFormat::Json);
        assert!(
            e.starts_with("c.json:12:")
                && e.contains(
                    "plans[0] (id \"smart\" version \"2024\"): regions.spb.monthly_fee: bad money string \"5,50\""
                ),
            "{e}"
        );
    }

    #[test]
    fn data_catalog_semantic_errors_collected() {
        let text = GOOD
            .replace("Europe/Moscow", "Europe/Moskow")
            .replace("\"19.00\"", "\"-19.00\"");
        let e = err(&text, CatalogFormat::Json);
        assert!(e.contains("2 problems"), "{e}");
        assert!(
            e.contains("c.json: timezone: unknown time zone \"Europe/Moskow\""),
            "{e}"
        );
        assert!(
            e.contains("c.json: plans[0] (id \"smart\" version \"2024\"): regions.moscow.daily_fee: negative amount \"-19.00\""),
            "{e}"
        );
    }

    #[test]
    fn data_catalog_refuses_amounts_no_account_could_pay() {
        let text = GOOD.replace("\"550.00\"", "\"79228162514264337593543950335.00\"");
        let e = err(&text, CatalogFormat::Json);
        assert!(
            e.contains("regions.moscow.monthly_fee: amount \"79228162514264337593543950335"),
            "{e}"
        );
        assert!(e.contains("is out of range"), "{e}");
    }

    #[test]
    fn data_catalog_sniff_and_extension() {
        assert_eq!(CatalogFormat::sniff("  {\"a\":1}"), CatalogFormat::Json);
        assert_eq!(
            CatalogFormat::sniff("currency = \"RUB\""),
            CatalogFormat::Toml
        );
        assert_eq!(
            CatalogFormat::from_path(Path::new("x/c.TOML")),
            Some(CatalogFormat::Toml)
        );
        assert_eq!(CatalogFormat::from_path(Path::new("c.cat")), None);
    }

    #[test]
    fn data_catalog_toml_roundtrip_and_error_position() {
        let c = parse_catalog("c.json", GOOD, CatalogFormat::Json).unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(
            parse_catalog("c.toml", &text, CatalogFormat::Toml).unwrap(),
            c
        );
        let bad = text.replace("\"2.00\"", "2.0");
        let e = parse_catalog("c.toml", &bad, CatalogFormat::Toml)
            .unwrap_err()
            .to_string();
        let line = bad
            .lines()
            .position(|l| l.contains("minute = 2.0"))
            .unwrap()
            + 1;
        assert!(e.starts_with(&format!("c.toml:{line}:")), "{e}\n{bad}");
        assert!(
            e.contains("plans[0] (id \"smart\" version \"2024\"): overage.minute"),
            "{e}"
        );
        assert!(e.contains("never a number"), "{e}");
    }
}
