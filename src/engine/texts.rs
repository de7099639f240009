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
    pub fn validate(&self) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_templates() {
        Texts::default().validate().unwrap();
    }

    #[test]
    fn typo_in_template_is_refused_with_its_name() {
        let t = Texts {
            blocked: "нет {feee}".into(),
            ..Texts::default()
        };
        assert_eq!(
            t.validate().unwrap_err(),
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
}
