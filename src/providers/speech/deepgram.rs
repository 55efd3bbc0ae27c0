//! Deepgram's streaming recognition: a WebSocket per utterance to `{base_url}/listen` (the
//! scheme made `ws`/`wss`) with the model, encoding (16-bit PCM), rate and language in the query
//! and `Authorization: Token <key>`. The audio goes as binary messages, then
//! `{"type":"CloseStream"}`; Deepgram answers `Results` messages (interim ones with
//! `is_final: false`, which are ignored), `Metadata`, and closes. The transcript is the final
//! results joined. A refused handshake (a wrong key, an unknown model) is an HTTP error whose
//! body says why.

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{Pending, REQUEST_TIMEOUT, SpeechError, SpeechToText};
use crate::audio::Audio;
use crate::providers::egress::{ConnectError, Egress};

pub struct Deepgram {
    egress: Egress,
    base_url: String,
    api_key: Option<String>,
    model: String,
}

/// Audio goes out in pieces of this many samples (a quarter of a second at 8 kHz).
const PIECE: usize = 2000;

impl Deepgram {
    pub fn new(egress: Egress, base_url: &str, api_key: Option<String>, model: &str) -> Self {
        Self { egress, base_url: base_url.trim_end_matches('/').to_owned(), api_key, model: model.to_owned() }
    }

    fn listen_url(&self, rate: u32, language: &str) -> Result<url::Url, SpeechError> {
        let mut url = url::Url::parse(&format!("{}/listen", self.base_url)).map_err(|e| SpeechError::Unreachable(e.to_string()))?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| SpeechError::Unreachable("not an http(s) URL".into()))?;
        url.query_pairs_mut()
            .append_pair("model", &self.model)
            .append_pair("encoding", "linear16")
            .append_pair("sample_rate", &rate.to_string())
            .append_pair("channels", "1")
            .append_pair("language", language)
            .append_pair("punctuate", "true")
            .append_pair("smart_format", "true");
        Ok(url)
    }

    async fn listen(&self, utterance: &Audio, language: &str) -> Result<String, SpeechError> {
        let url = self.listen_url(utterance.rate, language)?;
        let stream = self.egress.connect(&url).await.map_err(|e| match e {
            ConnectError::Refused(refused) => SpeechError::NotAllowed(refused),
            ConnectError::Failed(e) => SpeechError::Unreachable(e.to_string()),
        })?;
        let mut request = url.as_str().into_client_request().map_err(|e| SpeechError::Unreachable(e.to_string()))?;
        if let Some(key) = &self.api_key {
            let value = format!("Token {key}").parse().map_err(|_| SpeechError::Unreachable("the API key cannot be sent".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        let (mut socket, _) = tokio_tungstenite::client_async_tls(request, stream).await.map_err(handshake_error)?;
        for piece in utterance.samples.chunks(PIECE) {
            let bytes: Vec<u8> = piece.iter().flat_map(|s| s.to_le_bytes()).collect();
            socket.send(Message::Binary(bytes.into())).await.map_err(|e| SpeechError::Unreachable(e.to_string()))?;
        }
        socket.send(Message::Text(r#"{"type":"CloseStream"}"#.into())).await.map_err(|e| SpeechError::Unreachable(e.to_string()))?;
        let mut finals: Vec<String> = Vec::new();
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Text(text)) => match serde_json::from_str::<Answer>(&text) {
                    Ok(Answer::Results { is_final: true, channel }) => {
                        let words = channel.alternatives.into_iter().next().map(|a| a.transcript).unwrap_or_default();
                        if !words.trim().is_empty() {
                            finals.push(words.trim().to_owned());
                        }
                    }
                    Ok(Answer::Error { description }) => return Err(SpeechError::Refused { status: 400, reason: description }),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "an unreadable Deepgram message"),
                },
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => return Err(SpeechError::Unreachable(e.to_string())),
            }
        }
        Ok(finals.join(" "))
    }
}

/// What Deepgram says on the socket (only what is used; other types are ignored).
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Answer {
    Results {
        #[serde(default)]
        is_final: bool,
        channel: Channel,
    },
    Error {
        #[serde(default)]
        description: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Channel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
}

fn handshake_error(e: tungstenite::Error) -> SpeechError {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            SpeechError::Refused { status, reason: crate::providers::llm::reason_from_body(body) }
        }
        other => SpeechError::Unreachable(other.to_string()),
    }
}

impl SpeechToText for Deepgram {
    fn transcribe<'a>(&'a self, utterance: &'a Audio, language: &'a str) -> Pending<'a, String> {
        Box::pin(async move {
            tokio::time::timeout_at(Instant::now() + REQUEST_TIMEOUT, self.listen(utterance, language))
                .await
                .map_err(|_| SpeechError::Timeout)?
        })
    }
}
