//! Records checkpoints on a thread of its own: `fdatasync` of the partial,
//! then the sidecar replaced atomically, in that order, so a power cut can
//! never leave a sidecar claiming bytes the partial does not hold. The
//! download keeps receiving meanwhile; when the disk is slower than the
//! network, only the newest checkpoint waiting is written (a resume also
//! re-verifies whole chunks past it, see `Partial::resume`).

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use jarvis_durable::{Visibility, write_atomic};

use crate::{DownloadError, file_error};

#[derive(Default)]
struct Slot {
    /// The sidecar text to write next (newest wins).
    next: Option<Vec<u8>>,
    /// A sidecar is being written now.
    busy: bool,
    stop: bool,
    /// The first failure, reported at the next call.
    error: Option<DownloadError>,
}

struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Slot>) -> MutexGuard<'a, Slot> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// `file` is a handle on the partial (for `fdatasync`), `sidecar` the
    /// state file beside it.
    pub(crate) fn spawn(
        file: File,
        partial: PathBuf,
        sidecar: PathBuf,
    ) -> Result<Self, DownloadError> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("download-checkpoints".to_owned())
            .spawn(move || run(&worker, &file, &partial, &sidecar))
            .map_err(|_| DownloadError::HashingStopped)?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `sidecar` to be written after the partial's data is on disk.
    pub(crate) fn submit(&self, sidecar: Vec<u8>) -> Result<(), DownloadError> {
        let mut slot = self.shared.lock();
        if let Some(error) = slot.error.take() {
            return Err(error);
        }
        slot.next = Some(sidecar);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Waits until every queued checkpoint is written.
    pub(crate) fn settle(&self) -> Result<(), DownloadError> {
        let mut slot = self.shared.lock();
        while slot.next.is_some() || slot.busy {
            slot = self.shared.wait(slot);
        }
        slot.error.take().map_or(Ok(()), Err)
    }

    /// Drops the queued checkpoint and waits for the one being written: the
    /// partial is about to be cut shorter than what it claims.
    pub(crate) fn discard_and_settle(&self) -> Result<(), DownloadError> {
        let mut slot = self.shared.lock();
        slot.next = None;
        while slot.busy {
            slot = self.shared.wait(slot);
        }
        slot.error.take().map_or(Ok(()), Err)
    }

    /// Writes what is queued, then ends the thread.
    pub(crate) fn stop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, file: &File, partial: &std::path::Path, sidecar: &std::path::Path) {
    loop {
        let text = {
            let mut slot = shared.lock();
            loop {
                if let Some(text) = slot.next.take() {
                    slot.busy = true;
                    break text;
                }
                if slot.stop {
                    return;
                }
                slot = shared.wait(slot);
            }
        };
        let result = file
            .sync_data()
            .map_err(|e| file_error("flush to disk", partial, e))
            .and_then(|()| {
                write_atomic("download state", sidecar, &text, Visibility::Normal)
                    .map_err(DownloadError::from)
            });
        let mut slot = shared.lock();
        slot.busy = false;
        if let Err(error) = result {
            tracing::warn!(%error, "could not record a download checkpoint");
            slot.error.get_or_insert(error);
        }
        shared.changed.notify_all();
    }
}
