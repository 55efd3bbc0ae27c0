//! Twilio's own price for each call. Twilio fills a call's `price` in a while after the call
//! ends, so the periodic sweep asks for it (Calls API) until it is there; until then, and when
//! it never comes (`costs::PRICE_CHECKS` asks), the phone provider's per-minute rate stands for
//! it in the call's cost (`storage::costs`).

use chrono::{DateTime, Duration, Utc};

use super::provisioning;
use super::rest::TwilioClient;
use crate::domain::call::Call;
use crate::domain::cost::{CarrierPrice, Currency, Money};
use crate::storage::{Db, Result, costs};

/// How long after a call is final its price is first asked for.
const FIRST_ASK_AFTER: Duration = Duration::minutes(2);
/// Calls asked about per sweep.
const SWEEP_BATCH: i64 = 200;

/// Asks Twilio for the price of every call final at `now` still without one; returns how many
/// prices came in.
pub async fn settle_prices(db: &Db, client: &TwilioClient, now: DateTime<Utc>) -> Result<usize> {
    let mut priced = 0;
    for call in costs::awaiting_carrier_price(db, now - FIRST_ASK_AFTER, SWEEP_BATCH).await? {
        let (price, give_up) = ask(db, client, &call).await;
        priced += usize::from(price.is_some());
        costs::record_carrier_price(db, call.org_id, call.id, price.as_ref(), give_up).await?;
    }
    Ok(priced)
}

/// Twilio's price for `call`, and whether to stop asking (the call or its provider is gone).
async fn ask(db: &Db, client: &TwilioClient, call: &Call) -> (Option<CarrierPrice>, bool) {
    let Some(provider) = call.provider_id else { return (None, true) };
    let credentials = match provisioning::credentials(db, call.org_id, provider).await {
        Ok(credentials) => credentials,
        Err(e) => {
            tracing::warn!(call = %call.id, error = ?e, "cannot ask Twilio for the call's price: the provider's credentials are gone");
            return (None, true);
        }
    };
    match client.fetch_call(&credentials, &call.call_sid).await {
        Ok(remote) => {
            let amount = remote.price.as_deref().and_then(Money::parse_decimal);
            let currency = remote.price_unit.as_deref().and_then(|unit| Currency::parse(unit).ok());
            match (amount, currency) {
                (Some(amount), Some(currency)) => (Some(CarrierPrice { amount, currency }), false),
                _ => (None, false),
            }
        }
        Err(e) => {
            tracing::warn!(call = %call.id, error = %e, "could not ask Twilio for the call's price");
            (None, e.is_not_found())
        }
    }
}
