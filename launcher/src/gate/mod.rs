//! The gatekeeper: every action the core asks for is checked again here,
//! allowed by a standing permission or decided by the person, and only
//! then executed, by the launcher.
//!
//! The core pushes request ids onto `jarvis:actions:queue`; the gate takes
//! each one, copies the request, and from then on trusts only its copy. A
//! decision names the request id and the hash of the exact arguments shown
//! ([`jarvis_actions::arguments_hash`]); decisions come only from the
//! approval surface ([`surface`], its own loopback origin) or the
//! terminal (`jarvis approvals`, with the launcher-only control token).
//! Nothing in Redis or the core's API is read as a decision. Undecided
//! requests are denied after `JARVIS_APPROVAL_TIMEOUT_S`; requests left
//! from a previous run are denied at start. Everything goes into the
//! audit log.
//!
//! Modules, bottom-up: [`permissions`] (standing permissions, allowed
//! folders), [`audit`], [`reminders`], [`notify`], [`executor`] (runs
//! tools), this module (intake, pending, decisions, timeouts), and
//! [`surface`] (the approval surface's HTTP server).

pub mod audit;
pub mod executor;
pub mod notify;
pub mod permissions;
pub mod reminders;
pub mod surface;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use jarvis_actions::record::{
    DEFAULT_APPROVAL_TIMEOUT_S, QUEUE_KEY, RECORD_TTL_SECONDS, WITHDRAWN_KEY, is_valid_id,
    record_key,
};
use jarvis_actions::{
    ActionRequest, ActionState, Arguments, DecidedBy, Status, Tool, arguments_hash, validate,
};
use jarvis_protocol::env;
use jiff::Timestamp;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ui::auth::Auth;
use audit::Audit;
use permissions::{Grant, Permissions, Scope};
use reminders::Reminders;

/// How often the queue, the timeouts and the reminders are looked at.
const TICK: Duration = Duration::from_millis(200);

/// What the person chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// Run it this once.
    Once,
    /// Run it, and allow this tool in this conversation from now on.
    Conversation,
    /// Run it, and allow this tool always (harmless tiers only).
    Always,
    Deny,
}

/// Why a decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("there is no pending request '{0}' (it was decided, expired, or never existed)")]
    NotPending(String),
    #[error(
        "the decision was made for other arguments than request '{0}' has; look at the request again"
    )]
    ArgumentsChanged(String),
    #[error("{0} can be allowed once or for a conversation, never always")]
    AlwaysNotAllowed(Tool),
    #[error("request '{0}' belongs to no conversation; allow it once instead")]
    NoConversation(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A request waiting for the person.
#[derive(Debug, Clone)]
struct Pending {
    request: ActionRequest,
    tool: Tool,
    arguments: Arguments,
    hash: String,
    expires_at: Timestamp,
}

/// What the approval surface and `jarvis approvals list` show.
#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    pub id: String,
    pub tool: Tool,
    pub tier: jarvis_actions::Tier,
    pub tier_description: &'static str,
    pub description: &'static str,
    pub source: jarvis_actions::Source,
    pub conversation_id: Option<String>,
    pub arguments: Value,
    /// The arguments as the person reads them: pretty JSON, complete.
    pub arguments_text: String,
    pub arguments_hash: String,
    pub may_always_allow: bool,
    pub created_at: String,
    pub expires_at: String,
}

/// The gatekeeper of one running launcher.
pub struct Gate {
    data_dir: PathBuf,
    redis: ConnectionManager,
    audit: Audit,
    reminders: Reminders,
    timeout: Duration,
    pending: Mutex<BTreeMap<String, Pending>>,
    /// Ids ever taken (this run and, from the audit log, earlier ones): a
    /// request id pushed again is refused.
    seen: Mutex<HashSet<String>>,
    /// Sign-in codes and sessions of the approval surface.
    pub surface_auth: Auth,
    /// `http://127.0.0.1:<port>` of the approval surface, once it listens.
    pub surface_origin: OnceLock<String>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("data_dir", &self.data_dir)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The approval timeout (`JARVIS_APPROVAL_TIMEOUT_S`, default 120 s).
pub fn approval_timeout() -> anyhow::Result<Duration> {
    match std::env::var(env::APPROVAL_TIMEOUT_S) {
        Ok(v) if !v.is_empty() => {
            let seconds: u64 = v.parse().with_context(|| {
                format!(
                    "{} must be a number of seconds, not '{v}'",
                    env::APPROVAL_TIMEOUT_S
                )
            })?;
            Ok(Duration::from_secs(seconds.max(1)))
        }
        _ => Ok(Duration::from_secs(DEFAULT_APPROVAL_TIMEOUT_S)),
    }
}

impl Gate {
    /// Connects to Redis as the launcher, denies what a previous run left
    /// undecided, and starts taking requests in the background.
    pub async fn start(data_dir: &Path, redis_url: &str) -> anyhow::Result<Arc<Self>> {
        let timeout = approval_timeout()?;
        let client = redis::Client::open(redis_url).context("bad Redis address for the gate")?;
        let redis = ConnectionManager::new(client)
            .await
            .context("the gatekeeper could not connect to Redis")?;
        let audit = Audit::open(data_dir)?;
        let seen: HashSet<String> = audit::read(data_dir)?
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        let gate = Arc::new(Self {
            data_dir: data_dir.to_owned(),
            reminders: Reminders::new(redis.clone()),
            redis,
            audit,
            timeout,
            pending: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(seen),
            surface_auth: Auth::default(),
            surface_origin: OnceLock::new(),
        });
        gate.deny_leftovers().await?;
        let running = Arc::clone(&gate);
        tokio::spawn(async move { running.run().await });
        Ok(gate)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn reminders(&self) -> &Reminders {
        &self.reminders
    }

    /// A fresh one-time sign-in URL of the approval surface.
    pub fn surface_signin_url(&self) -> Option<String> {
        let origin = self.surface_origin.get()?;
        Some(format!(
            "{origin}/signin?code={}",
            self.surface_auth.new_code()
        ))
    }

    /// Requests pushed while no launcher ran: nobody saw them, so denied.
    async fn deny_leftovers(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.clone();
        loop {
            let id: Option<String> = conn.lpop(QUEUE_KEY, None).await?;
            let Some(id) = id else { return Ok(()) };
            if !is_valid_id(&id) || !self.first_sight(&id) {
                continue;
            }
            self.audit.record(json!({
                "id": id, "event": "decided", "decision": "expired", "by": DecidedBy::Timeout,
                "reason": "Jarvis restarted before anyone decided",
            }))?;
            self.set_state(
                &id,
                final_state(
                    Status::Expired,
                    DecidedBy::Timeout,
                    "Jarvis restarted before anyone decided",
                    String::new(),
                ),
            )
            .await;
        }
    }

    async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.take_requests().await {
                tracing::warn!("the gatekeeper could not read requests: {e:#}");
            }
            if let Err(e) = self.take_withdrawals().await {
                tracing::warn!("the gatekeeper could not read withdrawals: {e:#}");
            }
            self.expire().await;
            match self.reminders.take_due(Timestamp::now()).await {
                Ok(fired) => {
                    for f in fired {
                        tracing::info!(id = %f.reminder.id, "reminder due");
                        let _ = self.audit.record(json!({"id": f.reminder.id, "event": "reminder_fired", "text": f.reminder.text}));
                        notify::notify("Jarvis reminder", &f.reminder.text);
                    }
                }
                Err(e) => tracing::warn!("could not read reminders: {e:#}"),
            }
        }
    }

    /// Whether `id` was never taken before (and marks it taken).
    fn first_sight(&self, id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned())
    }

    async fn take_requests(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.clone();
        loop {
            let id: Option<String> = conn.lpop(QUEUE_KEY, None).await?;
            let Some(id) = id else { return Ok(()) };
            if !is_valid_id(&id) {
                tracing::warn!("ignoring a malformed action id on the queue");
                continue;
            }
            if !self.first_sight(&id) {
                tracing::warn!(%id, "refusing an action id that was seen before");
                self.audit
                    .record(json!({"id": id, "event": "replay_refused"}))?;
                continue;
            }
            let raw: Option<String> = conn.hget(record_key(&id), "request").await?;
            self.take(&id, raw.as_deref()).await?;
        }
    }

    /// Checks one request again and allows it by permission, refuses it,
    /// or puts it before the person.
    async fn take(&self, id: &str, raw: Option<&str>) -> anyhow::Result<()> {
        let request = match raw.map(serde_json::from_str::<ActionRequest>) {
            Some(Ok(r)) if r.id == id => r,
            _ => {
                self.refuse(
                    id,
                    "the request is missing or unreadable",
                    String::new(),
                    None,
                )
                .await?;
                return Ok(());
            }
        };
        let hash = arguments_hash(&request.tool, &request.arguments);
        self.audit.record(json!({
            "id": id, "event": "requested", "tool": request.tool, "arguments": request.arguments,
            "arguments_hash": hash, "source": request.source, "conversation_id": request.conversation_id,
        }))?;
        let Some(tool) = Tool::from_name(&request.tool) else {
            let reason = format!("there is no tool '{}'", request.tool);
            return self.refuse(id, &reason, hash, None).await;
        };
        let arguments = match validate(tool, &request.arguments, Timestamp::now()) {
            Ok(a) => a,
            Err(e) => return self.refuse(id, &e.to_string(), hash, Some(tool)).await,
        };
        let permissions = match Permissions::load(&self.data_dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("permissions unreadable, asking instead: {e:#}");
                Permissions::default()
            }
        };
        // Paths are checked on the real disk before anyone is asked.
        if let Arguments::ReadFile { path } | Arguments::OpenPath { path } = &arguments
            && let Err(reason) = permissions.resolve_allowed(Path::new(path))
        {
            return self.refuse(id, &reason, hash, Some(tool)).await;
        }
        let pending = Pending {
            expires_at: Timestamp::now()
                .checked_add(jiff::SignedDuration::try_from(self.timeout).unwrap_or_default())
                .unwrap_or_else(|_| Timestamp::now()),
            request,
            tool,
            arguments,
            hash,
        };
        if let Some(grant) = permissions.covering(tool, pending.request.conversation_id.as_deref())
        {
            self.audit.record(json!({
                "id": id, "event": "decided", "decision": "allow", "by": DecidedBy::Permission,
                "grant": grant,
            }))?;
            self.execute(pending, DecidedBy::Permission).await;
            return Ok(());
        }
        self.set_state(
            id,
            ActionState {
                status: Status::Pending,
                decided_by: None,
                result: None,
                reason: None,
                arguments_hash: pending.hash.clone(),
                updated_at: Timestamp::now().to_string(),
            },
        )
        .await;
        notify::notify(
            "Jarvis asks for your approval",
            &format!("{}: {}", tool.name(), tool.description()),
        );
        tracing::info!(%id, tool = %tool, "action waits for approval");
        self.lock_pending().insert(id.to_owned(), pending);
        Ok(())
    }

    async fn refuse(
        &self,
        id: &str,
        reason: &str,
        hash: String,
        tool: Option<Tool>,
    ) -> anyhow::Result<()> {
        tracing::info!(%id, ?tool, reason, "action refused");
        self.audit.record(json!({
            "id": id, "event": "decided", "decision": "refused", "by": DecidedBy::Launcher, "reason": reason,
        }))?;
        self.set_state(
            id,
            final_state(Status::Denied, DecidedBy::Launcher, reason, hash),
        )
        .await;
        Ok(())
    }

    /// Requests the core took back: denied if they still wait (a
    /// withdrawal can never allow anything), ignored otherwise.
    async fn take_withdrawals(&self) -> anyhow::Result<()> {
        let mut conn = self.redis.clone();
        loop {
            let id: Option<String> = conn.lpop(WITHDRAWN_KEY, None).await?;
            let Some(id) = id else { return Ok(()) };
            let Some(p) = self.lock_pending().remove(&id) else {
                continue;
            };
            let reason = "withdrawn before anyone decided";
            tracing::info!(%id, "action withdrawn");
            self.audit.record(json!({
                "id": id, "event": "decided", "decision": "withdrawn", "by": DecidedBy::Requester,
                "reason": reason,
            }))?;
            self.set_state(
                &id,
                final_state(Status::Denied, DecidedBy::Requester, reason, p.hash),
            )
            .await;
        }
    }

    /// Denies what waited too long.
    async fn expire(&self) {
        let now = Timestamp::now();
        let expired: Vec<Pending> = {
            let mut pending = self.lock_pending();
            let ids: Vec<String> = pending
                .iter()
                .filter(|(_, p)| p.expires_at <= now)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for p in expired {
            let reason = format!(
                "nobody decided within {} s, so it was denied",
                self.timeout.as_secs()
            );
            tracing::info!(id = %p.request.id, "action expired");
            if let Err(e) = self.audit.record(json!({
                "id": p.request.id, "event": "decided", "decision": "expired", "by": DecidedBy::Timeout,
                "reason": reason,
            })) {
                tracing::error!("{e:#}");
            }
            self.set_state(
                &p.request.id,
                final_state(Status::Expired, DecidedBy::Timeout, &reason, p.hash),
            )
            .await;
        }
    }

    /// What waits for the person, oldest first.
    pub fn pending(&self) -> Vec<PendingView> {
        let pending = self.lock_pending();
        let mut views: Vec<PendingView> = pending
            .values()
            .map(|p| PendingView {
                id: p.request.id.clone(),
                tool: p.tool,
                tier: p.tool.tier(),
                tier_description: p.tool.tier().describe(),
                description: p.tool.description(),
                source: p.request.source,
                conversation_id: p.request.conversation_id.clone(),
                arguments: p.request.arguments.clone(),
                arguments_text: serde_json::to_string_pretty(&p.request.arguments)
                    .unwrap_or_default(),
                arguments_hash: p.hash.clone(),
                may_always_allow: p.tool.tier().may_always_allow(),
                created_at: p.request.created_at.clone(),
                expires_at: p.expires_at.to_string(),
            })
            .collect();
        views.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        views
    }

    /// The person's decision on request `id`, made for the arguments whose
    /// hash is `hash`. Runs the tool when allowed; returns the final state.
    pub async fn decide(
        &self,
        id: &str,
        hash: &str,
        choice: Choice,
        by: DecidedBy,
    ) -> Result<ActionState, DecideError> {
        let pending = {
            let mut pending = self.lock_pending();
            let Some(p) = pending.get(id) else {
                return Err(DecideError::NotPending(id.to_owned()));
            };
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                p.hash.as_bytes(),
                hash.as_bytes(),
            )) {
                drop(pending);
                self.audit.record(json!({
                    "id": id, "event": "decision_refused", "by": by,
                    "reason": "made for other arguments", "hash": hash,
                }))?;
                return Err(DecideError::ArgumentsChanged(id.to_owned()));
            }
            if choice == Choice::Always && !p.tool.tier().may_always_allow() {
                return Err(DecideError::AlwaysNotAllowed(p.tool));
            }
            if choice == Choice::Conversation && p.request.conversation_id.is_none() {
                return Err(DecideError::NoConversation(id.to_owned()));
            }
            pending
                .remove(id)
                .ok_or_else(|| DecideError::NotPending(id.to_owned()))?
        };
        self.audit.record(json!({
            "id": id, "event": "decided", "decision": choice, "by": by, "arguments_hash": hash,
        }))?;
        if choice == Choice::Deny {
            let state = final_state(Status::Denied, by, "you declined", pending.hash.clone());
            self.set_state(id, state.clone()).await;
            return Ok(state);
        }
        if matches!(choice, Choice::Always | Choice::Conversation) {
            let grant = Grant {
                tool: pending.tool,
                scope: if choice == Choice::Always {
                    Scope::Always
                } else {
                    Scope::Conversation
                },
                conversation_id: if choice == Choice::Conversation {
                    pending.request.conversation_id.clone()
                } else {
                    None
                },
                granted_at: Timestamp::now().to_string(),
                granted_by: by,
            };
            Permissions::update(&self.data_dir, |p| {
                p.grant(grant.clone());
                Ok(())
            })?;
            self.audit
                .record(json!({"id": id, "event": "permission_granted", "grant": grant}))?;
        }
        Ok(self.execute(pending, by).await)
    }

    async fn execute(&self, pending: Pending, by: DecidedBy) -> ActionState {
        let id = pending.request.id.clone();
        let mut state = ActionState {
            status: Status::Running,
            decided_by: Some(by),
            result: None,
            reason: None,
            arguments_hash: pending.hash.clone(),
            updated_at: Timestamp::now().to_string(),
        };
        self.set_state(&id, state.clone()).await;
        let outcome = executor::run(
            &pending.arguments,
            &self.data_dir,
            &self.reminders,
            &id,
            pending.request.conversation_id.as_deref(),
        )
        .await;
        match outcome {
            Ok(result) => {
                state.status = Status::Done;
                state.result = Some(result);
            }
            Err(reason) => {
                state.status = Status::Failed;
                state.reason = Some(reason);
            }
        }
        state.updated_at = Timestamp::now().to_string();
        tracing::info!(%id, tool = %pending.tool, status = ?state.status, "action finished");
        if let Err(e) = self.audit.record(json!({
            "id": id, "event": "result", "status": state.status, "result": state.result, "reason": state.reason,
        })) {
            tracing::error!("{e:#}");
        }
        self.set_state(&id, state.clone()).await;
        state
    }

    /// Tells the core (through the request's record) where it stands.
    async fn set_state(&self, id: &str, state: ActionState) {
        let mut conn = self.redis.clone();
        let key = record_key(id);
        let result: redis::RedisResult<()> = redis::pipe()
            .hset(
                &key,
                "state",
                serde_json::to_string(&state).unwrap_or_default(),
            )
            .ignore()
            .expire(&key, RECORD_TTL_SECONDS as i64)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = result {
            tracing::warn!(%id, "could not report an action's state: {e}");
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn final_state(status: Status, by: DecidedBy, reason: &str, hash: String) -> ActionState {
    ActionState {
        status,
        decided_by: Some(by),
        result: None,
        reason: Some(reason.to_owned()),
        arguments_hash: hash,
        updated_at: Timestamp::now().to_string(),
    }
}
