//! The shared downloader against a real HTTP server that misbehaves in
//! every way the fault switches allow. Each case ends with a verified file
//! or a clear error, and never with a wrong file in place.

use std::path::Path;
use std::time::Duration;

use jarvis_download::{
    Chunks, DownloadError, DownloadOptions, Downloader, FileSpec, NoProgress, Sha256Digest,
    partial_paths,
};
use jarvis_tests::fault_server::{Fault, FaultServer};
use jarvis_tests::pseudo_random_bytes;

const MIB: usize = 1024 * 1024;

fn options() -> DownloadOptions {
    DownloadOptions {
        stall_timeout: Duration::from_millis(700),
        max_attempts: 6,
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(50),
        checkpoint_bytes: MIB as u64,
    }
}

fn spec(server: &FaultServer, bytes: &[u8], chunk: Option<usize>) -> FileSpec {
    server.add_bytes("/model.bin", bytes.to_vec());
    FileSpec {
        label: "test model".into(),
        sources: vec![server.url("/model.bin")],
        size: bytes.len() as u64,
        sha256: Sha256Digest::of(bytes),
        chunks: chunk.map(|size| Chunks {
            size: size as u64,
            sha256: bytes.chunks(size).map(Sha256Digest::of).collect(),
        }),
    }
}

fn fetch(
    spec: &FileSpec,
    dest: &Path,
    options: DownloadOptions,
) -> Result<jarvis_download::FetchOutcome, DownloadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        Downloader::new(options)?
            .fetch(spec, dest, &NoProgress)
            .await
    })
}

fn assert_verified(dest: &Path, bytes: &[u8]) {
    assert_eq!(std::fs::read(dest).unwrap(), bytes);
    let (partial, sidecar) = partial_paths(dest);
    assert!(
        !partial.exists() && !sidecar.exists(),
        "no leftovers after success"
    );
}

fn assert_nothing_in_place(dest: &Path) {
    assert!(!dest.exists(), "a wrong file must never be put in place");
}

#[test]
fn a_dropped_connection_resumes_with_range_and_fetches_nothing_twice() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(5 * MIB + 123, 1);
    let spec = spec(&server, &bytes, None);
    server.push_faults([
        Fault::DropAfter(MIB as u64 + 7),
        Fault::DropAfter(2 * MIB as u64),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let outcome = fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    assert_eq!(outcome.bytes_fetched, bytes.len() as u64);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].range, None);
    assert_eq!(
        requests[1].range.as_deref(),
        Some(&*format!("bytes={}-", MIB + 7))
    );
    assert!(
        requests[1].if_range.is_some(),
        "resume sends If-Range with the ETag"
    );
}

#[test]
fn a_server_that_ignores_range_restarts_the_file_cleanly() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(3 * MIB, 2);
    let spec = spec(&server, &bytes, None);
    server.push_faults([Fault::DropAfter(MIB as u64), Fault::IgnoreRange]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let outcome = fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    assert_eq!(outcome.bytes_fetched, (MIB + 3 * MIB) as u64);
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(MIB, 3);
    let spec = spec(&server, &bytes, None);
    server.push_faults([Fault::Status(500), Fault::Status(503), Fault::Status(429)]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn a_missing_file_is_a_clear_error_without_retries() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(1000, 4);
    let mut spec = spec(&server, &bytes, None);
    spec.sources = vec![server.url("/nope")];
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let err = fetch(&spec, &dest, options()).unwrap_err();
    assert!(
        matches!(err, DownloadError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
    assert_nothing_in_place(&dest);
}

#[test]
fn a_corrupt_chunk_is_fetched_again_alone() {
    let server = FaultServer::start();
    let chunk = 256 * 1024;
    let bytes = pseudo_random_bytes(2 * MIB + 99, 5);
    let spec = spec(&server, &bytes, Some(chunk));
    server.push_faults([Fault::FlipByte(700_000)]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let outcome = fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    // The resume starts at the bad chunk. Chunks are verified on another
    // thread, and the verdict on one is awaited when the next one is
    // complete: the bad chunk and at most the one after it come again.
    let bad_chunk_start = 700_000 / chunk * chunk;
    let refetched = outcome.bytes_fetched - bytes.len() as u64;
    assert!(
        (chunk as u64..=2 * chunk as u64).contains(&refetched),
        "{refetched} bytes fetched again for one bad chunk of {chunk}"
    );
    let requests = server.requests();
    assert_eq!(
        requests[1].range.as_deref(),
        Some(&*format!("bytes={bad_chunk_start}-"))
    );
}

/// A checkpoint is recorded behind the data (after an `fdatasync`, on its
/// own thread): chunks written after it that match their hashes are kept
/// by a resume, and the first one that does not match ends what is kept.
#[test]
fn a_resume_keeps_whole_chunks_written_past_the_checkpoint() {
    let chunk = 512 * 1024;
    let bytes = pseudo_random_bytes(3 * MIB, 13);
    for (corrupt_at, kept) in [(None, 2 * MIB), (Some(MIB + chunk + 7), MIB + chunk)] {
        let server = FaultServer::start();
        let spec = spec(&server, &bytes, Some(chunk));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.bin");
        server.push_faults([Fault::DropAfter(MIB as u64 + 1000)]);
        let once = DownloadOptions {
            max_attempts: 1,
            ..options()
        };
        fetch(&spec, &dest, once).unwrap_err();
        // As if the process had written up to 2.25 MiB and was killed
        // before the checkpoints after 1 MiB were recorded.
        let (partial, sidecar) = partial_paths(&dest);
        let recorded: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
        assert_eq!(recorded["checkpoint"], MIB);
        let mut written = bytes[..2 * MIB + chunk / 2].to_vec();
        if let Some(at) = corrupt_at {
            written[at] ^= 1;
        }
        std::fs::write(&partial, &written).unwrap();

        let outcome = fetch(&spec, &dest, options()).unwrap();
        assert_verified(&dest, &bytes);
        assert_eq!(
            outcome.resumed_from, kept as u64,
            "corrupt at {corrupt_at:?}"
        );
        assert_eq!(outcome.bytes_fetched, (bytes.len() - kept) as u64);
        assert_eq!(
            server.requests().last().unwrap().range.as_deref(),
            Some(&*format!("bytes={kept}-"))
        );
    }
}

#[test]
fn a_corrupt_file_without_chunk_hashes_is_discarded_with_a_checksum_error() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(MIB, 6);
    let spec = spec(&server, &bytes, None);
    server.push_faults([Fault::FlipByte(12345)]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let err = fetch(&spec, &dest, options()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("checksum failed"), "{text}");
    assert!(text.contains(&spec.sha256.to_string()), "{text}");
    assert_nothing_in_place(&dest);
    let (partial, sidecar) = partial_paths(&dest);
    assert!(
        !partial.exists() && !sidecar.exists(),
        "corrupt data is discarded"
    );
}

#[test]
fn a_lying_content_length_ends_in_a_resume_not_a_corrupt_file() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(2 * MIB, 7);
    let spec = spec(&server, &bytes, None);
    server.push_faults([Fault::LongContentLength(5000)]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
}

#[test]
fn a_stalled_connection_is_abandoned_and_resumed() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(2 * MIB, 8);
    let spec = spec(&server, &bytes, None);
    server.push_faults([Fault::StallAfter(300_000, Duration::from_secs(5))]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let outcome = fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    assert_eq!(outcome.bytes_fetched, bytes.len() as u64);
    assert_eq!(server.requests()[1].range.as_deref(), Some("bytes=300000-"));
}

#[test]
fn a_server_sending_endless_data_is_refused() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(MIB, 9);
    let spec = spec(&server, &bytes, None);
    server.push_faults((0..10).map(|_| Fault::ExtraData(4096)));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let err = fetch(&spec, &dest, options()).unwrap_err();
    assert!(err.to_string().contains("sent more than"), "{err}");
    assert_nothing_in_place(&dest);
}

#[test]
fn a_wrong_content_range_on_resume_restarts_cleanly() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(3 * MIB, 10);
    let spec = spec(&server, &bytes, None);
    server.push_faults([Fault::DropAfter(MIB as u64), Fault::WrongContentRange]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].range, None,
        "after a bad Content-Range the file starts over"
    );
}

#[test]
fn a_new_process_resumes_from_the_last_checkpoint() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(5 * MIB, 11);
    let spec = spec(&server, &bytes, None);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    // The first "process" gives up after one broken attempt.
    server.push_faults([Fault::DropAfter(3 * MIB as u64 + 5000)]);
    let once = DownloadOptions {
        max_attempts: 1,
        ..options()
    };
    let err = fetch(&spec, &dest, once).unwrap_err();
    assert!(
        err.to_string().contains("partial download was kept"),
        "{err}"
    );
    let (partial, sidecar) = partial_paths(&dest);
    assert!(partial.exists() && sidecar.exists());

    let outcome = fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    assert_eq!(
        outcome.resumed_from,
        3 * MIB as u64,
        "resumes at the last checkpoint"
    );
    assert_eq!(outcome.bytes_fetched, 2 * MIB as u64);
}

#[test]
fn a_resume_re_verifies_the_last_chunk_and_starts_over_if_it_is_corrupt() {
    let server = FaultServer::start();
    let chunk = 512 * 1024;
    let bytes = pseudo_random_bytes(3 * MIB, 12);
    let spec = spec(&server, &bytes, Some(chunk));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    server.push_faults([Fault::DropAfter(2 * MIB as u64 + 1000)]);
    let once = DownloadOptions {
        max_attempts: 1,
        ..options()
    };
    fetch(&spec, &dest, once).unwrap_err();
    // Damage the last verified chunk on disk, as a crash could.
    let (partial, _) = partial_paths(&dest);
    let mut data = std::fs::read(&partial).unwrap();
    data[2 * MIB - 10] ^= 1;
    std::fs::write(&partial, &data).unwrap();
    let outcome = fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
    assert_eq!(outcome.resumed_from, 0);
}

#[test]
fn file_sources_are_verified_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random_bytes(MIB + 1, 13);
    let source = dir.path().join("mirror.bin");
    std::fs::write(&source, &bytes).unwrap();
    let mut spec = FileSpec {
        label: "mirror".into(),
        sources: vec![format!("file://{}", source.display())],
        size: bytes.len() as u64,
        sha256: Sha256Digest::of(&bytes),
        chunks: None,
    };
    let dest = dir.path().join("model.bin");
    fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);

    std::fs::remove_file(&dest).unwrap();
    spec.sha256 = Sha256Digest::of(b"something else");
    let err = fetch(&spec, &dest, options()).unwrap_err();
    assert!(err.to_string().contains("checksum failed"), "{err}");
    assert_nothing_in_place(&dest);
}

#[test]
fn a_second_source_is_used_when_the_first_fails() {
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(MIB, 14);
    let mut spec = spec(&server, &bytes, None);
    spec.sources.insert(0, server.url("/gone"));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    fetch(&spec, &dest, options()).unwrap();
    assert_verified(&dest, &bytes);
}
