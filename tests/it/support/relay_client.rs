//! Plays Twilio's side of a ConversationRelay WebSocket: signs the handshake, sends `setup`,
//! `prompt`, `interrupt`, `dtmf`, and reads the agent's `text` tokens until `last`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub struct RelayClient {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the agent sent for one utterance.
#[derive(Debug, Default)]
pub struct Utterance {
    pub text: String,
    pub tokens: usize,
}

impl RelayClient {
    /// Opens the relay socket of `call_id`, signed with `auth_token` (or unsigned).
    pub async fn connect(
        addr: std::net::SocketAddr,
        call_id: &str,
        auth_token: Option<&str>,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://{addr}/twilio/relay/{call_id}");
        let mut request = url.as_str().into_client_request().unwrap();
        if let Some(token) = auth_token {
            let signature = switchboard::telephony::twilio::signature::sign(token, &url, &[]);
            request.headers_mut().insert("X-Twilio-Signature", signature.parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { socket })
    }

    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.unwrap();
    }

    pub async fn setup(&mut self, call_sid: &str) {
        self.send(json!({ "type": "setup", "sessionId": "VX1", "accountSid": "AC1", "callSid": call_sid, "from": "+14155550123", "to": "+14155550100",
            "callType": "PSTN", "direction": "inbound", "callStatus": "RINGING", "customParameters": {} })).await;
    }

    pub async fn say(&mut self, words: &str) {
        self.send(json!({ "type": "prompt", "voicePrompt": words, "lang": "en-US", "last": true })).await;
    }

    /// The next JSON message from the agent (fails after 10 s).
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let message =
                tokio::time::timeout(Duration::from_secs(10), self.socket.next()).await.expect("the agent answers within 10 s")?;
            match message.ok()? {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads `text` messages until one has `last: true`.
    pub async fn utterance(&mut self) -> Utterance {
        let mut utterance = Utterance::default();
        loop {
            let message = self.next().await.expect("the socket stays open during an utterance");
            assert_eq!(message["type"], "text", "expected speech, got {message}");
            utterance.text.push_str(message["token"].as_str().unwrap());
            utterance.tokens += 1;
            if message["last"] == true {
                return utterance;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
