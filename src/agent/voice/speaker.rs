//! The agent's mouth: sentences synthesised one after another in the background, resampled to
//! the transport's rate and handed over piece by piece (the last piece of a sentence carries its
//! words), and a [`SpeechCache`] of fixed phrases (greetings, fillers) that start at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::TRANSPORT_RATE;
use crate::audio::resample::Resampler;
use crate::providers::speech::{SpeakingVoice, SpeechError, TextToSpeech};

/// A piece of synthesised speech at the transport's rate; the last piece of a sentence carries
/// the words the caller hears in it (none for words said aside, like a filler).
pub(super) struct Synthesized {
    pub audio: Vec<i16>,
    pub words: Option<String>,
}

/// Where the last complete sentence of `text` ends (after its punctuation and space), if any.
pub(super) fn last_sentence_end(text: &str) -> Option<usize> {
    let characters: Vec<(usize, char)> = text.char_indices().collect();
    characters
        .windows(2)
        .rev()
        .find(|pair| matches!(pair[0].1, '.' | '!' | '?' | ';' | ':') && pair[1].1.is_whitespace())
        .map(|pair| pair[1].0 + pair[1].1.len_utf8())
}

/// Where the first clause of `text` ends (after a comma and a space), if it has words: an
/// answer's first piece may stop there, so its audio starts sooner ("Sure, " before the rest).
pub(super) fn first_clause_end(text: &str) -> Option<usize> {
    let end = text.find(", ")? + 2;
    text[..end].chars().any(char::is_alphanumeric).then_some(end)
}

/// `text` cut into the sentences the voice synthesises one by one.
pub(super) fn sentences(text: &str) -> Vec<String> {
    let mut rest = text.to_owned();
    let mut out = Vec::new();
    while let Some(end) = rest.char_indices().find_map(|(i, c)| {
        let next = rest[i + c.len_utf8()..].chars().next();
        (matches!(c, '.' | '!' | '?' | ';' | ':') && next.is_some_and(char::is_whitespace))
            .then(|| i + c.len_utf8() + next.map_or(0, char::len_utf8))
    }) {
        out.push(rest.drain(..end).collect());
    }
    if !rest.trim().is_empty() {
        out.push(rest);
    }
    out
}

/// What a synthesiser, a voice and a sentence sound like: the synthesiser is named with its
/// settings' version, so a changed provider is a different key.
type CacheKey = (String, SpeakingVoice, String);

/// The most sentences the cache keeps (about 3 s of 8 kHz audio each: some 25 MB at most).
const CACHE_ENTRIES: usize = 512;

/// Synthesised fixed phrases at the transport's rate, shared by the calls of this process. The
/// oldest entry goes when it is full.
#[derive(Clone, Default)]
pub struct SpeechCache {
    inner: Arc<Mutex<CachedSpeech>>,
}

/// The cached audio, and the keys oldest first.
#[derive(Default)]
struct CachedSpeech {
    entries: HashMap<CacheKey, Arc<Vec<i16>>>,
    order: VecDeque<CacheKey>,
}

impl SpeechCache {
    fn get(&self, key: &CacheKey) -> Option<Arc<Vec<i16>>> {
        self.inner.lock().expect("the cache lock is never poisoned").entries.get(key).cloned()
    }

    fn put(&self, key: CacheKey, audio: Vec<i16>) {
        let mut cached = self.inner.lock().expect("the cache lock is never poisoned");
        if cached.entries.insert(key.clone(), Arc::new(audio)).is_none() {
            cached.order.push_back(key);
            if cached.order.len() > CACHE_ENTRIES
                && let Some(oldest) = cached.order.pop_front()
            {
                cached.entries.remove(&oldest);
            }
        }
    }

    /// Synthesises each sentence of `text` not cached yet and keeps it.
    pub async fn warm(&self, tts: &dyn TextToSpeech, synthesizer: &str, voice: &SpeakingVoice, text: &str) -> Result<(), SpeechError> {
        for sentence in sentences(text) {
            let key = (synthesizer.to_owned(), voice.clone(), sentence.clone());
            if self.get(&key).is_some() {
                continue;
            }
            let mut audio = Vec::new();
            let tail = synthesize(tts, &sentence, voice, |piece| {
                audio.extend(piece);
                std::future::ready(true)
            })
            .await?;
            audio.extend(tail.unwrap_or_default());
            self.put(key, audio);
        }
        Ok(())
    }
}

/// Synthesises `sentence`, resampled to the transport's rate, handing each piece to `each` as it
/// comes; stops when `each` answers `false`. Returns the end of the audio the resampler's filter
/// still held (to go after the last piece), or `None` when it was told to stop.
async fn synthesize<F: Future<Output = bool>>(
    tts: &dyn TextToSpeech,
    sentence: &str,
    voice: &SpeakingVoice,
    mut each: impl FnMut(Vec<i16>) -> F,
) -> Result<Option<Vec<i16>>, SpeechError> {
    let mut pieces = tts.synthesize(sentence, voice);
    let mut resampler: Option<(u32, Resampler)> = None;
    while let Some(piece) = pieces.recv().await {
        let piece = piece?;
        if resampler.as_ref().is_none_or(|(rate, _)| *rate != piece.rate) {
            let new = Resampler::new(piece.rate, TRANSPORT_RATE).map_err(|e| SpeechError::Unreadable(e.to_string()))?;
            resampler = Some((piece.rate, new));
        }
        let mut audio = Vec::new();
        resampler.as_mut().expect("set above").1.process(&piece.samples, &mut audio);
        if !audio.is_empty() && !each(audio).await {
            return Ok(None);
        }
    }
    let mut tail = Vec::new();
    if let Some((_, resampler)) = resampler.as_mut() {
        resampler.finish(&mut tail);
    }
    Ok(Some(tail))
}

/// A sentence to say: its words, the voice, and whether the caller hears it as the agent's words
/// (a filler is said aside).
struct Line {
    words: String,
    voice: SpeakingVoice,
    aside: bool,
}

/// Synthesises sentences one after another, in the background; dropped (or replaced) to stop.
pub(super) struct Speaker {
    lines: mpsc::UnboundedSender<Line>,
    pub output: mpsc::Receiver<Synthesized>,
    pending: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Speaker {
    /// A speaker through `tts`, known to `cache` as `synthesizer`.
    pub fn start(tts: Arc<dyn TextToSpeech>, cache: SpeechCache, synthesizer: String) -> Self {
        let (lines, mut queue) = mpsc::unbounded_channel::<Line>();
        let (out, output) = mpsc::channel(16);
        let pending = Arc::new(AtomicUsize::new(0));
        let counter = pending.clone();
        let task = tokio::spawn(async move {
            while let Some(line) = queue.recv().await {
                let heard = if line.aside { String::new() } else { line.words.clone() };
                let key = (synthesizer.clone(), line.voice.clone(), line.words.clone());
                if let Some(audio) = cache.get(&key) {
                    if out.send(Synthesized { audio: audio.to_vec(), words: Some(heard) }).await.is_err() {
                        return;
                    }
                } else {
                    // Each piece goes out as it comes; the last one waits to carry the words.
                    let mut last: Option<Vec<i16>> = None;
                    let result = synthesize(tts.as_ref(), &line.words, &line.voice, |piece| {
                        let earlier = last.replace(piece);
                        let out = out.clone();
                        async move {
                            match earlier {
                                Some(audio) => out.send(Synthesized { audio, words: None }).await.is_ok(),
                                None => true,
                            }
                        }
                    })
                    .await;
                    let mut last = last.unwrap_or_default();
                    match result {
                        Ok(Some(tail)) => last.extend(tail),
                        Ok(None) => return,
                        Err(e) => tracing::warn!(error = %e, "could not synthesise speech"),
                    }
                    if out.send(Synthesized { audio: last, words: Some(heard) }).await.is_err() {
                        return;
                    }
                }
                counter.fetch_sub(1, Ordering::SeqCst);
            }
        });
        Self { lines, output, pending, task }
    }

    /// Says a sentence as the agent's words.
    pub fn say(&self, words: String, voice: SpeakingVoice) {
        self.queue(Line { words, voice, aside: false });
    }

    /// Says a sentence that is not the agent's words (the caller hears it, the transcript and
    /// the model do not).
    pub fn say_aside(&self, words: String, voice: SpeakingVoice) {
        self.queue(Line { words, voice, aside: true });
    }

    fn queue(&self, line: Line) {
        if line.words.trim().is_empty() {
            return;
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        let _ = self.lines.send(line);
    }

    /// Whether sentences are still being synthesised.
    pub fn is_busy(&self) -> bool {
        self.pending.load(Ordering::SeqCst) > 0
    }

    /// Whether everything said has been synthesised and handed over.
    pub fn is_idle(&self) -> bool {
        !self.is_busy() && self.output.is_empty()
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_end_at_punctuation_followed_by_a_space() {
        assert_eq!(last_sentence_end("Hello. How"), Some(7));
        assert_eq!(last_sentence_end("It costs 3.50 dollars"), None);
        assert_eq!(last_sentence_end("Yes! Sure? Ok"), Some(11));
        assert_eq!(last_sentence_end("Hello."), None, "the end of the text waits for more or for `last`");
        assert_eq!(sentences("Hello, this is Ava. How can I help?"), ["Hello, this is Ava. ", "How can I help?"]);
        assert_eq!(sentences("It costs 3.50 dollars."), ["It costs 3.50 dollars."]);
        assert!(sentences("  ").is_empty());
        assert_eq!(first_clause_end("Sure, I can help"), Some(6));
        assert_eq!(first_clause_end("It costs 1,250 dollars"), None);
        assert_eq!(first_clause_end(", then"), None);
    }
}
