//! Organization Settings → Costs: this month's spending against the budget, the currency and
//! budget form, and each provider's prices. Every form goes through the REST API's handlers.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Submitted, Viewer, redirect_with_notice};
use super::{ConsoleError, FormErrors, Layout, first_page};
use crate::domain::cost::{
    Budget, CarrierPrices, CostItem, CostLine, CostSettings, CostUnit, Currency, ModelPrices, Money, SpeechPrices, Spending,
};
use crate::domain::ids::{LlmProviderId, PhoneProviderId, SpeechProviderId};
use crate::domain::validation::Invalid;
use crate::http::AppState;
use crate::http::api::{costs as api, llm_providers, phone_providers, speech_providers};
use crate::http::error::ApiError;
use crate::http::input::{ApiJson, ApiPath};

/// One provider's row of the price table: what it is, and its prices as the form shows them
/// (field name, label, amount).
pub struct PricedRow {
    pub kind: &'static str,
    pub id: Uuid,
    pub name: String,
    pub prices: Vec<(&'static str, &'static str, Money)>,
}

#[derive(Template)]
#[template(path = "settings/costs.html")]
struct CostsPage {
    layout: Layout,
    settings: CostSettings,
    spending: Spending,
    rows: Vec<PricedRow>,
    errors: FormErrors,
    /// The provider whose price form the errors are about, if any.
    errors_for: Option<Uuid>,
}

impl CostsPage {
    /// Whether the errors shown are about provider `id`'s prices.
    fn errors_about(&self, id: &Uuid) -> bool {
        self.errors_for.as_ref() == Some(id)
    }
}

async fn costs_page(state: AppState, viewer: &Viewer, errors: FormErrors, errors_for: Option<Uuid>) -> Result<Response, ConsoleError> {
    let caller = || viewer.caller();
    let settings = api::get_settings(State(state.clone()), caller()).await?.0;
    let spending = api::spending(State(state.clone()), caller()).await?.0;
    let mut rows = Vec::new();
    for provider in phone_providers::list(State(state.clone()), caller(), first_page(None)).await?.0.data {
        let p = api::get_phone_prices(State(state.clone()), caller(), ApiPath(provider.id)).await?.0;
        let prices = vec![
            ("per_minute", "Call, per minute (until Twilio's own price comes in)", p.per_minute),
            ("conversation_relay_per_minute", "ConversationRelay, per minute", p.conversation_relay_per_minute),
            ("media_streams_per_minute", "Media Streams, per minute", p.media_streams_per_minute),
            ("recording_per_minute", "Recording, per minute", p.recording_per_minute),
        ];
        rows.push(PricedRow { kind: "phone", id: provider.id.0, name: provider.name, prices });
    }
    for provider in llm_providers::list(State(state.clone()), caller(), first_page(None)).await?.0.data {
        let p = api::get_model_prices(State(state.clone()), caller(), ApiPath(provider.id)).await?.0;
        let prices = vec![
            ("input_per_million_tokens", "Input, per million tokens", p.input_per_million_tokens),
            ("output_per_million_tokens", "Output, per million tokens", p.output_per_million_tokens),
        ];
        rows.push(PricedRow { kind: "llm", id: provider.id.0, name: provider.name, prices });
    }
    for provider in speech_providers::list(State(state.clone()), caller(), first_page(None)).await?.0.data {
        let p = api::get_speech_prices(State(state.clone()), caller(), ApiPath(provider.id)).await?.0;
        let prices = vec![
            ("transcription_per_minute", "Speech-to-text, per minute", p.transcription_per_minute),
            ("synthesis_per_character", "Text-to-speech, per character", p.synthesis_per_character),
        ];
        rows.push(PricedRow { kind: "speech", id: provider.id.0, name: provider.name, prices });
    }
    let status = if errors.any() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = CostsPage { layout: viewer.layout("Costs", "settings"), settings, spending, rows, errors, errors_for };
    Ok((status, viewer.render(&page)).into_response())
}

/// `GET /settings/costs`.
pub async fn costs(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ConsoleError> {
    costs_page(state, &viewer, FormErrors::default(), None).await
}

/// An amount typed in a form: empty is 0.
fn amount(field: &str, text: &str) -> Result<Money, Invalid> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Money::ZERO);
    }
    let units: f64 = text.parse().map_err(|_| Invalid::new(field, format!("`{text}` is not an amount such as 0.0085")))?;
    Money::from_units(units).map_err(|why| Invalid::new(field, why))
}

/// The currency and budget form; an empty limit means no budget.
#[derive(Deserialize)]
pub struct CostSettingsForm {
    currency: String,
    monthly_limit: String,
    warn_at_percent: String,
    hard_stop: Option<String>,
    stop_message: String,
}

impl CostSettingsForm {
    fn settings(&self) -> Result<CostSettings, Invalid> {
        let currency = Currency::parse(&self.currency)?;
        if self.monthly_limit.trim().is_empty() {
            return Ok(CostSettings { currency, budget: None });
        }
        let warn_at_percent = self
            .warn_at_percent
            .trim()
            .parse()
            .map_err(|_| Invalid::new("budget.warn_at_percent", "must be a whole number of percent, 1 to 100"))?;
        let budget = Budget {
            monthly_limit: amount("budget.monthly_limit", &self.monthly_limit)?,
            warn_at_percent,
            hard_stop: self.hard_stop.is_some(),
            stop_message: self.stop_message.clone(),
        };
        Ok(CostSettings { currency, budget: Some(budget) })
    }
}

/// `POST /settings/costs`.
pub async fn save_settings(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<CostSettingsForm>,
) -> Result<Response, ConsoleError> {
    let saved = match form.settings() {
        Ok(settings) => api::put_settings(State(state.clone()), viewer.caller(), ApiJson(settings)).await.map(|_| ()),
        Err(invalid) => Err(invalid.into()),
    };
    match saved {
        Ok(()) => Ok(redirect_with_notice(&viewer, "/settings/costs", "Currency and budget saved.")),
        Err(e) => costs_page(state, &viewer, FormErrors::from_api(e)?, None).await,
    }
}

/// A provider's price form: each field of its kind's price list, as typed.
#[derive(Deserialize)]
pub struct PricesForm {
    #[serde(flatten)]
    fields: std::collections::HashMap<String, String>,
}

impl PricesForm {
    fn amount(&self, field: &str) -> Result<Money, Invalid> {
        amount(field, self.fields.get(field).map_or("", String::as_str))
    }

    fn carrier(&self) -> Result<CarrierPrices, Invalid> {
        Ok(CarrierPrices {
            per_minute: self.amount("per_minute")?,
            conversation_relay_per_minute: self.amount("conversation_relay_per_minute")?,
            media_streams_per_minute: self.amount("media_streams_per_minute")?,
            recording_per_minute: self.amount("recording_per_minute")?,
        })
    }

    fn model(&self) -> Result<ModelPrices, Invalid> {
        Ok(ModelPrices {
            input_per_million_tokens: self.amount("input_per_million_tokens")?,
            output_per_million_tokens: self.amount("output_per_million_tokens")?,
        })
    }

    fn speech(&self) -> Result<SpeechPrices, Invalid> {
        Ok(SpeechPrices {
            transcription_per_minute: self.amount("transcription_per_minute")?,
            synthesis_per_character: self.amount("synthesis_per_character")?,
        })
    }
}

/// `POST /settings/costs/{kind}/{id}`: one provider's prices.
pub async fn save_prices(
    State(state): State<AppState>,
    Path((kind, id)): Path<(String, Uuid)>,
    Submitted { viewer, form }: Submitted<PricesForm>,
) -> Result<Response, ConsoleError> {
    let (s, caller) = (State(state.clone()), viewer.caller());
    let saved = match kind.as_str() {
        "phone" => match form.carrier() {
            Ok(prices) => api::put_phone_prices(s, caller, ApiPath(PhoneProviderId(id)), ApiJson(prices)).await.map(|_| ()),
            Err(invalid) => Err(invalid.into()),
        },
        "llm" => match form.model() {
            Ok(prices) => api::put_model_prices(s, caller, ApiPath(LlmProviderId(id)), ApiJson(prices)).await.map(|_| ()),
            Err(invalid) => Err(invalid.into()),
        },
        "speech" => match form.speech() {
            Ok(prices) => api::put_speech_prices(s, caller, ApiPath(SpeechProviderId(id)), ApiJson(prices)).await.map(|_| ()),
            Err(invalid) => Err(invalid.into()),
        },
        _ => Err(ApiError::NotFound("provider")),
    };
    match saved {
        Ok(()) => Ok(redirect_with_notice(&viewer, "/settings/costs", "Prices saved. Calls from now on are priced with them.")),
        Err(e) => costs_page(state, &viewer, FormErrors::from_api(e)?, Some(id)).await,
    }
}

/// What a line of a call's cost is for, as the call page names it.
pub fn line_label(line: &CostLine) -> &'static str {
    match line.item {
        CostItem::Carrier => "Call (carrier)",
        CostItem::ConversationRelay => "ConversationRelay",
        CostItem::MediaStreams => "Media Streams",
        CostItem::Recording => "Recording",
        CostItem::ModelInput => "Model input",
        CostItem::ModelOutput => "Model output",
        CostItem::Classification => "AI classification",
        CostItem::Transcription => "Speech-to-text",
        CostItem::Synthesis => "Text-to-speech",
    }
}

/// How much of it the call used, in words (`2 min`, `1,830 tokens`).
pub fn line_used(line: &CostLine) -> String {
    match line.unit {
        CostUnit::Minute => format!("{} min", (line.quantity * 100.0).round() / 100.0),
        CostUnit::MillionTokens => format!("{} tokens", (line.quantity * 1e6).round()),
        CostUnit::Character => format!("{} characters", line.quantity),
    }
}
