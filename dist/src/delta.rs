//! Per-file patches between two versions of a file: bsdiff (compressed with
//! zstd) or zstd with the old file as a reference prefix and long-distance
//! matching (`zstd --patch-from`). [`make`] builds both and keeps the
//! smaller; [`apply`] rebuilds the new file.

use std::io::{BufReader, Read, Write};

use serde::{Deserialize, Serialize};

use crate::DistError;

/// How a patch was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaKind {
    /// bsdiff 4 format, zstd-compressed.
    BsdiffZstd,
    /// A zstd frame compressed against the old file as prefix.
    ZstdPatchFrom,
}

const LEVEL: i32 = 19;

/// The window must reach back across the whole old file.
fn window_log(len: usize) -> u32 {
    let bits = usize::BITS - len.max(1 << 10).leading_zeros();
    bits.clamp(10, 30)
}

/// Both patch kinds, `(kind, bytes)`, smallest first.
pub fn make_all(old: &[u8], new: &[u8]) -> Result<Vec<(DeltaKind, Vec<u8>)>, DistError> {
    let mut raw = Vec::new();
    bsdiff::diff(old, new, &mut raw)?;
    let bsdiff = zstd::bulk::compress(&raw, LEVEL)?;

    let mut patch_from = Vec::new();
    {
        let mut encoder =
            zstd::stream::write::Encoder::with_ref_prefix(&mut patch_from, LEVEL, old)?;
        encoder.long_distance_matching(true)?;
        encoder.window_log(window_log(old.len().max(new.len())))?;
        encoder.include_checksum(true)?;
        encoder.write_all(new)?;
        encoder.finish()?;
    }
    let mut all = vec![
        (DeltaKind::BsdiffZstd, bsdiff),
        (DeltaKind::ZstdPatchFrom, patch_from),
    ];
    all.sort_by_key(|(_, bytes)| bytes.len());
    Ok(all)
}

/// The smaller of the two patch kinds.
pub fn make(old: &[u8], new: &[u8]) -> Result<(DeltaKind, Vec<u8>), DistError> {
    make_all(old, new)?
        .into_iter()
        .next()
        .ok_or_else(|| DistError::Patch("no patch was made".to_owned()))
}

/// Rebuilds the new file from `old` and `patch`. `max_len` bounds the
/// output (the manifest's size for the file).
pub fn apply(
    kind: DeltaKind,
    old: &[u8],
    patch: &[u8],
    max_len: u64,
) -> Result<Vec<u8>, DistError> {
    let limit = usize::try_from(max_len).unwrap_or(usize::MAX);
    let out = match kind {
        DeltaKind::BsdiffZstd => {
            let raw = zstd::bulk::decompress(patch, limit.saturating_mul(4).max(1 << 20))
                .map_err(|e| DistError::Patch(format!("bsdiff patch does not decompress: {e}")))?;
            let mut out = Vec::new();
            bsdiff::patch(old, &mut raw.as_slice(), &mut out)
                .map_err(|e| DistError::Patch(format!("bsdiff patch does not apply: {e}")))?;
            out
        }
        DeltaKind::ZstdPatchFrom => {
            let mut decoder =
                zstd::stream::read::Decoder::with_ref_prefix(BufReader::new(patch), old)
                    .map_err(|e| DistError::Patch(e.to_string()))?;
            decoder
                .window_log_max(31)
                .map_err(|e| DistError::Patch(e.to_string()))?;
            let mut out = Vec::new();
            decoder
                .take(max_len + 1)
                .read_to_end(&mut out)
                .map_err(|e| DistError::Patch(format!("zstd patch does not apply: {e}")))?;
            out
        }
    };
    if out.len() as u64 > max_len {
        return Err(DistError::Patch(format!(
            "patch output exceeds the expected {max_len} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn both_kinds_round_trip_and_the_smaller_is_kept() {
        let old: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        let mut new = old.clone();
        new[1000..1010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"a new tail");
        for (kind, patch) in make_all(&old, &new).unwrap() {
            assert!(patch.len() < new.len() / 20, "{kind:?}: {}", patch.len());
            assert_eq!(
                apply(kind, &old, &patch, new.len() as u64).unwrap(),
                new,
                "{kind:?}"
            );
        }
        let (_, best) = make(&old, &new).unwrap();
        assert!(
            make_all(&old, &new)
                .unwrap()
                .iter()
                .all(|(_, p)| best.len() <= p.len())
        );
    }

    #[test]
    fn a_patch_against_the_wrong_file_or_too_long_fails() {
        let old: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut new = old.clone();
        new[5000] ^= 0xff;
        let wrong: Vec<u8> = old.iter().map(|b| b.wrapping_add(1)).collect();
        for (kind, patch) in make_all(&old, &new).unwrap() {
            assert!(
                apply(kind, &old, &patch, 100).is_err(),
                "{kind:?}: output bound"
            );
            // Against the wrong file a patch either fails or yields
            // something else; the caller's checksum catches the latter.
            if let Ok(out) = apply(kind, &wrong, &patch, 10_000) {
                assert_ne!(out, new, "{kind:?}");
            }
        }
    }
}
