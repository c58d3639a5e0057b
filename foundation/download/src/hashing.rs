//! SHA-256 on threads of their own, so that a download hashes while it
//! receives and writes. A worker takes the very `Bytes` the network handed
//! over (no copy) through a bounded queue and answers questions about the
//! stream *at the point they were asked*: jobs run in order, so a snapshot
//! asked for after byte N is the state after exactly N bytes.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::DownloadError;

/// Jobs a worker can hold before the sender waits: with the network's
/// chunks (16–64 KiB) a few MiB, with `file://`'s 1 MiB reads at most
/// `QUEUE` MiB.
const QUEUE: usize = 64;

enum Job {
    Update(Bytes),
    /// The state after everything queued before this job.
    Snapshot(SyncSender<Sha256>),
    /// The digest of everything since the last reset, then a fresh state.
    DigestAndReset(SyncSender<[u8; 32]>),
    /// Replaces the state (a resume or a step back to a checkpoint).
    Set(Box<Sha256>),
}

/// One SHA-256 stream on its own thread.
pub(crate) struct HashWorker {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl HashWorker {
    pub(crate) fn spawn(name: &str, state: Sha256) -> Result<Self, DownloadError> {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(state, &queue))
            .map_err(|_| DownloadError::HashingStopped)?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    pub(crate) fn update(&self, bytes: Bytes) -> Result<(), DownloadError> {
        self.send(Job::Update(bytes))
    }

    pub(crate) fn set(&self, state: Sha256) -> Result<(), DownloadError> {
        self.send(Job::Set(Box::new(state)))
    }

    /// The state after everything sent so far, once the worker gets there.
    pub(crate) fn snapshot(&self) -> Result<Receiver<Sha256>, DownloadError> {
        let (reply, answer) = sync_channel(1);
        self.send(Job::Snapshot(reply))?;
        Ok(answer)
    }

    /// The digest of everything since the last reset, once the worker gets
    /// there; the worker then starts afresh.
    pub(crate) fn digest_and_reset(&self) -> Result<Receiver<[u8; 32]>, DownloadError> {
        let (reply, answer) = sync_channel(1);
        self.send(Job::DigestAndReset(reply))?;
        Ok(answer)
    }

    fn send(&self, job: Job) -> Result<(), DownloadError> {
        self.jobs
            .as_ref()
            .ok_or(DownloadError::HashingStopped)?
            .send(job)
            .map_err(|_| DownloadError::HashingStopped)
    }
}

impl Drop for HashWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has drained.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut state: Sha256, queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        match job {
            Job::Update(bytes) => state.update(&bytes),
            // The asker may have given up on the answer (a step back to a
            // checkpoint drops stale questions): nothing to do then.
            Job::Snapshot(reply) => {
                let _ = reply.send(state.clone());
            }
            Job::DigestAndReset(reply) => {
                let _ = reply.send(state.finalize_reset().into());
            }
            Job::Set(new) => state = *new,
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn answers_describe_the_stream_where_they_were_asked() {
        let worker = HashWorker::spawn("test-hash", Sha256::new()).unwrap();
        worker.update(Bytes::from_static(b"ab")).unwrap();
        let after_ab = worker.snapshot().unwrap();
        worker.update(Bytes::from_static(b"c")).unwrap();
        let abc = worker.digest_and_reset().unwrap();
        worker.update(Bytes::from_static(b"xyz")).unwrap();
        let xyz = worker.digest_and_reset().unwrap();

        assert_eq!(
            after_ab.recv().unwrap().finalize()[..],
            Sha256::digest(b"ab")[..]
        );
        assert_eq!(abc.recv().unwrap()[..], Sha256::digest(b"abc")[..]);
        assert_eq!(xyz.recv().unwrap()[..], Sha256::digest(b"xyz")[..]);

        let mut resumed = Sha256::new();
        resumed.update(b"ab");
        worker.set(resumed).unwrap();
        worker.update(Bytes::from_static(b"c")).unwrap();
        assert_eq!(
            worker.digest_and_reset().unwrap().recv().unwrap()[..],
            Sha256::digest(b"abc")[..]
        );
    }
}
