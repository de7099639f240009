//! USSD strings as subscribers dial them (`*929#`, `*100*1*2#`): a strict nom
//! grammar, and a router from configured service codes to caller-defined
//! actions (C1, C3).
//!
//! This module owns what counts as a well-formed USSD request; what an action
//! does is the caller's. Grammar, with optional surrounding whitespace:
//!
//! ```text
//! ussd    = "*" code *( "*" arg ) "#"
//! code    = 1*DIGIT
//! arg     = 1*DIGIT
//! ```
//!
//! Everything else is refused with a [`UssdError`] naming the byte offset:
//! empty strings, letters, `**` (empty argument), a missing `#`, text after
//! `#`, `#`-first codes such as `#31#`, and strings over 182 characters (one
//! USSD message).

use std::collections::BTreeMap;
use std::fmt;

use nom::character::complete::{char, digit1, multispace0};
use nom::combinator::{cut, eof};
use nom::error::{ErrorKind, ParseError};
use nom::multi::many0;
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Longest USSD string accepted, in characters: one USSD message holds 182
/// GSM 7-bit characters.
pub const USSD_MAX_CHARS: usize = 182;

/// A well-formed USSD request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UssdString {
    /// The digits after the first `*`: `"929"` for `*929*1#`.
    pub service_code: String,
    /// The `*`-separated digit groups after the code: `["1"]` for `*929*1#`.
    pub args: Vec<String>,
}

impl fmt::Display for UssdString {
    /// The canonical dialled form, e.g. `*929*1#`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*{}", self.service_code)?;
        for arg in &self.args {
            write!(f, "*{arg}")?;
        }
        f.write_str("#")
    }
}

/// What the grammar wanted where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The leading `*`.
    Star,
    /// The service code digits after the leading `*`.
    ServiceCode,
    /// Argument digits after a `*`.
    Argument,
    /// `*` (another argument) or the closing `#`.
    StarOrHash,
    /// Nothing but whitespace after the closing `#`.
    End,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::Star => "'*'",
            Expected::ServiceCode => "service code digits",
            Expected::Argument => "argument digits",
            Expected::StarOrHash => "'*' or '#'",
            Expected::End => "end of input",
        })
    }
}

fn found_text(found: &Option<char>) -> String {
    found.map_or_else(|| "end of input".to_owned(), |c| format!("{c:?}"))
}

/// Why a USSD string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UssdError {
    /// Nothing but whitespace.
    #[error("empty USSD string")]
    Empty,
    /// More than [`USSD_MAX_CHARS`] characters (whitespace trimmed).
    #[error("USSD string has {len} characters, more than {max}")]
    TooLong {
        /// Characters after trimming.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The grammar stopped at byte `at` of the input.
    #[error("at byte {at}: expected {expected}, found {}", found_text(.found))]
    Syntax {
        /// Byte offset into the string given to [`parse`].
        at: usize,
        /// What would have been accepted there.
        expected: Expected,
        /// The character found there, `None` at the end.
        found: Option<char>,
    },
}

/// nom error carrying what was expected; `rest` is the unparsed input.
#[derive(Debug)]
struct GrammarError<'a> {
    rest: &'a str,
    expected: Expected,
}

impl<'a> ParseError<&'a str> for GrammarError<'a> {
    fn from_error_kind(rest: &'a str, _kind: ErrorKind) -> Self {
        // Every leaf is wrapped in `expect`, which overwrites this.
        GrammarError {
            rest,
            expected: Expected::End,
        }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type GResult<'a, O> = IResult<&'a str, O, GrammarError<'a>>;

/// Labels `parser`'s failure with what it expected.
fn expect<'a, O>(
    expected: Expected,
    mut parser: impl Parser<&'a str, Output = O, Error = GrammarError<'a>>,
) -> impl Parser<&'a str, Output = O, Error = GrammarError<'a>> {
    move |input: &'a str| -> GResult<'a, O> {
        parser
            .parse(input)
            .map_err(|e| e.map(|g| GrammarError { expected, ..g }))
    }
}

fn ussd_string(input: &str) -> GResult<'_, (&str, Vec<&str>)> {
    let (rest, (_, _, code, args, _, _, _)) = (
        multispace0,
        expect(Expected::Star, char('*')),
        expect(Expected::ServiceCode, digit1),
        // After a '*' an argument must follow: `cut` stops `many0` from
        // backing off, so `**` and `*929*#` report the missing argument.
        many0(preceded(char('*'), cut(expect(Expected::Argument, digit1)))),
        expect(Expected::StarOrHash, char('#')),
        multispace0,
        expect(Expected::End, eof),
    )
        .parse(input)?;
    Ok((rest, (code, args)))
}

/// Parses a dialled USSD string such as `*929#` or ` *100*1# `.
pub fn parse(input: &str) -> Result<UssdString, UssdError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(UssdError::Empty);
    }
    let len = trimmed.chars().count();
    if len > USSD_MAX_CHARS {
        return Err(UssdError::TooLong {
            len,
            max: USSD_MAX_CHARS,
        });
    }
    match ussd_string(input) {
        Ok((_, (code, args))) => Ok(UssdString {
            service_code: code.to_owned(),
            args: args.into_iter().map(str::to_owned).collect(),
        }),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(UssdError::Syntax {
            at: input.len() - e.rest.len(),
            expected: e.expected,
            found: e.rest.chars().next(),
        }),
        // Complete parsers never ask for more input; treat it as a cut-off.
        Err(nom::Err::Incomplete(_)) => Err(UssdError::Syntax {
            at: input.len(),
            expected: Expected::StarOrHash,
            found: None,
        }),
    }
}

/// Why a configured USSD code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The code is not a well-formed USSD string or digit run.
    #[error("invalid USSD code in configuration: {0}")]
    Invalid(#[from] UssdError),
    /// The code has arguments (`*929*1#`); routes match on the service code
    /// only and pass arguments through.
    #[error("configured USSD code {code:?} has arguments; configure the service code only")]
    HasArguments {
        /// The configured text.
        code: String,
    },
    /// Two routes for one service code.
    #[error("USSD service code {service_code} is configured twice")]
    Duplicate {
        /// The service code.
        service_code: String,
    },
}

/// The service code of a configured USSD code, written as the subscriber
/// dials it (`*929#`) or as bare digits (`929`).
pub fn parse_code_config(code: &str) -> Result<String, RouteError> {
    let trimmed = code.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(trimmed.to_owned());
    }
    let ussd = parse(code)?;
    if !ussd.args.is_empty() {
        return Err(RouteError::HasArguments {
            code: trimmed.to_owned(),
        });
    }
    Ok(ussd.service_code)
}

/// Where a USSD request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed<T> {
    /// A configured service code: its action and the request's arguments.
    Command(T, Vec<String>),
    /// Anything else, malformed strings included; C3 answers these with a
    /// short "unknown command" that names the configured code.
    Unknown,
}

/// Maps configured service codes to caller-defined actions (C3: codes are
/// configuration, not constants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UssdRouter<T> {
    routes: BTreeMap<String, T>,
}

impl<T> Default for UssdRouter<T> {
    fn default() -> Self {
        UssdRouter {
            routes: BTreeMap::new(),
        }
    }
}

impl<T: Clone> UssdRouter<T> {
    /// A router with no routes: everything is [`Routed::Unknown`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes the code configured as `code` (`*929#` or `929`) to `action`.
    pub fn add(&mut self, code: &str, action: T) -> Result<(), RouteError> {
        let service_code = parse_code_config(code)?;
        if self.routes.contains_key(&service_code) {
            return Err(RouteError::Duplicate { service_code });
        }
        self.routes.insert(service_code, action);
        Ok(())
    }

    /// The configured service codes, in order.
    pub fn service_codes(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Routes a parsed request by its service code.
    pub fn route(&self, ussd: &UssdString) -> Routed<T> {
        match self.routes.get(&ussd.service_code) {
            Some(action) => Routed::Command(action.clone(), ussd.args.clone()),
            None => Routed::Unknown,
        }
    }

    /// Parses and routes a raw request; a malformed one is
    /// [`Routed::Unknown`] (use [`parse`] to learn why).
    pub fn route_str(&self, raw: &str) -> Routed<T> {
        parse(raw).map_or(Routed::Unknown, |ussd| self.route(&ussd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(code: &str, args: &[&str]) -> Result<UssdString, UssdError> {
        Ok(UssdString {
            service_code: code.to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn syntax(at: usize, expected: Expected, found: Option<char>) -> Result<UssdString, UssdError> {
        Err(UssdError::Syntax {
            at,
            expected,
            found,
        })
    }

    #[test]
    fn well_formed_strings_parse() {
        let cases = [
            ("*929#", ok("929", &[])),
            ("  *929#\r\n", ok("929", &[])),
            ("\t*929# ", ok("929", &[])),
            ("*100*1#", ok("100", &["1"])),
            ("*929*5*0012#", ok("929", &["5", "0012"])),
            ("*0#", ok("0", &[])),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), expected, "{input:?}");
        }
    }

    #[test]
    fn malformed_strings_are_refused_with_the_place_and_reason() {
        use Expected::*;
        let cases = [
            ("", Err(UssdError::Empty)),
            ("   ", Err(UssdError::Empty)),
            ("929#", syntax(0, Star, Some('9'))),
            ("#929#", syntax(0, Star, Some('#'))),
            ("#31#", syntax(0, Star, Some('#'))),
            ("*#", syntax(1, ServiceCode, Some('#'))),
            ("*abc#", syntax(1, ServiceCode, Some('a'))),
            ("*929", syntax(4, StarOrHash, None)),
            ("*929a#", syntax(4, StarOrHash, Some('a'))),
            ("*929 #", syntax(4, StarOrHash, Some(' '))),
            ("**929#", syntax(1, ServiceCode, Some('*'))),
            ("*929**1#", syntax(5, Argument, Some('*'))),
            ("*929*#", syntax(5, Argument, Some('#'))),
            ("*929*x#", syntax(5, Argument, Some('x'))),
            ("*929#1", syntax(5, End, Some('1'))),
            ("*929##", syntax(5, End, Some('#'))),
            ("*929# x", syntax(6, End, Some('x'))),
            ("*９２９#", syntax(1, ServiceCode, Some('９'))),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), expected, "{input:?}");
        }
    }

    #[test]
    fn strings_over_182_characters_are_refused() {
        let longest = format!("*929*{}#", "1".repeat(176));
        assert_eq!(longest.len(), 182);
        assert!(parse(&longest).is_ok());
        let too_long = format!("*929*{}#", "1".repeat(177));
        assert_eq!(
            parse(&too_long),
            Err(UssdError::TooLong { len: 183, max: 182 })
        );
        assert_eq!(
            parse(&format!("  {longest}  ")).map(|u| u.args[0].len()),
            Ok(176)
        );
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            parse("*929").unwrap_err().to_string(),
            "at byte 4: expected '*' or '#', found end of input"
        );
        assert_eq!(
            parse("*92x#").unwrap_err().to_string(),
            "at byte 3: expected '*' or '#', found 'x'"
        );
    }

    #[test]
    fn display_gives_the_canonical_dialled_form() {
        assert_eq!(parse(" *929*1# ").unwrap().to_string(), "*929*1#");
        assert_eq!(parse("*929#").unwrap().to_string(), "*929#");
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Action {
        Renew,
        Balance,
    }

    #[test]
    fn configured_codes_route_and_everything_else_is_unknown() {
        let mut router = UssdRouter::new();
        router.add("*929#", Action::Renew).unwrap();
        router.add("100", Action::Balance).unwrap();
        assert_eq!(router.service_codes().collect::<Vec<_>>(), ["100", "929"]);

        let cases = [
            ("*929#", Routed::Command(Action::Renew, vec![])),
            (
                " *929*1# ",
                Routed::Command(Action::Renew, vec!["1".into()]),
            ),
            ("*100#", Routed::Command(Action::Balance, vec![])),
            ("*930#", Routed::Unknown),
            ("*9290#", Routed::Unknown),
            ("*92#", Routed::Unknown),
            ("929", Routed::Unknown),
            ("hello", Routed::Unknown),
            ("", Routed::Unknown),
        ];
        for (input, expected) in cases {
            assert_eq!(router.route_str(input), expected, "{input:?}");
        }
    }

    #[test]
    fn the_renewal_code_is_configuration_not_a_constant() {
        let mut router = UssdRouter::new();
        router.add("*555#", Action::Renew).unwrap();
        assert_eq!(router.route_str("*929#"), Routed::Unknown);
        assert_eq!(
            router.route_str("*555#"),
            Routed::Command(Action::Renew, vec![])
        );
    }

    #[test]
    fn configured_codes_are_read_as_dialled_or_bare() {
        let cases = [
            ("*929#", Ok("929".to_owned())),
            (" 929 ", Ok("929".to_owned())),
            (
                "*929*1#",
                Err(RouteError::HasArguments {
                    code: "*929*1#".into(),
                }),
            ),
            ("", Err(RouteError::Invalid(UssdError::Empty))),
            (
                "*92a#",
                Err(RouteError::Invalid(UssdError::Syntax {
                    at: 3,
                    expected: Expected::StarOrHash,
                    found: Some('a'),
                })),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_code_config(input), expected, "{input:?}");
        }
    }

    #[test]
    fn a_code_cannot_be_configured_twice() {
        let mut router = UssdRouter::new();
        router.add("*929#", Action::Renew).unwrap();
        assert_eq!(
            router.add("929", Action::Balance),
            Err(RouteError::Duplicate {
                service_code: "929".into()
            })
        );
        assert_eq!(
            router.route_str("*929#"),
            Routed::Command(Action::Renew, vec![])
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            if let Err(UssdError::Syntax { at, .. }) = parse(&input) {
                prop_assert!(at <= input.len());
                prop_assert!(input.is_char_boundary(at));
            }
        }

        #[test]
        fn parse_never_panics_on_near_misses(input in "[ *#0-9a]{0,30}") {
            let _ = parse(&input);
        }

        #[test]
        fn generated_valid_strings_parse_and_print_back(
            code in "[0-9]{1,6}",
            args in proptest::collection::vec("[0-9]{1,12}", 0..5),
        ) {
            let dialled = format!("*{code}{}#", args.iter().map(|a| format!("*{a}")).collect::<String>());
            let ussd = parse(&dialled).unwrap();
            prop_assert_eq!(&ussd.service_code, &code);
            prop_assert_eq!(&ussd.args, &args);
            prop_assert_eq!(ussd.to_string(), dialled);
        }
    }
}
