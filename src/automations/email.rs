//! E-mail actions through the configured SMTP server (`smtp_url`): `smtp://` plain,
//! `smtp://…?tls=required` for STARTTLS, `smtps://` for TLS, with `user:password@` for
//! authentication. Plain-text messages.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::ActionError;

/// An SMTP connection pool and the sender's address.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| anyhow::anyhow!("smtp_url: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let from = from.parse().map_err(|e| anyhow::anyhow!("smtp_from: `{from}` is not an address ({e})"))?;
        Ok(Self { transport, from })
    }

    /// Whether the SMTP server answers (and takes the credentials), without sending anything.
    pub async fn check(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the connection was refused".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends one message to every address in `to`. Permanent SMTP refusals fail the action;
    /// everything else (server down, busy, timeouts) is retried.
    pub async fn send(&self, to: &[String], subject: &str, body: &str) -> Result<(), ActionError> {
        let mut message = Message::builder().from(self.from.clone()).subject(subject.replace(['\r', '\n'], " "));
        for address in to {
            let mailbox: Mailbox = address.parse().map_err(|e| ActionError::Fail(format!("`{address}` is not an address ({e})")))?;
            message = message.to(mailbox);
        }
        let message = message.header(ContentType::TEXT_PLAIN).body(body.to_owned()).map_err(|e| ActionError::Fail(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(ActionError::Fail(format!("the SMTP server refused the message: {e}"))),
            Err(e) => Err(ActionError::Retry(format!("sending through SMTP failed: {e}"))),
        }
    }
}
