//! The bundled demo data: a tariff catalog and a deterministic generator of
//! accounts that shows every outcome of the renewal service.
//!
//! # Catalog
//!
//! [`demo_catalog`] is `fixtures/demo/catalog.json`, embedded at build time
//! (one source of truth): currency RUB, time zone Europe/Moscow, regions
//! `moscow`, `spb`, `ekb`, `nsk`; the 14 eligible plans of renewal-rules.md
//! (Smart, Smart mini, MAXI Smart, MAXI TOP, Smart light, Smart Nonstop,
//! Smart TOP, Smart+, Smart Безлимитище, Smile+, Ultra, VIP, X, Наш Smart),
//! with archived renewable versions of Smart (2023), MAXI Smart (2022),
//! Smart Nonstop (2021) and Smile+ (2019, archived only); X is offered only
//! in `moscow` and `spb`, Наш Smart only in `ekb` and `nsk`; and two plans
//! without renewal: «Супер МТС» (2015, archived) and «Классический» (2020).
//!
//! # Accounts
//!
//! Account `i` (0-based) has MSISDN `79000000000 + i` ([`demo_msisdn`]) and
//! profile `i % 16` ([`DEMO_PROFILES`]), whatever the seed; the seed only
//! picks the plan, region, anchor day, balances and remainders within the
//! profile. So any 16 consecutive accounts show every profile, and the
//! outcome of a renewal request on `today` is known per number:
//!
//! | i % 16 | first MSISDN | profile | renewal on `today` |
//! |---|---|---|---|
//! | 0  | 79000000000 | `renewable` — monthly, balance well above the fee, home | `RENEWED` |
//! | 1  | 79000000001 | `exact_balance` — balance exactly the monthly fee, national roaming | `RENEWED` (balance 0.00 after) |
//! | 2  | 79000000002 | `insufficient_funds` — balance below the fee | `INSUFFICIENT_FUNDS` |
//! | 3  | 79000000003 | `blocked_financial` — financial block, daily billing, balance below the daily fee | `BLOCKED` |
//! | 4  | 79000000004 | `blocked_voluntary` — voluntary block, plenty of money | `BLOCKED` |
//! | 5  | 79000000005 | `blocked_lost_sim` — lost-SIM block | `BLOCKED` |
//! | 6  | 79000000006 | `blocked_fraud_other` — two blocks: fraud and other | `BLOCKED` |
//! | 7  | 79000000007 | `unpaid_after_unblock` — left a block, fee not yet charged (next charge ≤ today) | `UNPAID_PERIOD` |
//! | 8  | 79000000008 | `plan_not_eligible` — «Супер МТС» or «Классический» (renewal: false) | `NO_SERVICE` |
//! | 9  | 79000000009 | `region_not_offered` — X outside moscow/spb or Наш Smart outside ekb/nsk | `NO_SERVICE` |
//! | 10 | 79000000010 | `no_package_service` — services lack `"package"` | `NO_SERVICE` |
//! | 11 | 79000000011 | `daily_billing` — daily billing, balance between the daily and the monthly fee | `DAILY_BILLING` |
//! | 12 | 79000000012 | `full_discount` — `discount_pct` "100" | `FULL_DISCOUNT` |
//! | 13 | 79000000013 | `discount_33` — `discount_pct` "33", balance covers the 67% fee | `RENEWED` (discounted fee) |
//! | 14 | 79000000014 | `saved_package` — carries a saved package from an earlier renewal | `RENEWED` (old saved remainder expires) |
//! | 15 | 79000000015 | `archived_roaming` — archived plan version, international roaming | `RENEWED` |
//!
//! Monthly accounts have their next charge after `today` (the first anchor
//! date after it, anchor days 1..=31 so month-end clamping shows up); daily
//! and unpaid accounts have the last anchor date on or before `today`.
//! Saved packages are valid until the next charge. Balances are whole
//! kopecks, `discount_pct` is "0" except in profiles 12 and 13.
//!
//! # Determinism and speed
//!
//! Account `i` draws from its own ChaCha8 stream (`seed`, stream `i`), so
//! it is the same whatever `n` is and can be made alone ([`demo_account`]);
//! ChaCha8 and rand 0.8's integer sampling give the same numbers on every
//! platform (only fixed-width integers are sampled, never `usize`). The
//! only allocations are the account's own strings and vectors.

use std::sync::OnceLock;

use chrono::{Datelike, Months, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use super::catalog::{parse_catalog, CatalogFormat};
use crate::engine::model::{
    Account, Billing, BlockKind, Catalog, Location, Outcome, Package, Saved,
};

/// The bundled catalog's text (`fixtures/demo/catalog.json`).
pub const DEMO_CATALOG_JSON: &str = include_str!("../../fixtures/demo/catalog.json");
/// The bundled catalog's file name, as used in messages.
pub const DEMO_CATALOG_FILE: &str = "fixtures/demo/catalog.json";
/// Account `i` has MSISDN `DEMO_MSISDN_BASE + i`.
pub const DEMO_MSISDN_BASE: u64 = 79_000_000_000;

/// One kind of demo account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoProfile {
    /// Stable short name (`blocked_financial`).
    pub name: &'static str,
    /// The answer to a renewal request (USSD or SMS) on the generation
    /// date, before anything else has happened to the account.
    pub outcome: Outcome,
    /// What the account looks like, in words.
    pub what: &'static str,
}

const fn profile(name: &'static str, outcome: Outcome, what: &'static str) -> DemoProfile {
    DemoProfile {
        name,
        outcome,
        what,
    }
}

/// The profiles, by `i % 16`.
pub const DEMO_PROFILES: [DemoProfile; 16] = [
    profile(
        "renewable",
        Outcome::Renewed,
        "monthly, balance well above the fee, at home",
    ),
    profile(
        "exact_balance",
        Outcome::Renewed,
        "balance exactly the monthly fee, in national roaming",
    ),
    profile(
        "insufficient_funds",
        Outcome::InsufficientFunds,
        "balance below the monthly fee",
    ),
    profile(
        "blocked_financial",
        Outcome::Blocked,
        "financial block, daily billing, balance below the daily fee",
    ),
    profile("blocked_voluntary", Outcome::Blocked, "voluntary block"),
    profile("blocked_lost_sim", Outcome::Blocked, "lost-SIM block"),
    profile(
        "blocked_fraud_other",
        Outcome::Blocked,
        "fraud and other blocks",
    ),
    profile(
        "unpaid_after_unblock",
        Outcome::UnpaidPeriod,
        "left a block; the fee is charged tonight",
    ),
    profile(
        "plan_not_eligible",
        Outcome::NoService,
        "plan without renewal (Супер МТС, Классический)",
    ),
    profile(
        "region_not_offered",
        Outcome::NoService,
        "plan not offered in the account's region",
    ),
    profile(
        "no_package_service",
        Outcome::NoService,
        "no \"package\" service on the number",
    ),
    profile(
        "daily_billing",
        Outcome::DailyBilling,
        "daily billing, balance between the daily and monthly fee",
    ),
    profile(
        "full_discount",
        Outcome::FullDiscount,
        "100% discount on the monthly fee",
    ),
    profile(
        "discount_33",
        Outcome::Renewed,
        "33% discount, balance covers the discounted fee",
    ),
    profile(
        "saved_package",
        Outcome::Renewed,
        "saved package from an earlier renewal",
    ),
    profile(
        "archived_roaming",
        Outcome::Renewed,
        "archived plan version, in international roaming",
    ),
];

/// The profile name of account `i` (see the module table).
pub fn demo_profile(i: usize) -> &'static str {
    DEMO_PROFILES[i % DEMO_PROFILES.len()].name
}

/// The full profile of account `i`.
pub fn demo_profile_info(i: usize) -> &'static DemoProfile {
    &DEMO_PROFILES[i % DEMO_PROFILES.len()]
}

/// MSISDN of account `i`: `79000000000 + i`.
pub fn demo_msisdn(i: usize) -> String {
    (DEMO_MSISDN_BASE + i as u64).to_string()
}

/// The index `i` with `demo_msisdn(i) == msisdn`, if there is one.
pub fn demo_index(msisdn: &str) -> Option<usize> {
    if msisdn.len() != 11 || !msisdn.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = msisdn.parse().ok()?;
    usize::try_from(n.checked_sub(DEMO_MSISDN_BASE)?).ok()
}

/// The bundled demo catalog (`fixtures/demo/catalog.json`).
pub fn demo_catalog() -> Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG
        .get_or_init(|| {
            parse_catalog(DEMO_CATALOG_FILE, DEMO_CATALOG_JSON, CatalogFormat::Json)
                .unwrap_or_else(|e| panic!("the bundled demo catalog is invalid: {e}"))
        })
        .clone()
}

/// `n` demo accounts (indices `0..n`), deterministic in `seed`, dated
/// relative to `today`. Valid against [`demo_catalog`].
pub fn demo_accounts(n: usize, seed: u64, today: NaiveDate) -> DemoAccounts {
    DemoAccounts {
        next: 0,
        end: n,
        base: ChaCha8Rng::seed_from_u64(seed),
        today,
        pools: pools(),
    }
}

/// Demo account `i` alone; identical to the `i`-th of [`demo_accounts`].
pub fn demo_account(i: usize, seed: u64, today: NaiveDate) -> Account {
    generate(pools(), ChaCha8Rng::seed_from_u64(seed), i, today)
}

/// The iterator of [`demo_accounts`].
#[derive(Debug, Clone)]
pub struct DemoAccounts {
    next: usize,
    end: usize,
    base: ChaCha8Rng,
    today: NaiveDate,
    pools: &'static Pools,
}

impl Iterator for DemoAccounts {
    type Item = Account;

    fn next(&mut self) -> Option<Account> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        Some(generate(self.pools, self.base.clone(), i, self.today))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }

    fn nth(&mut self, k: usize) -> Option<Account> {
        self.next = self.next.saturating_add(k).min(self.end);
        self.next()
    }
}

impl ExactSizeIterator for DemoAccounts {}

/// One (plan version, region) an account can be on; fees in kopecks.
#[derive(Debug)]
struct Offer {
    plan: String,
    version: String,
    region: String,
    monthly: i64,
    daily: i64,
    package: Package,
}

#[derive(Debug)]
struct Pools {
    /// Renewable, current versions, offered in the region.
    current: Vec<Offer>,
    /// Renewable archived versions, offered in the region.
    archived: Vec<Offer>,
    /// `renewal: false`, offered in the region.
    ineligible: Vec<Offer>,
    /// Renewable, but the region is not offered (fees unknown: 0).
    unoffered: Vec<Offer>,
}

fn kopecks(amount: Decimal) -> i64 {
    let mut a = amount.round_dp(2);
    a.rescale(2);
    i64::try_from(a.mantissa()).expect("demo fee fits in i64 kopecks")
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        let catalog = demo_catalog();
        let mut regions: Vec<&str> = catalog
            .plans
            .iter()
            .flat_map(|p| p.regions.keys().map(String::as_str))
            .collect();
        regions.sort_unstable();
        regions.dedup();
        let mut pools = Pools {
            current: Vec::new(),
            archived: Vec::new(),
            ineligible: Vec::new(),
            unoffered: Vec::new(),
        };
        for plan in &catalog.plans {
            for region in &regions {
                let fees = plan.regions.get(*region);
                let offer = Offer {
                    plan: plan.id.clone(),
                    version: plan.version.clone(),
                    region: region.to_string(),
                    monthly: fees.map_or(0, |f| kopecks(f.monthly_fee)),
                    daily: fees.map_or(0, |f| kopecks(f.daily_fee)),
                    package: plan.package,
                };
                let pool = match (fees.is_some(), plan.renewal, plan.archived) {
                    (false, true, _) => &mut pools.unoffered,
                    (false, false, _) => continue,
                    (true, false, _) => &mut pools.ineligible,
                    (true, true, true) => &mut pools.archived,
                    (true, true, false) => &mut pools.current,
                };
                pool.push(offer);
            }
        }
        for pool in [
            &pools.current,
            &pools.archived,
            &pools.ineligible,
            &pools.unoffered,
        ] {
            assert!(
                !pool.is_empty(),
                "the demo catalog lacks a kind of plan the demo needs"
            );
        }
        pools
    })
}

/// `day` of (year, month), or the month's last day if it has no such day.
fn clamped(year: i32, month: u32, day: u32) -> NaiveDate {
    (1..=day.min(31))
        .rev()
        .find_map(|d| NaiveDate::from_ymd_opt(year, month, d))
        .expect("every month has a day 1")
}

/// The first anchor date strictly after `today`.
fn next_anchor_after(today: NaiveDate, anchor: u32) -> NaiveDate {
    let this = clamped(today.year(), today.month(), anchor);
    if this > today {
        this
    } else {
        let next = today.with_day(1).unwrap() + Months::new(1);
        clamped(next.year(), next.month(), anchor)
    }
}

/// The last anchor date on or before `today`.
fn last_anchor_on_or_before(today: NaiveDate, anchor: u32) -> NaiveDate {
    let this = clamped(today.year(), today.month(), anchor);
    if this <= today {
        this
    } else {
        let prev = today.with_day(1).unwrap() - Months::new(1);
        clamped(prev.year(), prev.month(), anchor)
    }
}

fn pick<'p>(rng: &mut ChaCha8Rng, pool: &'p [Offer]) -> &'p Offer {
    &pool[rng.gen_range(0..pool.len() as u32) as usize]
}

fn upto(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    rng.gen_range(0..=max)
}

fn rub(kopecks: i64) -> Decimal {
    Decimal::new(kopecks, 2)
}

fn generate(pools: &Pools, mut rng: ChaCha8Rng, i: usize, today: NaiveDate) -> Account {
    rng.set_stream(i as u64);
    let profile = i % DEMO_PROFILES.len();
    let pool = match profile {
        8 => &pools.ineligible,
        9 => &pools.unoffered,
        15 => &pools.archived,
        _ => &pools.current,
    };
    let offer = pick(&mut rng, pool);
    let anchor_day = rng.gen_range(1..=31u32);
    let upcoming = next_anchor_after(today, anchor_day);
    let allowance = offer.package;
    let main = Package {
        minutes: upto(&mut rng, allowance.minutes),
        sms: upto(&mut rng, allowance.sms),
        data_mb: upto(&mut rng, allowance.data_mb),
    };
    // Plenty: the fee plus 100 to 3000 RUB.
    let plenty = offer.monthly + rng.gen_range(10_000..=300_000i64);

    let mut account = Account {
        msisdn: demo_msisdn(i),
        region: offer.region.as_str().into(),
        plan: offer.plan.as_str().into(),
        plan_version: offer.version.as_str().into(),
        balance: rub(plenty),
        billing: Billing::Monthly,
        next_charge: upcoming,
        anchor_day,
        blocks: Vec::new(),
        unpaid: false,
        discount_pct: Decimal::ZERO,
        services: vec!["package".into()],
        location: Location::Home,
        main,
        saved: None,
    };
    match profile {
        1 => {
            account.balance = rub(offer.monthly);
            account.location = Location::NationalRoaming;
        }
        2 => account.balance = rub(rng.gen_range(0..offer.monthly)),
        3 => {
            account.blocks = vec![BlockKind::Financial];
            account.billing = Billing::Daily;
            account.next_charge = last_anchor_on_or_before(today, anchor_day);
            account.balance = rub(rng.gen_range(0..offer.daily));
        }
        4 => account.blocks = vec![BlockKind::Voluntary],
        5 => account.blocks = vec![BlockKind::LostSim],
        6 => account.blocks = vec![BlockKind::Fraud, BlockKind::Other],
        7 => {
            account.unpaid = true;
            account.next_charge = last_anchor_on_or_before(today, anchor_day);
        }
        10 => {
            account.services = if rng.gen_bool(0.5) {
                Vec::new()
            } else {
                vec!["caller_id".into()]
            };
        }
        11 => {
            account.billing = Billing::Daily;
            account.next_charge = last_anchor_on_or_before(today, anchor_day);
            account.balance = rub(rng.gen_range(offer.daily..offer.monthly));
        }
        12 => account.discount_pct = Decimal::ONE_HUNDRED,
        13 => {
            account.discount_pct = Decimal::from(33);
            // 67% of the fee, half a kopeck rounded away from zero.
            let fee = (offer.monthly * 67 + 50) / 100;
            account.balance = rub(fee + rng.gen_range(0..=50_000i64));
        }
        14 => {
            account.saved = Some(Saved {
                minutes: upto(&mut rng, allowance.minutes),
                sms: upto(&mut rng, allowance.sms),
                data_mb: upto(&mut rng, allowance.data_mb),
                valid_until: upcoming,
            });
        }
        15 => account.location = Location::InternationalRoaming,
        _ => {}
    }
    account
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn data_demo_anchor_dates_clamp_to_month_end() {
        assert_eq!(next_anchor_after(d("2026-01-31"), 31), d("2026-02-28"));
        assert_eq!(next_anchor_after(d("2026-01-30"), 31), d("2026-01-31"));
        assert_eq!(next_anchor_after(d("2028-02-10"), 30), d("2028-02-29"));
        assert_eq!(next_anchor_after(d("2026-12-15"), 5), d("2027-01-05"));
        assert_eq!(
            last_anchor_on_or_before(d("2026-03-15"), 31),
            d("2026-02-28")
        );
        assert_eq!(
            last_anchor_on_or_before(d("2026-03-15"), 15),
            d("2026-03-15")
        );
        assert_eq!(
            last_anchor_on_or_before(d("2026-01-03"), 5),
            d("2025-12-05")
        );
    }

    #[test]
    fn data_demo_msisdn_index_roundtrip() {
        assert_eq!(demo_msisdn(0), "79000000000");
        assert_eq!(demo_msisdn(9_999_999), "79009999999");
        assert_eq!(demo_index("79000000015"), Some(15));
        assert_eq!(demo_index("79161234567"), Some(161_234_567));
        assert_eq!(demo_index("78999999999"), None);
        assert_eq!(demo_index("+79000000001"), None);
        assert_eq!(demo_profile(17), "exact_balance");
    }

    #[test]
    fn data_demo_single_account_matches_iterator() {
        let today = d("2026-03-31");
        let all: Vec<Account> = demo_accounts(40, 7, today).collect();
        for (i, a) in all.iter().enumerate() {
            assert_eq!(*a, demo_account(i, 7, today));
        }
        assert_eq!(demo_accounts(40, 7, today).nth(33).unwrap(), all[33]);
        assert_eq!(demo_accounts(40, 7, today).len(), 40);
    }
}
