//! Text in and out of SMPP `short_message`: which alphabet a `data_coding`
//! value means, decoding any of them to a `String`, choosing the coding for a
//! reply, and the USSD one-screen budget (C1).
//!
//! This module owns the `data_coding` policy; the byte codecs live in
//! [`crate::gsm7`] and [`crate::ucs2`]. Decoding never fails: C2 renews on any
//! SMS in any coding, so an undecodable byte only costs the journal a U+FFFD.
//!
//! `data_coding` is read in two layers:
//! - `0x00..=0x0F` is SMPP v3.4's own table (§5.2.19): 0 = SMSC default
//!   alphabet (taken as GSM 7-bit, unpacked), 1 = IA5/ASCII, 3 = Latin-1,
//!   6 = ISO-8859-5, 8 = UCS2, 2/4 = 8-bit binary, and JIS, ISO-8859-8,
//!   pictograms, ISO-2022-JP, KS C 5601 (0x0E) and the reserved values
//!   0x0B, 0x0C, 0x0F, which we only decode ASCII-wise.
//! - `0x10..=0xFF` is a GSM 03.38 data coding scheme, derived from its bits
//!   (general and auto-deletion groups, message-waiting groups, the `1111`
//!   class group), so `0x18` and `0x48` are UCS2 and `0xF0` is GSM 7-bit.

use crate::{gsm7, ucs2};

/// `data_coding` of a GSM 7-bit (SMSC default alphabet) message.
pub const DC_GSM7: u8 = 0x00;
/// `data_coding` of an IA5 / ASCII message.
pub const DC_IA5: u8 = 0x01;
/// `data_coding` of a Latin-1 message.
pub const DC_LATIN1: u8 = 0x03;
/// `data_coding` of an ISO-8859-5 (Cyrillic) message.
pub const DC_CYRILLIC: u8 = 0x06;
/// `data_coding` of a UCS2 message.
pub const DC_UCS2: u8 = 0x08;

/// Most GSM 7-bit septets one USSD screen shows (C1).
pub const USSD_MAX_GSM7_SEPTETS: usize = 182;
/// Most UTF-16 code units one USSD screen shows when the text needs UCS2 (C1).
pub const USSD_MAX_UCS2_UNITS: usize = 80;

const REPLACEMENT: char = '\u{FFFD}';

/// The character set a `data_coding` value selects, as far as this crate
/// decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 03.38 default alphabet, one septet per byte.
    Gsm7,
    /// IA5 / ASCII; bytes >= 0x80 are invalid.
    Ascii,
    /// ISO-8859-1.
    Latin1,
    /// ISO-8859-5.
    Cyrillic,
    /// UCS2 / UTF-16BE.
    Ucs2,
    /// An ASCII-compatible charset this crate does not map (JIS, KS C 5601,
    /// ISO-8859-8, pictograms, ISO-2022-JP, SMPP-reserved values): bytes
    /// below 0x80 decode as ASCII, the rest as U+FFFD.
    AsciiCompatible,
    /// 8-bit data or compressed text: not text, shown ASCII-wise like
    /// [`Alphabet::AsciiCompatible`] for the journal's sake.
    Binary,
}

/// The alphabet `data_coding` selects (see the module docs for the two
/// tables). Every value maps to something.
pub fn alphabet(data_coding: u8) -> Alphabet {
    match data_coding {
        0x00 => Alphabet::Gsm7,
        0x01 => Alphabet::Ascii,
        0x02 | 0x04 => Alphabet::Binary,
        0x03 => Alphabet::Latin1,
        0x06 => Alphabet::Cyrillic,
        0x08 => Alphabet::Ucs2,
        0x05 | 0x07 | 0x09..=0x0F => Alphabet::AsciiCompatible,
        // GSM 03.38 general data coding (00xx) and automatic deletion (01xx)
        // groups: bit 5 = compressed, bits 3..2 = alphabet.
        0x10..=0x7F => {
            if data_coding & 0x20 != 0 {
                // Compressed text (TS 23.042) is not decompressed here.
                return Alphabet::Binary;
            }
            match (data_coding >> 2) & 0b11 {
                0b01 => Alphabet::Binary,
                0b10 => Alphabet::Ucs2,
                // 0b11 is reserved; TS 23.038 §4 says assume GSM 7-bit.
                _ => Alphabet::Gsm7,
            }
        }
        // Message waiting, store message, UCS2 (1110).
        0xE0..=0xEF => Alphabet::Ucs2,
        // Data coding / message class (1111): bit 2 = 8-bit data.
        0xF0..=0xFF if data_coding & 0x04 != 0 => Alphabet::Binary,
        // 1111 with GSM 7-bit, message waiting discard/store (1100, 1101) and
        // the reserved groups 1000..1011, which TS 23.038 §4 says to read as
        // GSM 7-bit.
        0x80..=0xDF | 0xF0..=0xFF => Alphabet::Gsm7,
    }
}

/// Decodes a `short_message` (UDH already removed, see
/// [`crate::segment::split_udh`]) to text. Never fails; see [`Alphabet`] for
/// what each coding does with bytes it cannot map.
pub fn decode_short_message(data_coding: u8, bytes: &[u8]) -> String {
    match alphabet(data_coding) {
        Alphabet::Gsm7 => gsm7::decode(bytes),
        Alphabet::Ucs2 => ucs2::decode(bytes),
        Alphabet::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        Alphabet::Cyrillic => bytes.iter().map(|&b| iso_8859_5(b)).collect(),
        Alphabet::Ascii | Alphabet::AsciiCompatible | Alphabet::Binary => bytes
            .iter()
            .map(|&b| {
                if b.is_ascii() {
                    char::from(b)
                } else {
                    REPLACEMENT
                }
            })
            .collect(),
    }
}

/// ISO-8859-5: Latin-1's lower half, then Cyrillic with a few exceptions.
fn iso_8859_5(b: u8) -> char {
    match b {
        0x00..=0xA0 | 0xAD => char::from(b),
        0xF0 => '№',
        0xFD => '§',
        // 0xA1..=0xFF except the above: U+0401..=U+045F, offset 0x360.
        _ => char::from_u32(u32::from(b) + 0x360).unwrap_or(REPLACEMENT),
    }
}

/// A reply ready for `short_message` / `ussd` payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// [`DC_GSM7`] or [`DC_UCS2`].
    pub data_coding: u8,
    /// Unpacked septets for GSM 7-bit, UTF-16BE for UCS2.
    pub bytes: Vec<u8>,
    /// The budget the text uses: septets for GSM 7-bit, UTF-16 code units
    /// for UCS2.
    pub units: usize,
}

/// Encodes a reply: GSM 7-bit when every character is in the GSM alphabet
/// (cheaper: 160 per SMS against 70), otherwise UCS2 (any Cyrillic).
pub fn encode_reply(text: &str) -> Encoded {
    match gsm7::encode(text) {
        Some(bytes) => Encoded {
            data_coding: DC_GSM7,
            units: bytes.len(),
            bytes,
        },
        None => Encoded {
            data_coding: DC_UCS2,
            bytes: ucs2::encode(text),
            units: ucs2::units(text),
        },
    }
}

/// Whether `text` fits one USSD screen (C1): at most 182 GSM 7-bit septets
/// (extension characters count 2), or, when it needs UCS2, at most 80 UTF-16
/// code units.
pub fn fits_ussd_screen(text: &str) -> bool {
    match gsm7::septet_len(text) {
        Some(septets) => septets <= USSD_MAX_GSM7_SEPTETS,
        None => ucs2::units(text) <= USSD_MAX_UCS2_UNITS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn data_coding_values_select_the_expected_alphabet() {
        let cases = [
            (0x00, Alphabet::Gsm7),
            (0x01, Alphabet::Ascii),
            (0x02, Alphabet::Binary),
            (0x03, Alphabet::Latin1),
            (0x04, Alphabet::Binary),
            (0x06, Alphabet::Cyrillic),
            (0x08, Alphabet::Ucs2),
            (0x0E, Alphabet::AsciiCompatible), // KS C 5601
            (0x0F, Alphabet::AsciiCompatible), // reserved
            (0x10, Alphabet::Gsm7),            // flash SMS, GSM 7-bit
            (0x18, Alphabet::Ucs2),            // flash SMS, UCS2
            (0x14, Alphabet::Binary),
            (0x28, Alphabet::Binary), // compressed UCS2
            (0x48, Alphabet::Ucs2),   // auto-deletion group, UCS2
            (0x40, Alphabet::Gsm7),
            (0x44, Alphabet::Binary),
            (0x4C, Alphabet::Gsm7), // reserved alphabet -> GSM 7-bit
            (0x90, Alphabet::Gsm7), // reserved group -> GSM 7-bit
            (0xC0, Alphabet::Gsm7),
            (0xD8, Alphabet::Gsm7),
            (0xE0, Alphabet::Ucs2),
            (0xF0, Alphabet::Gsm7),
            (0xF1, Alphabet::Gsm7),
            (0xF4, Alphabet::Binary),
            (0xF6, Alphabet::Binary),
        ];
        for (dc, expected) in cases {
            assert_eq!(alphabet(dc), expected, "data_coding {dc:#04X}");
        }
    }

    #[test]
    fn short_messages_decode_in_each_coding() {
        let cases: &[(u8, &[u8], &str)] = &[
            (0x00, &[0x48, 0x69, 0x00, 0x1B, 0x65], "Hi@€"),
            (0x01, b"renew please", "renew please"),
            (0x01, &[0x41, 0xE9], "A\u{FFFD}"),
            (0x03, &[0x63, 0x61, 0x66, 0xE9], "café"),
            (
                0x06,
                &[0xBF, 0xD0, 0xDA, 0xD5, 0xE2, 0x20, 0xF1, 0xF0],
                "Пакет ё№",
            ),
            (
                0x08,
                &[0x04, 0x1F, 0x04, 0x30, 0x04, 0x3A, 0x04, 0x35, 0x04, 0x42],
                "Пакет",
            ),
            (0x48, &[0x04, 0x14, 0x04, 0x30], "Да"),
            (0x18, &[0x04, 0x14, 0x04, 0x30], "Да"),
            (0x0E, &[0x31, 0xB0, 0xA1], "1\u{FFFD}\u{FFFD}"),
            (0x0F, b"9290", "9290"),
            (0xF0, &[0x4F, 0x4B], "OK"),
            (0x04, &[0x00, 0x80], "\u{0}\u{FFFD}"),
            (0x00, &[], ""),
        ];
        for &(dc, bytes, text) in cases {
            assert_eq!(decode_short_message(dc, bytes), text, "dc {dc:#04X}");
        }
    }

    #[test]
    fn replies_use_gsm7_when_they_can_and_ucs2_otherwise() {
        let latin = encode_reply("Package renewed: 550.00 RUB");
        assert_eq!(latin.data_coding, DC_GSM7);
        assert_eq!(latin.units, 27);
        assert_eq!(latin.bytes.len(), 27);

        let euro = encode_reply("5€");
        assert_eq!(euro.data_coding, DC_GSM7);
        assert_eq!(euro.bytes, [0x35, 0x1B, 0x65]);
        assert_eq!(euro.units, 3);

        let cyrillic = encode_reply("Пакет обновлён");
        assert_eq!(cyrillic.data_coding, DC_UCS2);
        assert_eq!(cyrillic.units, 14);
        assert_eq!(
            decode_short_message(cyrillic.data_coding, &cyrillic.bytes),
            "Пакет обновлён"
        );
    }

    #[test]
    fn ussd_screen_budget_is_182_septets_or_80_ucs2_units() {
        let cases = [
            ("a".repeat(182), true),
            ("a".repeat(183), false),
            (format!("{}€", "a".repeat(180)), true),
            (format!("{}€", "a".repeat(181)), false),
            ("Ж".repeat(80), true),
            ("Ж".repeat(81), false),
            (format!("{}😀", "Ж".repeat(78)), true),
            (format!("{}😀", "Ж".repeat(79)), false),
            (String::new(), true),
        ];
        for (text, fits) in cases {
            assert_eq!(fits_ussd_screen(&text), fits, "{} chars", text.len());
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_in_any_coding_never_panics(
            dc in any::<u8>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let text = decode_short_message(dc, &bytes);
            prop_assert!(text.chars().count() <= bytes.len());
        }

        #[test]
        fn any_reply_decodes_back_to_itself(text in any::<String>()) {
            let encoded = encode_reply(&text);
            prop_assert!(encoded.data_coding == DC_GSM7 || encoded.data_coding == DC_UCS2);
            prop_assert_eq!(decode_short_message(encoded.data_coding, &encoded.bytes), text);
        }
    }
}
