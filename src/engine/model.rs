//! The engine's data: catalog, accounts and what the engine emits.
//!
//! Field names and JSON shapes follow `shared/spec/data-formats.md`, so an
//! account serialises back to exactly one line of the accounts file.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A tariff catalog: every plan version with its per-region fees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub currency: String,
    /// IANA zone name; local dates (billing days) are taken in this zone.
    pub timezone: String,
    pub plans: Vec<Plan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub archived: bool,
    pub renewal: bool,
    pub package: Package,
    pub overage: Overage,
    pub regions: BTreeMap<String, RegionFees>,
}

/// Minutes, SMS and data of a package (allowance or remainder).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub minutes: u64,
    pub sms: u64,
    pub data_mb: u64,
}

impl Package {
    pub fn get(&self, kind: UsageKind) -> u64 {
        match kind {
            UsageKind::Minutes => self.minutes,
            UsageKind::Sms => self.sms,
            UsageKind::DataMb => self.data_mb,
        }
    }

    pub fn slot(&mut self, kind: UsageKind) -> &mut u64 {
        pick(kind, &mut self.minutes, &mut self.sms, &mut self.data_mb)
    }
}

/// The counter of `kind` among a package's three.
fn pick<'a>(
    kind: UsageKind,
    minutes: &'a mut u64,
    sms: &'a mut u64,
    data_mb: &'a mut u64,
) -> &'a mut u64 {
    match kind {
        UsageKind::Minutes => minutes,
        UsageKind::Sms => sms,
        UsageKind::DataMb => data_mb,
    }
}

/// Out-of-bundle prices per unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overage {
    #[serde(with = "money")]
    pub minute: Decimal,
    #[serde(with = "money")]
    pub sms: Decimal,
    #[serde(with = "money")]
    pub mb: Decimal,
}

impl Overage {
    pub fn rate(&self, kind: UsageKind) -> Decimal {
        match kind {
            UsageKind::Minutes => self.minute,
            UsageKind::Sms => self.sms,
            UsageKind::DataMb => self.mb,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionFees {
    #[serde(with = "money")]
    pub monthly_fee: Decimal,
    #[serde(with = "money")]
    pub daily_fee: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    Monthly,
    Daily,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    Financial,
    Voluntary,
    LostSim,
    Fraud,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Home,
    NationalRoaming,
    InternationalRoaming,
}

/// The saved (carried-over) package: spent first, valid until the next
/// regular charge date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub minutes: u64,
    pub sms: u64,
    pub data_mb: u64,
    pub valid_until: NaiveDate,
}

impl Saved {
    pub fn package(&self) -> Package {
        Package {
            minutes: self.minutes,
            sms: self.sms,
            data_mb: self.data_mb,
        }
    }

    pub fn slot(&mut self, kind: UsageKind) -> &mut u64 {
        pick(kind, &mut self.minutes, &mut self.sms, &mut self.data_mb)
    }
}

/// One subscriber account, exactly the accounts-file schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub msisdn: String,
    pub region: std::sync::Arc<str>,
    pub plan: std::sync::Arc<str>,
    pub plan_version: std::sync::Arc<str>,
    #[serde(with = "money")]
    pub balance: Decimal,
    pub billing: Billing,
    pub next_charge: NaiveDate,
    pub anchor_day: u32,
    pub blocks: Vec<BlockKind>,
    pub unpaid: bool,
    #[serde(with = "rust_decimal::serde::str")]
    pub discount_pct: Decimal,
    pub services: Vec<std::sync::Arc<str>>,
    pub location: Location,
    pub main: Package,
    pub saved: Option<Saved>,
}

/// What the store keeps per subscriber: the account plus the engine's own
/// bookkeeping (never part of the accounts-file export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    pub account: Account,
    /// Balance at import; G2 says opening + Σ statement amounts = balance.
    #[serde(with = "money")]
    pub opening_balance: Decimal,
    /// Last local date the nightly run processed this account (N4).
    pub last_nightly: Option<NaiveDate>,
    /// Recent requests by dedup key, for G4. Pruned to the dedup window.
    #[serde(default)]
    pub recent: Vec<DedupEntry>,
}

impl AccountState {
    pub fn imported(account: Account) -> Self {
        AccountState {
            opening_balance: account.balance,
            account,
            last_nightly: None,
            recent: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedupEntry {
    pub key: String,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    pub reply: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Ussd,
    Sms,
    /// Operator commands (CLI, replay operations, a future admin API).
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    Minutes,
    Sms,
    DataMb,
}

/// Result codes. The refusals are listed in precedence order (R0→R6):
/// the first that holds is the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Renewed,
    UnknownSubscriber,
    Blocked,
    UnpaidPeriod,
    NoService,
    DailyBilling,
    FullDiscount,
    InsufficientFunds,
    /// C3: a USSD string that is not a configured code.
    UnknownCommand,
    /// A non-renewal command was applied.
    Ok,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Renewed,
        Outcome::UnknownSubscriber,
        Outcome::Blocked,
        Outcome::UnpaidPeriod,
        Outcome::NoService,
        Outcome::DailyBilling,
        Outcome::FullDiscount,
        Outcome::InsufficientFunds,
        Outcome::UnknownCommand,
        Outcome::Ok,
    ];

    /// The stable code used in logs, the journal and fixtures.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Renewed => "RENEWED",
            Outcome::UnknownSubscriber => "UNKNOWN_SUBSCRIBER",
            Outcome::Blocked => "BLOCKED",
            Outcome::UnpaidPeriod => "UNPAID_PERIOD",
            Outcome::NoService => "NO_SERVICE",
            Outcome::DailyBilling => "DAILY_BILLING",
            Outcome::FullDiscount => "FULL_DISCOUNT",
            Outcome::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Outcome::UnknownCommand => "UNKNOWN_COMMAND",
            Outcome::Ok => "OK",
        }
    }

    pub fn from_code(code: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.code() == code)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A ledger line (the subscriber's statement / детализация).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementLine {
    pub at: String,
    pub msisdn: String,
    pub kind: StatementKind,
    /// Signed: debits negative, credits positive.
    #[serde(with = "money")]
    pub amount: Decimal,
    #[serde(with = "money")]
    pub balance_after: Decimal,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_from: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    MonthlyFee,
    DailyFee,
    Topup,
    Overage,
    /// A balance changed by re-importing an account (keeps G2 honest).
    Adjustment,
}

/// A request-journal line (G5): every request, refused or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalLine {
    pub at: String,
    pub channel: Channel,
    pub msisdn: String,
    pub request: String,
    pub outcome: Outcome,
    pub reply: String,
    /// True when this was a retransmission answered from the dedup window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// An SMS to deliver to a subscriber (step 6), kept in the store's outbox
/// until the network acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub msisdn: String,
    pub text: String,
}

/// Money in files is a string with two decimals; we also accept the plain
/// decimal forms ("550", "550.5") but never a JSON number.
pub mod money {
    use rust_decimal::Decimal;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(D::Error::custom)
    }

    /// Longest [`encode`] output: sign, 29 digits and a point, or sign,
    /// "0.", and up to 28 fraction digits.
    pub const MAX_LEN: usize = 32;

    /// "550.00" style: always two decimals.
    pub fn format(v: Decimal) -> String {
        let mut buf = [0u8; MAX_LEN];
        let n = encode(v, &mut buf);
        // `encode` writes ASCII only.
        std::str::from_utf8(&buf[..n])
            .unwrap_or_default()
            .to_string()
    }

    /// Write `m` right-aligned into `out` (which ends where the number
    /// ends) with `scale` decimals and a point, down to index `first`.
    fn put_digits<T>(mut m: T, scale: usize, first: usize, out: &mut [u8])
    where
        T: Copy + From<u8> + std::ops::Rem<Output = T> + std::ops::DivAssign + TryInto<u8>,
    {
        let ten = T::from(10);
        let mut pos = out.len();
        let digit = |pos: &mut usize, m: &mut T, out: &mut [u8]| {
            *pos -= 1;
            out[*pos] = b'0' + (*m % ten).try_into().unwrap_or(0);
            *m /= ten;
        };
        for _ in 0..scale {
            digit(&mut pos, &mut m, out);
        }
        if scale > 0 {
            pos -= 1;
            out[pos] = b'.';
        }
        while pos > first {
            digit(&mut pos, &mut m, out);
        }
    }

    /// [`format`] into `buf` without allocating; returns the length. The
    /// text is what `Decimal`'s `Display` gives after rounding to kopecks
    /// and rescaling to two places (a sign even on negative zero), written
    /// by hand because `Display` goes through `fmt` and its padding.
    pub fn encode(v: Decimal, buf: &mut [u8; MAX_LEN]) -> usize {
        // Amounts are kept in kopecks already: skip the no-op rounding.
        let r = if v.scale() == 2 {
            v
        } else {
            let mut r = v.round_dp(2);
            r.rescale(2);
            r
        };
        let scale = r.scale() as usize;
        let m = r.mantissa().unsigned_abs();
        let negative = usize::from(r.is_sign_negative());
        // Digits as rust_decimal prints them: at least `scale` of them, and a
        // "0" before the point when there is no whole part.
        let digits = (m.checked_ilog10().unwrap_or(0) as usize + 1).max(scale + 1);
        let len = negative + digits + usize::from(scale > 0);
        if negative == 1 {
            buf[0] = b'-';
        }
        // Amounts fit a u64 in practice; u128 division is a library call.
        match u64::try_from(m) {
            Ok(m) => put_digits(m, scale, negative, &mut buf[..len]),
            Err(_) => put_digits(m, scale, negative, &mut buf[..len]),
        }
        len
    }

    /// The largest amount a file or an operator command may carry, either
    /// sign: a trillion. Far above any balance or fee, and far enough below
    /// `Decimal`'s range that no sum or product the engine makes of such
    /// amounts can overflow. (The store's own values are not held to it: a
    /// stored balance must always read back.)
    pub const MAX_ABS: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

    /// `Err` naming the bound when `v` is beyond [`MAX_ABS`].
    pub fn in_range(v: Decimal) -> Result<(), String> {
        if v.abs() > MAX_ABS {
            return Err(format!(
                "amount {:?} is out of range (at most {} either way)",
                format(v),
                format(MAX_ABS)
            ));
        }
        Ok(())
    }

    /// Exactly the spec's form: optional '-', digits, '.', two digits
    /// ("550.00"; data-formats.md: "always a JSON string with two
    /// decimals"). Anything else is a bad file, not a guess.
    pub fn parse(s: &str) -> Result<Decimal, String> {
        let unsigned = s.strip_prefix('-').unwrap_or(s);
        let ok = unsigned.split_once('.').is_some_and(|(int, frac)| {
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == 2
                && frac.bytes().all(|b| b.is_ascii_digit())
        });
        // Beyond ~7.9e26 `format` itself writes fewer decimals (Decimal
        // has no room): what it wrote must read back (a store written
        // before amounts were bounded may hold such a value).
        let written_by_format = || {
            unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && s.parse::<Decimal>().is_ok_and(|v| format(v) == s)
        };
        if !ok && !written_by_format() {
            return Err(format!("bad money string {s:?} (expected like \"550.00\")"));
        }
        s.parse::<Decimal>()
            .map_err(|_| format!("bad money string {s:?} (expected like \"550.00\")"))
    }
}
