//! `/calls/{id}/recording`: a call's recording — what it is, its audio (streamed, with byte
//! ranges so a player can seek), and its erasure.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::domain::ids::CallId;
use crate::domain::recording::{Recording, RecordingStatus};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};
use crate::http::input::ApiPath;
use crate::recording::{RecordingAudio, RecordingError};
use crate::storage::{StorageError, calls, recordings};
use crate::telephony::twilio::recording::CarrierRecordings;

/// Audio sent per piece of a streamed answer.
const PIECE: u64 = 256 << 10;

fn recording_error(e: RecordingError) -> ApiError {
    match e {
        RecordingError::Storage(e) => ApiError::from_storage(e, "recording"),
        other => ApiError::Unexpected(other.into()),
    }
}

/// The call's recording, when it has one.
async fn recording_of(s: &AppState, caller: &Caller, id: CallId) -> Result<Recording, ApiError> {
    calls::get(&s.db, caller.org, id).await.map_err(|e| ApiError::from_storage(e, "call"))?;
    recordings::for_call(&s.db, caller.org, id)
        .await
        .map_err(|e| ApiError::from_storage(e, "recording"))?
        .ok_or(ApiError::NotFound("recording"))
}

/// The call's recording: its status (`recording`, `processing`, `stored`, `opted_out`,
/// `absent`, `failed`), what the caller was told, its length and size.
#[utoipa::path(get, path = "/calls/{id}/recording", operation_id = "recording", tag = "calls", params(("id" = CallId, Path)), responses(
    (status = 200, body = Recording), (status = 404, body = Problem)))]
pub async fn get(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<CallId>) -> Result<Json<Recording>, ApiError> {
    Ok(Json(recording_of(&s, &caller, id).await?))
}

/// The recording's audio: a WAV file, the caller on the left channel and the agent on the right.
/// Honours a single `Range: bytes=…` (206 with `Content-Range`), as audio players seek.
#[utoipa::path(get, path = "/calls/{id}/recording/audio", operation_id = "recording_audio", tag = "calls", params(("id" = CallId, Path)), responses(
    (status = 200, description = "The whole WAV file", content_type = "audio/wav"),
    (status = 206, description = "The requested byte range", content_type = "audio/wav"),
    (status = 404, body = Problem), (status = 409, body = Problem), (status = 416, body = Problem)))]
pub async fn audio(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<CallId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let recording = recording_of(&s, &caller, id).await?;
    if recording.status != RecordingStatus::Stored {
        return Err(ApiError::Conflict(format!(
            "the recording has no audio to play: it is `{}`{}",
            recording.status.as_str(),
            recording.detail.map(|d| format!(" ({d})")).unwrap_or_default()
        )));
    }
    let audio = s.recordings.audio(caller.org, recording.id).await.map_err(recording_error)?;
    let length = audio.len();
    let requested = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, range) = match requested.map(|r| byte_range(r, length)) {
        None | Some(Ok(None)) => (StatusCode::OK, 0..length),
        Some(Ok(Some(range))) => (StatusCode::PARTIAL_CONTENT, range),
        Some(Err(())) => return Err(ApiError::RangeNotSatisfiable(length)),
    };
    let mut response = Response::new(stream(audio, range.clone()));
    *response.status_mut() = status;
    let set = |response: &mut Response, name, value: String| {
        response.headers_mut().insert(name, HeaderValue::from_str(&value).expect("ASCII header values"));
    };
    set(&mut response, header::CONTENT_TYPE, "audio/wav".into());
    set(&mut response, header::ACCEPT_RANGES, "bytes".into());
    set(&mut response, header::CONTENT_LENGTH, (range.end - range.start).to_string());
    set(&mut response, header::CACHE_CONTROL, "private, no-store".into());
    if status == StatusCode::PARTIAL_CONTENT {
        set(&mut response, header::CONTENT_RANGE, format!("bytes {}-{}/{length}", range.start, range.end - 1));
    }
    Ok(response)
}

/// The body: the audio's `range`, read and opened a piece at a time.
fn stream(audio: RecordingAudio, range: std::ops::Range<u64>) -> Body {
    let pieces = futures_util::stream::unfold((audio, range.start), move |(audio, at)| {
        let end = range.end;
        async move {
            if at >= end {
                return None;
            }
            let until = (at + PIECE).min(end);
            let piece = audio.read(at, until).await.map_err(std::io::Error::other);
            Some((piece, (audio, until)))
        }
    });
    Body::from_stream(pieces)
}

/// The one range a `Range` header asks for within `length` bytes: `None` when it asks for
/// something we do not serve by range (several ranges, other units), which gets the whole file;
/// `Err` when it starts past the end.
fn byte_range(header: &str, length: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Ok(None) };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
        (Some(start), None) if last.is_empty() => start..length,
        (Some(start), Some(end)) if end >= start => start..(end + 1).min(length),
        (None, Some(suffix)) if first.is_empty() && suffix > 0 => length.saturating_sub(suffix)..length,
        _ => return Ok(None),
    };
    if range.start >= length { Err(()) } else { Ok(Some(range)) }
}

/// Erase the call's recording (its audio everywhere it is stored), keeping the call record.
/// The erasure is audited.
#[utoipa::path(delete, path = "/calls/{id}/recording", operation_id = "erase_recording", tag = "calls", params(("id" = CallId, Path)), responses(
    (status = 204), (status = 404, body = Problem)))]
pub async fn delete(State(s): State<AppState>, caller: Caller, ApiPath(id): ApiPath<CallId>) -> Result<StatusCode, ApiError> {
    recording_of(&s, &caller, id).await?;
    erase(&s, &caller, id, "erased on request").await.map(|()| StatusCode::NO_CONTENT)
}

/// Erases a call's recording before the call itself (the call's row cannot go first).
pub(crate) async fn erase_with_call(s: &AppState, caller: &Caller, id: CallId) -> Result<(), ApiError> {
    erase(s, caller, id, "call erased").await
}

/// Erases a call's recording everywhere: Twilio's copy first (nothing is erased here while it
/// cannot be), then the audio here and its row.
async fn erase(s: &AppState, caller: &Caller, id: CallId, why: &str) -> Result<(), ApiError> {
    let call = calls::get(&s.db, caller.org, id).await.map_err(|e| ApiError::from_storage(e, "call"))?;
    let carrier = CarrierRecordings { db: s.db.clone(), client: s.twilio.clone(), recordings: s.recordings.clone() };
    carrier.erase_carrier_copy(&call).await.map_err(|why| {
        ApiError::Upstream(format!("Twilio's copy of the recording could not be deleted ({why}); nothing was erased, try again"))
    })?;
    s.recordings.erase_for_call(caller.org, id, caller.actor, why).await.map_err(|e| match e {
        RecordingError::Storage(StorageError::NotFound) => ApiError::NotFound("call"),
        other => recording_error(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_players_send_them() {
        assert_eq!(byte_range("bytes=0-", 100), Ok(Some(0..100)));
        assert_eq!(byte_range("bytes=10-19", 100), Ok(Some(10..20)));
        assert_eq!(byte_range("bytes=90-200", 100), Ok(Some(90..100)), "an end past the file stops at it");
        assert_eq!(byte_range("bytes=-30", 100), Ok(Some(70..100)), "the last 30 bytes");
        assert_eq!(byte_range("bytes=100-", 100), Err(()), "starts past the end");
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Ok(None), "several ranges get the whole file");
        assert_eq!(byte_range("items=0-1", 100), Ok(None));
        assert_eq!(byte_range("bytes=5-2", 100), Ok(None), "a backwards range is ignored");
        assert_eq!(byte_range("bytes=-0", 100), Ok(None));
    }
}
