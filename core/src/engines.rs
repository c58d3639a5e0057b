//! The loaded models: one chat engine and one speech engine, swapped in
//! the background when the registry's `active` pointers change.
//!
//! - A model that is not installed is not an error: its role is `missing`
//!   and requests that need it get `model_not_installed` with a hint.
//! - Loading happens off the request path. While a new version loads, the
//!   old one keeps answering; requests in flight hold their own `Arc` of
//!   the engine they started with, so a swap never drops them.
//! - A version that failed to load (a corrupt file) is reported with its
//!   reason and not retried until the active version changes.
//! - Changes are noticed from the launcher's `model_activated` event and,
//!   as a fallback, by re-reading the pointers every few seconds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jarvis_llm::ChatModel;
use jarvis_protocol::events::{EngineState, Event};
use jarvis_protocol::health::{ActiveModel, EngineStatus};
use jarvis_protocol::models::{RECEIPT_FILE, active_version};
use jarvis_stt::Transcriber;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::memory::Memory;

/// How often the pointers are re-read when no event arrives.
const RESCAN_INTERVAL: Duration = Duration::from_secs(3);

/// What a model is for, as the registry's receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Llm,
    Stt,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llm => "llm",
            Self::Stt => "stt",
        }
    }
}

/// An installed, active model version and the file an engine loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    pub file: PathBuf,
}

/// Why a role cannot serve a request right now.
#[derive(Debug, Clone)]
pub enum Unavailable {
    NotInstalled(Role),
    Loading(ModelRef),
    Failed(ModelRef, String),
}

/// One role's engine state.
struct Slot<T> {
    /// The engine serving requests (possibly an older version).
    ready: Option<(ModelRef, Arc<T>)>,
    /// What is being loaded, or failed to load, for the active version.
    pending: Option<(ModelRef, Pending)>,
}

enum Pending {
    Loading,
    Failed(String),
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            ready: None,
            pending: None,
        }
    }
}

impl<T> Slot<T> {
    fn get(&self, role: Role) -> Result<(ModelRef, Arc<T>), Unavailable> {
        if let Some((model, engine)) = &self.ready {
            return Ok((model.clone(), Arc::clone(engine)));
        }
        match &self.pending {
            Some((model, Pending::Loading)) => Err(Unavailable::Loading(model.clone())),
            Some((model, Pending::Failed(e))) => Err(Unavailable::Failed(model.clone(), e.clone())),
            None => Err(Unavailable::NotInstalled(role)),
        }
    }

    fn status(&self, role: Role) -> EngineStatus {
        let model = |m: &ModelRef| ActiveModel {
            name: m.name.clone(),
            version: m.version.clone(),
        };
        let (state, shown, detail) = match (&self.pending, &self.ready) {
            (Some((m, Pending::Failed(e))), _) => ("failed", Some(model(m)), Some(e.clone())),
            (_, Some((m, _))) => ("ready", Some(model(m)), None),
            (Some((m, Pending::Loading)), None) => ("loading", Some(model(m)), None),
            (None, None) => ("missing", None, None),
        };
        EngineStatus {
            role: role.as_str().to_owned(),
            state: state.to_owned(),
            model: shown,
            detail,
        }
    }

    /// Whether `wanted` still needs loading into this slot.
    fn needs(&self, wanted: &ModelRef) -> bool {
        let ready = self.ready.as_ref().is_some_and(|(m, _)| m == wanted);
        let pending = self.pending.as_ref().is_some_and(|(m, _)| m == wanted);
        !ready && !pending
    }
}

/// The core's engines.
pub struct Engines {
    models_dir: PathBuf,
    /// Preferred models (the required ones), in order.
    preferred: Vec<String>,
    llm: RwLock<Slot<ChatModel>>,
    stt: RwLock<Slot<Transcriber>>,
    wake: Notify,
    memory: Memory,
    /// Threads for speech-to-text (0: every core).
    threads: usize,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("models_dir", &self.models_dir)
            .finish_non_exhaustive()
    }
}

impl Engines {
    /// `threads` caps the CPU threads speech-to-text uses (`None`: every
    /// core; chat's thread pool is sized from the environment at start).
    pub fn new(
        models_dir: PathBuf,
        preferred: Vec<String>,
        memory: Memory,
        threads: Option<usize>,
    ) -> Arc<Self> {
        Arc::new(Self {
            models_dir,
            preferred,
            llm: RwLock::default(),
            stt: RwLock::default(),
            wake: Notify::new(),
            memory,
            threads: threads.unwrap_or(0),
        })
    }

    /// Threads for one transcription (0: every core).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Starts the background loader: it loads what is active now, then
    /// follows `model_activated` events and the pointers.
    pub fn start(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.follow().await });
        let this = Arc::clone(self);
        let mut events = self.memory.events();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::ModelActivated { name, version }) => {
                        tracing::info!(%name, %version, "model activated; checking engines");
                        this.wake.notify_one();
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        this.wake.notify_one();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    pub fn llm(&self) -> Result<(ModelRef, Arc<ChatModel>), Unavailable> {
        read(&self.llm).get(Role::Llm)
    }

    pub fn stt(&self) -> Result<(ModelRef, Arc<Transcriber>), Unavailable> {
        read(&self.stt).get(Role::Stt)
    }

    pub fn status(&self) -> Vec<EngineStatus> {
        vec![
            read(&self.llm).status(Role::Llm),
            read(&self.stt).status(Role::Stt),
        ]
    }

    async fn follow(self: Arc<Self>) {
        loop {
            self.sync().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(RESCAN_INTERVAL) => {}
            }
        }
    }

    /// Loads whatever the pointers name that is not loaded yet.
    async fn sync(&self) {
        let models_dir = self.models_dir.clone();
        let preferred = self.preferred.clone();
        let Ok(active) = tokio::task::spawn_blocking(move || scan(&models_dir, &preferred)).await
        else {
            return;
        };
        if active.llm.is_none() {
            self.clear(&self.llm, Role::Llm);
        }
        if active.stt.is_none() {
            self.clear(&self.stt, Role::Stt);
        }
        let load_llm = active.llm.filter(|wanted| read(&self.llm).needs(wanted));
        if let Some(wanted) = load_llm {
            self.begin(&self.llm, Role::Llm, &wanted).await;
            let result = ChatModel::load(&wanted.file)
                .await
                .map_err(|e| e.to_string());
            self.finish(&self.llm, Role::Llm, wanted, result.map(Arc::new))
                .await;
        }
        let load_stt = active.stt.filter(|wanted| read(&self.stt).needs(wanted));
        if let Some(wanted) = load_stt {
            self.begin(&self.stt, Role::Stt, &wanted).await;
            let file = wanted.file.clone();
            let result = tokio::task::spawn_blocking(move || Transcriber::load(&file))
                .await
                .map_err(|e| format!("the loader crashed: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()));
            self.finish(&self.stt, Role::Stt, wanted, result.map(Arc::new))
                .await;
        }
    }

    async fn begin<T>(&self, slot: &RwLock<Slot<T>>, role: Role, wanted: &ModelRef) {
        tracing::info!(role = role.as_str(), name = %wanted.name, version = %wanted.version, "loading model");
        set_pending(slot, wanted.clone(), Pending::Loading);
        self.announce(role, wanted, EngineState::Loading, None)
            .await;
    }

    async fn finish<T>(
        &self,
        slot: &RwLock<Slot<T>>,
        role: Role,
        model: ModelRef,
        result: Result<Arc<T>, String>,
    ) {
        let (state, detail) = match result {
            Ok(engine) => {
                set_ready(slot, model.clone(), engine);
                (EngineState::Ready, None)
            }
            Err(error) => {
                tracing::error!(role = role.as_str(), name = %model.name, version = %model.version, %error, "model failed to load");
                set_pending(slot, model.clone(), Pending::Failed(error.clone()));
                (EngineState::Failed, Some(error))
            }
        };
        self.announce(role, &model, state, detail).await;
    }

    /// The active pointer is gone (the model was removed): stop serving it.
    fn clear<T>(&self, slot: &RwLock<Slot<T>>, role: Role) {
        let mut slot = write(slot);
        if slot.ready.is_some() || slot.pending.is_some() {
            tracing::info!(role = role.as_str(), "no active model any more; unloading");
            *slot = Slot::default();
        }
    }

    async fn announce(
        &self,
        role: Role,
        model: &ModelRef,
        state: EngineState,
        detail: Option<String>,
    ) {
        let event = Event::ModelStatus {
            role: role.as_str().to_owned(),
            name: model.name.clone(),
            version: model.version.clone(),
            state,
            detail,
        };
        if let Err(error) = self.memory.publish(&event).await {
            tracing::debug!(%error, "could not publish the engine status");
        }
    }
}

/// Short, synchronous critical sections only: no guard lives across an
/// `.await`.
fn set_pending<T>(slot: &RwLock<Slot<T>>, model: ModelRef, pending: Pending) {
    write(slot).pending = Some((model, pending));
}

fn set_ready<T>(slot: &RwLock<Slot<T>>, model: ModelRef, engine: Arc<T>) {
    let mut slot = write(slot);
    slot.ready = Some((model, engine));
    slot.pending = None;
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The active model of each role.
#[derive(Debug, Default)]
struct Active {
    llm: Option<ModelRef>,
    stt: Option<ModelRef>,
}

#[derive(Deserialize)]
struct ReceiptView {
    role: String,
    files: Vec<ReceiptFileView>,
}

#[derive(Deserialize)]
struct ReceiptFileView {
    path: String,
}

/// Reads the pointers and receipts. Preferred names first, then by name.
fn scan(models_dir: &Path, preferred: &[String]) -> Active {
    let mut names: Vec<String> = std::fs::read_dir(models_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|n| {
        (
            preferred.iter().position(|p| p == n).unwrap_or(usize::MAX),
            n.clone(),
        )
    });
    let mut active = Active::default();
    for name in names {
        let Ok(Some(version)) = active_version(models_dir, &name) else {
            continue;
        };
        let dir = models_dir.join(&name).join(&version);
        let Some(receipt) = std::fs::read(dir.join(RECEIPT_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<ReceiptView>(&b).ok())
        else {
            continue;
        };
        let pick = |wanted: &dyn Fn(&str) -> bool| {
            receipt
                .files
                .iter()
                .find(|f| wanted(&f.path))
                .map(|f| ModelRef {
                    name: name.clone(),
                    version: version.clone(),
                    file: dir.join(&f.path),
                })
        };
        match receipt.role.as_str() {
            "llm" if active.llm.is_none() => active.llm = pick(&|p| p.ends_with(".gguf")),
            "stt" if active.stt.is_none() => active.stt = pick(&|p| p.ends_with(".bin")),
            _ => {}
        }
    }
    active
}
