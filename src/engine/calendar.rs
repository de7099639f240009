//! Anchor-day calendar arithmetic (renewal step 2, nightly N1).
//!
//! A billing period runs from an anchor date to the day before the next one.
//! The anchor day is a day of month 1..=31 that is kept across months; a
//! month without that day uses its last day (anchor 31: Feb 28/29, Mar 31,
//! Apr 30, …). Dates are always computed from the anchor, never by chaining
//! month additions, so a short February does not drag later months to the 28th.

use chrono::{Datelike, Months, NaiveDate};

/// The anchor date in (`year`, `month`): `anchor_day`, or the month's last
/// day when the month is shorter.
pub fn anchor_date(year: i32, month: u32, anchor_day: u32) -> Option<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let last = first.checked_add_months(Months::new(1))?.pred_opt()?.day();
    NaiveDate::from_ymd_opt(year, month, anchor_day.clamp(1, 31).min(last))
}

/// The anchor date of the month `months` after the month of `date`.
fn anchor_in_month_after(date: NaiveDate, months: u32, anchor_day: u32) -> Option<NaiveDate> {
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
