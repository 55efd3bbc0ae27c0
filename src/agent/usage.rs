//! Metering: what a call uses, counted as it is used. A call's [`UsageMeter`] is shared by its
//! model (wrapped in [`MeteredModel`]) and, on Media Streams calls, its speech clients
//! ([`MeteredHearing`], [`MeteredSpeaking`]); the session's call log stores the count when the
//! call ends, and `storage::costs` prices it.
//!
//! Tokens are the server's own count where it reports one (`stream_options.include_usage`);
//! otherwise, and for a request cut short (the caller spoke, the call ended), they are
//! estimated from the characters sent and received, and the usage says so.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::audio::Audio;
use crate::domain::cost::{CallUsage, Transport};
use crate::domain::ids::{LlmProviderId, SpeechProviderId};
use crate::providers::llm::{Answer, ChatModel, ChatRequest, LlmEvent, TokenUsage, estimate_tokens};
use crate::providers::speech::{Pending, SpeakingVoice, SpeechError, SpeechToText, TextToSpeech};

/// What one call has used so far.
#[derive(Clone, Default)]
pub struct UsageMeter(Arc<Mutex<CallUsage>>);

impl UsageMeter {
    pub fn new(transport: Transport) -> UsageMeter {
        UsageMeter(Arc::new(Mutex::new(CallUsage { transport: Some(transport), ..CallUsage::default() })))
    }

    /// The count so far.
    pub fn usage(&self) -> CallUsage {
        self.count().clone()
    }

    fn count(&self) -> std::sync::MutexGuard<'_, CallUsage> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tokens(&self, used: TokenUsage, estimated: bool) {
        let mut usage = self.count();
        usage.model_input_tokens += used.input;
        usage.model_output_tokens += used.output;
        usage.model_tokens_estimated |= estimated;
    }
}

/// A call's model, counting the tokens of every request.
pub struct MeteredModel {
    pub model: Arc<dyn ChatModel>,
    pub meter: UsageMeter,
}

impl MeteredModel {
    /// `model` of `provider` (none: the embedded model), counted by `meter`.
    pub fn new(model: Arc<dyn ChatModel>, provider: Option<LlmProviderId>, meter: UsageMeter) -> MeteredModel {
        meter.count().model_provider_id = provider;
        MeteredModel { model, meter }
    }
}

impl ChatModel for MeteredModel {
    fn warm(&self, conversation: ChatRequest) {
        self.model.warm(conversation);
    }

    fn stream(&self, request: ChatRequest) -> Answer {
        let input_estimate = request.estimated_input_tokens();
        Box::pin(MeteredAnswer {
            answer: self.model.stream(request),
            meter: self.meter.clone(),
            input_estimate,
            received: 0,
            reported: None,
            counted: false,
        })
    }
}

/// An answer on its way to the session, counted as it passes (no task of its own). Usage
/// reports are the meter's and are not passed on. The count is made before the answer's end is
/// passed on, so whoever reads the meter after the answer finds it counted; an answer dropped
/// before its end (the caller spoke, the call ended) is counted as far as it came.
struct MeteredAnswer {
    answer: Answer,
    meter: UsageMeter,
    input_estimate: i64,
    /// Characters of text and tool calls received.
    received: usize,
    reported: Option<TokenUsage>,
    counted: bool,
}

impl MeteredAnswer {
    fn count(&mut self) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        match self.reported {
            Some(usage) => self.meter.tokens(usage, false),
            // A request refused before it produced anything is not charged.
            None if self.received > 0 => {
                self.meter.tokens(TokenUsage { input: self.input_estimate, output: estimate_tokens(self.received) }, true)
            }
            None => {}
        }
    }
}

impl futures_util::Stream for MeteredAnswer {
    type Item = LlmEvent;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<LlmEvent>> {
        loop {
            let Some(event) = std::task::ready!(self.answer.as_mut().poll_next(cx)) else {
                self.count();
                return std::task::Poll::Ready(None);
            };
            match &event {
                LlmEvent::Usage(usage) => {
                    self.reported = Some(*usage);
                    continue;
                }
                LlmEvent::Token(text) => self.received += text.len(),
                LlmEvent::ToolCalls(calls) => self.received += calls.iter().map(|c| c.name.len() + c.arguments.len()).sum::<usize>(),
                LlmEvent::Done | LlmEvent::Failed(_) => self.count(),
            }
            return std::task::Poll::Ready(Some(event));
        }
    }
}

impl Drop for MeteredAnswer {
    fn drop(&mut self) {
        self.count();
    }
}

/// A call's speech-to-text, counting the audio it is sent.
pub struct MeteredHearing {
    pub stt: Arc<dyn SpeechToText>,
    pub meter: UsageMeter,
}

impl MeteredHearing {
    /// `stt` of `provider` (none: the built-in engine), counted by `meter`.
    pub fn new(stt: Arc<dyn SpeechToText>, provider: Option<SpeechProviderId>, meter: UsageMeter) -> MeteredHearing {
        meter.count().transcription_provider_id = provider;
        MeteredHearing { stt, meter }
    }
}

impl SpeechToText for MeteredHearing {
    fn transcribe<'a>(&'a self, utterance: &'a Audio, language: &'a str) -> Pending<'a, String> {
        let ms = utterance.samples.len() as i64 * 1000 / i64::from(utterance.rate.max(1));
        self.meter.count().transcription_ms += ms;
        self.stt.transcribe(utterance, language)
    }
}

/// A call's text-to-speech, counting the characters it is given.
pub struct MeteredSpeaking {
    pub tts: Arc<dyn TextToSpeech>,
    pub meter: UsageMeter,
}

impl MeteredSpeaking {
    /// `tts` of `provider` (none: the built-in engine), counted by `meter`.
    pub fn new(tts: Arc<dyn TextToSpeech>, provider: Option<SpeechProviderId>, meter: UsageMeter) -> MeteredSpeaking {
        meter.count().synthesis_provider_id = provider;
        MeteredSpeaking { tts, meter }
    }
}

impl TextToSpeech for MeteredSpeaking {
    fn synthesize(&self, text: &str, voice: &SpeakingVoice) -> mpsc::Receiver<Result<Audio, SpeechError>> {
        self.meter.count().synthesis_characters += text.chars().count() as i64;
        self.tts.synthesize(text, voice)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;
    use crate::providers::llm::ToolSpec;

    /// A model that answers with `events`, one by one.
    struct Scripted(Vec<LlmEvent>);

    impl ChatModel for Scripted {
        fn stream(&self, _: ChatRequest) -> Answer {
            let (tx, rx) = mpsc::channel(1);
            let events = self.0.clone();
            tokio::spawn(async move {
                for event in events {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            });
            crate::providers::llm::answer_from(rx)
        }
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            temperature: None,
            messages: vec![crate::providers::llm::ChatMessage::User { content: "x".repeat(400) }],
            tools: Vec::<ToolSpec>::new(),
            response_format: None,
        }
    }

    async fn drain(model: &MeteredModel, take: usize) {
        let mut answer = model.stream(request());
        for _ in 0..take {
            assert!(answer.next().await.is_some());
        }
        drop(answer);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    fn metered(events: Vec<LlmEvent>) -> MeteredModel {
        MeteredModel::new(Arc::new(Scripted(events)), Some(LlmProviderId::generate()), UsageMeter::new(Transport::ConversationRelay))
    }

    #[tokio::test]
    async fn reported_usage_is_counted_and_not_passed_on() {
        let model =
            metered(vec![LlmEvent::Token("Hello there".into()), LlmEvent::Usage(TokenUsage { input: 120, output: 3 }), LlmEvent::Done]);
        let mut answer = model.stream(request());
        let mut seen = Vec::new();
        while let Some(event) = answer.next().await {
            seen.push(event);
        }
        assert_eq!(seen, [LlmEvent::Token("Hello there".into()), LlmEvent::Done]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let usage = model.meter.usage();
        assert_eq!((usage.model_input_tokens, usage.model_output_tokens, usage.model_tokens_estimated), (120, 3, false));
    }

    #[tokio::test]
    async fn unreported_or_cut_short_requests_are_estimated() {
        let model = metered(vec![LlmEvent::Token("a".repeat(40)), LlmEvent::Done]);
        drain(&model, 2).await;
        let usage = model.meter.usage();
        assert!(usage.model_tokens_estimated);
        assert_eq!(usage.model_output_tokens, 10);
        assert!(usage.model_input_tokens >= 100, "the prompt's 400 characters: {}", usage.model_input_tokens);
        // Dropped after the first token: what was read is counted, added to the first request.
        let cut = vec![LlmEvent::Token("b".repeat(8)), LlmEvent::Token("c".repeat(80)), LlmEvent::Done];
        let model = MeteredModel { model: Arc::new(Scripted(cut)), meter: model.meter.clone() };
        drain(&model, 1).await;
        assert_eq!(model.meter.usage().model_output_tokens, 10 + 2, "the 8 characters read count; the 80 never read do not");
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing() {
        let failed = LlmEvent::Failed(crate::providers::llm::LlmError::Refused { status: 401, reason: "no".into() });
        let model = metered(vec![failed]);
        drain(&model, 1).await;
        assert_eq!(model.meter.usage().model_input_tokens, 0);
    }
}
