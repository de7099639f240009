//! Comparing a step's expectations with what actually happened.
//!
//! This module owns the rules of a match: only what a fixture states is
//! checked, except that an operator command the engine refused fails its
//! step unless the fixture expected an error. Every mismatch carries the
//! expected and the actual value as display text, for the report.

use rust_decimal::Decimal;

use super::fixture::{snake, Expect, LineExpect};
use super::run::Actual;
use crate::engine::model::{money, Account, StatementLine};

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What was checked: `balance`, `reply contains`, `statement[0].amount`.
    pub field: String,
    pub expected: String,
    pub actual: String,
}

struct Diff(Vec<Mismatch>);

impl Diff {
    fn eq(&mut self, field: &str, expected: String, actual: String) {
        if expected != actual {
            self.0.push(Mismatch {
                field: field.to_string(),
                expected,
                actual,
            });
        }
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn opt_quote(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "none".to_string(), quote)
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn money_text(d: Decimal) -> String {
    money::format(d)
}

/// Every expectation of `e` that `a` does not meet.
pub fn check(e: &Expect, a: &Actual) -> Vec<Mismatch> {
    let mut d = Diff(Vec::new());
    if let Some(outcome) = e.outcome {
        let code = |o: Option<crate::engine::model::Outcome>| {
            o.map_or_else(|| "NONE".to_string(), |o| o.code().to_string())
        };
        d.eq("outcome", code(outcome), code(a.outcome));
    }
    if let Some(status) = &e.status {
        d.eq(
            "status",
            status.clone(),
            a.status.clone().unwrap_or_else(|| "none".into()),
        );
    }
    if let Some(reply) = &e.reply {
        d.eq("reply", quote(reply), opt_quote(&a.reply));
    }
    for fragment in &e.reply_contains {
        if !a
            .reply
            .as_deref()
            .is_some_and(|r| r.contains(fragment.as_str()))
        {
            d.0.push(Mismatch {
                field: "reply contains".into(),
                expected: quote(fragment),
                actual: opt_quote(&a.reply),
            });
        }
    }
    if let Some(sms) = &e.sms {
        d.eq("sms", list(sms), list(&a.sms));
    }
    if let Some(parts) = &e.sms_parts {
        let show = |v: &[usize]| format!("{v:?}");
        d.eq("sms_parts", show(parts), show(&a.sms_parts));
    }
    if let Some(fits) = e.ussd_screen {
        let actual = a
            .reply
            .as_deref()
            .map(shortcode_protocol::text::fits_ussd_screen);
        d.eq(
            "ussd_screen",
            fits.to_string(),
            actual.map_or_else(|| "no reply".into(), |f| f.to_string()),
        );
    }
    for fragment in &e.sms_contains {
        if !a.sms.iter().any(|s| s.contains(fragment.as_str())) {
            d.0.push(Mismatch {
                field: "sms contains".into(),
                expected: quote(fragment),
                actual: list(&a.sms),
            });
        }
    }
    match (&e.error, &a.error) {
        (Some(want), Some(got)) if got.contains(want.as_str()) => {}
        (None, None) => {}
        (want, got) => d.0.push(Mismatch {
            field: "error".into(),
            expected: want
                .as_deref()
                .map_or_else(|| "no error".into(), |w| format!("containing {}", quote(w))),
            actual: got.as_deref().map_or_else(|| "no error".into(), quote),
        }),
    }
    account(&mut d, e, a.account.as_ref());
    if let Some(lines) = &e.statement {
        statement(&mut d, lines, &a.statement);
    }
    d.0
}

fn account(d: &mut Diff, e: &Expect, a: Option<&Account>) {
    let wants_account = e.balance.is_some()
        || e.next_charge.is_some()
        || e.anchor_day.is_some()
        || e.billing.is_some()
        || e.main.is_some()
        || e.saved.is_some()
        || e.blocks.is_some()
        || e.unpaid.is_some()
        || e.discount_pct.is_some();
    let Some(a) = a else {
        if wants_account {
            d.0.push(Mismatch {
                field: "account".into(),
                expected: "an account".into(),
                actual: "no such account".into(),
            });
        }
        return;
    };
    if let Some(b) = e.balance {
        d.eq("balance", money_text(b), money_text(a.balance));
    }
    if let Some(n) = e.next_charge {
        d.eq("next_charge", n.to_string(), a.next_charge.to_string());
    }
    if let Some(n) = e.anchor_day {
        d.eq("anchor_day", n.to_string(), a.anchor_day.to_string());
    }
    if let Some(b) = e.billing {
        d.eq("billing", snake(&b), snake(&a.billing));
    }
    if let Some(m) = e.main {
        let p = |p: crate::engine::model::Package| {
            format!("{} min, {} sms, {} MB", p.minutes, p.sms, p.data_mb)
        };
        d.eq("main", p(m), p(a.main));
    }
    if let Some(saved) = &e.saved {
        match (saved, &a.saved) {
            (None, None) => {}
            (None, Some(s)) => d.0.push(Mismatch {
                field: "saved".into(),
                expected: "none".into(),
                actual: format!(
                    "{} min, {} sms, {} MB until {}",
                    s.minutes, s.sms, s.data_mb, s.valid_until
                ),
            }),
            (Some(_), None) => d.0.push(Mismatch {
                field: "saved".into(),
                expected: "a saved package".into(),
                actual: "none".into(),
            }),
            (Some(want), Some(got)) => {
                let num = |v: Option<u64>, g: u64| v.map(|v| (v.to_string(), g.to_string()));
                for (field, pair) in [
                    ("saved.minutes", num(want.minutes, got.minutes)),
                    ("saved.sms", num(want.sms, got.sms)),
                    ("saved.data_mb", num(want.data_mb, got.data_mb)),
                    (
                        "saved.valid_until",
                        want.valid_until
                            .map(|v| (v.to_string(), got.valid_until.to_string())),
                    ),
                ] {
                    if let Some((w, g)) = pair {
                        d.eq(field, w, g);
                    }
                }
            }
        }
    }
    if let Some(blocks) = &e.blocks {
        let names = |b: &[crate::engine::model::BlockKind]| {
            let mut v: Vec<String> = b.iter().map(snake).collect();
            v.sort();
            format!("[{}]", v.join(", "))
        };
        d.eq("blocks", names(blocks), names(&a.blocks));
    }
    if let Some(u) = e.unpaid {
        d.eq("unpaid", u.to_string(), a.unpaid.to_string());
    }
    if let Some(p) = e.discount_pct {
        d.eq(
            "discount_pct",
            p.normalize().to_string(),
            a.discount_pct.normalize().to_string(),
        );
    }
}

/// One statement line as the report shows it.
pub fn line_text(l: &StatementLine) -> String {
    let period = match (l.period_from, l.period_to) {
        (Some(f), Some(t)) => format!(" {f}..{t}"),
        _ => String::new(),
    };
    format!(
        "{} {} → {}{period} {:?}",
        snake(&l.kind),
        money_text(l.amount),
        money_text(l.balance_after),
        l.description
    )
}

fn statement(d: &mut Diff, want: &[LineExpect], got: &[StatementLine]) {
    if want.len() != got.len() {
        let lines: Vec<String> = got.iter().map(line_text).collect();
        d.0.push(Mismatch {
            field: "statement".into(),
            expected: format!("{} new line(s)", want.len()),
            actual: if lines.is_empty() {
                "no new lines".into()
            } else {
                format!("{} new line(s): {}", lines.len(), lines.join("; "))
            },
        });
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let f = |k: &str| format!("statement[{i}].{k}");
        if let Some(k) = w.kind {
            d.eq(&f("kind"), snake(&k), snake(&g.kind));
        }
        if let Some(v) = w.amount {
            d.eq(&f("amount"), money_text(v), money_text(g.amount));
        }
        if let Some(v) = w.balance_after {
            d.eq(
                &f("balance_after"),
                money_text(v),
                money_text(g.balance_after),
            );
        }
        if let Some(v) = &w.description {
            d.eq(&f("description"), quote(v), quote(&g.description));
        }
        let date =
            |v: Option<chrono::NaiveDate>| v.map_or_else(|| "none".into(), |v| v.to_string());
        if w.period_from.is_some() {
            d.eq(&f("period_from"), date(w.period_from), date(g.period_from));
        }
        if w.period_to.is_some() {
            d.eq(&f("period_to"), date(w.period_to), date(g.period_to));
        }
    }
}
