//! Every text a subscriber reads, in one place an operator can change.
//!
//! Templates use `{name}` placeholders filled from [`Vars`]. The defaults are
//! Russian and each USSD answer fits one UCS2 screen (80 characters) with the
//! largest amounts the engine produces; the confirmation SMS carries the
//! details and may span several segments. An operator overrides any of them
//! in the `[texts]` table of the config file.

use serde::{Deserialize, Serialize};

use super::model::Outcome;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Texts {
    /// USSD answer after a renewal (the details follow by SMS).
    pub renewed_ussd: String,
    /// The confirmation SMS (step 6), also the answer to an SMS renewal.
    pub renewed_sms: String,
    /// Appended to the confirmation when a saved package was created.
    pub saved_part: String,
    pub unknown_subscriber: String,
    pub blocked: String,
    pub unpaid_period: String,
    pub no_service: String,
    pub daily_billing: String,
    pub full_discount: String,
    pub insufficient_funds: String,
    pub unknown_command: String,
}

impl Default for Texts {
    fn default() -> Self {
        Texts {
            renewed_ussd:
                "Пакет обновлён: -{fee} руб., следующее списание {next_charge}. Детали в SMS".into(),
            renewed_sms: "«Обнови пакет»: списано {fee} руб. за период {period_from}-{period_to}. \
                          Следующее списание {next_charge}.{saved} Баланс {balance} руб."
                .into(),
            saved_part: " Остаток прошлого периода до {saved_until}: {saved_minutes} мин, \
                          {saved_sms} SMS, {saved_data_mb} МБ."
                .into(),
            unknown_subscriber: "Номер не обслуживается. Обратитесь в салон связи".into(),
            blocked: "Пакет не обновлён: на номере есть блокировка".into(),
            unpaid_period: "Пакет не обновлён: период не оплачен. Плата спишется ближайшей ночью"
                .into(),
            no_service: "Пакет не обновлён: услуга недоступна на вашем тарифе".into(),
            daily_billing: "Пакет не обновлён: тариф оплачивается посуточно".into(),
            full_discount: "Пакет не обновлён: на абонентскую плату скидка 100%".into(),
            insufficient_funds: "Недостаточно средств: нужно {fee} руб., на счёте {balance} руб."
                .into(),
            unknown_command: "Неизвестная команда. Чтобы обновить пакет, наберите {code}".into(),
        }
    }
}

/// One USSD screen (C1): 182 GSM 7-bit characters, or 80 UCS2 ones.
pub const USSD_GSM7_MAX: usize = 182;
pub const USSD_UCS2_MAX: usize = 80;

/// Values a template may mention. Missing values render as empty strings.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub fee: String,
    pub balance: String,
    pub next_charge: String,
    pub period_from: String,
    pub period_to: String,
    pub saved: String,
    pub saved_until: String,
    pub saved_minutes: String,
    pub saved_sms: String,
    pub saved_data_mb: String,
    pub code: String,
}

impl Vars {
    /// The widest values checked for a USSD answer: amounts of eight
    /// digits and kopecks (a negative balance; fees and balances may be
    /// larger, up to `money::MAX_ABS`, and then a refusal text can run past
    /// the screen), the longest date, the default code.
    pub fn widest() -> Vars {
        Vars {
            fee: "99999999.99".into(),
            balance: "-99999999.99".into(),
            next_charge: "31.12.2099".into(),
            code: "*929#".into(),
            ..Vars::default()
        }
    }
}

impl Texts {
    /// The template answering `outcome` on USSD (or a refusal on SMS).
    pub fn short(&self, outcome: Outcome) -> &str {
        match outcome {
            Outcome::Renewed => &self.renewed_ussd,
            Outcome::UnknownSubscriber => &self.unknown_subscriber,
            Outcome::Blocked => &self.blocked,
            Outcome::UnpaidPeriod => &self.unpaid_period,
            Outcome::NoService => &self.no_service,
            Outcome::DailyBilling => &self.daily_billing,
            Outcome::FullDiscount => &self.full_discount,
            Outcome::InsufficientFunds => &self.insufficient_funds,
            Outcome::UnknownCommand => &self.unknown_command,
            Outcome::Ok => "",
        }
    }

    /// Every template with its name, for validation and tests.
    pub fn all(&self) -> [(&'static str, &str); 11] {
        [
            ("renewed_ussd", &self.renewed_ussd),
            ("renewed_sms", &self.renewed_sms),
            ("saved_part", &self.saved_part),
            ("unknown_subscriber", &self.unknown_subscriber),
            ("blocked", &self.blocked),
            ("unpaid_period", &self.unpaid_period),
            ("no_service", &self.no_service),
            ("daily_billing", &self.daily_billing),
            ("full_discount", &self.full_discount),
            ("insufficient_funds", &self.insufficient_funds),
            ("unknown_command", &self.unknown_command),
        ]
    }

    /// A template naming a placeholder that does not exist is a config error,
    /// caught at start rather than shown to a subscriber as `{typo}`.
    /// Placeholders known, and every USSD answer within one screen with
    /// `code` (the configured USSD code) and [`Vars::widest`] amounts.
    pub fn validate(&self, code: &str) -> Result<(), String> {
        self.check_placeholders()?;
        // C1: a USSD answer is one screen (an operator's longer wording
        // would otherwise only show as a cut-off screen on a phone).
        let widest = Vars {
            code: code.to_string(),
            ..Vars::widest()
        };
        for (name, template) in self.all() {
            if matches!(name, "renewed_sms" | "saved_part") {
                continue; // SMS: segmented, any length
            }
            let text = render(template, &widest);
            let (units, max, alphabet) = match shortcode_protocol::gsm7::septet_len(&text) {
                Some(septets) => (septets, USSD_GSM7_MAX, "GSM 7-bit characters"),
                None => (
                    text.encode_utf16().count(),
                    USSD_UCS2_MAX,
                    "UCS2 characters",
                ),
            };
            if units > max {
                return Err(format!(
                    "texts.{name}: {units} {alphabet} with the widest amounts and dates, more than one USSD screen ({max})"
                ));
            }
        }
        Ok(())
    }

    fn check_placeholders(&self) -> Result<(), String> {
        for (name, template) in self.all() {
            let mut rest = template;
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let Some(close) = after.find('}') else {
                    return Err(format!("texts.{name}: unclosed '{{'"));
                };
                let key = &after[..close];
                if !VAR_NAMES.contains(&key) {
                    return Err(format!("texts.{name}: unknown placeholder {{{key}}}"));
                }
                rest = &after[close + 1..];
            }
        }
        Ok(())
    }
}

const VAR_NAMES: [&str; 11] = [
    "fee",
    "balance",
    "next_charge",
    "period_from",
    "period_to",
    "saved",
    "saved_until",
    "saved_minutes",
    "saved_sms",
    "saved_data_mb",
    "code",
];

/// Fill `{name}` placeholders. Unknown names are left as they are.
pub fn render(template: &str, v: &Vars) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let value = match &after[..close] {
            "fee" => Some(&v.fee),
            "balance" => Some(&v.balance),
            "next_charge" => Some(&v.next_charge),
            "period_from" => Some(&v.period_from),
            "period_to" => Some(&v.period_to),
            "saved" => Some(&v.saved),
            "saved_until" => Some(&v.saved_until),
            "saved_minutes" => Some(&v.saved_minutes),
            "saved_sms" => Some(&v.saved_sms),
            "saved_data_mb" => Some(&v.saved_data_mb),
            "code" => Some(&v.code),
            _ => None,
        };
        match value {
            Some(s) => out.push_str(s),
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A placeholder [`render`] knows, as a value instead of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Fee,
    Balance,
    NextCharge,
    PeriodFrom,
    PeriodTo,
    Saved,
    SavedUntil,
    SavedMinutes,
    SavedSms,
    SavedDataMb,
    Code,
}

impl Var {
    pub const ALL: [Var; 11] = [
        Var::Fee,
        Var::Balance,
        Var::NextCharge,
        Var::PeriodFrom,
        Var::PeriodTo,
        Var::Saved,
        Var::SavedUntil,
        Var::SavedMinutes,
        Var::SavedSms,
        Var::SavedDataMb,
        Var::Code,
    ];

    fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "fee" => Var::Fee,
            "balance" => Var::Balance,
            "next_charge" => Var::NextCharge,
            "period_from" => Var::PeriodFrom,
            "period_to" => Var::PeriodTo,
            "saved" => Var::Saved,
            "saved_until" => Var::SavedUntil,
            "saved_minutes" => Var::SavedMinutes,
            "saved_sms" => Var::SavedSms,
            "saved_data_mb" => Var::SavedDataMb,
            "code" => Var::Code,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal text, owned so rendering does not re-slice the template.
    Lit(Box<str>),
    Var(Var),
}

/// A template split once into literal text and placeholders, so rendering
/// is copying: no scanning for braces or matching names per message.
/// [`Template::render_with`] gives exactly what [`render`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    pieces: Vec<Piece>,
    /// Bytes of literal text.
    literal_len: usize,
    /// How often each placeholder appears, by `Var as usize`.
    counts: [usize; 11],
}

impl Template {
    /// Split `template` the way [`render`] scans it.
    pub fn compile(template: &str) -> Template {
        // Byte ranges of the template first; adjacent literal ranges merge
        // (an unknown `{name}` is literal).
        enum Span {
            Lit(usize, usize),
            Var(Var),
        }
        let mut pieces = Vec::new();
        fn lit(pieces: &mut Vec<Span>, from: usize, to: usize) {
            if from == to {
                return;
            }
            if let Some(Span::Lit(_, end)) = pieces.last_mut() {
                if *end == from {
                    *end = to;
                    return;
                }
            }
            pieces.push(Span::Lit(from, to));
        }
        let mut pos = 0;
        while let Some(open) = template[pos..].find('{').map(|o| pos + o) {
            lit(&mut pieces, pos, open);
            let Some(close) = template[open + 1..].find('}').map(|c| open + 1 + c) else {
                lit(&mut pieces, open, template.len());
                pos = template.len();
                break;
            };
            match Var::from_name(&template[open + 1..close]) {
                Some(v) => pieces.push(Span::Var(v)),
                None => lit(&mut pieces, open, close + 1),
            }
            pos = close + 1;
        }
        lit(&mut pieces, pos, template.len());
        let mut literal_len = 0;
        let mut counts = [0; 11];
        let pieces = pieces
            .into_iter()
            .map(|p| match p {
                Span::Lit(a, b) => {
                    literal_len += b - a;
                    Piece::Lit(template[a..b].into())
                }
                Span::Var(v) => {
                    counts[v as usize] += 1;
                    Piece::Var(v)
                }
            })
            .collect();
        Template {
            text: template.to_string(),
            pieces,
            literal_len,
            counts,
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The template without placeholders, if it has none.
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Lit(_)] => Some(&self.text),
            _ => None,
        }
    }

    /// Bytes of literal text.
    pub fn literal_len(&self) -> usize {
        self.literal_len
    }

    /// How many times `var` appears.
    pub fn count(&self, var: Var) -> usize {
        self.counts[var as usize]
    }

    /// Append the rendering to `out`; `put` appends the value of a placeholder.
    pub fn render_with(&self, out: &mut String, mut put: impl FnMut(Var, &mut String)) {
        for p in &self.pieces {
            match p {
                Piece::Lit(text) => out.push_str(text),
                Piece::Var(v) => put(*v, out),
            }
        }
    }

    /// Append the rendering with values from `vars`, as [`render`] does.
    pub fn render_vars(&self, out: &mut String, v: &Vars) {
        self.render_with(out, |var, out| out.push_str(v.get(var)));
    }
}

impl Vars {
    /// The value of a placeholder.
    pub fn get(&self, var: Var) -> &str {
        match var {
            Var::Fee => &self.fee,
            Var::Balance => &self.balance,
            Var::NextCharge => &self.next_charge,
            Var::PeriodFrom => &self.period_from,
            Var::PeriodTo => &self.period_to,
            Var::Saved => &self.saved,
            Var::SavedUntil => &self.saved_until,
            Var::SavedMinutes => &self.saved_minutes,
            Var::SavedSms => &self.saved_sms,
            Var::SavedDataMb => &self.saved_data_mb,
            Var::Code => &self.code,
        }
    }
}

/// Every template of a [`Texts`], compiled (an engine keeps these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledTexts {
    pub renewed_ussd: Template,
    pub renewed_sms: Template,
    pub saved_part: Template,
    pub unknown_subscriber: Template,
    pub blocked: Template,
    pub unpaid_period: Template,
    pub no_service: Template,
    pub daily_billing: Template,
    pub full_discount: Template,
    pub insufficient_funds: Template,
    pub unknown_command: Template,
    ok: Template,
}

impl CompiledTexts {
    pub fn new(t: &Texts) -> CompiledTexts {
        CompiledTexts {
            renewed_ussd: Template::compile(&t.renewed_ussd),
            renewed_sms: Template::compile(&t.renewed_sms),
            saved_part: Template::compile(&t.saved_part),
            unknown_subscriber: Template::compile(&t.unknown_subscriber),
            blocked: Template::compile(&t.blocked),
            unpaid_period: Template::compile(&t.unpaid_period),
            no_service: Template::compile(&t.no_service),
            daily_billing: Template::compile(&t.daily_billing),
            full_discount: Template::compile(&t.full_discount),
            insufficient_funds: Template::compile(&t.insufficient_funds),
            unknown_command: Template::compile(&t.unknown_command),
            ok: Template::compile(""),
        }
    }

    /// As [`Texts::short`].
    pub fn short(&self, outcome: Outcome) -> &Template {
        match outcome {
            Outcome::Renewed => &self.renewed_ussd,
            Outcome::UnknownSubscriber => &self.unknown_subscriber,
            Outcome::Blocked => &self.blocked,
            Outcome::UnpaidPeriod => &self.unpaid_period,
            Outcome::NoService => &self.no_service,
            Outcome::DailyBilling => &self.daily_billing,
            Outcome::FullDiscount => &self.full_discount,
            Outcome::InsufficientFunds => &self.insufficient_funds,
            Outcome::UnknownCommand => &self.unknown_command,
            Outcome::Ok => &self.ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_templates() {
        Texts::default().validate("*929#").unwrap();
    }

    #[test]
    fn typo_in_template_is_refused_with_its_name() {
        let t = Texts {
            blocked: "нет {feee}".into(),
            ..Texts::default()
        };
        assert_eq!(
            t.validate("*929#").unwrap_err(),
            "texts.blocked: unknown placeholder {feee}"
        );
    }

    #[test]
    fn render_fills_and_keeps_unknown() {
        let v = Vars {
            fee: "550.00".into(),
            ..Vars::default()
        };
        assert_eq!(render("-{fee} {x} {", &v), "-550.00 {x} {");
    }

    fn all_vars() -> Vars {
        Vars {
            fee: "F".into(),
            balance: "B".into(),
            next_charge: "N".into(),
            period_from: "PF".into(),
            period_to: "PT".into(),
            saved: "S".into(),
            saved_until: "SU".into(),
            saved_minutes: "SM".into(),
            saved_sms: "SS".into(),
            saved_data_mb: "SD".into(),
            code: "C".into(),
        }
    }

    fn compiled(template: &str, v: &Vars) -> String {
        let mut out = String::new();
        Template::compile(template).render_vars(&mut out, v);
        out
    }

    #[test]
    fn compiled_templates_render_as_render_does() {
        let v = all_vars();
        for (_, t) in Texts::default().all() {
            assert_eq!(compiled(t, &v), render(t, &v), "{t}");
        }
        for t in [
            "",
            "{",
            "}",
            "{}",
            "{{fee}",
            "{fee",
            "{fee}}",
            "{{fee}}",
            "a{x}b{fee}c{",
            "ё{code}ж",
        ] {
            assert_eq!(compiled(t, &v), render(t, &v), "{t}");
        }
        assert_eq!(Template::compile("abc").literal(), Some("abc"));
        assert_eq!(Template::compile("a{x}").literal(), Some("a{x}"));
        assert_eq!(Template::compile("a{fee}").literal(), None);
    }

    proptest::proptest! {
        #[test]
        fn compiled_matches_render_on_random_templates(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{", "}", "fee", "saved", "x", "й", "{fee}", "{code}", "{zz}", "{saved_sms}",
                    "{balance", "period_to}",
                ]),
                0..12,
            )
        ) {
            let t = parts.concat();
            let v = all_vars();
            proptest::prop_assert_eq!(compiled(&t, &v), render(&t, &v));
        }
    }
}
