//! Table-driven tests, one group per rule id of renewal-rules.md.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// An instant given in Moscow local time.
fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn plan(id: &str, version: &str, renewal: bool, regions: &[(&str, &str, &str)]) -> Plan {
    Plan {
        id: id.into(),
        name: id.into(),
        version: version.into(),
        archived: version != "2024",
        renewal,
        package: Package {
            minutes: 500,
            sms: 500,
            data_mb: 15360,
        },
        overage: Overage {
            minute: dec("2.00"),
            sms: dec("1.50"),
            mb: dec("0.10"),
        },
        regions: regions
            .iter()
            .map(|(r, m, d)| {
                (
                    r.to_string(),
                    RegionFees {
                        monthly_fee: dec(m),
                        daily_fee: dec(d),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

fn catalog() -> Catalog {
    Catalog {
        currency: "RUB".into(),
        timezone: "Europe/Moscow".into(),
        plans: vec![
            plan(
                "smart",
                "2024",
                true,
                &[
                    ("moscow", "550.00", "19.00"),
                    ("spb", "500.00", "17.50"),
                    ("ekb", "100.01", "3.50"),
                    ("free", "0.00", "0.00"),
                ],
            ),
            plan("smart", "2019", true, &[("moscow", "450.00", "15.00")]),
            plan("super_mts", "2024", false, &[("moscow", "300.00", "10.00")]),
        ],
    }
}

fn engine() -> Engine {
    Engine::new(catalog(), EngineConfig::default()).unwrap()
}

const MSISDN: &str = "79161234567";

fn account() -> AccountState {
    AccountState::imported(Account {
        msisdn: MSISDN.into(),
        region: "moscow".into(),
        plan: "smart".into(),
        plan_version: "2024".into(),
        balance: dec("1000.00"),
        billing: Billing::Monthly,
        next_charge: date("2026-12-05"),
        anchor_day: 5,
        blocks: vec![],
        unpaid: false,
        discount_pct: dec("0"),
        services: vec!["package".into()],
        location: Location::Home,
        main: Package {
            minutes: 120,
            sms: 300,
            data_mb: 2048,
        },
        saved: None,
    })
}

fn renew(channel: Channel) -> Command {
    Command::Renew {
        channel,
        request: "*929#".into(),
        dedup_key: None,
    }
}

const NOW: &str = "2026-11-22T10:00:00+03:00";

/// Apply a command and return the result (state must exist afterwards).
fn run(e: &Engine, st: &AccountState, c: Command, now: &str) -> Applied {
    e.apply(MSISDN, Some(st), &c, at(now)).unwrap()
}

fn statements(a: &Applied) -> Vec<&StatementLine> {
    a.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Statement(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn notices(a: &Applied) -> Vec<&Notice> {
    a.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notice(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn journal(a: &Applied) -> Vec<&JournalLine> {
    a.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journal(j) => Some(j),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- R0–R6

#[test]
fn r0_unknown_subscriber_is_refused_and_journaled() {
    let e = engine();
    let a = e
        .apply("79990000000", None, &renew(Channel::Ussd), at(NOW))
        .unwrap();
    assert_eq!(a.outcome, Outcome::UnknownSubscriber);
    assert!(a.state.is_none());
    let j = journal(&a);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].msisdn, "79990000000");
    assert_eq!(j[0].outcome, Outcome::UnknownSubscriber);
    assert_eq!(j[0].reply, a.reply);
}

type Setup = fn(&mut Account);

#[test]
fn r1_to_r6_refusals_table() {
    let rows: &[(&str, Setup, Outcome)] = &[
        (
            "financial block",
            |a| a.blocks = vec![BlockKind::Financial],
            Outcome::Blocked,
        ),
        (
            "voluntary block",
            |a| a.blocks = vec![BlockKind::Voluntary],
            Outcome::Blocked,
        ),
        (
            "lost SIM",
            |a| a.blocks = vec![BlockKind::LostSim],
            Outcome::Blocked,
        ),
        (
            "fraud",
            |a| a.blocks = vec![BlockKind::Fraud],
            Outcome::Blocked,
        ),
        (
            "other block",
            |a| a.blocks = vec![BlockKind::Other],
            Outcome::Blocked,
        ),
        ("unpaid period", |a| a.unpaid = true, Outcome::UnpaidPeriod),
        (
            "plan not eligible",
            |a| a.plan = "super_mts".into(),
            Outcome::NoService,
        ),
        (
            "region not offered",
            |a| a.region = "spb_oblast".into(),
            Outcome::NoService,
        ),
        (
            "no package service",
            |a| a.services.clear(),
            Outcome::NoService,
        ),
        (
            "daily billing",
            |a| a.billing = Billing::Daily,
            Outcome::DailyBilling,
        ),
        (
            "100% discount",
            |a| a.discount_pct = dec("100"),
            Outcome::FullDiscount,
        ),
        (
            "fee is zero",
            |a| a.region = "free".into(),
            Outcome::FullDiscount,
        ),
        (
            "one kopeck short",
            |a| a.balance = dec("549.99"),
            Outcome::InsufficientFunds,
        ),
        (
            "negative balance",
            |a| a.balance = dec("-3.00"),
            Outcome::InsufficientFunds,
        ),
    ];
    let e = engine();
    for (name, setup, want) in rows {
        let mut st = account();
        setup(&mut st.account);
        let a = run(&e, &st, renew(Channel::Ussd), NOW);
        assert_eq!(a.outcome, *want, "{name}");
        assert!(!a.changed, "{name}: a refusal must not change the account");
        assert!(
            statements(&a).is_empty(),
            "{name}: a refusal charges nothing"
        );
        assert!(
            notices(&a).is_empty(),
            "{name}: a USSD refusal sends no SMS"
        );
        assert_eq!(journal(&a)[0].outcome, *want, "{name}: journaled (G5)");
        assert!(!a.reply.is_empty(), "{name}");
    }
}

#[test]
fn refusal_precedence_is_r1_through_r6() {
    // Every condition holds at once; lifting them one by one walks the order.
    let e = engine();
    let mut st = account();
    let a = &mut st.account;
    a.blocks = vec![BlockKind::Voluntary];
    a.unpaid = true;
    a.services.clear();
    a.billing = Billing::Daily;
    a.discount_pct = dec("100");
    a.balance = dec("0.00");
    let lift: [(Outcome, Setup); 6] = [
        (Outcome::Blocked, |a| a.blocks.clear()),
        (Outcome::UnpaidPeriod, |a| a.unpaid = false),
        (Outcome::NoService, |a| a.services = vec!["package".into()]),
        (Outcome::DailyBilling, |a| a.billing = Billing::Monthly),
        (Outcome::FullDiscount, |a| a.discount_pct = dec("0")),
        (Outcome::InsufficientFunds, |a| a.balance = dec("550.00")),
    ];
    for (want, fix) in lift {
        assert_eq!(run(&e, &st, renew(Channel::Ussd), NOW).outcome, want);
        fix(&mut st.account);
    }
    assert_eq!(
        run(&e, &st, renew(Channel::Ussd), NOW).outcome,
        Outcome::Renewed
    );
}

#[test]
fn r6_answer_names_the_fee_and_the_balance() {
    let e = engine();
    let mut st = account();
    st.account.balance = dec("120.50");
    let a = run(&e, &st, renew(Channel::Sms), NOW);
    assert_eq!(a.outcome, Outcome::InsufficientFunds);
    assert!(a.reply.contains("550.00"), "{}", a.reply);
    assert!(a.reply.contains("120.50"), "{}", a.reply);
    let n = notices(&a);
    assert_eq!(
        n.len(),
        1,
        "an SMS refusal is answered by SMS through the outbox"
    );
    assert_eq!(n[0].text, a.reply);
}

#[test]
fn balance_exactly_equal_to_fee_is_enough() {
    let e = engine();
    let mut st = account();
    st.account.balance = dec("550.00");
    let a = run(&e, &st, renew(Channel::Ussd), NOW);
    assert_eq!(a.outcome, Outcome::Renewed);
    assert_eq!(a.state.unwrap().account.balance, dec("0.00"));
}

#[test]
fn archived_version_and_roaming_still_renew() {
    // Eligible plans include archived versions; C4: location never refuses.
    let e = engine();
    for loc in [Location::NationalRoaming, Location::InternationalRoaming] {
        let mut st = account();
        st.account.plan_version = "2019".into();
        st.account.location = loc;
        let a = run(&e, &st, renew(Channel::Ussd), NOW);
        assert_eq!(a.outcome, Outcome::Renewed, "{loc:?}");
        assert_eq!(a.state.unwrap().account.balance, dec("550.00"));
    }
}

// ---------------------------------------------------------------- steps 1–6

#[test]
fn step1_fee_with_discount_rounds_half_away_from_zero_once() {
    let rows = [
        ("moscow", "33", "368.50"),
        ("moscow", "0", "550.00"),
        ("moscow", "12.5", "481.25"),
        ("ekb", "50", "50.01"),      // 50.005 → 50.01
        ("ekb", "0.5", "99.51"),     // 99.51005 → 99.51
        ("spb", "33.333", "333.34"), // 333.335 → 333.34
    ];
    let e = engine();
    for (region, pct, fee) in rows {
        let mut st = account();
        st.account.region = region.into();
        st.account.discount_pct = dec(pct);
        let a = run(&e, &st, renew(Channel::Ussd), NOW);
        assert_eq!(a.outcome, Outcome::Renewed, "{region} {pct}%");
        let s = statements(&a);
        assert_eq!(s[0].amount, -dec(fee), "{region} {pct}%");
        assert_eq!(
            a.state.unwrap().account.balance,
            dec("1000.00") - dec(fee),
            "{region} {pct}%"
        );
    }
}

#[test]
fn step2_period_shift_on_month_ends() {
    // (renew at, next charge, the regular charges that follow)
    let rows = [
        (
            "2027-01-31T12:00:00+03:00",
            "2027-02-28",
            ["2027-03-31", "2027-04-30"],
        ),
        (
            "2028-01-31T12:00:00+03:00",
            "2028-02-29",
            ["2028-03-31", "2028-04-30"],
        ),
        (
            "2028-02-29T12:00:00+03:00",
            "2028-03-29",
            ["2028-04-29", "2028-05-29"],
        ),
        (
            "2026-12-31T12:00:00+03:00",
            "2027-01-31",
            ["2027-02-28", "2027-03-31"],
        ),
        // 23:30 UTC on Dec 31 is already Jan 1 in Moscow.
        (
            "2026-12-31T23:30:00+00:00",
            "2027-02-01",
            ["2027-03-01", "2027-04-01"],
        ),
    ];
    let e = engine();
    for (when, next, later) in rows {
        let mut st = account();
        st.account.balance = dec("5000.00");
        let a = run(&e, &st, renew(Channel::Ussd), when);
        let mut st = a.state.unwrap();
        assert_eq!(st.account.next_charge, date(next), "{when}");
        let first = run(&e, &account(), renew(Channel::Ussd), when);
        assert_eq!(
            statements(&first)[0].period_to,
            date(next).pred_opt(),
            "{when}"
        );
        // The nightly runs on each charge date keep the anchor.
        for want in later {
            let charge_day = st.account.next_charge;
            let n = run(&e, &st, Command::Nightly { date: charge_day }, when);
            assert_eq!(statements(&n).len(), 1, "{when}: charged on {charge_day}");
            st = n.state.unwrap();
            assert_eq!(st.account.next_charge, date(want), "{when}");
        }
    }
}

#[test]
fn step3_and_4_carry_over_once_then_fresh_package() {
    let e = engine();
    let mut st = account();
    st.account.balance = dec("2000.00");
    let a = run(&e, &st, renew(Channel::Ussd), NOW);
    let st1 = a.state.unwrap();
    let saved = st1.account.saved.unwrap();
    assert_eq!(
        (saved.minutes, saved.sms, saved.data_mb),
        (120, 300, 2048),
        "100% of the main remainder is saved"
    );
    assert_eq!(saved.valid_until, date("2026-12-22"));
    assert_eq!(
        st1.account.main,
        Package {
            minutes: 500,
            sms: 500,
            data_mb: 15360
        }
    );

    // Use some of both, then renew again in the same period: the old saved
    // remainder expires and only the main remainder is saved.
    let st2 = run(
        &e,
        &st1,
        Command::Usage {
            kind: UsageKind::Minutes,
            amount: 150,
        },
        "2026-11-25T10:00:00+03:00",
    )
    .state
    .unwrap();
    assert_eq!(st2.account.saved.unwrap().minutes, 0);
    assert_eq!(st2.account.main.minutes, 470);
    let st3 = run(&e, &st2, renew(Channel::Ussd), "2026-11-26T10:00:00+03:00")
        .state
        .unwrap();
    let saved = st3.account.saved.unwrap();
    assert_eq!((saved.minutes, saved.sms, saved.data_mb), (470, 500, 15360));
    assert_eq!(saved.valid_until, date("2026-12-26"));
    assert_eq!(st3.account.balance, dec("900.00"));
}

#[test]
fn step5_statement_line() {
    let e = engine();
    let a = run(&e, &account(), renew(Channel::Ussd), NOW);
    let s = statements(&a);
    assert_eq!(s.len(), 1);
    let s = s[0];
    assert_eq!(
        s.description,
        "Списание ежемесячной платы по Тарифному плану"
    );
    assert_eq!(s.kind, StatementKind::MonthlyFee);
    assert_eq!(s.amount, dec("-550.00"));
    assert_eq!(s.balance_after, dec("450.00"));
    assert_eq!(s.period_from, Some(date("2026-11-22")));
    assert_eq!(s.period_to, Some(date("2026-12-21")));
    assert_eq!(s.at, "2026-11-22T10:00:00+03:00");
    let line = serde_json::to_string(s).unwrap();
    assert!(line.contains(r#""amount":"-550.00""#), "{line}");
}

#[test]
fn step6_ussd_queues_one_confirmation_sms_and_sms_answers_with_it() {
    let e = engine();
    let ussd = run(&e, &account(), renew(Channel::Ussd), NOW);
    let n = notices(&ussd);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].msisdn, MSISDN);
    for detail in [
        "550.00",
        "22.12.2026",
        "120 мин",
        "300 SMS",
        "2048 МБ",
        "450.00",
    ] {
        assert!(
            n[0].text.contains(detail),
            "{detail} missing in {}",
            n[0].text
        );
    }
    assert_ne!(ussd.reply, n[0].text, "USSD gets the short answer");

    let sms = run(&e, &account(), renew(Channel::Sms), NOW);
    let n2 = notices(&sms);
    assert_eq!(n2.len(), 1, "one SMS, not two");
    assert_eq!(sms.reply, n2[0].text, "the SMS answer is the confirmation");
    assert_eq!(n2[0].text, n[0].text);
}

#[test]
fn every_ussd_answer_fits_one_ucs2_screen() {
    // Largest amounts the engine formats, most digits in dates.
    let e = engine();
    let mut st = account();
    st.account.balance = dec("-99999999.99");
    st.account.region = "moscow".into();
    let mut texts_seen = 0;
    for outcome in Outcome::ALL {
        let vars = Vars::widest();
        let text = if outcome == Outcome::Ok {
            continue;
        } else {
            e.short_reply(outcome, &vars)
        };
        texts_seen += 1;
        let units = text.encode_utf16().count();
        assert!(units <= 80, "{outcome}: {units} UCS2 chars: {text}");
    }
    assert_eq!(texts_seen, 9);
}

// ---------------------------------------------------------------- U1–U3

fn usage(kind: UsageKind, amount: u64) -> Command {
    Command::Usage { kind, amount }
}

#[test]
fn u1_saved_then_main_then_out_of_bundle() {
    let e = engine();
    let mut st = account();
    st.account.main.minutes = 5;
    st.account.saved = Some(Saved {
        minutes: 10,
        sms: 0,
        data_mb: 0,
        valid_until: date("2026-12-05"),
    });
    let a = run(&e, &st, usage(UsageKind::Minutes, 20), NOW);
    let s = a.state.as_ref().unwrap();
    assert_eq!(s.account.saved.unwrap().minutes, 0);
    assert_eq!(s.account.main.minutes, 0);
    let lines = statements(&a);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].kind, StatementKind::Overage);
    assert_eq!(lines[0].amount, dec("-10.00"), "5 min × 2.00");
    assert_eq!(s.account.balance, dec("990.00"));
}

#[test]
fn u1_within_saved_leaves_main_untouched() {
    let e = engine();
    let mut st = account();
    st.account.saved = Some(Saved {
        minutes: 0,
        sms: 0,
        data_mb: 1000,
        valid_until: date("2026-12-05"),
    });
    let a = run(&e, &st, usage(UsageKind::DataMb, 600), NOW);
    let s = a.state.unwrap();
    assert_eq!(s.account.saved.unwrap().data_mb, 400);
    assert_eq!(s.account.main.data_mb, 2048);
    assert!(statements(&run(&e, &st, usage(UsageKind::DataMb, 600), NOW)).is_empty());
}

#[test]
fn u2_saved_stops_counting_on_its_valid_until_date() {
    let e = engine();
    let mut st = account();
    st.account.saved = Some(Saved {
        minutes: 100,
        sms: 0,
        data_mb: 0,
        valid_until: date("2026-12-05"),
    });
    let before = run(
        &e,
        &st,
        usage(UsageKind::Minutes, 1),
        "2026-12-04T23:59:00+03:00",
    );
    assert_eq!(before.state.unwrap().account.saved.unwrap().minutes, 99);
    let on = run(
        &e,
        &st,
        usage(UsageKind::Minutes, 1),
        "2026-12-05T00:01:00+03:00",
    );
    let s = on.state.unwrap();
    assert_eq!(s.account.saved, None, "expired on its date");
    assert_eq!(s.account.main.minutes, 119);
}

#[test]
fn u3_overage_may_go_negative_then_r6_refuses() {
    let e = engine();
    let mut st = account();
    st.account.balance = dec("1.00");
    st.account.main.sms = 0;
    let a = run(&e, &st, usage(UsageKind::Sms, 3), NOW);
    let s = a.state.unwrap();
    assert_eq!(s.account.balance, dec("-3.50"));
    let r = run(&e, &s, renew(Channel::Ussd), NOW);
    assert_eq!(r.outcome, Outcome::InsufficientFunds);
    assert!(r.reply.contains("-3.50"), "{}", r.reply);
}

// ---------------------------------------------------------------- N1–N4

fn nightly(d: &str) -> Command {
    Command::Nightly { date: date(d) }
}

const NIGHT: &str = "2026-12-05T00:00:00+03:00";

#[test]
fn n1_monthly_charge_when_due() {
    let e = engine();
    let mut st = account();
    st.account.saved = Some(Saved {
        minutes: 7,
        sms: 0,
        data_mb: 0,
        valid_until: date("2026-12-05"),
    });
    let not_yet = run(&e, &st, nightly("2026-12-04"), NIGHT);
    assert!(statements(&not_yet).is_empty());
    let a = run(&e, &st, nightly("2026-12-05"), NIGHT);
    let s = a.state.as_ref().unwrap();
    assert_eq!(s.account.balance, dec("450.00"));
    assert_eq!(s.account.next_charge, date("2027-01-05"));
    assert_eq!(s.account.main.minutes, 500, "fresh package");
    assert_eq!(s.account.saved, None, "saved stops at the charge (U2)");
    let line = statements(&a)[0];
    assert_eq!(
        (line.period_from, line.period_to),
        (Some(date("2026-12-05")), Some(date("2027-01-04")))
    );
}

#[test]
fn n1_missed_nights_are_charged_once() {
    let e = engine();
    let a = run(&e, &account(), nightly("2026-12-09"), NIGHT);
    let s = a.state.unwrap();
    assert_eq!(s.account.next_charge, date("2027-01-05"));
    assert_eq!(s.account.balance, dec("450.00"));
    let again = run(&e, &s, nightly("2026-12-10"), NIGHT);
    assert!(statements(&again).is_empty(), "not charged twice");
}

#[test]
fn n1_short_of_monthly_goes_daily_and_short_of_daily_blocks() {
    let e = engine();
    let rows = [
        ("100.00", Billing::Daily, "81.00", false),
        ("10.00", Billing::Daily, "10.00", true),
    ];
    for (balance, billing, after, blocked) in rows {
        let mut st = account();
        st.account.balance = dec(balance);
        let a = run(&e, &st, nightly("2026-12-05"), NIGHT);
        let s = a.state.unwrap();
        assert_eq!(s.account.billing, billing, "{balance}");
        assert_eq!(s.account.balance, dec(after), "{balance}");
        assert_eq!(s.account.blocks.contains(&BlockKind::Financial), blocked);
        // …and a renewal is now refused for daily billing or the block.
        let r = run(&e, &s, renew(Channel::Ussd), "2026-12-05T12:00:00+03:00");
        let want = if blocked {
            Outcome::Blocked
        } else {
            Outcome::DailyBilling
        };
        assert_eq!(r.outcome, want);
    }
}

#[test]
fn n2_daily_account_returns_to_monthly_when_it_can_pay() {
    let e = engine();
    let mut st = account();
    st.account.billing = Billing::Daily;
    st.account.balance = dec("600.00");
    let a = run(&e, &st, nightly("2026-12-17"), NIGHT);
    let s = a.state.unwrap();
    assert_eq!(s.account.billing, Billing::Monthly);
    assert_eq!(s.account.balance, dec("50.00"));
    assert_eq!(s.account.anchor_day, 17);
    assert_eq!(s.account.next_charge, date("2027-01-17"));
    assert_eq!(s.account.main.minutes, 500);
    // Back on monthly billing, the renewal works again (with money).
    let mut s2 = s.clone();
    s2.account.balance = dec("600.00");
    assert_eq!(
        run(&e, &s2, renew(Channel::Ussd), "2026-12-18T09:00:00+03:00").outcome,
        Outcome::Renewed
    );
}

#[test]
fn n2_daily_fee_then_block_when_even_that_is_short() {
    let e = engine();
    let mut st = account();
    st.account.billing = Billing::Daily;
    st.account.balance = dec("20.00");
    let d1 = run(&e, &st, nightly("2026-12-10"), NIGHT).state.unwrap();
    assert_eq!(d1.account.balance, dec("1.00"));
    assert!(d1.account.blocks.is_empty());
    let d2 = run(&e, &d1, nightly("2026-12-11"), NIGHT).state.unwrap();
    assert_eq!(d2.account.balance, dec("1.00"));
    assert_eq!(d2.account.blocks, vec![BlockKind::Financial]);
}

#[test]
fn n3_unpaid_period_after_unblock_ends_with_the_nightly_charge() {
    let e = engine();
    let mut st = account();
    st.account.blocks = vec![BlockKind::Voluntary];
    st.account.next_charge = date("2026-11-05"); // ran out while blocked
    let un = run(&e, &st, Command::Unblock { kind: None }, NOW)
        .state
        .unwrap();
    assert!(un.account.unpaid);
    assert_eq!(
        run(&e, &un, renew(Channel::Ussd), NOW).outcome,
        Outcome::UnpaidPeriod
    );
    let paid = run(&e, &un, nightly("2026-11-23"), "2026-11-23T00:00:00+03:00");
    let s = paid.state.as_ref().unwrap();
    assert!(!s.account.unpaid);
    let line = statements(&paid)[0];
    assert_eq!(line.amount, dec("-550.00"));
    // The period restarts on the night it is paid, not back on Nov 5.
    assert_eq!(line.period_from, Some(date("2026-11-23")));
    assert_eq!(s.account.next_charge, date("2026-12-23"));
    assert_eq!(s.account.anchor_day, 23);
    let mut rich = s.clone();
    rich.account.balance = dec("1000.00");
    assert_eq!(
        run(&e, &rich, renew(Channel::Ussd), "2026-11-23T10:00:00+03:00").outcome,
        Outcome::Renewed
    );
}

#[test]
fn n3_short_block_inside_a_paid_period_is_not_unpaid() {
    let e = engine();
    let mut st = account();
    st.account.blocks = vec![BlockKind::LostSim];
    let un = run(
        &e,
        &st,
        Command::Unblock {
            kind: Some(BlockKind::LostSim),
        },
        NOW,
    )
    .state
    .unwrap();
    assert!(!un.account.unpaid);
    assert_eq!(
        run(&e, &un, renew(Channel::Ussd), NOW).outcome,
        Outcome::Renewed
    );
}

#[test]
fn n4_running_a_date_twice_changes_nothing() {
    let e = engine();
    for billing in [Billing::Monthly, Billing::Daily] {
        let mut st = account();
        st.account.billing = billing;
        st.account.balance = dec("300.00");
        let once = run(&e, &st, nightly("2026-12-05"), NIGHT);
        assert!(
            !statements(&once).is_empty(),
            "{billing:?}: first run charges"
        );
        let s1 = once.state.unwrap();
        let twice = run(&e, &s1, nightly("2026-12-05"), "2026-12-05T09:00:00+03:00");
        assert!(!twice.changed, "{billing:?}");
        assert!(twice.effects.is_empty(), "{billing:?}");
        assert_eq!(twice.state.unwrap(), s1);
    }
}

#[test]
fn n1_a_fully_discounted_fee_is_covered_by_any_balance() {
    let e = engine();
    let mut st = account();
    st.account.discount_pct = dec("100");
    st.account.balance = dec("-1.00");
    st.account.main.minutes = 0;
    let a = run(&e, &st, nightly("2026-12-05"), NIGHT);
    let s = a.state.unwrap();
    assert_eq!(s.account.billing, Billing::Monthly);
    assert!(s.account.blocks.is_empty(), "{:?}", s.account.blocks);
    assert_eq!(s.account.balance, dec("-1.00"), "nothing charged");
    assert_eq!(s.account.next_charge, date("2027-01-05"));
    assert_eq!(s.account.main.minutes, 500, "fresh package");
}

#[test]
fn nightly_where_the_plan_is_not_offered_charges_nothing_but_ends_the_unpaid_period() {
    let e = engine();
    let mut st = account();
    st.account.region = "nowhere".into();
    st.account.unpaid = true;
    let before = run(&e, &st, renew(Channel::Ussd), "2026-12-05T12:00:00+03:00");
    assert_eq!(before.outcome, Outcome::UnpaidPeriod);
    let a = run(&e, &st, nightly("2026-12-05"), NIGHT);
    assert!(statements(&a).is_empty());
    let s = a.state.unwrap();
    assert!(!s.account.unpaid);
    assert_eq!(s.account.balance, st.account.balance);
    let r = run(&e, &s, renew(Channel::Ussd), "2026-12-05T12:00:00+03:00");
    assert_eq!(r.outcome, Outcome::NoService);
}

#[test]
fn nightly_skips_blocked_accounts() {
    let e = engine();
    let mut st = account();
    st.account.blocks = vec![BlockKind::Fraud];
    let a = run(&e, &st, nightly("2026-12-05"), NIGHT);
    assert!(statements(&a).is_empty());
    assert_eq!(a.state.unwrap().account.balance, dec("1000.00"));
}

// ---------------------------------------------------------------- G1, G4, C3

fn keyed(key: &str) -> Command {
    Command::Renew {
        channel: Channel::Ussd,
        request: "*929#".into(),
        dedup_key: Some(key.into()),
    }
}

#[test]
fn g4_retransmission_gets_the_original_answer_and_no_second_charge() {
    let e = engine();
    let first = run(&e, &account(), keyed("ussd|79161234567|*929#|17"), NOW);
    let st = first.state.clone().unwrap();
    let again = run(
        &e,
        &st,
        keyed("ussd|79161234567|*929#|17"),
        "2026-11-22T10:00:59+03:00",
    );
    assert_eq!(again.outcome, Outcome::Renewed);
    assert_eq!(again.reply, first.reply);
    assert!(statements(&again).is_empty(), "not charged again");
    assert!(notices(&again).is_empty(), "no second confirmation");
    assert!(journal(&again)[0].duplicate, "journaled as a duplicate");
    assert_eq!(again.state.unwrap().account.balance, dec("450.00"));

    // Outside the window, or with another session, it is a new request.
    let later = run(
        &e,
        &st,
        keyed("ussd|79161234567|*929#|17"),
        "2026-11-22T10:01:01+03:00",
    );
    assert_eq!(later.outcome, Outcome::InsufficientFunds);
    let other = run(
        &e,
        &st,
        keyed("ussd|79161234567|*929#|18"),
        "2026-11-22T10:00:30+03:00",
    );
    assert_eq!(other.outcome, Outcome::InsufficientFunds);
}

#[test]
fn c3_unknown_command_names_the_code_and_changes_nothing() {
    let e = engine();
    let st = account();
    let c = Command::UnknownCommand {
        channel: Channel::Ussd,
        request: "*100#".into(),
    };
    let a = run(&e, &st, c, NOW);
    assert_eq!(a.outcome, Outcome::UnknownCommand);
    assert!(a.reply.contains("*929#"), "{}", a.reply);
    assert!(!a.changed);
    assert_eq!(journal(&a)[0].request, "*100#");
}

#[test]
fn operator_errors_are_errors_not_outcomes() {
    let e = engine();
    let st = account();
    let bad = [
        Command::SetDiscount { pct: dec("101") },
        Command::TopUp { amount: dec("0") },
        Command::TopUp {
            amount: dec("1.005"),
        },
        Command::TopUp {
            amount: dec("1000000000000.01"),
        },
        usage(UsageKind::Minutes, crate::engine::USAGE_MAX + 1),
        Command::ChangePlan {
            plan: "nope".into(),
            version: "1".into(),
        },
    ];
    for c in bad {
        assert!(e.apply(MSISDN, Some(&st), &c, at(NOW)).is_err(), "{c:?}");
    }
    assert_eq!(
        e.apply("7000", None, &usage(UsageKind::Sms, 1), at(NOW)),
        Err(EngineError::NoAccount("7000".into()))
    );
}

// ---------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum Op {
    Renew(Channel, Option<u8>),
    Usage(UsageKind, u64),
    TopUp(u32),
    Block,
    Unblock,
    Discount(u8),
    Nightly,
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop_oneof![Just(Channel::Ussd), Just(Channel::Sms)], proptest::option::of(0u8..3))
            .prop_map(|(c, k)| Op::Renew(c, k)),
        4 => (prop_oneof![Just(UsageKind::Minutes), Just(UsageKind::Sms), Just(UsageKind::DataMb)], 0u64..3000)
            .prop_map(|(k, n)| Op::Usage(k, n)),
        2 => (1u32..200_000).prop_map(Op::TopUp),
        1 => Just(Op::Block),
        1 => Just(Op::Unblock),
        1 => (0u8..=100).prop_map(Op::Discount),
        3 => Just(Op::Nightly),
        3 => (1u32..(40 * 3600)).prop_map(Op::Advance),
    ]
}

/// Run a sequence; return every step's (outcome, reply, effects) and the
/// final state, checking invariants after each step.
fn drive(ops: &[Op]) -> (Vec<(Outcome, String, Vec<Effect>)>, AccountState) {
    let e = engine();
    let mut st = account();
    let mut now = at(NOW);
    let mut ledger = Decimal::ZERO;
    let mut out = Vec::new();
    for o in ops {
        let cmd = match o {
            Op::Renew(c, k) => Command::Renew {
                channel: *c,
                request: String::new(),
                dedup_key: k.map(|k| format!("k{k}")),
            },
            Op::Usage(k, n) => usage(*k, *n),
            Op::TopUp(kop) => Command::TopUp {
                amount: Decimal::new(*kop as i64, 2),
            },
            Op::Block => Command::Block {
                kind: BlockKind::Voluntary,
            },
            Op::Unblock => Command::Unblock { kind: None },
            Op::Discount(p) => Command::SetDiscount {
                pct: Decimal::from(*p),
            },
            Op::Nightly => Command::Nightly {
                date: e.local_date(now),
            },
            Op::Advance(s) => {
                now += chrono::Duration::seconds(*s as i64);
                continue;
            }
        };
        let before = st.clone();
        let a = e.apply(MSISDN, Some(&st), &cmd, now).unwrap();
        for s in statements(&a) {
            ledger += s.amount;
            assert_eq!(s.amount.scale(), 2, "kopecks");
        }
        st = a.state.clone().unwrap();
        // G2: opening + top-ups − charges = balance, after every step.
        assert_eq!(st.opening_balance + ledger, st.account.balance);
        // A saved package never holds more than the main remainder it came from.
        if a.outcome == Outcome::Renewed && !journal(&a)[0].duplicate {
            let saved = st.account.saved.unwrap().package();
            assert_eq!(saved, before.account.main);
        } else if let (Some(now_saved), Some(was)) = (st.account.saved, before.account.saved) {
            let (n, w) = (now_saved.package(), was.package());
            assert!(n.minutes <= w.minutes && n.sms <= w.sms && n.data_mb <= w.data_mb);
        }
        out.push((a.outcome, a.reply, a.effects));
    }
    (out, st)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_keep_g2_and_replay_identically(ops in proptest::collection::vec(op(), 1..60)) {
        let (a, sa) = drive(&ops);
        let (b, sb) = drive(&ops);
        prop_assert_eq!(a, b);
        prop_assert_eq!(sa, sb);
    }
}

// ---------------------------------------------------------------- formatting

#[test]
fn money_strings_are_exactly_two_decimals() {
    use crate::engine::model::money;
    for good in ["550.00", "0.00", "-3.50", "1000000000000.00"] {
        assert_eq!(money::format(money::parse(good).unwrap()), good);
    }
    for bad in [
        "550", "550.5", ".50", "550.", "550.000", "+1.00", "1e2", "1 000,00", " 1.00", "-",
        "--1.00", "1.0a", "",
    ] {
        assert!(money::parse(bad).is_err(), "{bad:?} accepted");
    }
    // What `format` writes for the largest values reads back.
    for v in [
        Decimal::MAX,
        Decimal::MIN,
        dec("1000000000000000000000000000"),
    ] {
        assert_eq!(money::parse(&money::format(v)), Ok(v), "{v}");
    }
    assert_eq!(money::MAX_ABS, dec("1000000000000"));
    assert!(money::in_range(dec("1000000000000.00")).is_ok());
    assert!(money::in_range(dec("-1000000000000.01")).is_err());
}

/// What `money::format` was before it was written by hand.
fn money_reference(v: Decimal) -> String {
    let mut r = v.round_dp(2);
    r.rescale(2);
    r.to_string()
}

#[test]
fn money_format_matches_decimal_display() {
    let mut neg_zero = Decimal::ZERO;
    neg_zero.set_sign_negative(true);
    let mut values = vec![
        Decimal::ZERO,
        neg_zero,
        Decimal::MAX,
        Decimal::MIN,
        Decimal::new(1, 28),
        Decimal::new(-1, 28),
    ];
    for s in [
        "0",
        "0.00",
        "550",
        "550.5",
        "550.50",
        "0.005",
        "0.004",
        "-0.004",
        "-0.005",
        "-550.00",
        "1.015",
        "99999999.99",
        "-99999999.99",
        "79228162514264337593543950335",
        "-7922816251426433759354395033.5",
        "792281625142643375935439503.35",
        "0.0000001",
    ] {
        values.push(dec(s));
    }
    for v in values {
        assert_eq!(money::format(v), money_reference(v), "{v:?}");
    }
}

#[test]
fn date_format_matches_fmt() {
    let mut days = vec![NaiveDate::MIN, NaiveDate::MAX];
    for y in [
        -262_000, -10_000, -1000, -99, -1, 0, 1, 99, 999, 1000, 9999, 10_000, 262_000,
    ] {
        days.push(NaiveDate::from_ymd_opt(y, 1, 1).unwrap());
        days.push(NaiveDate::from_ymd_opt(y, 12, 31).unwrap());
    }
    let mut d = date("2025-12-25");
    while d < date("2029-01-10") {
        days.push(d);
        d = d.succ_opt().unwrap();
    }
    for d in days {
        let mut buf = [0u8; VALUE_MAX];
        let n = encode_date(d, &mut buf);
        let want = format!("{:02}.{:02}.{:04}", d.day(), d.month(), d.year());
        assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), want);
    }
}

#[test]
fn local_stamp_matches_chrono_rfc3339() {
    let zones = [
        "Europe/Moscow",
        "UTC",
        "Asia/Kolkata",
        "America/St_Johns",
        "Asia/Kathmandu",
        "Africa/Monrovia",
        "Pacific/Chatham",
        "America/Sao_Paulo",
    ];
    let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
        .unwrap()
        .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
        .unwrap()
        .and_utc();
    let mut instants: Vec<DateTime<Utc>> = vec![leap];
    for s in [
        "1800-01-01T00:00:00Z",
        "1900-06-01T00:00:00Z",
        "1919-07-01T00:00:00.5Z",
        "1970-01-01T00:00:00Z",
        "2026-11-22T07:00:00Z",
        "2026-11-22T07:00:00.001Z",
        "2026-11-22T07:00:00.000001Z",
        "2026-11-22T07:00:00.000000001Z",
        "2026-11-22T07:00:00.120000Z",
        "2026-11-22T07:00:00.123400Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T20:59:59.999Z",
        "9999-12-31T23:59:59Z",
    ] {
        instants.push(s.parse().unwrap());
    }
    let mut t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    for _ in 0..400 {
        instants.push(t);
        t += chrono::Duration::seconds(86_400 + 3_607);
    }
    for zone in zones {
        let tz: Tz = zone.parse().unwrap();
        for &i in &instants {
            let local = i.with_timezone(&tz);
            assert_eq!(
                stamp(&local),
                local.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                "{zone} {i:?}"
            );
        }
    }
}

#[test]
fn scratch_holds_the_largest_values_of_a_reply() {
    let mut s = Scratch::new();
    let r = [
        s.money(Decimal::MIN),
        s.money(Decimal::new(i64::MIN, 28)),
        s.date(NaiveDate::MIN),
        s.date(NaiveDate::MAX),
        s.date(NaiveDate::MIN),
        s.uint(u64::MAX),
        s.uint(u64::MAX),
        s.uint(u64::MAX),
    ];
    let text = s.as_str().to_string();
    assert_eq!(&text[r[0].0..r[0].1], money_reference(Decimal::MIN));
    assert_eq!(&text[r[5].0..r[5].1], u64::MAX.to_string());
    assert_eq!(
        &text[r[3].0..r[3].1],
        format!("31.12.{:04}", NaiveDate::MAX.year())
    );
}

#[test]
fn renewal_texts_with_odd_templates_render_as_render_does() {
    // Unknown names, unclosed braces, {saved} inside the saved part, {code}
    // where the engine leaves it empty: what `render` made of them.
    let texts = Texts {
        renewed_ussd: "{{fee} {fee {unknown} [{code}] {saved}|{saved_until}".into(),
        renewed_sms: "{saved}{saved}{period_from}-{period_to} {balance}{".into(),
        saved_part: "<{saved}{fee}:{saved_minutes}/{saved_sms}/{saved_data_mb}>".into(),
        insufficient_funds: "{balance}{balance}{fee}}{code}{".into(),
        blocked: "{code}{fee}{balance}{next_charge}".into(),
        ..Texts::default()
    };
    let e = Engine::new(
        catalog(),
        EngineConfig {
            texts,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let a = run(&e, &account(), renew(Channel::Ussd), NOW);
    assert_eq!(
        a.reply,
        "{{fee} {fee {unknown} [] <550.00:120/300/2048>|22.12.2026"
    );
    assert_eq!(
        notices(&a)[0].text,
        "<550.00:120/300/2048><550.00:120/300/2048>22.11.2026-21.12.2026 450.00{"
    );
    let mut poor = account();
    poor.account.balance = dec("1.5");
    let a = run(&e, &poor, renew(Channel::Sms), NOW);
    assert_eq!(a.reply, "1.501.50550.00}*929#{");
    let mut blocked = account();
    blocked.account.blocks.push(BlockKind::Fraud);
    assert_eq!(run(&e, &blocked, renew(Channel::Ussd), NOW).reply, "*929#");
}

proptest! {
    #[test]
    fn money_format_matches_decimal_display_on_random_values(
        lo in any::<u32>(), mid in any::<u32>(), hi in 0u32..4, neg in any::<bool>(), scale in 0u32..=28,
    ) {
        let v = Decimal::from_parts(lo, mid, hi, neg, scale);
        prop_assert_eq!(money::format(v), money_reference(v));
        let big = Decimal::from_parts(lo, mid, u32::MAX - hi, neg, scale);
        prop_assert_eq!(money::format(big), money_reference(big));
    }
}
