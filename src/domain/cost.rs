//! What calls cost: the organisation's currency and price lists (per provider), what a call
//! used, the cost computed from the two with its breakdown, and the monthly budget.
//!
//! Money is counted in billionths of the currency unit ([`Money`]), so a price per character
//! and a sum over a month are both exact; the API shows amounts as decimal numbers.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ids::{LlmProviderId, SpeechProviderId};
use super::text_enum;
use super::validation::{Invalid, in_range, required_text};

const NANOS_PER_UNIT: i64 = 1_000_000_000;
/// The largest amount accepted from a user: a billion of the currency unit.
const MAX_AMOUNT_UNITS: f64 = 1e9;

/// An amount of money, in billionths of the currency unit; never negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = f64, example = 0.0085)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_nanos(nanos: i64) -> Money {
        Money(nanos.max(0))
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    /// The amount as a decimal number of currency units.
    pub fn units(self) -> f64 {
        self.0 as f64 / NANOS_PER_UNIT as f64
    }

    /// `units` currency units, or why not: negative, not a number, too large or finer than a
    /// billionth.
    pub fn from_units(units: f64) -> Result<Money, String> {
        if !units.is_finite() || units < 0.0 {
            return Err(format!("{units} is not an amount (a number of at least 0)"));
        }
        if units > MAX_AMOUNT_UNITS {
            return Err(format!("{units} is more than {MAX_AMOUNT_UNITS}"));
        }
        let nanos = units * NANOS_PER_UNIT as f64;
        if (nanos - nanos.round()).abs() > 1e-3 * nanos.max(1.0) {
            return Err(format!("{units} has more than 9 decimal places"));
        }
        Ok(Money(nanos.round() as i64))
    }

    /// An amount written as a decimal (`"-0.01300"`, as Twilio reports prices: the sign is
    /// dropped, since a charge is a charge either way).
    pub fn parse_decimal(text: &str) -> Option<Money> {
        let digits = text.trim().trim_start_matches(['-', '+']);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) || whole.len() > 9 {
            return None;
        }
        let mut nanos: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        nanos *= NANOS_PER_UNIT;
        let mut scale = NANOS_PER_UNIT / 10;
        for digit in fraction.bytes().take(9) {
            nanos += i64::from(digit - b'0') * scale;
            scale /= 10;
        }
        Some(Money(nanos))
    }

    /// `quantity` of a unit priced `self`, `per` units at a time, rounded to the nearest
    /// billionth.
    fn times(self, quantity: i64, per: i64) -> Money {
        let exact = i128::from(self.0) * i128::from(quantity.max(0));
        let per = i128::from(per);
        Money(i64::try_from((exact + per / 2) / per).unwrap_or(i64::MAX))
    }

    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.units())
    }
}

/// A number, or a decimal in a string (`"0.0085"`), as people write amounts.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let written = serde_json::Value::deserialize(deserializer)?;
        let units = match &written {
            serde_json::Value::Number(number) => number.as_f64(),
            serde_json::Value::String(text) => text.trim().parse().ok(),
            _ => None,
        };
        let units = units.ok_or_else(|| serde::de::Error::custom(format!("{written} is not an amount such as 0.0085")))?;
        Money::from_units(units).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Money {
    /// At least two decimals, more only where the amount has them (`0.0085`, `12.50`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = self.0 / NANOS_PER_UNIT;
        let fraction = format!("{:09}", self.0 % NANOS_PER_UNIT);
        let kept = fraction.trim_end_matches('0');
        write!(f, "{whole}.{}", if kept.len() < 2 { &fraction[..2] } else { kept })
    }
}

/// An ISO 4217 currency code (`USD`, `EUR`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[schema(value_type = String, example = "USD", pattern = "^[A-Z]{3}$")]
pub struct Currency(String);

impl Currency {
    pub fn parse(text: &str) -> Result<Currency, Invalid> {
        let code = text.trim().to_ascii_uppercase();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Invalid::new("currency", format!("`{text}` is not a currency code; use three letters such as USD or EUR")));
        }
        Ok(Currency(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency("USD".to_owned())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        Currency::parse(&String::deserialize(deserializer)?).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// What a language model provider charges, in the organisation's currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPrices {
    pub input_per_million_tokens: Money,
    pub output_per_million_tokens: Money,
}

/// What a speech provider charges, in the organisation's currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechPrices {
    /// Speech-to-text, per minute of audio transcribed.
    pub transcription_per_minute: Money,
    /// Text-to-speech, per character synthesised.
    pub synthesis_per_character: Money,
}

/// What a phone provider charges beyond the call itself, in the organisation's currency.
/// Twilio reports each call's own price after the call; `per_minute` stands in for it until
/// then, and when it never comes or is in another currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CarrierPrices {
    /// The call itself, per started minute.
    pub per_minute: Money,
    /// ConversationRelay (Twilio's speech), per started minute.
    pub conversation_relay_per_minute: Money,
    /// Media Streams, per started minute.
    pub media_streams_per_minute: Money,
    /// Call recording, per started minute.
    pub recording_per_minute: Money,
}

text_enum!(
    /// How a call's audio travelled.
    Transport { ConversationRelay => "conversation_relay", MediaStreams => "media_streams" }
);

/// What one call used, as its session measured it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CallUsage {
    pub transport: Option<Transport>,
    /// The LLM provider that answered.
    pub model_provider_id: Option<LlmProviderId>,
    pub model_input_tokens: i64,
    pub model_output_tokens: i64,
    /// Some token counts are estimates (about four characters a token): the provider did not
    /// report usage for every request, or a request was cut short.
    pub model_tokens_estimated: bool,
    /// Who transcribed the caller (absent: the built-in engine or Twilio's).
    pub transcription_provider_id: Option<SpeechProviderId>,
    /// Caller audio sent to speech-to-text, in milliseconds.
    pub transcription_ms: i64,
    /// Who spoke for the agent (absent: the built-in engine or Twilio's).
    pub synthesis_provider_id: Option<SpeechProviderId>,
    /// Characters sent to text-to-speech.
    pub synthesis_characters: i64,
    /// The AI classification of the call after it ended (automations' `ai_classify`): the
    /// provider that classified it and the tokens it took, estimated as for the conversation.
    pub classification_provider_id: Option<LlmProviderId>,
    pub classification_input_tokens: i64,
    pub classification_output_tokens: i64,
    pub classification_tokens_estimated: bool,
}

impl CallUsage {
    /// This usage with the classification's tokens of `earlier` (what the session stores does
    /// not know of them).
    pub fn keeping_classification_of(self, earlier: &CallUsage) -> CallUsage {
        CallUsage {
            classification_provider_id: earlier.classification_provider_id,
            classification_input_tokens: earlier.classification_input_tokens,
            classification_output_tokens: earlier.classification_output_tokens,
            classification_tokens_estimated: earlier.classification_tokens_estimated,
            ..self
        }
    }
}

/// The price lists a call's cost is computed with.
#[derive(Clone, Debug, Default)]
pub struct PriceLists {
    pub currency: Currency,
    pub carrier: CarrierPrices,
    pub model: Option<ModelPrices>,
    pub classification: Option<ModelPrices>,
    pub transcription: Option<SpeechPrices>,
    pub synthesis: Option<SpeechPrices>,
}

/// A price the carrier reported for a call.
#[derive(Clone, Debug, PartialEq)]
pub struct CarrierPrice {
    pub amount: Money,
    pub currency: Currency,
}

/// Everything a call's cost depends on.
#[derive(Clone, Debug, Default)]
pub struct CostInputs {
    pub usage: CallUsage,
    /// The call's billable length (the carrier's, else from answer to end).
    pub call_secs: i64,
    pub recording_secs: Option<i64>,
    pub carrier_price: Option<CarrierPrice>,
    /// No carrier price is coming any more: the rate stands for it for good.
    pub carrier_price_given_up: bool,
    pub prices: PriceLists,
}

text_enum!(
    /// What a line of a call's cost is for.
    CostItem {
        Carrier => "carrier",
        ConversationRelay => "conversation_relay",
        MediaStreams => "media_streams",
        Recording => "recording",
        ModelInput => "model_input",
        ModelOutput => "model_output",
        Classification => "classification",
        Transcription => "transcription",
        Synthesis => "synthesis",
    }
);

text_enum!(
    /// Where a line's amount comes from: the carrier's own price for the call, the
    /// organisation's price list, or the price list applied to estimated usage.
    CostBasis { CarrierPrice => "carrier_price", PriceList => "price_list", Estimated => "estimated" }
);

text_enum!(
    /// The unit a line's quantity counts.
    CostUnit { Minute => "minute", MillionTokens => "million_tokens", Character => "character" }
);

/// One line of a call's cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostLine {
    pub item: CostItem,
    /// How much was used, in `unit`s (speech-to-text minutes and tokens are fractional).
    pub quantity: f64,
    pub unit: CostUnit,
    /// The price of one unit; absent for the carrier's own price and the classification (input
    /// and output priced apart).
    pub unit_price: Option<Money>,
    pub amount: Money,
    pub basis: CostBasis,
}

/// A call's cost with its breakdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallCost {
    pub currency: Currency,
    pub total: Money,
    /// Whether the amount is settled: the carrier's price is in (or will not come). Until then
    /// the carrier line is the price list's per-minute rate.
    #[serde(rename = "final")]
    pub settled: bool,
    pub lines: Vec<CostLine>,
}

/// The line for `quantity` counted in `per`ths of `unit` at `unit_price` a unit; none when nothing
/// was used.
fn priced(item: CostItem, quantity: i64, unit: CostUnit, unit_price: Money, per: i64, basis: CostBasis) -> Option<CostLine> {
    (quantity > 0).then(|| CostLine {
        item,
        quantity: quantity as f64 / per as f64,
        unit,
        unit_price: Some(unit_price),
        amount: unit_price.times(quantity, per),
        basis,
    })
}

/// Started minutes of `secs` seconds, as carriers bill.
fn started_minutes(secs: i64) -> i64 {
    (secs.max(0) + 59) / 60
}

impl CostInputs {
    /// The cost of the call, line by line. Lines with nothing used are left out.
    pub fn cost(&self) -> CallCost {
        let prices = &self.prices;
        let usage = &self.usage;
        let mut lines = Vec::new();
        let minutes = started_minutes(self.call_secs);
        let reported = self.carrier_price.as_ref().filter(|p| p.currency == prices.currency);
        match reported {
            Some(price) if minutes > 0 || price.amount > Money::ZERO => lines.push(CostLine {
                item: CostItem::Carrier,
                quantity: minutes as f64,
                unit: CostUnit::Minute,
                unit_price: None,
                amount: price.amount,
                basis: CostBasis::CarrierPrice,
            }),
            _ => lines.extend(priced(CostItem::Carrier, minutes, CostUnit::Minute, prices.carrier.per_minute, 1, CostBasis::PriceList)),
        }
        let transport = match usage.transport {
            Some(Transport::ConversationRelay) => Some((CostItem::ConversationRelay, prices.carrier.conversation_relay_per_minute)),
            Some(Transport::MediaStreams) => Some((CostItem::MediaStreams, prices.carrier.media_streams_per_minute)),
            None => None,
        };
        if let Some((item, per_minute)) = transport {
            lines.extend(priced(item, minutes, CostUnit::Minute, per_minute, 1, CostBasis::PriceList));
        }
        if let Some(secs) = self.recording_secs {
            let per_minute = prices.carrier.recording_per_minute;
            lines.extend(priced(CostItem::Recording, started_minutes(secs), CostUnit::Minute, per_minute, 1, CostBasis::PriceList));
        }
        let model = prices.model.unwrap_or_default();
        let token_basis = if usage.model_tokens_estimated { CostBasis::Estimated } else { CostBasis::PriceList };
        let million = 1_000_000;
        lines.extend(priced(
            CostItem::ModelInput,
            usage.model_input_tokens,
            CostUnit::MillionTokens,
            model.input_per_million_tokens,
            million,
            token_basis,
        ));
        lines.extend(priced(
            CostItem::ModelOutput,
            usage.model_output_tokens,
            CostUnit::MillionTokens,
            model.output_per_million_tokens,
            million,
            token_basis,
        ));
        let (input, output) = (usage.classification_input_tokens.max(0), usage.classification_output_tokens.max(0));
        if input + output > 0 {
            let prices = prices.classification.unwrap_or_default();
            let amount = prices
                .input_per_million_tokens
                .times(input, million)
                .saturating_add(prices.output_per_million_tokens.times(output, million));
            let basis = if usage.classification_tokens_estimated { CostBasis::Estimated } else { CostBasis::PriceList };
            // Input and output priced apart: the line shows their sum and no single unit price.
            let quantity = (input + output) as f64 / million as f64;
            lines.push(CostLine {
                item: CostItem::Classification,
                quantity,
                unit: CostUnit::MillionTokens,
                unit_price: None,
                amount,
                basis,
            });
        }
        let per_minute = prices.transcription.unwrap_or_default().transcription_per_minute;
        lines.extend(priced(CostItem::Transcription, usage.transcription_ms, CostUnit::Minute, per_minute, 60_000, CostBasis::PriceList));
        let per_character = prices.synthesis.unwrap_or_default().synthesis_per_character;
        lines.extend(priced(CostItem::Synthesis, usage.synthesis_characters, CostUnit::Character, per_character, 1, CostBasis::PriceList));
        let total = lines.iter().fold(Money::ZERO, |sum, l| sum.saturating_add(l.amount));
        CallCost { currency: prices.currency.clone(), total, settled: reported.is_some() || self.carrier_price_given_up, lines }
    }
}

text_enum!(
    /// A budget threshold.
    BudgetLevel { Warning => "warning", Limit => "limit" }
);

/// A monthly spending limit for the organisation (calendar months in UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The most the organisation means to spend on calls in a month.
    pub monthly_limit: Money,
    /// At this share of the limit, `budget_threshold_reached` automations run (level `warning`);
    /// they run again (level `limit`) when the limit is reached.
    #[serde(default = "default_warn_percent")]
    pub warn_at_percent: i64,
    /// Once the limit is reached, new calls hear `stop_message` and are hung up on until the
    /// month ends or the limit is raised.
    #[serde(default)]
    pub hard_stop: bool,
    #[serde(default = "default_stop_message")]
    pub stop_message: String,
}

fn default_warn_percent() -> i64 {
    80
}

/// What callers hear when the budget has stopped new calls.
pub const DEFAULT_STOP_MESSAGE: &str = "We're sorry, we can't take your call right now. Please try again later.";

fn default_stop_message() -> String {
    DEFAULT_STOP_MESSAGE.to_owned()
}

impl Budget {
    /// The budget with a trimmed message, or what to fix.
    pub fn validate(mut self) -> Result<Budget, Invalid> {
        if self.monthly_limit == Money::ZERO {
            return Err(Invalid::new("budget.monthly_limit", "must be more than 0 (remove the budget to spend without a limit)"));
        }
        in_range("budget.warn_at_percent", self.warn_at_percent, 1, 100, "percent")?;
        self.stop_message = required_text("budget.stop_message", &self.stop_message, 400)?;
        Ok(self)
    }

    /// The highest threshold `spent` has reached, if any.
    pub fn level(&self, spent: Money) -> Option<BudgetLevel> {
        if spent >= self.monthly_limit {
            Some(BudgetLevel::Limit)
        } else if i128::from(spent.nanos()) * 100 >= i128::from(self.monthly_limit.nanos()) * i128::from(self.warn_at_percent) {
            Some(BudgetLevel::Warning)
        } else {
            None
        }
    }

    /// Whether new calls are turned away with `spent` spent this month.
    pub fn stops_calls(&self, spent: Money) -> bool {
        self.hard_stop && spent >= self.monthly_limit
    }
}

/// The calendar month (UTC) of `at`, as `2026-11`.
pub fn month_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// The organisation's month against its budget, as a budget event and the API report it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetStatus {
    /// The calendar month (UTC), `YYYY-MM`.
    pub month: String,
    pub currency: Currency,
    pub spent: Money,
    pub monthly_limit: Money,
    /// `spent` as a whole percentage of the limit.
    pub percent: i64,
    /// The highest threshold reached, if any.
    pub level: Option<BudgetLevel>,
    /// New calls are being turned away.
    pub stopping_calls: bool,
}

impl BudgetStatus {
    pub fn new(budget: &Budget, currency: Currency, month: String, spent: Money) -> BudgetStatus {
        let percent = (i128::from(spent.nanos()) * 100 / i128::from(budget.monthly_limit.nanos().max(1))) as i64;
        BudgetStatus {
            month,
            currency,
            spent,
            monthly_limit: budget.monthly_limit,
            percent,
            level: budget.level(spent),
            stopping_calls: budget.stops_calls(spent),
        }
    }
}

/// The organisation's spending in the current month.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Spending {
    /// The calendar month (UTC), `YYYY-MM`.
    pub month: String,
    pub currency: Currency,
    /// The costs of the month's calls so far (provisional ones included; erased calls too).
    pub spent: Money,
    /// The calls priced so far.
    pub calls: i64,
    /// Where the month stands against the budget, when there is one.
    pub budget: Option<BudgetStatus>,
}

/// What the organisation says about money: its currency and its budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostSettings {
    /// Every price and cost is in this currency.
    #[serde(default)]
    pub currency: Currency,
    /// Absent: no limit.
    #[serde(default)]
    pub budget: Option<Budget>,
}

impl CostSettings {
    pub fn validate(self) -> Result<CostSettings, Invalid> {
        Ok(CostSettings { budget: self.budget.map(Budget::validate).transpose()?, ..self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(units: f64) -> Money {
        Money::from_units(units).unwrap()
    }

    #[test]
    fn amounts_are_exact_to_a_billionth() {
        assert_eq!(money(0.000015).nanos(), 15_000);
        assert_eq!(money(12.5).to_string(), "12.50");
        assert_eq!(money(0.0085).to_string(), "0.0085");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert!(Money::from_units(-1.0).unwrap_err().contains("at least 0"));
        assert!(Money::from_units(0.0000000001).unwrap_err().contains("9 decimal places"));
        assert_eq!(serde_json::to_string(&money(0.3)).unwrap(), "0.3");
        assert_eq!(serde_json::from_str::<Money>("\"0.0085\"").unwrap(), money(0.0085));
        assert!(serde_json::from_str::<Money>("\"lots\"").unwrap_err().to_string().contains("\"lots\" is not an amount"));
        assert_eq!(Money::parse_decimal("-0.01300"), Some(money(0.013)));
        assert_eq!(Money::parse_decimal("2"), Some(money(2.0)));
        assert_eq!(Money::parse_decimal("0.1234567891"), Some(money(0.123456789)));
        for bad in ["", "-", "1.2.3", "abc", "1e5", "."] {
            assert_eq!(Money::parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(Currency::parse(" eur ").unwrap().as_str(), "EUR");
        for bad in ["EURO", "E1R", ""] {
            assert!(Currency::parse(bad).unwrap_err().message.contains("three letters"));
        }
    }

    fn inputs() -> CostInputs {
        CostInputs {
            usage: CallUsage {
                transport: Some(Transport::MediaStreams),
                model_input_tokens: 12_000,
                model_output_tokens: 800,
                transcription_ms: 90_000,
                synthesis_characters: 1_000,
                ..CallUsage::default()
            },
            call_secs: 125,
            recording_secs: Some(125),
            prices: PriceLists {
                currency: Currency::default(),
                carrier: CarrierPrices {
                    per_minute: money(0.0085),
                    conversation_relay_per_minute: money(0.07),
                    media_streams_per_minute: money(0.004),
                    recording_per_minute: money(0.0025),
                },
                model: Some(ModelPrices { input_per_million_tokens: money(0.15), output_per_million_tokens: money(0.6) }),
                classification: None,
                transcription: Some(SpeechPrices { transcription_per_minute: money(0.006), synthesis_per_character: Money::ZERO }),
                synthesis: Some(SpeechPrices { transcription_per_minute: Money::ZERO, synthesis_per_character: money(0.000015) }),
            },
            ..CostInputs::default()
        }
    }

    fn amount(cost: &CallCost, item: CostItem) -> Option<Money> {
        cost.lines.iter().find(|l| l.item == item).map(|l| l.amount)
    }

    #[test]
    fn each_line_prices_what_was_used() {
        let cost = inputs().cost();
        assert!(!cost.settled, "no carrier price yet");
        assert_eq!(amount(&cost, CostItem::Carrier), Some(money(0.0255)), "3 started minutes");
        assert_eq!(amount(&cost, CostItem::MediaStreams), Some(money(0.012)));
        assert_eq!(amount(&cost, CostItem::ConversationRelay), None);
        assert_eq!(amount(&cost, CostItem::Recording), Some(money(0.0075)));
        assert_eq!(amount(&cost, CostItem::ModelInput), Some(money(0.0018)));
        assert_eq!(amount(&cost, CostItem::ModelOutput), Some(money(0.00048)));
        assert_eq!(amount(&cost, CostItem::Transcription), Some(money(0.009)), "1.5 minutes, not rounded up");
        assert_eq!(amount(&cost, CostItem::Synthesis), Some(money(0.015)));
        let sum = cost.lines.iter().map(|l| l.amount.nanos()).sum::<i64>();
        assert_eq!(cost.total.nanos(), sum);
        assert_eq!(cost.lines.iter().find(|l| l.item == CostItem::Transcription).unwrap().quantity, 1.5);
    }

    #[test]
    fn the_carriers_price_replaces_the_rate_and_settles_the_cost() {
        let mut inputs = inputs();
        inputs.carrier_price = Some(CarrierPrice { amount: money(0.026), currency: Currency::default() });
        let cost = inputs.cost();
        assert!(cost.settled);
        let carrier = cost.lines.iter().find(|l| l.item == CostItem::Carrier).unwrap();
        assert_eq!((carrier.amount, carrier.basis, carrier.unit_price), (money(0.026), CostBasis::CarrierPrice, None));
        // A price in another currency is not converted: the rate stands, and the cost waits
        // no longer once the price is given up on.
        inputs.carrier_price = Some(CarrierPrice { amount: money(0.026), currency: Currency::parse("EUR").unwrap() });
        inputs.carrier_price_given_up = true;
        let cost = inputs.cost();
        assert_eq!(amount(&cost, CostItem::Carrier), Some(money(0.0255)));
        assert!(cost.settled);
    }

    #[test]
    fn the_classification_is_a_line_of_its_own() {
        let mut inputs = inputs();
        inputs.usage.classification_input_tokens = 2_000;
        inputs.usage.classification_output_tokens = 100;
        inputs.prices.classification = Some(ModelPrices { input_per_million_tokens: money(1.0), output_per_million_tokens: money(2.0) });
        let cost = inputs.cost();
        let line = cost.lines.iter().find(|l| l.item == CostItem::Classification).unwrap();
        assert_eq!((line.amount, line.unit_price, line.basis), (money(0.0022), None, CostBasis::PriceList));
        let kept = CallUsage::default().keeping_classification_of(&inputs.usage);
        assert_eq!((kept.classification_input_tokens, kept.model_input_tokens), (2_000, 0));
    }

    #[test]
    fn estimated_tokens_are_marked_and_unused_items_left_out() {
        let mut inputs = inputs();
        inputs.usage = CallUsage { model_input_tokens: 10, model_tokens_estimated: true, ..CallUsage::default() };
        inputs.recording_secs = None;
        let cost = inputs.cost();
        let items: Vec<CostItem> = cost.lines.iter().map(|l| l.item).collect();
        assert_eq!(items, [CostItem::Carrier, CostItem::ModelInput]);
        assert_eq!(cost.lines[1].basis, CostBasis::Estimated);
    }

    #[test]
    fn budgets_warn_then_stop() {
        let budget = Budget { monthly_limit: money(100.0), warn_at_percent: 80, hard_stop: true, stop_message: "x".into() };
        assert_eq!(budget.level(money(79.99)), None);
        assert_eq!(budget.level(money(80.0)), Some(BudgetLevel::Warning));
        assert_eq!(budget.level(money(100.0)), Some(BudgetLevel::Limit));
        assert!(!budget.stops_calls(money(99.0)) && budget.stops_calls(money(100.0)));
        let status = BudgetStatus::new(&budget, Currency::default(), "2026-11".into(), money(85.5));
        assert_eq!((status.percent, status.level), (85, Some(BudgetLevel::Warning)));
        let zero = Budget { monthly_limit: Money::ZERO, ..budget.clone() };
        assert!(zero.validate().unwrap_err().message.contains("more than 0"));
        assert_eq!(month_of("2026-11-30T23:59:59Z".parse().unwrap()), "2026-11");
        assert_eq!(month_of("2026-12-01T00:00:00Z".parse().unwrap()), "2026-12");
    }
}
