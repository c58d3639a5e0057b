//! ed25519 signatures over the manifest's raw bytes.
//!
//! Keys and signatures are stored as hex text. Which keys the launcher
//! trusts is decided when it is built (`launcher/build.rs`,
//! `JARVIS_RELEASE_KEYS`), never here.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::DistError;

/// A key pair as `jarvis-dist keygen` writes it.
pub fn generate() -> Result<SigningKey, DistError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| DistError::BadKey("random seed".into(), e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn from_hex<const N: usize>(what: &str, text: &str) -> Result<[u8; N], DistError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| {
        DistError::BadKey(what.to_owned(), format!("expected {} hex digits", N * 2))
    })?;
    Ok(out)
}

pub fn signing_key(hex: &str) -> Result<SigningKey, DistError> {
    Ok(SigningKey::from_bytes(&from_hex::<32>("signing key", hex)?))
}

pub fn verifying_key(hex: &str) -> Result<VerifyingKey, DistError> {
    VerifyingKey::from_bytes(&from_hex::<32>("public key", hex)?)
        .map_err(|e| DistError::BadKey(hex.to_owned(), e.to_string()))
}

/// The signature of `bytes`, as hex text.
pub fn sign(key: &SigningKey, bytes: &[u8]) -> String {
    to_hex(&key.sign(bytes).to_bytes())
}

/// Checks `signature` (hex text) over `bytes` against `trusted`; returns
/// the index of the key that signed.
pub fn verify(bytes: &[u8], signature: &str, trusted: &[VerifyingKey]) -> Result<usize, DistError> {
    let raw = from_hex::<64>("signature", signature)
        .map_err(|e| DistError::MalformedSignature(e.to_string()))?;
    let signature = Signature::from_bytes(&raw);
    trusted
        .iter()
        .position(|key| key.verify(bytes, &signature).is_ok())
        .ok_or(DistError::BadSignature)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_right_key_and_bytes() {
        let key = generate().unwrap();
        let other = generate().unwrap();
        let signature = sign(&key, b"manifest");
        let trusted = [other.verifying_key(), key.verifying_key()];
        assert_eq!(verify(b"manifest", &signature, &trusted).unwrap(), 1);
        assert!(matches!(
            verify(b"manifesT", &signature, &trusted),
            Err(DistError::BadSignature)
        ));
        assert!(matches!(
            verify(b"manifest", &signature, &trusted[..1]),
            Err(DistError::BadSignature)
        ));
        assert!(verify(b"manifest", "zz", &trusted).is_err());
        assert_eq!(
            signing_key(&to_hex(&key.to_bytes())).unwrap().to_bytes(),
            key.to_bytes()
        );
    }
}
