//! The scenario file: its TOML shape, loading, and checking it before
//! anything runs.
//!
//! This module owns the fixture format documented in `fixtures/README.md`:
//! [`RawScenario`] is the file as serde reads it (also what `--record`
//! writes back), [`load`] turns it into a [`Scenario`] whose steps are
//! resolved (instants computed, traffic built as the SMPP messages the
//! network would send, operations as engine commands, expectations
//! parsed). A bad fixture is refused as a whole with a [`FixtureError`]
//! naming the file, the line, the step and the key: syntax and type errors
//! come from `toml::de::Error`'s span and serde_path_to_error's key path;
//! semantic errors (an unknown outcome code, time running backwards, two
//! actions in one step) name the step's index and the line its table
//! starts on.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use shortcode_protocol::smpp::{MtMessage, Sar};
use shortcode_protocol::{gsm7, msisdn, segment, text, ucs2};
use toml::Spanned;

use crate::config::Config;
use crate::data::{self, CatalogFormat};
use crate::engine::model::{
    money, Account, Billing, BlockKind, Catalog, Location, Outcome, Package, StatementKind,
    UsageKind,
};
use crate::engine::Command;

/// Every rule id of `renewal-rules.md` a scenario may claim in `covers`.
pub fn known_ids() -> Vec<String> {
    let mut ids = Vec::new();
    ids.extend((0..=6).map(|i| format!("R{i}")));
    ids.extend((1..=6).map(|i| format!("step{i}")));
    ids.extend((1..=3).map(|i| format!("U{i}")));
    ids.extend((1..=4).map(|i| format!("N{i}")));
    ids.extend((1..=5).map(|i| format!("C{i}")));
    ids.extend((1..=5).map(|i| format!("G{i}")));
    ids
}

/// The ids the shipped corpus must cover between its scenarios (issue 4):
/// every rule a replay can show (G1–G3 and G5 are properties of whole runs
/// and of the store, shown by other tests).
pub fn required_ids() -> Vec<String> {
    known_ids()
        .into_iter()
        .filter(|id| !matches!(id.as_str(), "G1" | "G2" | "G3" | "G5"))
        .collect()
}

// ---------------------------------------------------------------------------
// The file as written.

/// A scenario file as serde reads it. Field order is the order `--record`
/// writes them in.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<String>,
    /// The instant offsets (`"+1h"`) count from; accounts are imported then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Stamp>,
    /// The default subscriber of steps that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    /// A catalog file (JSON or TOML), relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_file: Option<String>,
    /// An accounts file (JSON Lines), relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts_file: Option<String>,
    /// An inline catalog, the catalog schema as TOML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<Spanned<Catalog>>,
    /// Inline accounts, with defaults for the fields a tester rarely needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<Spanned<InlineAccount>>>,
    #[serde(default)]
    pub steps: Vec<Spanned<RawStep>>,
}

/// An account written inline: the accounts schema, with defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InlineAccount {
    pub msisdn: String,
    pub region: String,
    pub plan: String,
    pub plan_version: String,
    pub balance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
    pub next_charge: Stamp,
    /// Default: the day of `next_charge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_day: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockKind>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpaid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_pct: Option<String>,
    /// Default: `["package"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Default: the plan's full allowance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<Package>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<InlineSaved>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InlineSaved {
    pub minutes: u64,
    pub sms: u64,
    pub data_mb: u64,
    pub valid_until: Stamp,
}

/// One step as written: a time, at most one action, expectations.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub at: Stamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,

    // Traffic.
    /// A USSD string dialled (`"*929#"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ussd: Option<String>,
    /// An SMS text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<String>,
    /// A delivery receipt sent to the short number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<RawReceipt>,
    /// The source address as the network sends it (default: the msisdn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ton: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_npi: Option<u8>,
    /// Destination address (default: `929` for USSD, the short number else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_coding: Option<u8>,
    /// The message octets in hex, sent as they are instead of encoding the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concat: Option<RawConcat>,
    /// its_session_info (USSD dialogue reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u16>,
    /// user_message_reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ref: Option<u16>,

    // Operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<RawUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockKind>,
    /// A block kind, or `"all"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unblock: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nightly: Option<RawNightly>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<RawExpect>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceipt {
    /// The id of the MT the receipt reports on (receipted_message_id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The receipt text (default: a DELIVRD receipt in the usual format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_mb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRef {
    pub id: String,
    pub version: String,
}

/// `concat = true`, or `concat = { reference = 7, order = [2, 1, 3], sar = true }`.
#[derive(Debug, Clone, PartialEq)]
pub enum RawConcat {
    Flag(bool),
    Spec(ConcatSpec),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConcatSpec {
    /// The concatenation reference (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<u8>,
    /// The order the parts are sent in, 1-based (default: 1, 2, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<u8>>,
    /// Carry the concatenation in sar_* TLVs instead of a UDH.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sar: bool,
}

/// `nightly = true` (the step's local date) or `nightly = "2026-12-05"`.
#[derive(Debug, Clone, PartialEq)]
pub enum RawNightly {
    Today(bool),
    Date(Stamp),
}

/// Expectations after a step. Every key is optional; only what is given is
/// checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// The account the account keys check (default: the step's subscriber).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// An outcome code of renewal-rules.md, `"OK"` for an operation, or
    /// `"NONE"` when the traffic made no engine request (a receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The SMPP command_status the MO was answered with (`"ESME_ROK"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_contains: Option<Strings>,
    /// Every SMS the subscriber got because of this step, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_contains: Option<Strings>,
    /// How many SMS parts each of those SMS went out as (C2: a long answer
    /// is a concatenated message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_parts: Option<Vec<usize>>,
    /// Whether the reply fits one USSD screen (C1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ussd_screen: Option<bool>,
    /// The operation was refused with an error containing this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_charge: Option<Stamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_day: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<Package>,
    /// `"none"`, or the saved package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<RawSaved>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpaid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_pct: Option<String>,
    /// The statement lines this step added to the account, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<Vec<RawLine>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RawSaved {
    None,
    Package(SavedSpec),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Stamp>,
}

/// One expected statement line; only the keys given are compared.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StatementKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_from: Option<Stamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_to: Option<Stamp>,
}

/// A date or an instant as written: a string, or a TOML date/datetime
/// literal (kept as its text; parsed where its meaning is known).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Stamp(pub String);

/// One string or a list of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Strings(pub Vec<String>);

// Hand-written visitors keep serde's own error text (with the key path)
// where an untagged enum would only say "did not match any variant".

/// A TOML date literal reaches a visitor as a one-entry map.
fn toml_datetime<'de, A: MapAccess<'de>>(map: A) -> Result<String, A::Error> {
    let dt = toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
    Ok(dt.to_string())
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a date or time as a string (\"2026-12-05\", \"+1d2h\") or a TOML date")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Stamp, E> {
                Ok(Stamp(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Stamp, A::Error> {
                toml_datetime(map).map(Stamp)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Strings, E> {
                Ok(Strings(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Strings(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawConcat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawConcat;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, or a table { reference, order, sar }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawConcat, E> {
                Ok(RawConcat::Flag(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawConcat, A::Error> {
                ConcatSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawConcat::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RawConcat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawConcat::Flag(b) => s.serialize_bool(*b),
            RawConcat::Spec(spec) => spec.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RawNightly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNightly;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true (the step's local date) or a date \"2026-12-05\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNightly, E> {
                Ok(RawNightly::Today(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNightly, E> {
                Ok(RawNightly::Date(Stamp(v.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawNightly, A::Error> {
                toml_datetime(map).map(|s| RawNightly::Date(Stamp(s)))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RawNightly {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawNightly::Today(b) => s.serialize_bool(*b),
            RawNightly::Date(d) => d.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RawSaved {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSaved;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"none\" or a table { minutes, sms, data_mb, valid_until }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSaved, E> {
                if v == "none" {
                    Ok(RawSaved::None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSaved, A::Error> {
                SavedSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawSaved::Package)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RawSaved {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawSaved::None => s.serialize_str("none"),
            RawSaved::Package(p) => p.serialize(s),
        }
    }
}

// ---------------------------------------------------------------------------
// The resolved scenario.

/// A loaded, checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file as the user named it (used in every message and report).
    pub file: String,
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub covers: Vec<String>,
    /// When the accounts are imported.
    pub start: DateTime<Utc>,
    pub catalog: Catalog,
    /// The zone local dates and report times are in (the engine's).
    pub timezone: String,
    pub accounts: Vec<Account>,
    pub steps: Vec<Step>,
    /// The file as read, for `--record`.
    pub raw: RawScenario,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based, as reports name it.
    pub index: usize,
    /// Line of the step's `[[steps]]` header.
    pub line: usize,
    pub at: DateTime<Utc>,
    /// The subscriber: traffic comes from them, operations apply to them.
    pub msisdn: String,
    /// The account the expectations check.
    pub check: String,
    pub action: Action,
    pub expect: Expect,
    /// One line saying what the step does, for reports.
    pub summary: String,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Messages the network sends to the gateway, in order (one per part of
    /// a concatenated SMS). They are built as the MT a network element
    /// sends, and become a submit_sm on the wire; in-process they are read
    /// back through the same PDU, so both see the same MO.
    Traffic {
        kind: TrafficKind,
        messages: Vec<MtMessage>,
    },
    /// Operator commands for `msisdn`, in order.
    Operations(Vec<Command>),
    /// The nightly run for a local date, over every account.
    Nightly(NaiveDate),
    /// Nothing: only check expectations.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficKind {
    Ussd,
    Sms,
    Receipt,
}

/// What to check after a step; `None` is "not checked".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    /// `Some(None)`: the traffic made no engine request.
    pub outcome: Option<Option<Outcome>>,
    pub status: Option<String>,
    pub reply: Option<String>,
    pub reply_contains: Vec<String>,
    pub sms: Option<Vec<String>>,
    pub sms_contains: Vec<String>,
    pub sms_parts: Option<Vec<usize>>,
    pub ussd_screen: Option<bool>,
    pub error: Option<String>,
    pub balance: Option<Decimal>,
    pub next_charge: Option<NaiveDate>,
    pub anchor_day: Option<u32>,
    pub billing: Option<Billing>,
    pub main: Option<Package>,
    /// `Some(None)`: no saved package.
    pub saved: Option<Option<SavedExpect>>,
    pub blocks: Option<Vec<BlockKind>>,
    pub unpaid: Option<bool>,
    pub discount_pct: Option<Decimal>,
    pub statement: Option<Vec<LineExpect>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedExpect {
    pub minutes: Option<u64>,
    pub sms: Option<u64>,
    pub data_mb: Option<u64>,
    pub valid_until: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineExpect {
    pub kind: Option<StatementKind>,
    pub amount: Option<Decimal>,
    pub balance_after: Option<Decimal>,
    pub description: Option<String>,
    pub period_from: Option<NaiveDate>,
    pub period_to: Option<NaiveDate>,
}

// ---------------------------------------------------------------------------
// Errors.

/// One problem in a fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureProblem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// 1-based step index, when the problem is inside a step.
    pub step: Option<usize>,
    /// The key path (`steps[2].expect.balance`).
    pub key: Option<String>,
    pub message: String,
}

/// Why a fixture was refused; nothing of it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureError {
    pub file: String,
    pub problems: Vec<FixtureProblem>,
}

impl fmt::Display for FixtureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(step) = self.step {
            write!(f, "step {step}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl FixtureError {
    fn one(file: &str, problem: FixtureProblem) -> Self {
        FixtureError {
            file: file.to_string(),
            problems: vec![problem],
        }
    }

    /// Each problem as `file:line[:column]: [step N: ][key: ]message`.
    pub fn lines(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| {
                let mut at = self.file.clone();
                if let Some(line) = p.line {
                    at.push_str(&format!(":{line}"));
                    if let Some(col) = p.column {
                        at.push_str(&format!(":{col}"));
                    }
                }
                format!("{at}: {p}")
            })
            .collect()
    }
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.lines();
        if lines.len() == 1 {
            return f.write_str(&lines[0]);
        }
        write!(
            f,
            "{}: refused, {} problems:",
            self.file,
            self.problems.len()
        )?;
        for l in lines {
            write!(f, "\n  {l}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FixtureError {}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Most problems one refused fixture reports.
const MAX_PROBLEMS: usize = 20;

// ---------------------------------------------------------------------------
// Loading.

/// Read, parse and check a scenario file. `config` supplies the short
/// number and USSD default destination the traffic is addressed to.
pub fn load(path: &Path, config: &Config) -> Result<Scenario, FixtureError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        FixtureError::one(
            &file,
            FixtureProblem {
                line: None,
                column: None,
                step: None,
                key: None,
                message: format!("cannot read: {e}"),
            },
        )
    })?;
    parse(&file, path, &text, config)
}

/// [`load`] over text; `path` resolves the files the scenario names.
pub fn parse(
    file: &str,
    path: &Path,
    text: &str,
    config: &Config,
) -> Result<Scenario, FixtureError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw = parse_raw(file, text)?;
    let mut cx = Checker {
        text,
        problems: Vec::new(),
    };
    let scenario = cx.resolve(file, path, raw, config);
    match scenario {
        Some(s) if cx.problems.is_empty() => Ok(s),
        _ => {
            let mut problems = cx.problems;
            if problems.is_empty() {
                // Every path that gives up names its problem; this is a net.
                problems.push(FixtureProblem {
                    line: None,
                    column: None,
                    step: None,
                    key: None,
                    message: "the scenario could not be resolved".into(),
                });
            }
            problems.truncate(MAX_PROBLEMS);
            Err(FixtureError {
                file: file.to_string(),
                problems,
            })
        }
    }
}

/// Syntax and shape: the file as serde reads it, or where it went wrong.
fn parse_raw(file: &str, text: &str) -> Result<RawScenario, FixtureError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, RawScenario>(de).map_err(|e| {
        // toml's Spanned wrapper shows up as a private key; it is not the user's.
        let key = crate::data::segments_string(e.path().iter().filter(|seg| {
            !matches!(seg, serde_path_to_error::Segment::Map { key } if key.starts_with("$__"))
        }));
        let inner = e.into_inner();
        let (line, column) = match inner.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        // "steps[2]…" → step 3, the way reports number steps.
        let step = key
            .strip_prefix("steps[")
            .and_then(|r| r.split(']').next())
            .and_then(|n| n.parse::<usize>().ok())
            .map(|i| i + 1);
        let message = hint(inner.message().trim().to_string(), &key);
        FixtureError::one(
            file,
            FixtureProblem {
                line,
                column,
                step,
                key: (!key.is_empty()).then_some(key),
                message,
            },
        )
    })
}

/// Money and percentages are strings; a bare number is the usual slip.
fn hint(message: String, key: &str) -> String {
    let number = message.starts_with("invalid type: floating point")
        || message.starts_with("invalid type: integer");
    let last = key.rsplit('.').next().unwrap_or("");
    let money_keys = [
        "balance",
        "topup",
        "amount",
        "balance_after",
        "discount",
        "discount_pct",
        "monthly_fee",
        "daily_fee",
        "minute",
        "sms",
        "mb",
    ];
    if number && message.contains("expected a string") && money_keys.contains(&last) {
        format!("{message} (money and percentages are strings like \"550.00\", never numbers)")
    } else {
        message
    }
}

struct Checker<'a> {
    text: &'a str,
    problems: Vec<FixtureProblem>,
}

/// Where a problem is: a line, and a step when inside one.
#[derive(Clone, Copy)]
struct At {
    line: Option<usize>,
    step: Option<usize>,
}

impl Checker<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    fn problem(&mut self, at: At, key: &str, message: impl Into<String>) {
        self.problems.push(FixtureProblem {
            line: at.line,
            column: None,
            step: at.step,
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
        });
    }

    fn resolve(
        &mut self,
        file: &str,
        path: &Path,
        raw: RawScenario,
        config: &Config,
    ) -> Option<Scenario> {
        let top = At {
            line: None,
            step: None,
        };
        let known = known_ids();
        let mut seen = BTreeSet::new();
        for id in &raw.covers {
            if !known.contains(id) {
                self.problem(
                    top,
                    "covers",
                    format!(
                        "unknown rule id {id:?} (known: R0–R6, step1–step6, U1–U3, N1–N4, C1–C5, G1–G5)"
                    ),
                );
            } else if !seen.insert(id.clone()) {
                self.problem(top, "covers", format!("{id} is listed twice"));
            }
        }
        let start = match &raw.start {
            None => None,
            Some(s) => match parse_instant(&s.0) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.problem(top, "start", e);
                    None
                }
            },
        };

        let base = path.parent().unwrap_or(Path::new("."));
        let catalog = self.catalog(file, base, &raw);
        let catalog = catalog?;
        // The engine's zone: the config's override, else the catalog's.
        let zone = config
            .service
            .timezone
            .as_ref()
            .unwrap_or(&catalog.timezone);
        let Ok(tz) = zone.parse::<chrono_tz::Tz>() else {
            self.problem(
                top,
                "catalog.timezone",
                format!("{zone:?} is not a known time zone"),
            );
            return None;
        };
        let accounts = self.accounts(file, base, &raw, &catalog);

        let default_msisdn = match (&raw.msisdn, &accounts) {
            (Some(m), _) => {
                if !is_msisdn(m) {
                    self.problem(top, "msisdn", format!("{m:?} is not 7 to 15 digits"));
                }
                Some(m.clone())
            }
            (None, Some(a)) if a.len() == 1 => Some(a[0].msisdn.clone()),
            _ => None,
        };
        let known_accounts: Vec<String> = accounts
            .iter()
            .flatten()
            .map(|a| a.msisdn.clone())
            .collect();

        let first_step_time = raw
            .steps
            .first()
            .and_then(|s| parse_instant(&s.get_ref().at.0).ok());
        let origin = start.or(first_step_time);
        if raw.steps.is_empty() {
            self.problem(top, "steps", "a scenario needs at least one [[steps]]");
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        let mut last: Option<DateTime<Utc>> = None;
        for (i, spanned) in raw.steps.iter().enumerate() {
            let at = At {
                line: Some(self.line_of(spanned.span())),
                step: Some(i + 1),
            };
            let cx = StepCx {
                at,
                start,
                default_msisdn: default_msisdn.as_deref(),
                accounts: &known_accounts,
                config,
                tz,
            };
            // Order is checked on the times alone, so a step with another
            // problem still takes part in it.
            let written = &spanned.get_ref().at.0;
            let when = match parse_offset(written) {
                Some(d) => start.and_then(|t| t.checked_add_signed(d)),
                None => parse_instant(written).ok(),
            };
            if let (Some(prev), Some(now)) = (last, when) {
                if now < prev {
                    self.problem(
                        at,
                        "at",
                        format!(
                            "time goes backwards: {} is before the previous step's {}",
                            now.with_timezone(&tz).to_rfc3339(),
                            prev.with_timezone(&tz).to_rfc3339()
                        ),
                    );
                }
            }
            last = when.or(last);
            if let Some(step) = self.step(&cx, i + 1, spanned.get_ref()) {
                steps.push(step);
            }
        }
        let start = origin?;
        if let Some(first) = steps.first() {
            if first.at < start {
                self.problem(
                    At {
                        line: Some(first.line),
                        step: Some(1),
                    },
                    "at",
                    "the first step is before the scenario's start",
                );
            }
        }
        let name = raw.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.to_string())
        });
        Some(Scenario {
            file: file.to_string(),
            path: path.to_path_buf(),
            name,
            description: raw.description.clone(),
            covers: raw.covers.clone(),
            start,
            timezone: tz.name().to_string(),
            catalog,
            accounts: accounts?,
            steps,
            raw,
        })
    }

    fn catalog(&mut self, file: &str, base: &Path, raw: &RawScenario) -> Option<Catalog> {
        let top = At {
            line: None,
            step: None,
        };
        match (&raw.catalog_file, &raw.catalog) {
            (Some(_), Some(_)) => {
                self.problem(
                    top,
                    "catalog",
                    "give either catalog_file or an inline [catalog], not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    top,
                    "catalog",
                    "no catalog: give catalog_file = \"…\" or an inline [catalog]",
                );
                None
            }
            (Some(rel), None) => match data::load_catalog(base.join(rel)) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.problem(top, "catalog_file", e.to_string());
                    None
                }
            },
            (None, Some(inline)) => {
                let at = At {
                    line: Some(self.line_of(inline.span())),
                    step: None,
                };
                // The catalog loader's checks (time zone, duplicate plans,
                // negative fees) run on the inline table written back as TOML.
                let text = match toml::to_string(inline.get_ref()) {
                    Ok(t) => t,
                    Err(e) => {
                        self.problem(at, "catalog", e.to_string());
                        return None;
                    }
                };
                match data::parse_catalog(file, &text, CatalogFormat::Toml) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        for p in e.problems() {
                            let key = match &p.field {
                                Some(f) => format!("catalog.{f}"),
                                None => "catalog".into(),
                            };
                            self.problem(at, &key, p.message.clone());
                        }
                        None
                    }
                }
            }
        }
    }

    fn accounts(
        &mut self,
        file: &str,
        base: &Path,
        raw: &RawScenario,
        catalog: &Catalog,
    ) -> Option<Vec<Account>> {
        let top = At {
            line: None,
            step: None,
        };
        match (&raw.accounts_file, &raw.accounts) {
            (Some(_), Some(_)) => {
                self.problem(
                    top,
                    "accounts",
                    "give either accounts_file or inline [[accounts]], not both",
                );
                None
            }
            (None, None) => Some(Vec::new()),
            (Some(rel), None) => match data::load_accounts(base.join(rel), catalog) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.problem(top, "accounts_file", e.to_string());
                    None
                }
            },
            (None, Some(list)) => {
                // Fill the defaults, then let the accounts loader check each
                // one exactly as it checks a line of an accounts file.
                let mut lines = String::new();
                let mut ok = true;
                for (i, a) in list.iter().enumerate() {
                    let at = At {
                        line: Some(self.line_of(a.span())),
                        step: None,
                    };
                    match inline_account_json(a.get_ref(), catalog) {
                        Ok(v) => {
                            lines.push_str(&v.to_string());
                            lines.push('\n');
                        }
                        Err((key, msg)) => {
                            ok = false;
                            self.problem(at, &format!("accounts[{i}].{key}"), msg);
                        }
                    }
                }
                if !ok {
                    return None;
                }
                match data::parse_accounts(file, lines.as_bytes(), catalog) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        for p in e.problems() {
                            let i = p.line.unwrap_or(1).saturating_sub(1);
                            let line = list.get(i).map(|a| self.line_of(a.span()));
                            let key = match &p.field {
                                Some(f) => format!("accounts[{i}].{f}"),
                                None => format!("accounts[{i}]"),
                            };
                            self.problem(
                                At { line, step: None },
                                &key,
                                // The loader calls an account by its line
                                // in the JSON it was given; here that is
                                // meaningless.
                                p.message.clone(),
                            );
                        }
                        None
                    }
                }
            }
        }
    }
}

/// Context a step is resolved in.
struct StepCx<'a> {
    at: At,
    start: Option<DateTime<Utc>>,
    default_msisdn: Option<&'a str>,
    accounts: &'a [String],
    config: &'a Config,
    tz: chrono_tz::Tz,
}

impl Checker<'_> {
    fn step(&mut self, cx: &StepCx, index: usize, s: &RawStep) -> Option<Step> {
        let at = cx.at;
        let before = self.problems.len();
        let when = match parse_offset(&s.at.0) {
            Some(d) => match cx.start {
                Some(start) => {
                    let t = start.checked_add_signed(d);
                    if t.is_none() {
                        self.problem(at, "at", format!("{:?} is too far from start", s.at.0));
                    }
                    t
                }
                None => {
                    self.problem(
                        at,
                        "at",
                        format!(
                            "{:?} is an offset: give the scenario a start = \"…\" to count it from",
                            s.at.0
                        ),
                    );
                    None
                }
            },
            None => match parse_instant(&s.at.0) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.problem(at, "at", e);
                    None
                }
            },
        };

        // Which actions are present.
        let mut actions: Vec<&str> = Vec::new();
        for (present, name) in [
            (s.ussd.is_some(), "ussd"),
            (s.sms.is_some(), "sms"),
            (s.receipt.is_some(), "receipt"),
            (s.usage.is_some(), "usage"),
            (s.topup.is_some(), "topup"),
            (s.block.is_some(), "block"),
            (s.unblock.is_some(), "unblock"),
            (s.discount.is_some(), "discount"),
            (s.plan.is_some(), "plan"),
            (s.add_service.is_some(), "add_service"),
            (s.remove_service.is_some(), "remove_service"),
            (s.nightly.is_some(), "nightly"),
        ] {
            if present {
                actions.push(name);
            }
        }
        if actions.len() > 1 {
            self.problem(
                at,
                "",
                format!(
                    "one action per step, found {}: split them into steps",
                    actions.join(" and ")
                ),
            );
            return None;
        }
        let action = actions.first().copied();
        if action.is_none() && s.expect.is_none() {
            self.problem(
                at,
                "",
                "the step does nothing: give an action (ussd, sms, receipt, usage, topup, block, \
                 unblock, discount, plan, add_service, remove_service, nightly) or an expect table",
            );
            return None;
        }
        let is_traffic = matches!(action, Some("ussd" | "sms" | "receipt"));
        if !is_traffic {
            for (present, key) in [
                (s.from.is_some(), "from"),
                (s.from_ton.is_some(), "from_ton"),
                (s.from_npi.is_some(), "from_npi"),
                (s.to.is_some(), "to"),
                (s.data_coding.is_some(), "data_coding"),
                (s.hex.is_some(), "hex"),
                (s.concat.is_some(), "concat"),
                (s.session.is_some(), "session"),
                (s.message_ref.is_some(), "message_ref"),
            ] {
                if present {
                    self.problem(
                        at,
                        key,
                        "only traffic steps (ussd, sms, receipt) take this key",
                    );
                }
            }
        }
        if s.concat.is_some() && action != Some("sms") {
            self.problem(at, "concat", "only an sms step can be concatenated");
        }

        // The subscriber.
        if let Some(m) = &s.msisdn {
            if !is_msisdn(m) {
                self.problem(at, "msisdn", format!("{m:?} is not 7 to 15 digits"));
            }
        }
        let from_normalised = s.from.as_ref().and_then(|f| {
            msisdn::normalize(
                f,
                s.from_ton.unwrap_or(msisdn::TON_UNKNOWN),
                s.from_npi.unwrap_or(msisdn::NPI_ISDN),
                &cx.config.service.country_code,
            )
            .ok()
        });
        let subscriber = s
            .msisdn
            .clone()
            .or(from_normalised)
            .or(cx.default_msisdn.map(str::to_string));
        let needs_account = matches!(
            action,
            Some(
                "usage"
                    | "topup"
                    | "block"
                    | "unblock"
                    | "discount"
                    | "plan"
                    | "add_service"
                    | "remove_service"
            )
        );
        let Some(subscriber) = subscriber.or_else(|| {
            // A nightly run or a receipt from an alphanumeric sender need no
            // subscriber of their own.
            (matches!(action, Some("nightly" | "receipt")) || s.from.is_some()).then(String::new)
        }) else {
            self.problem(
                at,
                "msisdn",
                "which subscriber? give msisdn here, or msisdn at the top of the file",
            );
            return None;
        };
        if needs_account && !cx.accounts.contains(&subscriber) {
            self.problem(
                at,
                "msisdn",
                format!("{subscriber} is not an account of this scenario; operations need one"),
            );
        }

        let action = match action {
            None => Some(Action::Check),
            Some("ussd" | "sms" | "receipt") => self.traffic(at, cx, s, &subscriber),
            Some("nightly") => match s.nightly.as_ref() {
                Some(RawNightly::Today(true)) => {
                    when.map(|t| Action::Nightly(t.with_timezone(&cx.tz).date_naive()))
                }
                Some(RawNightly::Today(false)) => {
                    self.problem(at, "nightly", "nightly = false does nothing; leave it out");
                    None
                }
                Some(RawNightly::Date(d)) => match parse_date(&d.0) {
                    Ok(d) => Some(Action::Nightly(d)),
                    Err(e) => {
                        self.problem(at, "nightly", e);
                        None
                    }
                },
                None => None,
            },
            Some(_) => self.operations(at, s),
        };
        let expect = match &s.expect {
            Some(e) => self.expect(at, e),
            None => Some(Expect::default()),
        };
        let check = s
            .expect
            .as_ref()
            .and_then(|e| e.account.clone())
            .unwrap_or_else(|| subscriber.clone());
        if let Some(e) = s.expect.as_ref().and_then(|e| e.account.as_ref()) {
            if !is_msisdn(e) {
                self.problem(at, "expect.account", format!("{e:?} is not 7 to 15 digits"));
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let (Some(when), Some(action), Some(expect)) = (when, action, expect) else {
            return None;
        };
        let summary = summary(s, &subscriber, &action);
        Some(Step {
            index,
            line: at.line.unwrap_or(0),
            at: when,
            msisdn: subscriber,
            check,
            action,
            expect,
            summary,
        })
    }

    fn traffic(&mut self, at: At, cx: &StepCx, s: &RawStep, subscriber: &str) -> Option<Action> {
        let service = &cx.config.service;
        let (source_addr, source_ton) = match &s.from {
            Some(f) => (f.clone(), s.from_ton.unwrap_or(msisdn::TON_UNKNOWN)),
            None => (
                subscriber.to_string(),
                s.from_ton.unwrap_or(msisdn::TON_INTERNATIONAL),
            ),
        };
        let base = MtMessage {
            source_addr,
            source_ton,
            source_npi: s.from_npi.unwrap_or(msisdn::NPI_ISDN),
            its_session_info: s.session,
            user_message_reference: s.message_ref,
            ..MtMessage::default()
        };
        let hex = match &s.hex {
            None => None,
            Some(h) => match parse_hex(h) {
                Ok(b) => Some(b),
                Err(e) => {
                    self.problem(at, "hex", e);
                    return None;
                }
            },
        };
        let (kind, messages) = if let Some(r) = &s.receipt {
            let id = r.message_id.clone().unwrap_or_else(|| "1".into());
            let text = r.text.clone().unwrap_or_else(|| {
                format!(
                    "id:{id} sub:001 dlvrd:001 submit date:2611221000 done date:2611221000 \
                     stat:DELIVRD err:000 text:"
                )
            });
            let data_coding = s.data_coding.unwrap_or(text::DC_GSM7);
            let payload = match hex
                .clone()
                .map(Ok)
                .unwrap_or_else(|| encode_text(&text, data_coding))
            {
                Ok(p) => p,
                Err(e) => {
                    self.problem(at, "receipt.text", e);
                    return None;
                }
            };
            let m = MtMessage {
                dest_addr: s.to.clone().unwrap_or_else(|| service.short_number.clone()),
                // SMPP 3.4 §5.2.12: message type "MC delivery receipt".
                esm_class: 0x04,
                data_coding,
                payload,
                receipted_message_id: Some(id),
                ..base
            };
            (TrafficKind::Receipt, vec![m])
        } else if let Some(dialled) = &s.ussd {
            let data_coding = s.data_coding.unwrap_or_else(|| default_coding(dialled));
            let payload = match hex
                .clone()
                .map(Ok)
                .unwrap_or_else(|| encode_text(dialled, data_coding))
            {
                Ok(p) => p,
                Err(e) => {
                    self.problem(at, "ussd", e);
                    return None;
                }
            };
            // The USSD centre addresses the service by the code's digits.
            let code_digits: String = service
                .ussd_codes
                .first()
                .map(|c| c.chars().filter(char::is_ascii_digit).collect())
                .unwrap_or_default();
            let m = MtMessage {
                dest_addr: s.to.clone().unwrap_or(code_digits),
                ussd_service_op: Some(shortcode_protocol::smpp::ussd_service_op::PSSR_INDICATION),
                data_coding,
                payload,
                ..base
            };
            (TrafficKind::Ussd, vec![m])
        } else {
            let body = s.sms.clone().unwrap_or_default();
            let dest_addr = s.to.clone().unwrap_or_else(|| service.short_number.clone());
            let concat = match &s.concat {
                None | Some(RawConcat::Flag(false)) => None,
                Some(RawConcat::Flag(true)) => Some(ConcatSpec::default()),
                Some(RawConcat::Spec(c)) => Some(c.clone()),
            };
            match concat {
                None => {
                    let data_coding = s.data_coding.unwrap_or_else(|| {
                        if hex.is_some() {
                            0x04
                        } else {
                            default_coding(&body)
                        }
                    });
                    let payload = match hex
                        .clone()
                        .map(Ok)
                        .unwrap_or_else(|| encode_text(&body, data_coding))
                    {
                        Ok(p) => p,
                        Err(e) => {
                            self.problem(at, "sms", e);
                            return None;
                        }
                    };
                    let m = MtMessage {
                        dest_addr,
                        data_coding,
                        payload,
                        ..base
                    };
                    (TrafficKind::Sms, vec![m])
                }
                Some(spec) => {
                    if hex.is_some() {
                        self.problem(
                            at,
                            "concat",
                            "concat splits the sms text; it cannot split hex",
                        );
                        return None;
                    }
                    let seg = match segment::segment(&body, spec.reference.unwrap_or(1)) {
                        Ok(seg) => seg,
                        Err(e) => {
                            self.problem(at, "sms", e.to_string());
                            return None;
                        }
                    };
                    if let Some(dc) = s.data_coding.filter(|&dc| dc != seg.data_coding) {
                        self.problem(
                            at,
                            "data_coding",
                            format!(
                                "a concatenated text is encoded as the gateway would split it \
                                 (data_coding {}), not {dc}: leave data_coding out",
                                seg.data_coding
                            ),
                        );
                        return None;
                    }
                    let total = seg.parts.len();
                    if total < 2 {
                        self.problem(
                            at,
                            "concat",
                            "the text fits one SMS; concatenation needs a longer text",
                        );
                        return None;
                    }
                    let order: Vec<usize> = match &spec.order {
                        None => (1..=total).collect(),
                        Some(o) => o.iter().map(|&n| usize::from(n)).collect(),
                    };
                    let mut sorted = order.clone();
                    sorted.sort_unstable();
                    if sorted != (1..=total).collect::<Vec<_>>() {
                        self.problem(
                            at,
                            "concat.order",
                            format!(
                                "the text is {total} parts: order must list each of 1..={total} once"
                            ),
                        );
                        return None;
                    }
                    let messages = order
                        .iter()
                        .map(|&n| {
                            let part = &seg.parts[n - 1];
                            let mut m = MtMessage {
                                dest_addr: dest_addr.clone(),
                                data_coding: seg.data_coding,
                                ..base.clone()
                            };
                            if spec.sar {
                                m.payload = part.payload.clone();
                                m.sar = Some(Sar {
                                    msg_ref_num: u16::from(part.reference),
                                    total_segments: part.total,
                                    segment_seqnum: part.seq,
                                });
                            } else {
                                m.payload = part.short_message();
                                m.esm_class = segment::ESM_CLASS_UDHI;
                            }
                            m
                        })
                        .collect();
                    (TrafficKind::Sms, messages)
                }
            }
        };
        for m in &messages {
            if let Err(e) = m.to_submit_sm() {
                self.problem(at, "", format!("cannot be sent as one submit_sm: {e}"));
                return None;
            }
        }
        Some(Action::Traffic { kind, messages })
    }

    fn operations(&mut self, at: At, s: &RawStep) -> Option<Action> {
        let mut commands = Vec::new();
        if let Some(u) = &s.usage {
            for (kind, amount) in [
                (UsageKind::Minutes, u.minutes),
                (UsageKind::Sms, u.sms),
                (UsageKind::DataMb, u.data_mb),
            ] {
                if let Some(amount) = amount {
                    commands.push(Command::Usage { kind, amount });
                }
            }
            if commands.is_empty() {
                self.problem(at, "usage", "give minutes, sms or data_mb");
                return None;
            }
        } else if let Some(t) = &s.topup {
            match parse_money(t) {
                Ok(amount) => commands.push(Command::TopUp { amount }),
                Err(e) => {
                    self.problem(at, "topup", e);
                    return None;
                }
            }
        } else if let Some(kind) = s.block {
            commands.push(Command::Block { kind });
        } else if let Some(u) = &s.unblock {
            let kind = if u == "all" {
                None
            } else {
                match serde_json::from_value::<BlockKind>(serde_json::Value::String(u.clone())) {
                    Ok(k) => Some(k),
                    Err(_) => {
                        self.problem(
                            at,
                            "unblock",
                            format!(
                                "{u:?}: expected \"all\" or one of financial, voluntary, lost_sim, fraud, other"
                            ),
                        );
                        return None;
                    }
                }
            };
            commands.push(Command::Unblock { kind });
        } else if let Some(d) = &s.discount {
            match d.trim().parse::<Decimal>() {
                Ok(pct) if d.trim() == d => commands.push(Command::SetDiscount { pct }),
                _ => {
                    self.problem(
                        at,
                        "discount",
                        format!("{d:?} is not a percentage like \"50\""),
                    );
                    return None;
                }
            }
        } else if let Some(p) = &s.plan {
            commands.push(Command::ChangePlan {
                plan: p.id.clone(),
                version: p.version.clone(),
            });
        } else if let Some(name) = &s.add_service {
            commands.push(Command::AddService {
                service: name.clone(),
            });
        } else if let Some(name) = &s.remove_service {
            commands.push(Command::RemoveService {
                service: name.clone(),
            });
        }
        Some(Action::Operations(commands))
    }

    fn expect(&mut self, at: At, e: &RawExpect) -> Option<Expect> {
        let before = self.problems.len();
        let mut x = Expect {
            status: e.status.clone(),
            reply: e.reply.clone(),
            reply_contains: e.reply_contains.clone().map(|s| s.0).unwrap_or_default(),
            sms: e.sms.clone(),
            sms_contains: e.sms_contains.clone().map(|s| s.0).unwrap_or_default(),
            sms_parts: e.sms_parts.clone(),
            ussd_screen: e.ussd_screen,
            error: e.error.clone(),
            anchor_day: e.anchor_day,
            billing: e.billing,
            main: e.main,
            blocks: e.blocks.clone().map(|mut b| {
                b.sort();
                b
            }),
            unpaid: e.unpaid,
            ..Expect::default()
        };
        if let Some(o) = &e.outcome {
            if o == "NONE" {
                x.outcome = Some(None);
            } else if let Some(code) = Outcome::from_code(o) {
                x.outcome = Some(Some(code));
            } else {
                let codes: Vec<&str> = Outcome::ALL.iter().map(|o| o.code()).collect();
                self.problem(
                    at,
                    "expect.outcome",
                    format!("unknown outcome {o:?} (one of {}, NONE)", codes.join(", ")),
                );
            }
        }
        if let Some(st) = &e.status {
            if !st.starts_with("ESME_") {
                self.problem(
                    at,
                    "expect.status",
                    format!("{st:?} is not an SMPP status name like \"ESME_ROK\""),
                );
            }
        }
        let money_of = |cx: &mut Self, key: &str, v: &Option<String>| -> Option<Decimal> {
            let v = v.as_ref()?;
            match parse_money(v) {
                Ok(d) => Some(d),
                Err(m) => {
                    cx.problem(at, key, m);
                    None
                }
            }
        };
        x.balance = money_of(self, "expect.balance", &e.balance);
        let date_of = |cx: &mut Self, key: &str, v: Option<&Stamp>| -> Option<NaiveDate> {
            let v = v?;
            match parse_date(&v.0) {
                Ok(d) => Some(d),
                Err(m) => {
                    cx.problem(at, key, m);
                    None
                }
            }
        };
        x.next_charge = date_of(self, "expect.next_charge", e.next_charge.as_ref());
        if let Some(d) = &e.discount_pct {
            match d.parse::<Decimal>() {
                Ok(v) => x.discount_pct = Some(v),
                Err(_) => self.problem(
                    at,
                    "expect.discount_pct",
                    format!("{d:?} is not a percentage like \"50\""),
                ),
            }
        }
        x.saved = match &e.saved {
            None => None,
            Some(RawSaved::None) => Some(None),
            Some(RawSaved::Package(p)) => Some(Some(SavedExpect {
                minutes: p.minutes,
                sms: p.sms,
                data_mb: p.data_mb,
                valid_until: date_of(self, "expect.saved.valid_until", p.valid_until.as_ref()),
            })),
        };
        if let Some(lines) = &e.statement {
            let mut out = Vec::with_capacity(lines.len());
            for (i, l) in lines.iter().enumerate() {
                let key = |k: &str| format!("expect.statement[{i}].{k}");
                out.push(LineExpect {
                    kind: l.kind,
                    amount: money_of(self, &key("amount"), &l.amount),
                    balance_after: money_of(self, &key("balance_after"), &l.balance_after),
                    description: l.description.clone(),
                    period_from: date_of(self, &key("period_from"), l.period_from.as_ref()),
                    period_to: date_of(self, &key("period_to"), l.period_to.as_ref()),
                });
            }
            x.statement = Some(out);
        }
        (self.problems.len() == before).then_some(x)
    }
}

/// GSM 7-bit when the text allows it, else UCS2: what a handset picks.
fn default_coding(text: &str) -> u8 {
    if gsm7::is_representable(text) {
        text::DC_GSM7
    } else {
        text::DC_UCS2
    }
}

fn parse_hex(h: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = h.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err(format!("{h:?}: hex needs an even number of digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("{h:?} is not hex octets like \"00 2a ff\""))
        })
        .collect()
}

/// One line saying what a step does.
fn summary(s: &RawStep, subscriber: &str, action: &Action) -> String {
    let who = if subscriber.is_empty() {
        String::new()
    } else {
        format!(" ({subscriber})")
    };
    let from = s.from.clone().unwrap_or_else(|| subscriber.to_string());
    match action {
        Action::Traffic { kind, messages } => {
            let parts = if messages.len() > 1 {
                format!(", {} parts", messages.len())
            } else {
                String::new()
            };
            let dc = messages.first().map_or(0, |m| m.data_coding);
            match kind {
                TrafficKind::Ussd => {
                    format!("ussd {:?} from {from}", s.ussd.clone().unwrap_or_default())
                }
                TrafficKind::Sms => format!(
                    "sms {:?} from {from} (data_coding {dc}{parts})",
                    clip(&s.sms.clone().unwrap_or_default())
                ),
                TrafficKind::Receipt => format!(
                    "receipt to {} from {from}",
                    messages.first().map(|m| m.dest_addr.as_str()).unwrap_or("")
                ),
            }
        }
        Action::Operations(commands) => {
            let text: Vec<String> = commands.iter().map(command_summary).collect();
            format!("{}{who}", text.join(", "))
        }
        Action::Nightly(date) => format!("nightly {date}"),
        Action::Check => format!("check{who}"),
    }
}

/// A long text shortened for a one-line summary.
fn clip(text: &str) -> String {
    const MAX: usize = 32;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(MAX - 1).collect();
        short.push('…');
        short
    }
}

fn command_summary(c: &Command) -> String {
    match c {
        Command::Usage { kind, amount } => format!("usage {amount} {}", snake(kind)),
        Command::TopUp { amount } => format!("topup {}", money::format(*amount)),
        Command::Block { kind } => format!("block {}", snake(kind)),
        Command::Unblock { kind: Some(k) } => format!("unblock {}", snake(k)),
        Command::Unblock { kind: None } => "unblock all".into(),
        Command::SetDiscount { pct } => format!("discount {pct}%"),
        Command::ChangePlan { plan, version } => format!("plan {plan} {version}"),
        Command::AddService { service } => format!("add_service {service}"),
        Command::RemoveService { service } => format!("remove_service {service}"),
        other => format!("{other:?}"),
    }
}

/// The snake_case name serde gives an enum value.
pub(crate) fn snake<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn is_msisdn(s: &str) -> bool {
    (7..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
}

/// An inline account as one accounts-file JSON object, defaults filled.
/// Err: (key, message) for what cannot even be put into that shape.
fn inline_account_json(
    a: &InlineAccount,
    catalog: &Catalog,
) -> Result<serde_json::Value, (String, String)> {
    let next_charge = parse_date(&a.next_charge.0).map_err(|e| ("next_charge".to_string(), e))?;
    let saved = match &a.saved {
        None => serde_json::Value::Null,
        Some(s) => {
            let until =
                parse_date(&s.valid_until.0).map_err(|e| ("saved.valid_until".to_string(), e))?;
            serde_json::json!({
                "minutes": s.minutes, "sms": s.sms, "data_mb": s.data_mb,
                "valid_until": until.to_string(),
            })
        }
    };
    let main = a.main.unwrap_or_else(|| {
        catalog
            .plans
            .iter()
            .find(|p| p.id == a.plan && p.version == a.plan_version)
            .map(|p| p.package)
            .unwrap_or_default()
    });
    Ok(serde_json::json!({
        "msisdn": a.msisdn,
        "region": a.region,
        "plan": a.plan,
        "plan_version": a.plan_version,
        "balance": a.balance,
        "billing": a.billing.unwrap_or(Billing::Monthly),
        "next_charge": next_charge.to_string(),
        "anchor_day": a.anchor_day.unwrap_or_else(|| next_charge.day()),
        "blocks": a.blocks,
        "unpaid": a.unpaid,
        "discount_pct": a.discount_pct.clone().unwrap_or_else(|| "0".into()),
        "services": a.services.clone().unwrap_or_else(|| vec![crate::engine::PACKAGE_SERVICE.to_string()]),
        "location": a.location.unwrap_or(Location::Home),
        "main": main,
        "saved": saved,
    }))
}

/// `"+1h"`, `"+2d3h"`, `"+90s"`, `"+1w"`, `"+0"`: an exact duration
/// (a day is 24 hours). None when `s` is not an offset.
pub fn parse_offset(s: &str) -> Option<chrono::Duration> {
    let rest = s.trim().strip_prefix('+')?;
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut units = 0;
    for c in rest.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        units += 1;
    }
    if !digits.is_empty() || units == 0 {
        return None;
    }
    chrono::Duration::try_seconds(total)
}

/// An RFC 3339 instant with its offset.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            if parse_offset(s).is_some() {
                format!("{s:?} is an offset; here an instant is needed, like \"2026-11-22T10:00:00+03:00\"")
            } else {
                format!(
                    "{s:?} is not an instant: write RFC 3339 with an offset \
                     (\"2026-11-22T10:00:00+03:00\") or an offset from start (\"+1d2h\")"
                )
            }
        })
}

/// A local date `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date like \"2026-12-05\""))
}

fn parse_money(s: &str) -> Result<Decimal, String> {
    money::parse(s)
}

/// Octets of `text` in `data_coding`, or why it cannot be written so.
pub fn encode_text(text: &str, data_coding: u8) -> Result<Vec<u8>, String> {
    match text::alphabet(data_coding) {
        text::Alphabet::Gsm7 => gsm7::encode(text).ok_or_else(|| {
            format!("{text:?} has characters GSM 7-bit cannot carry; use data_coding = 8")
        }),
        text::Alphabet::Ucs2 => Ok(ucs2::encode(text)),
        text::Alphabet::Latin1 => text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| c))
            .collect::<Result<Vec<u8>, char>>()
            .map_err(|c| format!("{c:?} is not in Latin-1")),
        text::Alphabet::Cyrillic => text
            .chars()
            .map(|c| iso_8859_5(c).ok_or(c))
            .collect::<Result<Vec<u8>, char>>()
            .map_err(|c| format!("{c:?} is not in ISO-8859-5")),
        text::Alphabet::Ascii | text::Alphabet::AsciiCompatible | text::Alphabet::Binary => {
            if text.is_ascii() {
                Ok(text.as_bytes().to_vec())
            } else {
                Err(format!(
                    "data_coding {data_coding} carries only ASCII text here; give the octets as hex"
                ))
            }
        }
    }
}

/// ISO-8859-5: the inverse of the protocol crate's decoder.
fn iso_8859_5(c: char) -> Option<u8> {
    let u = u32::from(c);
    match c {
        '№' => Some(0xF0),
        '§' => Some(0xFD),
        _ if u <= 0xA0 || u == 0xAD => u8::try_from(u).ok(),
        _ if (0x401..=0x45F).contains(&u) && u != 0x40D && u != 0x450 && u != 0x45D => {
            u8::try_from(u - 0x360).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_exact_durations() {
        let h = chrono::Duration::hours;
        assert_eq!(parse_offset("+1h"), Some(h(1)));
        assert_eq!(parse_offset("+2d3h"), Some(h(51)));
        assert_eq!(
            parse_offset("+1w1s"),
            Some(h(168) + chrono::Duration::seconds(1))
        );
        assert_eq!(parse_offset("+0"), Some(chrono::Duration::zero()));
        assert_eq!(parse_offset("+90m"), Some(chrono::Duration::minutes(90)));
        for bad in [
            "1h",
            "+",
            "+1",
            "+h",
            "+1x",
            "-1h",
            "+1h2",
            "+99999999999999w",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_need_an_offset() {
        assert!(parse_instant("2026-11-22T10:00:00+03:00").is_ok());
        assert!(parse_instant("2026-11-22T10:00:00")
            .unwrap_err()
            .contains("RFC 3339 with an offset"));
        assert!(parse_instant("+1h").unwrap_err().contains("is an offset"));
    }

    #[test]
    fn texts_encode_in_the_coding_asked_for_and_decode_back() {
        for (text, dc) in [
            ("renew", text::DC_GSM7),
            ("обнови №5", text::DC_CYRILLIC),
            ("обнови", text::DC_UCS2),
            ("s'il vous plaît", text::DC_LATIN1),
            ("abc", text::DC_IA5),
        ] {
            let bytes = encode_text(text, dc).unwrap();
            assert_eq!(text::decode_short_message(dc, &bytes), text, "dc {dc}");
        }
        assert!(encode_text("обнови", text::DC_GSM7).is_err());
        assert!(encode_text("обнови", text::DC_LATIN1).is_err());
        assert!(encode_text("é", 0x04).is_err());
    }

    #[test]
    fn toml_date_literals_and_strings_are_both_stamps() {
        #[derive(Debug, Deserialize)]
        struct T {
            a: Stamp,
            b: Stamp,
            c: RawNightly,
            d: RawSaved,
        }
        let t: T = toml::from_str(
            "a = 2026-12-05\nb = \"+1h\"\nc = 2026-12-06T00:00:00+03:00\nd = \"none\"\n",
        )
        .unwrap();
        assert_eq!(t.a.0, "2026-12-05");
        assert_eq!(t.b.0, "+1h");
        assert_eq!(
            t.c,
            RawNightly::Date(Stamp("2026-12-06T00:00:00+03:00".into()))
        );
        assert_eq!(t.d, RawSaved::None);
        let e = toml::from_str::<T>("a = 1\nb = \"x\"\nc = true\nd = \"nil\"\n").unwrap_err();
        assert!(e.message().contains("a date or time"), "{e}");
    }

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        let text = "a = 1\nб = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        let at = text.find('"').unwrap();
        assert_eq!(line_col(text, at), (2, 5));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }
}
