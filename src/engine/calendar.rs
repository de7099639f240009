//! Anchor-day calendar arithmetic (renewal step 2, nightly N1).
//!
//! A billing period runs from an anchor date to the day before the next one.
//! The anchor day is a day of month 1..=31 that is kept across months; a
//! month without that day uses its last day (anchor 31: Feb 28/29, Mar 31,
//! Apr 30, …). Dates are always computed from the anchor, never by chaining
//! month additions, so a short February does not drag later months to the 28th.

use chrono::{Datelike, Months, NaiveDate};

/// Years far from chrono's limits (±262142), where month arithmetic cannot
/// overflow and the plain computations below give what chrono's checked
/// ones give; outside them the checked path decides.
fn plain_year(year: i32) -> bool {
    (-200_000..=200_000).contains(&year)
}

/// Days in a month of the proleptic Gregorian calendar.
fn month_len(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The anchor date in (`year`, `month`): `anchor_day`, or the month's last
/// day when the month is shorter.
pub fn anchor_date(year: i32, month: u32, anchor_day: u32) -> Option<NaiveDate> {
    if plain_year(year) && (1..=12).contains(&month) {
        // The checked path below costs ~200 instructions per renewal.
        return NaiveDate::from_ymd_opt(
            year,
            month,
            anchor_day.clamp(1, 31).min(month_len(year, month)),
        );
    }
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let last = first.checked_add_months(Months::new(1))?.pred_opt()?.day();
    NaiveDate::from_ymd_opt(year, month, anchor_day.clamp(1, 31).min(last))
}

/// The anchor date of the month `months` after the month of `date`.
fn anchor_in_month_after(date: NaiveDate, months: u32, anchor_day: u32) -> Option<NaiveDate> {
    if plain_year(date.year()) && months <= 12 {
        let m0 = date.month0() + months;
        return anchor_date(date.year() + (m0 / 12) as i32, m0 % 12 + 1, anchor_day);
    }
    let first = date.with_day(1)?.checked_add_months(Months::new(months))?;
    anchor_date(first.year(), first.month(), anchor_day)
}

/// The first anchor date strictly after `date`.
pub fn next_anchor_after(date: NaiveDate, anchor_day: u32) -> Option<NaiveDate> {
    let this = anchor_in_month_after(date, 0, anchor_day)?;
    if this > date {
        Some(this)
    } else {
        anchor_in_month_after(date, 1, anchor_day)
    }
}

/// The last anchor date on or before `date` (the start of the anchor period
/// that contains `date`).
pub fn anchor_on_or_before(date: NaiveDate, anchor_day: u32) -> Option<NaiveDate> {
    let this = anchor_in_month_after(date, 0, anchor_day)?;
    if this <= date {
        Some(this)
    } else {
        let first = date.with_day(1)?.checked_sub_months(Months::new(1))?;
        anchor_date(first.year(), first.month(), anchor_day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn anchor_31_walks_month_ends_without_drifting() {
        // Renew on Jan 31 → Feb 29 (leap year), Mar 31, Apr 30.
        let mut at = d("2028-01-31");
        let mut seen = vec![];
        for _ in 0..3 {
            at = next_anchor_after(at, 31).unwrap();
            seen.push(at.to_string());
        }
        assert_eq!(seen, ["2028-02-29", "2028-03-31", "2028-04-30"]);
    }

    #[test]
    fn table_of_next_anchor() {
        let rows = [
            ("2026-01-31", 31, "2026-02-28"),
            ("2028-02-29", 29, "2028-03-29"),
            ("2026-12-31", 31, "2027-01-31"),
            ("2026-11-22", 22, "2026-12-22"),
            ("2026-11-21", 22, "2026-11-22"),
            ("2026-02-28", 30, "2026-03-30"),
        ];
        for (from, anchor, want) in rows {
            assert_eq!(
                next_anchor_after(d(from), anchor).unwrap(),
                d(want),
                "{from} anchor {anchor}"
            );
        }
    }

    /// The checked computations the fast paths stand in for.
    fn anchor_date_checked(year: i32, month: u32, anchor_day: u32) -> Option<NaiveDate> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let last = first.checked_add_months(Months::new(1))?.pred_opt()?.day();
        NaiveDate::from_ymd_opt(year, month, anchor_day.clamp(1, 31).min(last))
    }

    fn next_anchor_checked(date: NaiveDate, anchor_day: u32) -> Option<NaiveDate> {
        let month_after = |months| {
            let first = date.with_day(1)?.checked_add_months(Months::new(months))?;
            anchor_date_checked(first.year(), first.month(), anchor_day)
        };
        let this = month_after(0)?;
        if this > date {
            Some(this)
        } else {
            month_after(1)
        }
    }

    #[test]
    fn fast_paths_agree_with_checked_month_arithmetic() {
        for year in [
            -200_001, -200_000, -4, -1, 0, 1, 1900, 2000, 2024, 2026, 2100, 199_999, 200_000,
        ] {
            for month in 0..=13 {
                for anchor in [0, 1, 15, 28, 29, 30, 31, 32, 99] {
                    assert_eq!(
                        anchor_date(year, month, anchor),
                        anchor_date_checked(year, month, anchor),
                        "{year}-{month} anchor {anchor}"
                    );
                }
            }
        }
        let mut day = d("1999-12-01");
        while day < d("2030-01-01") {
            for anchor in [1, 5, 28, 29, 30, 31] {
                assert_eq!(
                    next_anchor_after(day, anchor),
                    next_anchor_checked(day, anchor),
                    "{day} {anchor}"
                );
            }
            day = day.succ_opt().unwrap();
        }
        let far = [
            NaiveDate::MIN,
            NaiveDate::MAX,
            NaiveDate::from_ymd_opt(200_000, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(-200_000, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(200_001, 1, 31).unwrap(),
        ];
        for day in far {
            for anchor in [1, 31] {
                assert_eq!(
                    next_anchor_after(day, anchor),
                    next_anchor_checked(day, anchor),
                    "{day} {anchor}"
                );
            }
        }
    }

    #[test]
    fn anchor_on_or_before_is_period_start() {
        assert_eq!(
            anchor_on_or_before(d("2026-12-07"), 5),
            Some(d("2026-12-05"))
        );
        assert_eq!(
            anchor_on_or_before(d("2026-12-04"), 5),
            Some(d("2026-11-05"))
        );
        assert_eq!(
            anchor_on_or_before(d("2026-03-01"), 31),
            Some(d("2026-02-28"))
        );
    }
}
