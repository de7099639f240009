//! The billing engine: a pure function of (state, command, time).
//!
//! It owns every business rule of `shared/spec/renewal-rules.md` and nothing
//! else: no IO, no clock, no store. [`Engine::apply`] takes an account's
//! state (or none, for an unknown number), one [`Command`] and the instant
//! `now`, and returns the new state, the [`Outcome`] code, the subscriber's
//! reply and the [`Effect`]s (statement lines, journal lines, queued SMS) for
//! the caller to commit together. The same inputs always give the same
//! outputs (G1); the nightly run is a command with its date, like
//! TigerBeetle's expiry, not a timer.
//!
//! Decisions where the spec is silent (also listed in the README):
//! - Leaving a block puts a monthly account in the unpaid period (R2) only
//!   when its paid period has run out (`next_charge` ≤ today); a daily
//!   account always. The nightly run then charges it (N3) and the new period
//!   starts that night, so days spent blocked are not paid for.
//! - N1 falling short of both the monthly and the daily fee puts a financial
//!   block on the account, as N2 does.
//! - Switching to daily billing drops the saved package (U2: it stops at the
//!   charge) but leaves the main remainder usable; no new allowance arrives
//!   until the account is back on monthly billing.
//! - The discount applies to the monthly fee only, as the spec words it.
//! - Out-of-bundle usage is charged per unit at the plan's rate, rounded to
//!   kopecks once per usage record.
//! - Only subscriber requests (USSD, SMS) are journaled; operator commands
//!   show in the statement where they move money.

pub mod calendar;
pub mod model;
pub mod texts;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, SecondsFormat, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};

use model::*;
#[cfg(test)]
use texts::Vars;
use texts::{CompiledTexts, Template, Texts, Var};

/// What the caller asks of one account.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// «Обнови пакет» from a subscriber. `request` is the text received (for
    /// the journal); `dedup_key` identifies retransmissions (G4).
    Renew {
        channel: Channel,
        request: String,
        dedup_key: Option<String>,
    },
    /// A USSD string that is not a configured code (C3).
    UnknownCommand {
        channel: Channel,
        request: String,
    },
    Usage {
        kind: UsageKind,
        amount: u64,
    },
    TopUp {
        amount: Decimal,
    },
    Block {
        kind: BlockKind,
    },
    /// Lift one kind of block, or all of them with `None`.
    Unblock {
        kind: Option<BlockKind>,
    },
    SetDiscount {
        pct: Decimal,
    },
    ChangePlan {
        plan: String,
        version: String,
    },
    AddService {
        service: String,
    },
    RemoveService {
        service: String,
    },
    /// The nightly run for local date `date` (N1–N4).
    Nightly {
        date: NaiveDate,
    },
}

impl Command {
    /// Subscriber requests are journaled (G5); operator commands are not.
    pub fn channel(&self) -> Channel {
        match self {
            Command::Renew { channel, .. } | Command::UnknownCommand { channel, .. } => *channel,
            _ => Channel::Admin,
        }
    }
}

/// Something to commit alongside the new state.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Statement(StatementLine),
    Journal(JournalLine),
    Notice(Notice),
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The account after the command; `None` when there is no account
    /// (unknown subscriber). Unchanged state is returned as it was.
    pub state: Option<AccountState>,
    pub changed: bool,
    pub outcome: Outcome,
    /// What the subscriber reads (empty for operator commands).
    pub reply: String,
    pub effects: Vec<Effect>,
}

/// Bad operator input. Refusals of subscriber requests are outcomes, not errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("no account {0}")]
    NoAccount(String),
    #[error("plan {plan} version {version} is not in the catalog")]
    UnknownPlan { plan: String, version: String },
    #[error("discount must be between 0 and 100, got {0}")]
    BadDiscount(Decimal),
    #[error(
        "a top-up is a positive amount with at most two decimals, up to 1000000000000.00: got {0}"
    )]
    BadAmount(Decimal),
    #[error("usage of {0} units is more than one record can carry (at most {max})", max = USAGE_MAX)]
    BadUsage(u64),
    #[error("catalog time zone {0:?} is not a known IANA zone")]
    BadTimezone(String),
    #[error("date arithmetic overflowed near {0}")]
    DateOverflow(NaiveDate),
}

/// The most units one usage record may carry: a billion minutes, SMS or
/// MB, so that units × rate stays exact in `Decimal`.
pub const USAGE_MAX: u64 = 1_000_000_000;

/// Engine settings that are not part of the catalog.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub texts: Texts,
    /// G4 window: a retransmission within it gets the original answer.
    pub dedup_window_s: i64,
    /// The USSD code named in the unknown-command answer (C3).
    pub ussd_code: String,
    /// Overrides the catalog's time zone when set (config `service.timezone`).
    pub timezone: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            texts: Texts::default(),
            dedup_window_s: 60,
            ussd_code: "*929#".into(),
            timezone: None,
        }
    }
}

pub const FEE_DESCRIPTION: &str = "Списание ежемесячной платы по Тарифному плану";
const DAILY_FEE_DESCRIPTION: &str = "Списание посуточной платы по Тарифному плану";
const TOPUP_DESCRIPTION: &str = "Пополнение баланса";
/// The package service the renewal is configured on (R3).
pub const PACKAGE_SERVICE: &str = "package";

pub struct Engine {
    catalog: Catalog,
    tz: Tz,
    config: EngineConfig,
    /// `config.texts`, split once (the config cannot change after `new`).
    texts: CompiledTexts,
}

/// A refusal, with (fee, balance) for R6's answer.
type Refusal = (Outcome, Option<(Decimal, Decimal)>);

/// Kopecks, half away from zero, applied once (step 1).
pub fn round_money(v: Decimal) -> Decimal {
    v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Monthly fee × (100 − discount) / 100, rounded once.
pub fn effective_fee(monthly: Decimal, discount_pct: Decimal) -> Decimal {
    round_money(monthly * (Decimal::ONE_HUNDRED - discount_pct) / Decimal::ONE_HUNDRED)
}

/// "00" to "99", two bytes each.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Two ASCII digits of `v` (< 100).
fn two(v: u32) -> [u8; 2] {
    let i = (v as usize % 100) * 2;
    [PAIRS[i], PAIRS[i + 1]]
}

/// Room for any ASCII value a reply carries: a money amount
/// ([`money::MAX_LEN`]), a date (at most 13 bytes: "31.12.-262143") or a u64
/// (20 digits).
const VALUE_MAX: usize = money::MAX_LEN;

/// "DD.MM.YYYY" (`{:02}.{:02}.{:04}`) into `buf`; returns the length.
/// By hand: chrono's `format` re-parses its pattern on every call.
fn encode_date(d: NaiveDate, buf: &mut [u8; VALUE_MAX]) -> usize {
    buf[..2].copy_from_slice(&two(d.day()));
    buf[2] = b'.';
    buf[3..5].copy_from_slice(&two(d.month()));
    buf[5] = b'.';
    let year = d.year();
    if (0..=9999).contains(&year) {
        buf[6..8].copy_from_slice(&two(year as u32 / 100));
        buf[8..10].copy_from_slice(&two(year as u32 % 100));
        return 10;
    }
    let mut n = 6;
    if year < 0 {
        buf[n] = b'-';
        n += 1;
    }
    // `{:04}` pads to four characters, a minus sign included.
    let width = if year < 0 { 3 } else { 4 };
    n + encode_uint(u64::from(year.unsigned_abs()), width, &mut buf[n..])
}

/// `v` in decimal, zero-padded to `width` digits, at the start of `out`.
fn encode_uint(v: u64, width: usize, out: &mut [u8]) -> usize {
    let len = (v.checked_ilog10().unwrap_or(0) as usize + 1).max(width);
    let mut v = v;
    // Least significant digit last, written in place.
    for o in out[..len].iter_mut().rev() {
        *o = b'0' + (v % 10) as u8;
        v /= 10;
    }
    len
}

/// RFC 3339 of a local time, exactly as `to_rfc3339_opts(AutoSi, false)`
/// writes it, without `fmt` (it was two calls and ~700 instructions per
/// renewal). Years outside 0..=9999 take chrono's own path.
fn stamp(local: &DateTime<Tz>) -> String {
    stamp_naive(local, local.naive_local())
}

/// [`stamp`] given `local.naive_local()`.
fn stamp_naive(local: &DateTime<Tz>, dt: NaiveDateTime) -> String {
    let year = dt.year();
    if !(0..=9999).contains(&year) {
        return local.to_rfc3339_opts(SecondsFormat::AutoSi, false);
    }
    let mut b = [0u8; 40];
    let y = year as u32;
    b[..2].copy_from_slice(&two(y / 100));
    b[2..4].copy_from_slice(&two(y % 100));
    b[4] = b'-';
    b[5..7].copy_from_slice(&two(dt.month()));
    b[7] = b'-';
    b[8..10].copy_from_slice(&two(dt.day()));
    b[10] = b'T';
    let mut nano = dt.nanosecond();
    let mut sec = dt.second();
    // A leap second is carried in the nanoseconds.
    if nano >= 1_000_000_000 {
        sec += 1;
        nano -= 1_000_000_000;
    }
    b[11..13].copy_from_slice(&two(dt.hour()));
    b[13] = b':';
    b[14..16].copy_from_slice(&two(dt.minute()));
    b[16] = b':';
    b[17..19].copy_from_slice(&two(sec));
    let mut n = 19;
    // AutoSi: no fraction, or 3, 6 or 9 digits, whichever is exact.
    let (frac, digits) = if nano == 0 {
        (0, 0)
    } else if nano % 1_000_000 == 0 {
        (nano / 1_000_000, 3)
    } else if nano % 1_000 == 0 {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    if digits > 0 {
        b[n] = b'.';
        n += 1;
        n += encode_uint(u64::from(frac), digits, &mut b[n..]);
    }
    // The offset to the minute, rounding seconds (as chrono does).
    let off = local.offset().fix().local_minus_utc();
    b[n] = if off < 0 { b'-' } else { b'+' };
    let minutes = (off.unsigned_abs() + 30) / 60;
    b[n + 1..n + 3].copy_from_slice(&two(minutes / 60));
    b[n + 3] = b':';
    b[n + 4..n + 6].copy_from_slice(&two(minutes % 60));
    n += 6;
    // Only ASCII is written.
    std::str::from_utf8(&b[..n]).unwrap_or_default().to_string()
}

/// ASCII values formatted into one stack buffer, so a reply needs no
/// `String` per value.
struct Scratch {
    buf: [u8; 8 * VALUE_MAX],
    len: usize,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            buf: [0; 8 * VALUE_MAX],
            len: 0,
        }
    }

    /// Append what `encode` writes; returns its byte range.
    fn push(&mut self, encode: impl FnOnce(&mut [u8; VALUE_MAX]) -> usize) -> (usize, usize) {
        let start = self.len;
        let room: &mut [u8; VALUE_MAX] = (&mut self.buf[start..start + VALUE_MAX])
            .try_into()
            .expect("VALUE_MAX bytes");
        self.len += encode(room);
        (start, self.len)
    }

    fn money(&mut self, v: Decimal) -> (usize, usize) {
        self.push(|b| money::encode(v, b))
    }

    fn date(&mut self, d: NaiveDate) -> (usize, usize) {
        self.push(|b| encode_date(d, b))
    }

    fn uint(&mut self, v: u64) -> (usize, usize) {
        self.push(|b| encode_uint(v, 1, b))
    }

    fn as_str(&self) -> &str {
        // Only ASCII is pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Placeholder values of one reply; `saved` is rendered from its own
/// template where it appears (with itself empty, as before).
#[derive(Default)]
struct Values<'a> {
    fee: &'a str,
    balance: &'a str,
    next_charge: &'a str,
    period_from: &'a str,
    period_to: &'a str,
    saved: Option<&'a Template>,
    saved_until: &'a str,
    saved_minutes: &'a str,
    saved_sms: &'a str,
    saved_data_mb: &'a str,
    code: &'a str,
}

impl Values<'_> {
    /// Plain values; `saved` is not one of them.
    fn get(&self, var: Var) -> &str {
        match var {
            Var::Fee => self.fee,
            Var::Balance => self.balance,
            Var::NextCharge => self.next_charge,
            Var::PeriodFrom => self.period_from,
            Var::PeriodTo => self.period_to,
            Var::Saved => "",
            Var::SavedUntil => self.saved_until,
            Var::SavedMinutes => self.saved_minutes,
            Var::SavedSms => self.saved_sms,
            Var::SavedDataMb => self.saved_data_mb,
            Var::Code => self.code,
        }
    }

    /// The rendered length of `t`, so the reply is allocated once.
    fn len(&self, t: &Template) -> usize {
        let plain = |t: &Template| {
            Var::ALL
                .iter()
                .map(|&v| t.count(v) * self.get(v).len())
                .sum::<usize>()
                + t.literal_len()
        };
        plain(t)
            + self
                .saved
                .map_or(0, |part| t.count(Var::Saved) * plain(part))
    }

    fn render(&self, t: &Template) -> String {
        if let Some(text) = t.literal() {
            return text.to_string();
        }
        let mut out = String::with_capacity(self.len(t));
        t.render_with(&mut out, |var, out| match (var, self.saved) {
            (Var::Saved, Some(part)) => part.render_with(out, |v, out| out.push_str(self.get(v))),
            _ => out.push_str(self.get(var)),
        });
        out
    }
}

impl Engine {
    pub fn new(catalog: Catalog, config: EngineConfig) -> Result<Engine, EngineError> {
        let zone = config.timezone.as_ref().unwrap_or(&catalog.timezone);
        let tz: Tz = zone
            .parse()
            .map_err(|_| EngineError::BadTimezone(zone.clone()))?;
        Ok(Engine {
            catalog,
            tz,
            texts: CompiledTexts::new(&config.texts),
            config,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The operator's time zone (local dates, the nightly run's hour).
    pub fn zone(&self) -> Tz {
        self.tz
    }

    /// The operator-local date of an instant.
    pub fn local_date(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.tz).date_naive()
    }

    /// RFC 3339 in the operator's zone, as journal and statement lines carry it.
    pub fn local_stamp(&self, now: DateTime<Utc>) -> String {
        stamp(&now.with_timezone(&self.tz))
    }

    pub fn plan(&self, id: &str, version: &str) -> Option<&Plan> {
        // No allocation per lookup (a catalog has a few dozen plan versions).
        self.catalog
            .plans
            .iter()
            .find(|p| p.id == id && p.version == version)
    }

    fn fees(&self, a: &Account) -> Option<(&Plan, &RegionFees)> {
        let plan = self.plan(&a.plan, &a.plan_version)?;
        Some((plan, plan.regions.get(&*a.region)?))
    }

    /// Apply one command to one account. Pure: same inputs, same result.
    ///
    /// `msisdn` is the subscriber the command is for (normalised, C5); it is
    /// what the journal records even when there is no account (R0).
    pub fn apply(
        &self,
        msisdn: &str,
        state: Option<&AccountState>,
        command: &Command,
        now: DateTime<Utc>,
    ) -> Result<Applied, EngineError> {
        match command {
            Command::Renew {
                channel,
                request,
                dedup_key,
            } => {
                // Built once and filled in by `renew`: `Applied` is ~360
                // bytes and each move of it is a memcpy call.
                let mut applied = Applied {
                    // Refused, renewed or repeated, the new state starts as
                    // the old one.
                    state: state.cloned(),
                    changed: false,
                    outcome: Outcome::Renewed,
                    reply: String::new(),
                    // Statement, notice(s) and journal: at most three.
                    effects: Vec::with_capacity(3),
                };
                let key = dedup_key.as_deref();
                self.renew(&mut applied, msisdn, state, *channel, request, key, now);
                Ok(applied)
            }
            Command::UnknownCommand { channel, request } => {
                let outcome = Outcome::UnknownCommand;
                let reply = self.refusal_reply(outcome, None);
                let at = self.local_stamp(now);
                Ok(Applied {
                    state: state.cloned(),
                    changed: false,
                    effects: vec![journal(
                        at, *channel, msisdn, request, outcome, &reply, false,
                    )],
                    outcome,
                    reply,
                })
            }
            _ => {
                let Some(state) = state else {
                    return Err(EngineError::NoAccount(msisdn.to_string()));
                };
                let mut st = state.clone();
                let mut effects = Vec::new();
                self.operate(&mut st, command, now, &mut effects)?;
                Ok(Applied {
                    changed: st != *state,
                    state: Some(st),
                    outcome: Outcome::Ok,
                    reply: String::new(),
                    effects,
                })
            }
        }
    }

    /// The answer to `outcome` with `vars`, naming the configured USSD code.
    #[cfg(test)]
    fn short_reply(&self, outcome: Outcome, vars: &Vars) -> String {
        let mut out = String::new();
        self.texts
            .short(outcome)
            .render_with(&mut out, |var, out| match var {
                Var::Code => out.push_str(&self.config.ussd_code),
                _ => out.push_str(vars.get(var)),
            });
        out
    }

    /// The answer to `outcome` naming the USSD code and, for R6, the fee
    /// and the balance; every other value is empty.
    fn refusal_reply(&self, outcome: Outcome, amounts: Option<(Decimal, Decimal)>) -> String {
        let template = self.texts.short(outcome);
        if let Some(text) = template.literal() {
            return text.to_string();
        }
        let mut scratch = Scratch::new();
        let ranges = amounts.map(|(fee, balance)| (scratch.money(fee), scratch.money(balance)));
        let s = scratch.as_str();
        let mut v = Values {
            code: &self.config.ussd_code,
            ..Values::default()
        };
        if let Some((fee, balance)) = ranges {
            v.fee = &s[fee.0..fee.1];
            v.balance = &s[balance.0..balance.1];
        }
        v.render(template)
    }

    /// R0→R6 in precedence order; `Ok(fee)` when the renewal may go ahead.
    fn check_renewal<'a>(
        &self,
        st: Option<&'a AccountState>,
    ) -> Result<(&'a AccountState, Decimal, Package), Refusal> {
        let none = None;
        let Some(st) = st else {
            return Err((Outcome::UnknownSubscriber, none));
        };
        let a = &st.account;
        if !a.blocks.is_empty() {
            return Err((Outcome::Blocked, none));
        }
        if a.unpaid {
            return Err((Outcome::UnpaidPeriod, none));
        }
        let fees = self.fees(a).filter(|(plan, _)| plan.renewal);
        let Some((plan, fees)) =
            fees.filter(|_| a.services.iter().any(|s| &**s == PACKAGE_SERVICE))
        else {
            return Err((Outcome::NoService, none));
        };
        if a.billing == Billing::Daily {
            return Err((Outcome::DailyBilling, none));
        }
        let fee = effective_fee(fees.monthly_fee, a.discount_pct);
        if a.discount_pct >= Decimal::ONE_HUNDRED || fee.is_zero() {
            return Err((Outcome::FullDiscount, none));
        }
        if a.balance < fee {
            return Err((Outcome::InsufficientFunds, Some((fee, a.balance))));
        }
        Ok((st, fee, plan.package))
    }

    /// «Обнови пакет» into `applied`, which holds a copy of `state`, no
    /// effects and the outcome `Renewed` when called.
    #[allow(clippy::too_many_arguments)]
    fn renew(
        &self,
        applied: &mut Applied,
        msisdn: &str,
        state: Option<&AccountState>,
        channel: Channel,
        request: &str,
        dedup_key: Option<&str>,
        now: DateTime<Utc>,
    ) {
        let window = chrono::Duration::seconds(self.config.dedup_window_s);
        // One zone conversion per decision: the date and every stamp.
        let local = now.with_timezone(&self.tz);
        let naive = local.naive_local();
        // G4: a retransmission inside the window gets the stored answer.
        if let (Some(st), Some(key)) = (state, dedup_key) {
            if let Some(prev) = st
                .recent
                .iter()
                .find(|e| e.key == key && now >= e.at && now - e.at <= window)
            {
                applied.outcome = prev.outcome;
                applied.reply = prev.reply.clone();
                applied.effects.push(journal(
                    stamp_naive(&local, naive),
                    channel,
                    msisdn,
                    request,
                    prev.outcome,
                    &prev.reply,
                    true,
                ));
                return;
            }
        }

        let at = stamp_naive(&local, naive);
        match (self.check_renewal(state), applied.state.as_mut()) {
            (Ok((_, fee, package)), Some(st)) => {
                let today = naive.date();
                let (reply, confirmation) =
                    self.do_renew(st, fee, package, today, &at, channel, &mut applied.effects);
                // Step 6: after USSD the details follow by SMS, queued
                // durably with the charge. After an SMS the answer *is* the
                // confirmation (one SMS, not two): see below.
                if let Some(text) = confirmation {
                    applied.effects.push(Effect::Notice(Notice {
                        msisdn: msisdn.to_string(),
                        text,
                    }));
                }
                applied.reply = reply;
            }
            (Err((outcome, amounts)), _) => {
                applied.outcome = outcome;
                applied.reply = self.refusal_reply(outcome, amounts);
            }
            (Ok(_), None) => unreachable!("a renewal needs an account"),
        }
        let (outcome, reply) = (applied.outcome, &applied.reply);

        // Every answer to an SMS is itself an SMS: it goes through the
        // outbox, so it survives a dropped link or a restart like step 6's.
        if channel == Channel::Sms {
            applied.effects.push(Effect::Notice(Notice {
                msisdn: msisdn.to_string(),
                text: reply.clone(),
            }));
        }
        if let (Some(st), Some(key)) = (applied.state.as_mut(), dedup_key) {
            st.recent.retain(|e| now >= e.at && now - e.at <= window);
            let entry = DedupEntry {
                key: key.to_string(),
                at: now,
                outcome,
                reply: reply.clone(),
            };
            // Exactly one more: the list is pruned to the window, and
            // amortised growth costs ~200 instructions on an empty Vec.
            st.recent.reserve_exact(1);
            st.recent.push(entry);
        }
        applied
            .effects
            .push(journal(at, channel, msisdn, request, outcome, reply, false));
        applied.changed = differs(applied.state.as_ref(), state);
    }

    /// Steps 1–5 on an account that passed R0–R6. Returns the reply on
    /// `channel` and, after USSD, the confirmation SMS to queue (after an SMS
    /// the reply is the confirmation, and the USSD text is not rendered).
    #[allow(clippy::too_many_arguments)]
    fn do_renew(
        &self,
        st: &mut AccountState,
        fee: Decimal,
        package: Package,
        today: NaiveDate,
        at: &str,
        channel: Channel,
        effects: &mut Vec<Effect>,
    ) -> (String, Option<String>) {
        let a = &mut st.account;
        // Step 2: the new period starts today; the anchor becomes today's day.
        // `next_anchor_after` only fails past year 262143.
        let next = calendar::next_anchor_after(today, chrono::Datelike::day(&today))
            .unwrap_or(NaiveDate::MAX);
        // Step 3: the main remainder is saved once; an older saved package
        // (itself a carry-over) expires here.
        let saved = Saved {
            minutes: a.main.minutes,
            sms: a.main.sms,
            data_mb: a.main.data_mb,
            valid_until: next,
        };
        a.saved = Some(saved);
        // Step 4.
        a.main = package;
        // Step 1.
        a.balance -= fee;
        a.anchor_day = chrono::Datelike::day(&today);
        a.next_charge = next;
        let period_to = next.pred_opt().unwrap_or(next);
        // Step 5.
        effects.push(Effect::Statement(StatementLine {
            at: at.to_string(),
            msisdn: a.msisdn.clone(),
            kind: StatementKind::MonthlyFee,
            amount: -fee,
            balance_after: a.balance,
            description: FEE_DESCRIPTION.to_string(),
            period_from: Some(today),
            period_to: Some(period_to),
        }));
        let mut scratch = Scratch::new();
        let r = [
            scratch.money(fee),
            scratch.money(a.balance),
            scratch.date(next),
            scratch.date(today),
            scratch.date(period_to),
            scratch.uint(saved.minutes),
            scratch.uint(saved.sms),
            scratch.uint(saved.data_mb),
        ];
        let s = scratch.as_str();
        let [fee, balance, next, from, to, minutes, sms, data_mb] = r.map(|(a, b)| &s[a..b]);
        let texts = &self.texts;
        let v = Values {
            fee,
            balance,
            next_charge: next,
            period_from: from,
            period_to: to,
            saved: (saved.package() != Package::default()).then_some(&texts.saved_part),
            saved_until: next,
            saved_minutes: minutes,
            saved_sms: sms,
            saved_data_mb: data_mb,
            code: "",
        };
        let confirmation = v.render(&texts.renewed_sms);
        match channel {
            Channel::Sms => (confirmation, None),
            _ => (v.render(&texts.renewed_ussd), Some(confirmation)),
        }
    }

    fn statement(
        &self,
        now: DateTime<Utc>,
        a: &Account,
        kind: StatementKind,
        amount: Decimal,
        description: String,
        period: Option<(NaiveDate, NaiveDate)>,
    ) -> Effect {
        Effect::Statement(StatementLine {
            at: self.local_stamp(now),
            msisdn: a.msisdn.clone(),
            kind,
            amount,
            balance_after: a.balance,
            description,
            period_from: period.map(|p| p.0),
            period_to: period.map(|p| p.1),
        })
    }

    fn operate(
        &self,
        st: &mut AccountState,
        command: &Command,
        now: DateTime<Utc>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), EngineError> {
        let today = self.local_date(now);
        match command {
            // Subscriber requests never reach here: `apply` routes them.
            Command::Renew { .. } | Command::UnknownCommand { .. } => {}
            Command::Usage { kind, amount } => {
                if *amount > USAGE_MAX {
                    return Err(EngineError::BadUsage(*amount));
                }
                self.usage(st, *kind, *amount, now, effects)
            }
            Command::TopUp { amount } => {
                let balance = st.account.balance.checked_add(*amount);
                if *amount <= Decimal::ZERO
                    || amount.round_dp(2) != *amount
                    || money::in_range(*amount).is_err()
                    || balance.is_none()
                {
                    return Err(EngineError::BadAmount(*amount));
                }
                st.account.balance = balance.unwrap_or(st.account.balance);
                effects.push(self.statement(
                    now,
                    &st.account,
                    StatementKind::Topup,
                    *amount,
                    TOPUP_DESCRIPTION.into(),
                    None,
                ));
            }
            Command::Block { kind } => {
                if !st.account.blocks.contains(kind) {
                    st.account.blocks.push(*kind);
                    st.account.blocks.sort();
                }
            }
            Command::Unblock { kind } => {
                let a = &mut st.account;
                let was_blocked = !a.blocks.is_empty();
                match kind {
                    Some(k) => a.blocks.retain(|b| b != k),
                    None => a.blocks.clear(),
                }
                // R2: leaving the last block opens the unpaid period when
                // the paid one has run out (daily accounts always).
                if was_blocked
                    && a.blocks.is_empty()
                    && (a.billing == Billing::Daily || a.next_charge <= today)
                {
                    a.unpaid = true;
                }
            }
            Command::SetDiscount { pct } => {
                if *pct < Decimal::ZERO || *pct > Decimal::ONE_HUNDRED {
                    return Err(EngineError::BadDiscount(*pct));
                }
                st.account.discount_pct = *pct;
            }
            Command::ChangePlan { plan, version } => {
                if self.plan(plan, version).is_none() {
                    return Err(EngineError::UnknownPlan {
                        plan: plan.clone(),
                        version: version.clone(),
                    });
                }
                st.account.plan = plan.as_str().into();
                st.account.plan_version = version.as_str().into();
            }
            Command::AddService { service } => {
                if !st.account.services.iter().any(|s| **s == **service) {
                    st.account.services.push(service.as_str().into());
                }
            }
            Command::RemoveService { service } => st.account.services.retain(|s| **s != **service),
            Command::Nightly { date } => self.nightly(st, *date, now, effects)?,
        }
        Ok(())
    }

    /// U1/U2: saved first (while valid), then main, then out-of-bundle.
    fn usage(
        &self,
        st: &mut AccountState,
        kind: UsageKind,
        amount: u64,
        now: DateTime<Utc>,
        effects: &mut Vec<Effect>,
    ) {
        let today = self.local_date(now);
        let a = &mut st.account;
        if a.saved.is_some_and(|s| today >= s.valid_until) {
            a.saved = None;
        }
        let mut left = amount;
        if let Some(saved) = a.saved.as_mut() {
            let slot = saved.slot(kind);
            let take = left.min(*slot);
            *slot -= take;
            left -= take;
        }
        let slot = a.main.slot(kind);
        let take = left.min(*slot);
        *slot -= take;
        left -= take;
        if left == 0 {
            return;
        }
        let Some(plan) = self.plan(&a.plan, &a.plan_version) else {
            return;
        };
        let rate = plan.overage.rate(kind);
        let charge = round_money(rate * Decimal::from(left));
        if charge.is_zero() {
            return;
        }
        // U3: the balance may go below zero; the network enforces credit.
        a.balance -= charge;
        let unit = match kind {
            UsageKind::Minutes => "мин",
            UsageKind::Sms => "SMS",
            UsageKind::DataMb => "МБ",
        };
        let description = format!("Сверх пакета: {left} {unit} × {} руб.", money::format(rate));
        effects.push(self.statement(
            now,
            &st.account,
            StatementKind::Overage,
            -charge,
            description,
            None,
        ));
    }

    /// N1–N4 for one account on local date `n`.
    fn nightly(
        &self,
        st: &mut AccountState,
        n: NaiveDate,
        now: DateTime<Utc>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), EngineError> {
        // N4: a date already run (or an earlier one) changes nothing.
        if st.last_nightly.is_some_and(|last| last >= n) {
            return Ok(());
        }
        st.last_nightly = Some(n);
        let a = &mut st.account;
        if !a.blocks.is_empty() {
            return Ok(());
        }
        let Some((plan, fees)) = self.fees(a) else {
            // The plan is not offered in the account's region: there is no
            // fee to charge, so nothing is charged and the period stays (the
            // account is NO_SERVICE). The night still ends an unpaid period
            // (N3: otherwise R2 would answer UNPAID_PERIOD for ever) and a
            // saved package that ran out.
            a.unpaid = false;
            if a.saved.is_some_and(|s| n >= s.valid_until) {
                a.saved = None;
            }
            return Ok(());
        };
        let package = plan.package;
        let monthly = effective_fee(fees.monthly_fee, a.discount_pct);
        let daily = fees.daily_fee;
        let leaving_unpaid = a.unpaid;
        let due = leaving_unpaid || a.billing == Billing::Daily || a.next_charge <= n;
        // N3: the nightly run is what ends the unpaid period.
        a.unpaid = false;
        if !due {
            if a.saved.is_some_and(|s| n >= s.valid_until) {
                a.saved = None;
            }
            return Ok(());
        }
        // A fee fully discounted is covered whatever the balance (decided:
        // U3 lets overage take it below zero, and a subscriber who pays
        // nothing for the month must not be moved to daily billing).
        if monthly.is_zero() || a.balance >= monthly {
            // N1: one monthly charge, next anchor after n. Coming back from
            // daily billing (N2) or out of a block (N3), the period restarts
            // on n: the subscriber does not pay for days spent blocked.
            let (from, next) = if a.billing == Billing::Daily || leaving_unpaid {
                let anchor = chrono::Datelike::day(&n);
                a.anchor_day = anchor;
                (n, calendar::next_anchor_after(n, anchor))
            } else {
                (
                    calendar::anchor_on_or_before(n, a.anchor_day).unwrap_or(n),
                    calendar::next_anchor_after(n, a.anchor_day),
                )
            };
            let next = next.ok_or(EngineError::DateOverflow(n))?;
            a.billing = Billing::Monthly;
            a.balance -= monthly;
            a.next_charge = next;
            a.main = package;
            a.saved = None;
            let to = next.pred_opt().unwrap_or(next);
            effects.push(self.statement(
                now,
                a,
                StatementKind::MonthlyFee,
                -monthly,
                FEE_DESCRIPTION.into(),
                Some((from, to)),
            ));
            return Ok(());
        }
        // Not enough for the month: daily billing (N1), or stay on it (N2).
        a.billing = Billing::Daily;
        a.saved = None;
        if a.balance >= daily {
            a.balance -= daily;
            effects.push(self.statement(
                now,
                a,
                StatementKind::DailyFee,
                -daily,
                DAILY_FEE_DESCRIPTION.into(),
                Some((n, n)),
            ));
        } else if !a.blocks.contains(&BlockKind::Financial) {
            a.blocks.push(BlockKind::Financial);
            a.blocks.sort();
        }
        Ok(())
    }
}

/// `a != b`, settling the usual cases (a new dedup entry, a charge) before
/// comparing every field.
fn differs(a: Option<&AccountState>, b: Option<&AccountState>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => {
            x.recent.len() != y.recent.len() || x.account.balance != y.account.balance || x != y
        }
        _ => a != b,
    }
}

/// A request-journal line (G5).
fn journal(
    at: String,
    channel: Channel,
    msisdn: &str,
    request: &str,
    outcome: Outcome,
    reply: &str,
    duplicate: bool,
) -> Effect {
    Effect::Journal(JournalLine {
        at,
        channel,
        msisdn: msisdn.to_string(),
        request: request.to_string(),
        outcome,
        reply: reply.to_string(),
        duplicate,
    })
}

#[cfg(test)]
mod tests;
