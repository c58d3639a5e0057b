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
    /// bsdiff's control, difference and extra streams, split apart (as
    /// classic BSDIFF40 does) and each zstd-compressed.
    BsdiffZstd,
    /// A zstd frame compressed against the old file as prefix.
    ZstdPatchFrom,
}

/// zstd level for patches unless the release says otherwise.
pub const DEFAULT_LEVEL: i32 = 19;

/// bsdiff needs about nine times the old file in memory and sorts all of
/// it: past this size only the zstd patch is made (model runtimes make
/// the core large).
pub const BSDIFF_MAX_BYTES: usize = 32 * 1024 * 1024;

/// The window must reach back across the whole old file.
fn window_log(len: usize) -> u32 {
    let bits = usize::BITS - len.max(1 << 10).leading_zeros();
    bits.clamp(10, 30)
}

/// Every patch kind that suits the files (bsdiff only up to
/// [`BSDIFF_MAX_BYTES`]), `(kind, bytes)`, smallest first. `level` is the
/// zstd level of the patch-from kind ([`DEFAULT_LEVEL`] for releases).
pub fn make_all(
    old: &[u8],
    new: &[u8],
    level: i32,
) -> Result<Vec<(DeltaKind, Vec<u8>)>, DistError> {
    let mut all = Vec::new();
    if old.len().max(new.len()) <= BSDIFF_MAX_BYTES {
        let mut raw = Vec::new();
        bsdiff::diff(old, new, &mut raw)?;
        all.push((DeltaKind::BsdiffZstd, split_streams(&raw)?));
    }

    let mut patch_from = Vec::new();
    {
        let mut encoder =
            zstd::stream::write::Encoder::with_ref_prefix(&mut patch_from, level, old)?;
        encoder.long_distance_matching(true)?;
        encoder.window_log(window_log(old.len().max(new.len())))?;
        encoder.include_checksum(true)?;
        encoder.write_all(new)?;
        encoder.finish()?;
    }
    all.push((DeltaKind::ZstdPatchFrom, patch_from));
    all.sort_by_key(|(_, bytes)| bytes.len());
    Ok(all)
}

/// The smallest patch ([`make_all`]).
pub fn make(old: &[u8], new: &[u8], level: i32) -> Result<(DeltaKind, Vec<u8>), DistError> {
    make_all(old, new, level)?
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
            let raw = join_streams(patch, limit)?;
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

const STREAMS_MAGIC: &[u8; 4] = b"JBS2";
/// zstd's strongest level: patches are made once and fetched by everyone.
const STREAM_LEVEL: i32 = 22;

/// Splits the bsdiff crate's interleaved patch (24-byte control header,
/// then `mix` difference bytes, then `copy` extra bytes, repeated) into
/// three streams and compresses each: the difference stream is mostly
/// zeros and compresses far better alone.
fn split_streams(raw: &[u8]) -> Result<Vec<u8>, DistError> {
    let (mut ctrl, mut diff, mut extra) = (Vec::new(), Vec::new(), Vec::new());
    let mut at = 0usize;
    while at < raw.len() {
        let header = raw
            .get(at..at + 24)
            .ok_or_else(|| DistError::Patch("truncated bsdiff control".into()))?;
        let mix = usize::try_from(u64::from_le_bytes(
            header[0..8].try_into().unwrap_or_default(),
        ))
        .unwrap_or(usize::MAX);
        let copy = usize::try_from(u64::from_le_bytes(
            header[8..16].try_into().unwrap_or_default(),
        ))
        .unwrap_or(usize::MAX);
        ctrl.extend_from_slice(header);
        at += 24;
        let body = raw
            .get(at..at.saturating_add(mix).saturating_add(copy))
            .ok_or_else(|| DistError::Patch("truncated bsdiff body".into()))?;
        diff.extend_from_slice(&body[..mix]);
        extra.extend_from_slice(&body[mix..]);
        at += mix + copy;
    }
    // The difference stream is almost all zeros: store it as runs first.
    let diff = zero_runs(&diff);
    let mut out = STREAMS_MAGIC.to_vec();
    let compressed: Vec<Vec<u8>> = [&ctrl, &diff, &extra]
        .iter()
        .map(|s| zstd::bulk::compress(s, STREAM_LEVEL))
        .collect::<Result<_, _>>()?;
    for (c, r) in compressed.iter().zip([&ctrl, &diff, &extra]) {
        out.extend_from_slice(&(c.len() as u64).to_le_bytes());
        out.extend_from_slice(&(r.len() as u64).to_le_bytes());
    }
    for c in &compressed {
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// The inverse of [`split_streams`], bounded by the expected output size.
fn join_streams(patch: &[u8], limit: usize) -> Result<Vec<u8>, DistError> {
    let bad = |m: &str| DistError::Patch(format!("bsdiff patch is malformed: {m}"));
    if patch.get(..4) != Some(STREAMS_MAGIC.as_slice()) {
        return Err(bad("unknown format"));
    }
    let mut lengths = [(0usize, 0usize); 3];
    for (i, slot) in lengths.iter_mut().enumerate() {
        let field = |o: usize| -> Result<usize, DistError> {
            let b = patch.get(o..o + 8).ok_or_else(|| bad("truncated header"))?;
            usize::try_from(u64::from_le_bytes(b.try_into().unwrap_or_default()))
                .map_err(|_| bad("length"))
        };
        *slot = (field(4 + i * 16)?, field(12 + i * 16)?);
    }
    // Each stream is bounded by what the output could need.
    let bounds = [
        limit.saturating_add(1).saturating_mul(24),
        limit.saturating_mul(2).saturating_add(64),
        limit,
    ];
    let mut at: usize = 4 + 3 * 16;
    let mut streams = Vec::new();
    for ((compressed, raw), bound) in lengths.iter().zip(bounds) {
        if *raw > bound {
            return Err(bad("a stream is larger than the file it builds"));
        }
        let data = patch
            .get(at..at.saturating_add(*compressed))
            .ok_or_else(|| bad("truncated stream"))?;
        let stream = zstd::bulk::decompress(data, *raw).map_err(|e| bad(&e.to_string()))?;
        if stream.len() != *raw {
            return Err(bad("stream length"));
        }
        streams.push(stream);
        at += compressed;
    }
    let diff = &from_zero_runs(&streams[1], limit).ok_or_else(|| bad("difference runs"))?;
    let (ctrl, extra) = (&streams[0], &streams[2]);
    let mut raw = Vec::with_capacity(ctrl.len() + diff.len() + extra.len());
    let (mut d, mut e) = (0usize, 0usize);
    for header in ctrl.chunks(24) {
        if header.len() != 24 {
            return Err(bad("control stream"));
        }
        let mix = usize::try_from(u64::from_le_bytes(
            header[0..8].try_into().unwrap_or_default(),
        ))
        .map_err(|_| bad("length"))?;
        let copy = usize::try_from(u64::from_le_bytes(
            header[8..16].try_into().unwrap_or_default(),
        ))
        .map_err(|_| bad("length"))?;
        raw.extend_from_slice(header);
        raw.extend_from_slice(
            diff.get(d..d.saturating_add(mix))
                .ok_or_else(|| bad("difference stream"))?,
        );
        raw.extend_from_slice(
            extra
                .get(e..e.saturating_add(copy))
                .ok_or_else(|| bad("extra stream"))?,
        );
        d += mix;
        e += copy;
    }
    Ok(raw)
}

/// `[zeros varint][literal count varint][literals]...`: long runs of zero
/// bytes shrink to a few bytes before compression.
fn zero_runs(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let zeros = data[at..].iter().take_while(|b| **b == 0).count();
        at += zeros;
        let literals = data[at..].iter().take_while(|b| **b != 0).count();
        push_varint(&mut out, zeros as u64);
        push_varint(&mut out, literals as u64);
        out.extend_from_slice(&data[at..at + literals]);
        at += literals;
    }
    out
}

fn from_zero_runs(runs: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < runs.len() {
        let zeros = usize::try_from(read_varint(runs, &mut at)?).ok()?;
        let literals = usize::try_from(read_varint(runs, &mut at)?).ok()?;
        if out.len().checked_add(zeros)?.checked_add(literals)? > limit {
            return None;
        }
        out.resize(out.len() + zeros, 0);
        out.extend_from_slice(runs.get(at..at.checked_add(literals)?)?);
        at += literals;
    }
    Some(out)
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn files_past_the_bsdiff_limit_get_only_a_zstd_patch_that_applies() {
        let mut old = vec![0u8; BSDIFF_MAX_BYTES + 1];
        for (i, b) in old.iter_mut().enumerate().step_by(4096) {
            *b = (i / 4096) as u8;
        }
        let mut new = old.clone();
        new[1000] = 7;
        new.extend_from_slice(b"a new tail");
        let all = make_all(&old, &new, 3).unwrap();
        assert_eq!(all.len(), 1);
        let (kind, patch) = &all[0];
        assert_eq!(*kind, DeltaKind::ZstdPatchFrom);
        assert!(patch.len() < 64 * 1024, "{}", patch.len());
        assert_eq!(apply(*kind, &old, patch, new.len() as u64).unwrap(), new);
    }

    #[test]
    fn both_kinds_round_trip_and_the_smaller_is_kept() {
        let old: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        let mut new = old.clone();
        new[1000..1010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"a new tail");
        for (kind, patch) in make_all(&old, &new, DEFAULT_LEVEL).unwrap() {
            assert!(patch.len() < new.len() / 20, "{kind:?}: {}", patch.len());
            assert_eq!(
                apply(kind, &old, &patch, new.len() as u64).unwrap(),
                new,
                "{kind:?}"
            );
        }
        let (_, best) = make(&old, &new, DEFAULT_LEVEL).unwrap();
        assert!(
            make_all(&old, &new, DEFAULT_LEVEL)
                .unwrap()
                .iter()
                .all(|(_, p)| best.len() <= p.len())
        );
    }

    #[test]
    fn zero_runs_round_trip() {
        let data = [0, 0, 0, 5, 6, 0, 7, 0, 0];
        assert_eq!(from_zero_runs(&zero_runs(&data), 100).unwrap(), data);
        assert_eq!(
            from_zero_runs(&zero_runs(&[]), 100).unwrap(),
            Vec::<u8>::new()
        );
        assert!(from_zero_runs(&zero_runs(&data), 3).is_none());
    }

    #[test]
    fn a_patch_against_the_wrong_file_or_too_long_fails() {
        let old: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut new = old.clone();
        new[5000] ^= 0xff;
        let wrong: Vec<u8> = old.iter().map(|b| b.wrapping_add(1)).collect();
        for (kind, patch) in make_all(&old, &new, DEFAULT_LEVEL).unwrap() {
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
