//! The text tokens of a CTranslate2 whisper vocabulary, as raw bytes.
//!
//! CTranslate2 lists tokens (`vocabulary.txt`, one per line, or
//! `vocabulary.json`, an array) in GPT-2's byte-level form, where every
//! byte is shown as a printable character. whisper.cpp wants the bytes
//! themselves, and only the text tokens: those before `<|endoftext|>`
//! (its special tokens it numbers itself).

use std::path::Path;

use crate::ConvertError;

const END_OF_TEXT: &str = "<|endoftext|>";

/// Reads the vocabulary in `folder` and returns the text tokens as bytes.
pub fn text_tokens(folder: &Path) -> Result<Vec<Vec<u8>>, ConvertError> {
    let tokens = read_tokens(folder)?;
    let end = tokens
        .iter()
        .position(|t| t == END_OF_TEXT)
        .ok_or_else(|| ConvertError::Corrupt("the vocabulary has no <|endoftext|> token".into()))?;
    let decode = byte_decoder();
    tokens[..end]
        .iter()
        .map(|token| {
            token
                .chars()
                .map(|c| {
                    decode(c).ok_or_else(|| {
                        ConvertError::Corrupt(format!(
                            "vocabulary token {token:?} is not in GPT-2's byte-level form"
                        ))
                    })
                })
                .collect()
        })
        .collect()
}

fn read_tokens(folder: &Path) -> Result<Vec<String>, ConvertError> {
    let json = folder.join("vocabulary.json");
    if json.is_file() {
        let bytes = std::fs::read(&json).map_err(|source| ConvertError::Io {
            path: json.clone(),
            source,
        })?;
        return serde_json::from_slice(&bytes)
            .map_err(|e| ConvertError::Corrupt(format!("{}: {e}", json.display())));
    }
    let txt = folder.join("vocabulary.txt");
    let text = std::fs::read_to_string(&txt).map_err(|source| ConvertError::Io {
        path: txt.clone(),
        source,
    })?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// GPT-2's `bytes_to_unicode`, inverted: printable Latin-1 characters
/// stand for themselves, the other 68 bytes for U+0100 onwards.
fn byte_decoder() -> impl Fn(char) -> Option<u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = std::collections::HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).unwrap_or('\0')
        };
        table.insert(c, b);
    }
    move |c| table.get(&c).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn decodes_gpt2_byte_level_tokens() {
        let decode = byte_decoder();
        assert_eq!(decode('Ġ'), Some(b' ')); // U+0120 is the space
        assert_eq!(decode('Ċ'), Some(b'\n'));
        assert_eq!(decode('a'), Some(b'a'));
        assert_eq!(decode('é'), Some(0xE9));
        assert_eq!(decode('€'), None);
    }

    #[test]
    fn stops_at_end_of_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vocabulary.txt"),
            "!\nĠthe\n<|endoftext|>\n<|startoftranscript|>\n",
        )
        .unwrap();
        let tokens = text_tokens(dir.path()).unwrap();
        assert_eq!(tokens, vec![b"!".to_vec(), b" the".to_vec()]);
    }
}
