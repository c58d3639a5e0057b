//! Model events for the core: `model_activated` whenever an `active`
//! pointer changes (whoever changed it: `jarvis models activate` runs in
//! its own process) and `model_progress` for downloads in staging, both
//! published on Redis' `jarvis:events` channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jarvis_model_registry::ModelStore;
use jarvis_protocol::events::{EVENTS_CHANNEL, Event};
use jarvis_redis_bundle::RedisServer;

/// What the supervisor last announced, to announce only changes.
#[derive(Debug)]
pub struct ModelWatch {
    models_dir: PathBuf,
    /// The `active` pointers last seen.
    active_models: ActiveModels,
    /// Without a catalog there are no totals to report progress against.
    catalog: Option<jarvis_model_registry::Catalog>,
    /// Bytes of each download in staging last announced.
    progress: BTreeMap<(String, String), u64>,
}

impl ModelWatch {
    /// Starts from what is on disk now (nothing to announce yet).
    pub fn new(models_dir: PathBuf, catalog: Option<jarvis_model_registry::Catalog>) -> Self {
        Self {
            active_models: ActiveModels::read(&models_dir),
            models_dir,
            catalog,
            progress: BTreeMap::new(),
        }
    }

    /// Publishes `model_activated` for every pointer that changed since the
    /// last look, whoever changed it (`jarvis models activate` runs in its
    /// own process), so the core swaps engines at once.
    pub async fn announce_changes(&mut self, redis: &RedisServer) {
        self.announce_download_progress(redis).await;
        let now = ActiveModels::read(&self.models_dir);
        if now == self.active_models {
            return;
        }
        let changed: Vec<(String, String)> = now
            .0
            .iter()
            .filter(|(name, version)| self.active_models.0.get(*name) != Some(*version))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let Ok(mut conn) = redis.connect().await else {
            return; // try again next tick
        };
        for (name, version) in changed {
            let event = Event::ModelActivated {
                name: name.clone(),
                version: version.clone(),
            };
            if !publish(&mut conn, &event).await {
                return; // try again next tick
            }
            tracing::info!(%name, %version, "announced model activation");
        }
        self.active_models = now;
    }

    /// Publishes `model_progress` for downloads in the staging folder
    /// (`jarvis models pull` runs in its own process, without Redis): bytes
    /// on disk against the catalog's total, whenever they changed.
    async fn announce_download_progress(&mut self, redis: &RedisServer) {
        let Some(catalog) = &self.catalog else {
            return;
        };
        let store = ModelStore::new(self.models_dir.clone());
        let mut seen = BTreeMap::new();
        for entry in &catalog.models {
            if !store.staging_dir(&entry.name, &entry.version).is_dir() {
                continue;
            }
            seen.insert(
                (entry.name.to_string(), entry.version.to_string()),
                (store.staged_bytes(entry), entry.total_size()),
            );
        }
        let changed: Vec<_> = seen
            .iter()
            .filter(|(key, (done, _))| self.progress.get(*key) != Some(done))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        self.progress = seen.into_iter().map(|(k, (done, _))| (k, done)).collect();
        if changed.is_empty() {
            return;
        }
        let Ok(mut conn) = redis.connect().await else {
            return;
        };
        for ((name, version), (done, total)) in changed {
            let event = Event::ModelProgress {
                name,
                version,
                done,
                total,
            };
            publish(&mut conn, &event).await;
        }
    }
}

/// Publishes one event on the events channel; false when Redis refused.
async fn publish(conn: &mut redis::aio::MultiplexedConnection, event: &Event) -> bool {
    let Ok(json) = serde_json::to_string(event) else {
        return false;
    };
    let published: Result<i64, _> = redis::cmd("PUBLISH")
        .arg(EVENTS_CHANNEL)
        .arg(json)
        .query_async(conn)
        .await;
    published.is_ok()
}

/// Each model's active version, as the registry's pointers say.
#[derive(Debug, Default, PartialEq, Eq)]
struct ActiveModels(BTreeMap<String, String>);

impl ActiveModels {
    fn read(models_dir: &Path) -> Self {
        let mut active = BTreeMap::new();
        for entry in std::fs::read_dir(models_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if let Ok(Some(version)) = jarvis_protocol::models::active_version(models_dir, &name) {
                active.insert(name, version);
            }
        }
        Self(active)
    }
}
