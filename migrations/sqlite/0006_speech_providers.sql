-- Speech providers (sqlite). Keep in step with ../postgres/0006_speech_providers.sql.
-- A speech vendor account that Media Streams calls hear (transcription_model) and speak
-- (speech_model) through; its API key is sealed like the LLM providers' keys.
CREATE TABLE speech_providers (
    id                  BLOB PRIMARY KEY,
    org_id              BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL,
    base_url            TEXT NOT NULL,
    api_key_enc         BLOB,
    transcription_model TEXT,
    speech_model        TEXT,
    default_voice       TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX speech_providers_org ON speech_providers (org_id, id);

-- The agent's speech providers are also columns (besides its spec), for the foreign keys that
-- keep a provider in use from being deleted.
ALTER TABLE agents ADD COLUMN speech_to_text_provider_id BLOB REFERENCES speech_providers(id);
ALTER TABLE agents ADD COLUMN text_to_speech_provider_id BLOB REFERENCES speech_providers(id);

-- On calls Switchboard hears and speaks itself, each agent turn keeps where the caller's wait
-- went (end of turn, transcription, first token, first audio, first frame: a JSON object) and
-- the whole wait, voice to voice, as a column for analytics.
ALTER TABLE conversation_turns ADD COLUMN voice_latency TEXT;
ALTER TABLE conversation_turns ADD COLUMN voice_to_voice_ms INTEGER;
