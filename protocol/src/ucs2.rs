//! UCS2 as SMPP `data_coding` 8 carries it: UTF-16 big-endian.
//!
//! This module owns the byte form of UCS2 text. Strictly, UCS2 has no
//! surrogates, but handsets and SMSCs send emoji as UTF-16 surrogate pairs, so
//! we encode characters outside the BMP as pairs and combine pairs on decode.
//! Message budgets (70 per SMS, 80 per USSD screen) count UTF-16 code units,
//! which [`units`] returns.

/// Replacement for a lone surrogate or an odd trailing byte.
const REPLACEMENT: char = '\u{FFFD}';

/// UTF-16 code units `text` costs: 1 per BMP character, 2 per character
/// outside it.
pub fn units(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Encodes `text` as UTF-16BE. Every Rust string is representable.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decodes UTF-16BE. Never fails: a lone surrogate becomes U+FFFD, and so
/// does an odd trailing byte (a truncated unit).
pub fn decode(bytes: &[u8]) -> String {
    let pairs = bytes.chunks_exact(2);
    let odd = !pairs.remainder().is_empty();
    let code_units = pairs.map(|p| u16::from_be_bytes([p[0], p[1]]));
    let mut out: String = char::decode_utf16(code_units)
        .map(|r| r.unwrap_or(REPLACEMENT))
        .collect();
    if odd {
        out.push(REPLACEMENT);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cyrillic_reply_round_trips() {
        let text = "Пакет обновлён";
        let bytes = encode(text);
        assert_eq!(&bytes[..4], &[0x04, 0x1F, 0x04, 0x30], "П а in big-endian");
        assert_eq!(bytes.len(), 28);
        assert_eq!(units(text), 14);
        assert_eq!(decode(&bytes), text);
    }

    #[test]
    fn emoji_is_a_surrogate_pair_costing_two_units() {
        let bytes = encode("😀");
        assert_eq!(bytes, [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(units("😀"), 2);
        assert_eq!(decode(&bytes), "😀");
    }

    #[test]
    fn malformed_input_decodes_to_replacement_characters() {
        let cases: &[(&[u8], &str)] = &[
            (&[], ""),
            (&[0x00], "\u{FFFD}"),
            (&[0x00, 0x41, 0x00], "A\u{FFFD}"),
            (&[0xD8, 0x3D], "\u{FFFD}"),
            (&[0xDE, 0x00, 0x00, 0x41], "\u{FFFD}A"),
            (&[0xD8, 0x3D, 0x00, 0x41], "\u{FFFD}A"),
            (&[0xD8, 0x3D, 0xD8, 0x3D, 0xDE, 0x00], "\u{FFFD}😀"),
        ];
        for &(bytes, text) in cases {
            assert_eq!(decode(bytes), text, "{bytes:02X?}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let text = decode(&bytes);
            prop_assert!(units(&text) <= bytes.len().div_ceil(2));
        }

        #[test]
        fn any_text_round_trips(text in any::<String>()) {
            let bytes = encode(&text);
            prop_assert_eq!(bytes.len(), 2 * units(&text));
            prop_assert_eq!(decode(&bytes), text);
        }
    }
}
