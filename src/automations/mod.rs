//! The automations worker: outbox events → runs → actions (DESIGN invariant 6). Every side
//! effect of an automation happens here, through the durable queue in `storage::automations`.
//!
//! Each poll (every half second, or at once when this process commits an event) hands new
//! events to their automations, then claims due runs, up to [`CONCURRENCY`] at a time. A run does its actions in order and records each one as it
//! finishes, so a retry resumes at the action that failed; a failing action is tried again with
//! exponential back-off and jitter until 24 hours after the run began, then the run is `dead`.
//! An action that cannot succeed however often it is tried (a refused target, a model that
//! keeps answering nonsense) fails the run at once with a clear error.

pub mod classify;
pub mod email;
pub mod webhook;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::domain::automation::{Action, AutomationRun, RunStatus, template_context};
use crate::domain::event::{CallEvent, Resolution, Sentiment};
use crate::domain::template::Template;
use crate::domain::ticket::{TicketPriority, fit_ticket_text};
use crate::domain::time;
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::storage::automations::{self as queue, AttemptOutcome, ClaimedRun};
use crate::storage::{Db, tickets};

/// Runs worked on at once by one node.
pub const CONCURRENCY: usize = 4;
/// How often the queue is polled.
const POLL: Duration = Duration::from_millis(500);
/// How long a claim lasts; a worker that dies gives its run back after this.
pub const LEASE: Duration = Duration::from_secs(300);

/// Why an action did not succeed.
#[derive(Debug)]
pub enum ActionError {
    /// Worth trying again later (a receiver down, a timeout, a 5xx).
    Retry(String),
    /// Trying again cannot help.
    Fail(String),
}

/// What the worker needs.
#[derive(Clone)]
pub struct Worker {
    pub db: Db,
    pub webhooks: webhook::Deliverer,
    /// Where classification's model requests may go.
    pub egress: Egress,
    /// The embedded model, when classification has no provider.
    pub models: std::sync::Arc<LoadedModels>,
    pub mailer: Option<email::Mailer>,
    pub retry_base: Duration,
}

impl Worker {
    pub fn from_config(db: Db, config: &Config, egress: Egress, models: std::sync::Arc<LoadedModels>) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            webhooks: webhook::Deliverer::new(egress.clone()),
            egress,
            models,
            mailer: config.smtp_url.as_deref().map(|url| email::Mailer::new(url, &config.smtp_from)).transpose()?,
            retry_base: Duration::from_secs(config.automation_retry_base_secs),
        })
    }

    /// Works the queue until the task is dropped.
    pub async fn run(self) {
        let mut running = JoinSet::new();
        loop {
            if let Err(e) = queue::dispatch_events(&self.db, 100).await {
                tracing::warn!(error = ?e, "could not hand events to automations");
            }
            while running.len() < CONCURRENCY {
                let now = time::now();
                match queue::claim_due(&self.db, now, now + LEASE).await {
                    Ok(Some(claimed)) => {
                        let worker = self.clone();
                        running.spawn(async move { worker.execute(claimed).await });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = ?e, "could not claim an automation run");
                        break;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.db.outbox_written() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
    }

    /// Does the claimed run's remaining actions and records how the attempt ended.
    pub async fn execute(&self, claimed: ClaimedRun) {
        let ClaimedRun { run, automation, event } = claimed;
        let mut outputs = run.outputs.clone();
        let outcome = 'run: {
            for (index, action) in automation.spec.actions.iter().enumerate().skip(run.next_step as usize) {
                let context = template_context(&event, &outputs);
                let result = self.perform(&run, &event, index, action, &context).await;
                let failure = |message: String| format!("actions[{index}] ({}): {message}", action.kind());
                match result {
                    Ok(output) => {
                        outputs.push(output);
                        match queue::save_progress(&self.db, &run, index as i64 + 1, &outputs).await {
                            Ok(true) => {}
                            Ok(false) => return, // another worker took the run over
                            Err(e) => break 'run AttemptOutcome::RetryAt(time::now(), failure(format!("could not save progress: {e}"))),
                        }
                    }
                    Err(ActionError::Fail(message)) => break 'run AttemptOutcome::Stopped(RunStatus::Failed, failure(message)),
                    Err(ActionError::Retry(message)) => break 'run self.retry_or_give_up(&run, failure(message)),
                }
            }
            AttemptOutcome::Succeeded
        };
        if let AttemptOutcome::RetryAt(_, error) | AttemptOutcome::Stopped(_, error) = &outcome {
            tracing::warn!(run = %run.id, automation = %automation.id, attempt = run.attempts, %error, "automation action failed");
        }
        if let Err(e) = queue::finish_attempt(&self.db, &run, outcome).await {
            tracing::error!(run = %run.id, error = ?e, "could not record the end of an automation attempt; its lease will run out");
        }
    }

    fn retry_or_give_up(&self, run: &AutomationRun, error: String) -> AttemptOutcome {
        let delay = crate::domain::automation::retry_delay(self.retry_base, run.attempts, jitter());
        let at = time::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::TimeDelta::hours(1));
        if at > run.give_up_at {
            AttemptOutcome::Stopped(RunStatus::Dead, format!("{error} (gave up after {} attempts)", run.attempts))
        } else {
            AttemptOutcome::RetryAt(at, error)
        }
    }

    async fn perform(
        &self,
        run: &AutomationRun,
        event: &CallEvent,
        index: usize,
        action: &Action,
        context: &Value,
    ) -> Result<Value, ActionError> {
        let render =
            |text: &str| Template::parse("template", text).map(|t| t.render(context)).map_err(|e| ActionError::Fail(e.to_string()));
        match action {
            Action::Webhook { url, headers } => {
                let secret =
                    queue::signing_secret(&self.db, run.org_id, run.automation_id).await.map_err(|e| ActionError::Retry(e.to_string()))?;
                let status = self.webhooks.deliver(url, headers, event, &secret).await?;
                Ok(json!({ "action": "webhook", "url": url, "status": status }))
            }
            Action::Email { to, subject, body } => {
                let mailer = self.mailer.as_ref().ok_or_else(|| ActionError::Fail("no SMTP server is configured (set smtp_url)".into()))?;
                mailer.send(to, &render(subject)?, &render(body)?).await?;
                Ok(json!({ "action": "email", "to": to }))
            }
            Action::CreateRecord { title, description, priority, status } => {
                let app_id = event.call.app_id.ok_or_else(|| ActionError::Fail("the call belongs to no app".into()))?;
                let (title, description) = fit_ticket_text(&render(title)?, &render(description)?);
                let new = tickets::NewTicket {
                    app_id,
                    call_id: Some(event.call.id),
                    title,
                    description,
                    priority: priority.unwrap_or_else(|| priority_from(&context["classification"])),
                    status: *status,
                    source: format!("run:{}:{index}", run.id),
                };
                let ticket = tickets::create(&self.db, run.org_id, &new).await.map_err(|e| ActionError::Retry(e.to_string()))?;
                Ok(json!({ "action": "create_record", "ticket": ticket }))
            }
            Action::AiClassify { categories, instructions } => {
                let analysis =
                    classify::classify(&self.db, &self.egress, &self.models, run.org_id, event, categories, instructions).await?;
                crate::storage::calls::record_analysis(&self.db, run.org_id, event.call.id, &analysis)
                    .await
                    .map_err(|e| ActionError::Retry(e.to_string()))?;
                Ok(json!({ "action": "ai_classify", "classification": analysis }))
            }
        }
    }
}

/// A ticket's priority when the automation names none: high for an unhappy or escalated call.
fn priority_from(classification: &Value) -> TicketPriority {
    let unhappy = classification["sentiment"] == Sentiment::Negative.as_str();
    let escalated = classification["resolution"] == Resolution::Escalated.as_str();
    if unhappy || escalated { TicketPriority::High } else { TicketPriority::Normal }
}

/// A number in 0..1 from the system's random source.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    getrandom::getrandom(&mut bytes).expect("the system has a random source");
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}
