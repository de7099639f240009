//! GSM 03.38 (3GPP TS 23.038) 7-bit default alphabet and its basic extension
//! table, in both directions.
//!
//! This module owns the character mapping and septet accounting. SMPP
//! `data_coding` 0 carries *unpacked* septets (one septet per octet of
//! `short_message`), so [`encode`] and [`decode`] work on that form; [`pack`]
//! and [`unpack`] exist for the rare peer that wants the 7-bit packed form of
//! the air interface.
//!
//! Extension characters (`^ { } \ [ ~ ] | €` and form feed) are written as the
//! escape septet `0x1B` followed by a second septet, so each costs two septets
//! of the message budget.

/// The escape septet that selects the extension table for the next septet.
pub const ESC: u8 = 0x1B;

/// Replacement for input that cannot be decoded. U+FFFD rather than `?` so a
/// journal reader can tell "the subscriber typed ?" from "undecodable".
const REPLACEMENT: char = '\u{FFFD}';

/// The default alphabet, indexed by septet. Index 0x1B is the escape and is
/// never produced by a character lookup (see [`basic_septet`]).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The basic extension table: (septet after ESC, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How one character is written in GSM 7-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm7Char {
    /// One septet of the default alphabet.
    Basic(u8),
    /// `ESC` followed by this septet of the extension table.
    Extended(u8),
}

impl Gsm7Char {
    /// Septets this character costs: 1 for the default table, 2 for the
    /// extension table.
    pub fn septets(self) -> usize {
        match self {
            Gsm7Char::Basic(_) => 1,
            Gsm7Char::Extended(_) => 2,
        }
    }
}

fn basic_septet(c: char) -> Option<u8> {
    // Letters, digits and space sit at their ASCII positions; everything else
    // (notably @ $ _ ` which do not) goes through the table.
    if c.is_ascii_alphanumeric() || c == ' ' {
        return Some(c as u8);
    }
    BASIC
        .iter()
        .position(|&b| b == c)
        .filter(|&i| i != usize::from(ESC))
        .and_then(|i| u8::try_from(i).ok())
}

fn extension_septet(c: char) -> Option<u8> {
    EXTENSION.iter().find(|&&(_, e)| e == c).map(|&(s, _)| s)
}

/// How `c` is written in GSM 7-bit, or `None` if the alphabet lacks it.
pub fn encode_char(c: char) -> Option<Gsm7Char> {
    basic_septet(c)
        .map(Gsm7Char::Basic)
        .or_else(|| extension_septet(c).map(Gsm7Char::Extended))
}

/// Whether every character of `text` is in the default alphabet or its
/// extension table.
pub fn is_representable(text: &str) -> bool {
    text.chars().all(|c| encode_char(c).is_some())
}

/// Septets `text` costs (extension characters count 2), or `None` if a
/// character is not representable.
pub fn septet_len(text: &str) -> Option<usize> {
    text.chars()
        .try_fold(0usize, |n, c| Some(n + encode_char(c)?.septets()))
}

/// Encodes `text` as unpacked septets (one per byte, as SMPP `data_coding` 0
/// carries them), or `None` if a character is not representable.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match encode_char(c)? {
            Gsm7Char::Basic(s) => out.push(s),
            Gsm7Char::Extended(s) => out.extend_from_slice(&[ESC, s]),
        }
    }
    Some(out)
}

/// Decodes unpacked septets. Never fails:
/// - a byte >= 0x80 is not a septet and becomes U+FFFD;
/// - `ESC ESC` becomes a space and `ESC` + a septet missing from the
///   extension table becomes that septet's default character, both as
///   TS 23.038 §6.2.1.1 tells a receiver to display them;
/// - a trailing `ESC`, or `ESC` before a non-septet, becomes U+FFFD.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b >= 0x80 {
            out.push(REPLACEMENT);
        } else if b != ESC {
            out.push(BASIC[usize::from(b)]);
        } else {
            match bytes.get(i) {
                Some(&next) if next < 0x80 => {
                    i += 1;
                    let c = match EXTENSION.iter().find(|&&(s, _)| s == next) {
                        Some(&(_, c)) => c,
                        None if next == ESC => ' ',
                        None => BASIC[usize::from(next)],
                    };
                    out.push(c);
                }
                _ => out.push(REPLACEMENT),
            }
        }
    }
    out
}

/// Packs septets into the 7-bit air-interface form, LSB first (TS 23.038
/// §6.1.2.1.1), with no fill bits. Only the low 7 bits of each input byte
/// are used.
///
/// When `septets.len() % 8 == 7` the last octet has 7 spare zero bits, which
/// a receiver that infers the count from the octets would read as `@`; pass
/// the septet count to [`unpack`] (SMS carries it as the user data length).
pub fn pack(septets: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; (septets.len() * 7).div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let s = u16::from(s & 0x7F);
        let bit = i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let wide = s << shift;
        out[byte] |= (wide & 0xFF) as u8;
        if let Some(next) = out.get_mut(byte + 1) {
            *next |= (wide >> 8) as u8;
        }
    }
    out
}

/// Unpacks `septet_count` septets from the 7-bit packed form. Asks for more
/// septets than `packed` holds yield only the complete ones present.
pub fn unpack(packed: &[u8], septet_count: usize) -> Vec<u8> {
    let available = packed.len() * 8 / 7;
    let n = septet_count.min(available);
    (0..n)
        .map(|i| {
            let bit = i * 7;
            let (byte, shift) = (bit / 8, bit % 8);
            let lo = u16::from(packed[byte]);
            let hi = u16::from(packed.get(byte + 1).copied().unwrap_or(0));
            (((hi << 8 | lo) >> shift) & 0x7F) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn characters_map_to_their_septets() {
        let cases: &[(&str, &[u8])] = &[
            ("@", &[0x00]),
            ("$", &[0x02]),
            ("_", &[0x11]),
            ("A", &[0x41]),
            ("z", &[0x7A]),
            ("0", &[0x30]),
            ("¡", &[0x40]),
            ("à", &[0x7F]),
            ("Δ", &[0x10]),
            ("€", &[0x1B, 0x65]),
            ("^", &[0x1B, 0x14]),
            ("{}", &[0x1B, 0x28, 0x1B, 0x29]),
            ("\\", &[0x1B, 0x2F]),
            ("[~]", &[0x1B, 0x3C, 0x1B, 0x3D, 0x1B, 0x3E]),
            ("|", &[0x1B, 0x40]),
            ("\u{0C}", &[0x1B, 0x0A]),
            ("Hi\n", &[0x48, 0x69, 0x0A]),
        ];
        for &(text, septets) in cases {
            assert_eq!(encode(text).as_deref(), Some(septets), "encode {text:?}");
            assert_eq!(decode(septets), text, "decode {septets:02X?}");
        }
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused() {
        for text in ["`", "Пакет", "ç", "😀", "\u{1B}", "a\tb"] {
            assert_eq!(encode(text), None, "{text:?}");
            assert_eq!(septet_len(text), None, "{text:?}");
            assert!(!is_representable(text), "{text:?}");
        }
    }

    #[test]
    fn euro_and_other_extension_characters_cost_two_septets() {
        assert_eq!(septet_len("€"), Some(2));
        assert_eq!(septet_len("10€"), Some(4));
        assert_eq!(septet_len("[x]"), Some(5));
        assert_eq!(septet_len(""), Some(0));
        assert_eq!(encode_char('€').map(Gsm7Char::septets), Some(2));
        assert_eq!(encode_char('e').map(Gsm7Char::septets), Some(1));
    }

    #[test]
    fn invalid_input_decodes_to_replacement_characters() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x80], "\u{FFFD}"),
            (&[0x41, 0xFF, 0x42], "A\u{FFFD}B"),
            (&[0x1B], "\u{FFFD}"),
            (&[0x41, 0x1B], "A\u{FFFD}"),
            (&[0x1B, 0x90], "\u{FFFD}\u{FFFD}"),
            // ESC ESC is reserved and shown as a space (TS 23.038).
            (&[0x1B, 0x1B], " "),
            // ESC + an unassigned extension septet shows the default character.
            (&[0x1B, 0x41], "A"),
        ];
        for &(bytes, text) in cases {
            assert_eq!(decode(bytes), text, "{bytes:02X?}");
        }
    }

    #[test]
    fn packing_matches_the_textbook_hellohello_example() {
        // "hellohello" packed, the worked example of GSM 03.38 tutorials.
        let septets = encode("hellohello").unwrap();
        let packed = pack(&septets);
        assert_eq!(
            packed,
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(unpack(&packed, septets.len()), septets);
    }

    #[test]
    fn unpack_never_invents_septets_beyond_the_input() {
        assert_eq!(unpack(&[], 5), Vec::<u8>::new());
        assert_eq!(unpack(&[0xC8], 9), vec![0x48]);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let text = decode(&bytes);
            prop_assert!(text.chars().count() <= bytes.len());
        }

        #[test]
        fn representable_text_round_trips(text in "[@£$¥èéùìòÇ\nØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,./0-9:;<=>?¡A-ZÄÖÑÜ§¿a-zäöñüà^{}\\\\\\[~\\]|€\u{0C}-]{0,200}") {
            let septets = encode(&text).expect("generated from the alphabet");
            prop_assert_eq!(Some(septets.len()), septet_len(&text));
            prop_assert!(septets.iter().all(|&s| s < 0x80));
            prop_assert_eq!(decode(&septets), text);
        }

        #[test]
        fn any_text_either_round_trips_or_is_refused(text in any::<String>()) {
            if let Some(septets) = encode(&text) {
                prop_assert_eq!(decode(&septets), text);
            } else {
                prop_assert!(!is_representable(&text));
            }
        }

        #[test]
        fn pack_then_unpack_is_identity(septets in proptest::collection::vec(0u8..0x80, 0..300)) {
            let packed = pack(&septets);
            prop_assert_eq!(packed.len(), (septets.len() * 7).div_ceil(8));
            prop_assert_eq!(unpack(&packed, septets.len()), septets);
        }

        #[test]
        fn unpack_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..400) {
            let septets = unpack(&bytes, n);
            prop_assert!(septets.len() <= n);
            prop_assert!(septets.iter().all(|&s| s < 0x80));
        }
    }
}
