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
use crate::providers::llm::{ChatModel, ChatRequest, LlmEvent, TokenUsage, estimate_tokens};
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

    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<LlmEvent> {
        let (tx, rx) = mpsc::channel(64);
        let input_estimate = request.estimated_input_tokens();
        let mut answer = self.model.stream(request);
        let meter = self.meter.clone();
        tokio::spawn(async move {
            let mut received = 0;
            let mut reported = None;
            // Counted before the answer's end is passed on, so whoever reads the meter after the
            // answer finds it counted.
            let count = |reported: Option<TokenUsage>, received: usize| match reported {
                Some(usage) => meter.tokens(usage, false),
                // A request refused before it produced anything is not charged.
                None if received > 0 => meter.tokens(TokenUsage { input: input_estimate, output: estimate_tokens(received) }, true),
                None => {}
            };
            loop {
                let event = tokio::select! {
                    event = answer.recv() => event,
                    // The session stopped listening (the caller spoke, the call ended): the
                    // request stops with `answer` dropped, after what it produced so far.
                    () = tx.closed() => None,
                };
                let Some(event) = event else { return count(reported, received) };
                match &event {
                    LlmEvent::Usage(usage) => {
                        reported = Some(*usage);
                        continue;
                    }
                    LlmEvent::Token(text) => received += text.len(),
                    LlmEvent::ToolCalls(calls) => received += calls.iter().map(|c| c.name.len() + c.arguments.len()).sum::<usize>(),
                    LlmEvent::Done | LlmEvent::Failed(_) => {
                        count(reported, received);
                        let _ = tx.send(event).await;
                        return;
                    }
                }
                if tx.send(event).await.is_err() {
                    return count(reported, received);
                }
            }
        });
        rx
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

    use super::*;
    use crate::providers::llm::ToolSpec;

    /// A model that answers with `events`, one by one.
    struct Scripted(Vec<LlmEvent>);

    impl ChatModel for Scripted {
        fn stream(&self, _: ChatRequest) -> mpsc::Receiver<LlmEvent> {
            let (tx, rx) = mpsc::channel(1);
            let events = self.0.clone();
            tokio::spawn(async move {
                for event in events {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            });
            rx
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
            assert!(answer.recv().await.is_some());
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
        while let Some(event) = answer.recv().await {
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
        // Cut after the first token: what came so far is counted, added to the first request.
        let cut = vec![LlmEvent::Token("b".repeat(8)), LlmEvent::Token("c".repeat(80)), LlmEvent::Done];
        let model = MeteredModel { model: Arc::new(Scripted(cut)), meter: model.meter.clone() };
        drain(&model, 1).await;
        let output = model.meter.usage().model_output_tokens;
        assert!((12..=32).contains(&output), "10 before, then 2 or up to 22 by the time the stop is seen: {output}");
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing() {
        let failed = LlmEvent::Failed(crate::providers::llm::LlmError::Refused { status: 401, reason: "no".into() });
        let model = metered(vec![failed]);
        drain(&model, 1).await;
        assert_eq!(model.meter.usage().model_input_tokens, 0);
    }
}
