//! Download progress in the terminal: a bar per file for people, JSON
//! lines on stderr for scripts (`--json`).

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use jarvis_download::{DownloadState, Progress, ProgressSink};

/// Progress as JSON lines (`--json`) or as a bar for people.
pub fn sink(json: bool) -> Box<dyn ProgressSink> {
    if json {
        Box::new(JsonProgress)
    } else {
        Box::new(BarProgress::default())
    }
}

/// Progress as JSON lines on stderr (`--json`), for scripts and the UI.
struct JsonProgress;

impl ProgressSink for JsonProgress {
    fn report(&self, progress: &Progress) {
        if let Ok(line) = serde_json::to_string(progress) {
            eprintln!("{line}");
        }
    }
}

/// One progress bar per file on stderr (hidden when it is not a terminal).
#[derive(Default)]
struct BarProgress {
    bar: Mutex<Option<(String, ProgressBar)>>,
}

impl ProgressSink for BarProgress {
    fn report(&self, progress: &Progress) {
        let Ok(mut slot) = self.bar.lock() else {
            return;
        };
        if slot
            .as_ref()
            .is_none_or(|(label, _)| label != &progress.label)
        {
            let bar = ProgressBar::new(progress.bytes_total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(progress.label.clone());
            *slot = Some((progress.label.clone(), bar));
        }
        let Some((_, bar)) = slot.as_ref() else {
            return;
        };
        bar.set_position(progress.bytes_done);
        match &progress.state {
            DownloadState::Retrying { attempt, reason } => {
                bar.println(format!("retrying (attempt {attempt}): {reason}"));
            }
            DownloadState::Done => bar.finish(),
            DownloadState::Failed { .. } => bar.abandon(),
            _ => {}
        }
    }
}
