//! Subscriber number normalisation (C5): every way an SMSC or an operator
//! writes a number becomes E.164 digits without `+` (`79161234567`), so one
//! subscriber is one account key.
//!
//! This module owns the mapping from an SMPP address (digits, TON, NPI) plus
//! the configured country code to that key. Decisions:
//! - Accepted TON: 0 unknown, 1 international, 2 national. Alphanumeric (5)
//!   is never a subscriber; network-specific (3), subscriber number (4) and
//!   abbreviated (6) cannot be made E.164 without knowledge we lack, so they
//!   are refused rather than guessed: a wrong guess would charge someone
//!   else.
//! - Accepted NPI: 0 unknown, 1 ISDN/E.164, 8 national. Others (X.121 data,
//!   E.212 land mobile, private, …) are not telephone numbers.
//! - A leading `+` means international whatever the TON says.
//! - Spaces and dashes between digits are dropped (people write
//!   `+7 916 123-45-67` in files); anything else that is not a digit is
//!   refused.
//! - Trunk prefixes are only known for country code 7 (Russia, Kazakhstan),
//!   whose national significant number is always 10 digits: `8` + 10 digits
//!   is the trunk form, 10 digits is national. For TON unknown and national
//!   these become `7` + 10 digits; 11 digits starting with `7` are taken as
//!   already international (SMSCs often mislabel TON). Other country codes
//!   get no trunk handling: national numbers are prefixed as they are.
//! - TON unknown numbers that are not one of the country-7 national forms
//!   are taken as international.
//! - The result has 7..=15 digits (E.164's maximum is 15) and does not start
//!   with `0` (no country code does).
//!
//! Known ambiguity: with country code 7 and TON unknown, an 11-digit foreign
//! number starting with 8 (Vietnam, `84…`) reads as a Russian trunk number;
//! SMSCs that send TON international avoid it.

/// TON unknown.
pub const TON_UNKNOWN: u8 = 0;
/// TON international.
pub const TON_INTERNATIONAL: u8 = 1;
/// TON national.
pub const TON_NATIONAL: u8 = 2;
/// TON alphanumeric (a sender name, never a subscriber).
pub const TON_ALPHANUMERIC: u8 = 5;
/// NPI unknown.
pub const NPI_UNKNOWN: u8 = 0;
/// NPI ISDN / E.164.
pub const NPI_ISDN: u8 = 1;
/// NPI national.
pub const NPI_NATIONAL: u8 = 8;

/// Shortest normalised number accepted.
pub const MIN_DIGITS: usize = 7;
/// Longest normalised number accepted (E.164).
pub const MAX_DIGITS: usize = 15;

/// Why an address is not a subscriber number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    /// No digits at all.
    #[error("empty address")]
    Empty,
    /// TON 5: a sender name, not a number.
    #[error("alphanumeric address is not a subscriber number")]
    Alphanumeric,
    /// A TON other than unknown, international, national or alphanumeric.
    #[error("type of number {0} is not supported")]
    UnsupportedTon(u8),
    /// An NPI other than unknown, ISDN or national.
    #[error("numbering plan {0} is not a telephone numbering plan")]
    UnsupportedNpi(u8),
    /// A character other than a digit, a leading `+`, a space or a dash.
    #[error("invalid character {ch:?} at byte {at}")]
    InvalidChar {
        /// The character.
        ch: char,
        /// Its byte offset in the address.
        at: usize,
    },
    /// The configured country code is not 1..=3 digits.
    #[error("country code {0:?} is not 1 to 3 digits")]
    InvalidCountryCode(String),
    /// A country-7 national number that is not 10 digits (or `8` + 10).
    #[error("national number has {len} digits, expected 10")]
    NationalLength {
        /// Digits given.
        len: usize,
    },
    /// The normalised number has fewer than 7 or more than 15 digits.
    #[error("number has {len} digits, expected {MIN_DIGITS} to {MAX_DIGITS}")]
    Length {
        /// Digits in the normalised number.
        len: usize,
    },
    /// The normalised number starts with 0, which no country code does.
    #[error("number starts with 0, not a country code")]
    LeadingZero,
}

/// Normalises an SMPP address to E.164 digits without `+` (C5).
/// `country_code` is the operator's (config, default `"7"`). See the module
/// docs for every rule.
pub fn normalize(addr: &str, ton: u8, npi: u8, country_code: &str) -> Result<String, MsisdnError> {
    match ton {
        TON_ALPHANUMERIC => return Err(MsisdnError::Alphanumeric),
        TON_UNKNOWN | TON_INTERNATIONAL | TON_NATIONAL => {}
        other => return Err(MsisdnError::UnsupportedTon(other)),
    }
    if !matches!(npi, NPI_UNKNOWN | NPI_ISDN | NPI_NATIONAL) {
        return Err(MsisdnError::UnsupportedNpi(npi));
    }
    if country_code.is_empty()
        || country_code.len() > 3
        || !country_code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(MsisdnError::InvalidCountryCode(country_code.to_owned()));
    }

    let trimmed = addr.trim();
    let lead = addr.len() - addr.trim_start().len();
    let (plus, body, body_at) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest, lead + 1),
        None => (false, trimmed, lead),
    };
    let mut digits = String::with_capacity(body.len().min(MAX_DIGITS));
    let mut count = 0usize;
    for (i, ch) in body.char_indices() {
        match ch {
            '0'..='9' => {
                // Count every digit but keep at most 15: a longer number is
                // refused anyway, and a huge input must not become a huge
                // allocation.
                count += 1;
                if count <= MAX_DIGITS {
                    digits.push(ch);
                }
            }
            ' ' | '-' => {}
            _ => {
                return Err(MsisdnError::InvalidChar {
                    ch,
                    at: body_at + i,
                })
            }
        }
    }
    if count == 0 {
        return Err(MsisdnError::Empty);
    }
    // No rule below shortens a number of more than 11 digits.
    if count > MAX_DIGITS {
        return Err(MsisdnError::Length { len: count });
    }

    let e164 = if plus || ton == TON_INTERNATIONAL {
        digits
    } else if country_code == "7" {
        match russian_national(&digits) {
            Some(n) => n,
            None if ton == TON_UNKNOWN => digits,
            None => return Err(MsisdnError::NationalLength { len: digits.len() }),
        }
    } else if ton == TON_NATIONAL {
        format!("{country_code}{digits}")
    } else {
        digits
    };

    if !(MIN_DIGITS..=MAX_DIGITS).contains(&e164.len()) {
        return Err(MsisdnError::Length { len: e164.len() });
    }
    if e164.starts_with('0') {
        return Err(MsisdnError::LeadingZero);
    }
    Ok(e164)
}

/// Country code 7 national forms: 10 digits, `8` + 10 digits (trunk), or a
/// mislabelled `7` + 10 digits.
fn russian_national(digits: &str) -> Option<String> {
    match (digits.len(), digits.as_bytes()[0]) {
        (10, _) => Some(format!("7{digits}")),
        (11, b'8') => Some(format!("7{}", &digits[1..])),
        (11, b'7') => Some(digits.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUBSCRIBER: &str = "79161234567";

    #[test]
    fn every_form_of_one_subscriber_normalises_to_the_same_key() {
        let cases = [
            ("+79161234567", TON_INTERNATIONAL, NPI_ISDN),
            ("+79161234567", TON_UNKNOWN, NPI_UNKNOWN),
            ("+79161234567", TON_NATIONAL, NPI_ISDN),
            ("79161234567", TON_INTERNATIONAL, NPI_ISDN),
            ("79161234567", TON_UNKNOWN, NPI_ISDN),
            ("79161234567", TON_NATIONAL, NPI_ISDN),
            ("9161234567", TON_NATIONAL, NPI_ISDN),
            ("9161234567", TON_NATIONAL, NPI_NATIONAL),
            ("9161234567", TON_UNKNOWN, NPI_UNKNOWN),
            ("89161234567", TON_UNKNOWN, NPI_UNKNOWN),
            ("89161234567", TON_NATIONAL, NPI_ISDN),
            ("+7 916 123-45-67", TON_UNKNOWN, NPI_UNKNOWN),
            (" 8-916-123-45-67 ", TON_UNKNOWN, NPI_UNKNOWN),
        ];
        for (addr, ton, npi) in cases {
            assert_eq!(
                normalize(addr, ton, npi, "7").as_deref(),
                Ok(SUBSCRIBER),
                "{addr:?} ton {ton} npi {npi}"
            );
        }
    }

    #[test]
    fn other_country_codes_prefix_national_numbers_without_trunk_rules() {
        let cases = [
            ("7001234567", TON_NATIONAL, "375", Ok("3757001234567")),
            ("291234567", TON_NATIONAL, "375", Ok("375291234567")),
            ("375291234567", TON_UNKNOWN, "375", Ok("375291234567")),
            ("+79161234567", TON_UNKNOWN, "375", Ok("79161234567")),
            (
                "0291234567",
                TON_UNKNOWN,
                "375",
                Err(MsisdnError::LeadingZero),
            ),
        ];
        for (addr, ton, cc, expected) in cases {
            assert_eq!(
                normalize(addr, ton, NPI_ISDN, cc),
                expected.map(str::to_owned),
                "{addr:?} ton {ton} cc {cc}"
            );
        }
    }

    #[test]
    fn roaming_in_numbers_with_unknown_ton_stay_international() {
        assert_eq!(
            normalize("447911123456", TON_UNKNOWN, NPI_ISDN, "7").as_deref(),
            Ok("447911123456")
        );
        assert_eq!(
            normalize("4930123456", TON_INTERNATIONAL, NPI_ISDN, "7").as_deref(),
            Ok("4930123456")
        );
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        use MsisdnError::*;
        let cases = [
            ("MTS", TON_ALPHANUMERIC, NPI_UNKNOWN, "7", Alphanumeric),
            ("79161234567", TON_ALPHANUMERIC, NPI_ISDN, "7", Alphanumeric),
            ("9290", 3, NPI_ISDN, "7", UnsupportedTon(3)),
            ("1234567", 4, NPI_ISDN, "7", UnsupportedTon(4)),
            ("9290", 6, NPI_ISDN, "7", UnsupportedTon(6)),
            ("79161234567", 7, NPI_ISDN, "7", UnsupportedTon(7)),
            (
                "250011234567890",
                TON_INTERNATIONAL,
                6,
                "7",
                UnsupportedNpi(6),
            ),
            ("79161234567", TON_INTERNATIONAL, 9, "7", UnsupportedNpi(9)),
            ("", TON_UNKNOWN, NPI_ISDN, "7", Empty),
            ("  +  ", TON_UNKNOWN, NPI_ISDN, "7", Empty),
            (
                "7916123456a",
                TON_UNKNOWN,
                NPI_ISDN,
                "7",
                InvalidChar { ch: 'a', at: 10 },
            ),
            (
                " +7916(123)",
                TON_UNKNOWN,
                NPI_ISDN,
                "7",
                InvalidChar { ch: '(', at: 6 },
            ),
            (
                "++79161234567",
                TON_UNKNOWN,
                NPI_ISDN,
                "7",
                InvalidChar { ch: '+', at: 1 },
            ),
            (
                "7916+1234567",
                TON_UNKNOWN,
                NPI_ISDN,
                "7",
                InvalidChar { ch: '+', at: 4 },
            ),
            (
                "７９１６１２３４５６７",
                TON_UNKNOWN,
                NPI_ISDN,
                "7",
                InvalidChar { ch: '７', at: 0 },
            ),
            ("9290", TON_UNKNOWN, NPI_ISDN, "7", Length { len: 4 }),
            (
                "9290",
                TON_NATIONAL,
                NPI_ISDN,
                "7",
                NationalLength { len: 4 },
            ),
            (
                "916123456",
                TON_NATIONAL,
                NPI_ISDN,
                "7",
                NationalLength { len: 9 },
            ),
            (
                "1234567890123456",
                TON_INTERNATIONAL,
                NPI_ISDN,
                "7",
                Length { len: 16 },
            ),
            (
                "079161234567",
                TON_INTERNATIONAL,
                NPI_ISDN,
                "7",
                LeadingZero,
            ),
            (
                "79161234567",
                TON_UNKNOWN,
                NPI_ISDN,
                "",
                InvalidCountryCode(String::new()),
            ),
            (
                "79161234567",
                TON_UNKNOWN,
                NPI_ISDN,
                "+7",
                InvalidCountryCode("+7".into()),
            ),
            (
                "79161234567",
                TON_UNKNOWN,
                NPI_ISDN,
                "1234",
                InvalidCountryCode("1234".into()),
            ),
        ];
        for (addr, ton, npi, cc, err) in cases {
            assert_eq!(
                normalize(addr, ton, npi, cc),
                Err(err),
                "{addr:?} ton {ton} npi {npi} cc {cc:?}"
            );
        }
    }

    #[test]
    fn a_huge_digit_string_is_refused_without_keeping_it() {
        let huge = "9".repeat(1_000_000);
        assert_eq!(
            normalize(&huge, TON_INTERNATIONAL, NPI_ISDN, "7"),
            Err(MsisdnError::Length { len: 1_000_000 })
        );
    }

    proptest! {
        #[test]
        fn normalize_never_panics(addr in any::<String>(), ton in any::<u8>(), npi in any::<u8>(), cc in "[0-9+]{0,4}") {
            if let Ok(n) = normalize(&addr, ton, npi, &cc) {
                prop_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&n.len()));
                prop_assert!(n.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(!n.starts_with('0'));
            }
        }

        #[test]
        fn normalizing_is_idempotent(addr in "[+]?[0-9 -]{0,20}", ton in 0u8..3) {
            if let Ok(n) = normalize(&addr, ton, NPI_ISDN, "7") {
                prop_assert_eq!(normalize(&n, TON_INTERNATIONAL, NPI_ISDN, "7"), Ok(n.clone()));
                prop_assert_eq!(normalize(&format!("+{n}"), TON_UNKNOWN, NPI_UNKNOWN, "7"), Ok(n.clone()));
                // With TON unknown a key reads back as itself when it is a
                // Russian number; a foreign 10-digit one would read as
                // national (see the module docs).
                if n.len() == 11 && n.starts_with('7') {
                    prop_assert_eq!(normalize(&n, TON_UNKNOWN, NPI_UNKNOWN, "7"), Ok(n));
                }
            }
        }

        #[test]
        fn the_three_russian_forms_agree(national in "9[0-9]{9}") {
            let international = format!("7{national}");
            prop_assert_eq!(normalize(&national, TON_NATIONAL, NPI_ISDN, "7"), Ok(international.clone()));
            prop_assert_eq!(normalize(&format!("8{national}"), TON_UNKNOWN, NPI_ISDN, "7"), Ok(international.clone()));
            prop_assert_eq!(normalize(&format!("+{international}"), TON_UNKNOWN, NPI_ISDN, "7"), Ok(international));
        }
    }
}
