//! The transcription form of `POST /v1/audio/transcriptions`: OpenAI's
//! multipart fields, read with the request's size limit.

use axum::body::Bytes;
use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;

/// What a transcription request sent. Fields Jarvis does not use
/// (`prompt`, `temperature`, `timestamp_granularities`) are read and
/// dropped.
#[derive(Debug, Default)]
pub struct TranscriptionForm {
    /// The audio upload (a WAV file).
    pub file: Option<Bytes>,
    pub model: Option<String>,
    pub response_format: Option<String>,
    pub language: Option<String>,
}

/// Reads every field; a later field of the same name replaces an earlier
/// one.
pub async fn read_form(multipart: &mut Multipart) -> Result<TranscriptionForm, MultipartError> {
    let mut form = TranscriptionForm::default();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => form.file = Some(field.bytes().await?),
            "model" => form.model = Some(field.text().await?),
            "response_format" => form.response_format = Some(field.text().await?),
            "language" => form.language = Some(field.text().await?),
            _ => {
                field.bytes().await?;
            }
        }
    }
    Ok(form)
}

/// Reads and drops what is left of the upload (stopping at the first
/// error), so a client still sending gets the answer rather than a closed
/// connection.
pub async fn discard(multipart: &mut Multipart) {
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.bytes().await.is_err() {
            break;
        }
    }
}
