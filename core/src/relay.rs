//! Server mode: turn events and cancels between replicas.
//!
//! A WebSocket turn runs on the replica its socket reached, but the same
//! user may have sockets on other replicas (a phone that reconnected
//! through the balancer, a second device). Every event of a turn goes to
//! its own socket and, through the Redis channel `TURNS_CHANNEL`, to
//! every other socket of the same user on every replica; a `cancel` for a
//! turn this replica does not run goes the same way to the one that does.
//! Messages name their user, and a replica hands them only to that user's
//! sockets and turns: one user never sees or stops another's.
//!
//! Events through the relay are a live view: memory stays the record (a
//! socket that missed events reads the conversation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::memory::Memory;
use crate::memory::UserId;

/// What travels on the channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    /// A turn's event, for every socket of `user` but `socket`.
    Event {
        user: UserId,
        socket: String,
        event: serde_json::Value,
    },
    /// Stop `user`'s turn `turn_id` wherever it runs.
    Cancel { user: UserId, turn_id: String },
}

type Sockets = HashMap<UserId, Vec<(String, mpsc::Sender<serde_json::Value>)>>;

/// Turns running here: (user, turn id) → (the registration's serial, its
/// cancel).
type Turns = HashMap<(UserId, String), (u64, oneshot::Sender<()>)>;

/// One replica's end of the relay.
#[derive(Debug)]
pub struct Relay {
    outgoing: mpsc::UnboundedSender<String>,
    sockets: Mutex<Sockets>,
    /// Turns running here, each with the serial of its registration.
    turns: Mutex<Turns>,
    serial: std::sync::atomic::AtomicU64,
    /// How many turns run here (for draining).
    running: watch::Sender<usize>,
}

impl Relay {
    /// Starts relaying through `memory`'s pub/sub.
    pub fn start(memory: Memory) -> Arc<Self> {
        let (outgoing, mut queue) = mpsc::unbounded_channel::<String>();
        let relay = Arc::new(Self {
            outgoing,
            sockets: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            serial: std::sync::atomic::AtomicU64::new(0),
            running: watch::Sender::new(0),
        });
        // One publisher task keeps this replica's messages in order.
        let publisher = memory.clone();
        tokio::spawn(async move {
            while let Some(payload) = queue.recv().await {
                if let Err(error) = publisher.publish_turn_message(payload).await {
                    tracing::warn!(%error, "could not relay a turn message to other replicas");
                }
            }
        });
        let mut incoming = memory.turn_messages();
        let weak: Weak<Self> = Arc::downgrade(&relay);
        tokio::spawn(async move {
            loop {
                let payload = match incoming.recv().await {
                    Ok(payload) => payload,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the turn relay fell behind");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(relay) = weak.upgrade() else { return };
                match serde_json::from_str::<Wire>(&payload) {
                    Ok(wire) => relay.deliver(wire),
                    Err(error) => tracing::debug!(%error, "ignored an unknown relay message"),
                }
            }
        });
        relay
    }

    fn deliver(&self, wire: Wire) {
        match wire {
            Wire::Event {
                user,
                socket,
                event,
            } => {
                let sockets = lock(&self.sockets);
                for (id, out) in sockets.get(&user).into_iter().flatten() {
                    // A full queue is a client that stopped reading: it
                    // misses live events, never slows the relay.
                    if *id != socket && out.try_send(event.clone()).is_err() {
                        tracing::debug!(socket = id, "dropped a relayed event for a slow socket");
                    }
                }
            }
            Wire::Cancel { user, turn_id } => {
                if let Some((_, cancel)) = lock(&self.turns).remove(&(user, turn_id)) {
                    let _ = cancel.send(());
                }
            }
        }
    }

    fn send(&self, wire: &Wire) {
        match serde_json::to_string(wire) {
            Ok(payload) => {
                let _ = self.outgoing.send(payload);
            }
            Err(error) => tracing::warn!(%error, "could not encode a relay message"),
        }
    }

    /// Adds a socket of `user` that receives the events of the user's
    /// turns on every replica; it leaves when the returned handle drops.
    pub fn join(
        self: &Arc<Self>,
        user: &UserId,
        out: mpsc::Sender<serde_json::Value>,
    ) -> SocketHandle {
        let id = crate::memory::ConversationId::generate()
            .as_str()
            .to_owned();
        lock(&self.sockets)
            .entry(user.clone())
            .or_default()
            .push((id.clone(), out));
        SocketHandle {
            relay: Arc::clone(self),
            user: user.clone(),
            id,
        }
    }

    /// Registers a turn that runs here, so a cancel from any replica
    /// reaches it; `None` when the user runs a turn of that name here
    /// already. The turn is forgotten when the guard drops.
    pub fn start_turn(
        self: &Arc<Self>,
        user: &UserId,
        turn_id: &str,
    ) -> Option<(TurnGuard, oneshot::Receiver<()>)> {
        let key = (user.clone(), turn_id.to_owned());
        let mut turns = lock(&self.turns);
        if turns.contains_key(&key) {
            return None;
        }
        let (cancel, cancelled) = oneshot::channel();
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        turns.insert(key.clone(), (serial, cancel));
        drop(turns);
        self.running.send_modify(|n| *n += 1);
        Some((
            TurnGuard {
                relay: Arc::clone(self),
                key,
                serial,
            },
            cancelled,
        ))
    }

    /// Stops `user`'s turn `turn_id`, here or on whichever replica runs it.
    pub fn cancel(&self, user: &UserId, turn_id: &str) {
        let local = lock(&self.turns).remove(&(user.clone(), turn_id.to_owned()));
        match local {
            Some((_, cancel)) => {
                let _ = cancel.send(());
            }
            None => self.send(&Wire::Cancel {
                user: user.clone(),
                turn_id: turn_id.to_owned(),
            }),
        }
    }

    /// How many turns run here now, as it changes.
    pub fn running(&self) -> watch::Receiver<usize> {
        self.running.subscribe()
    }

    /// Stops every turn that runs here (each keeps what it said).
    pub fn cancel_all(&self) {
        for (_, (_, cancel)) in lock(&self.turns).drain() {
            let _ = cancel.send(());
        }
    }
}

/// A socket's place in the relay.
#[derive(Debug)]
pub struct SocketHandle {
    relay: Arc<Relay>,
    user: UserId,
    id: String,
}

impl SocketHandle {
    /// Sends a turn's event to the user's other sockets, on every replica.
    pub fn broadcast(&self, event: &serde_json::Value) {
        self.relay.send(&Wire::Event {
            user: self.user.clone(),
            socket: self.id.clone(),
            event: event.clone(),
        });
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }

    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }
}

impl Drop for SocketHandle {
    fn drop(&mut self) {
        let mut sockets = lock(&self.relay.sockets);
        if let Some(list) = sockets.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                sockets.remove(&self.user);
            }
        }
    }
}

/// A running turn's registration.
#[derive(Debug)]
pub struct TurnGuard {
    relay: Arc<Relay>,
    key: (UserId, String),
    serial: u64,
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let mut turns = lock(&self.relay.turns);
        // Only this registration: a cancelled turn's name may be in use by
        // a newer turn already.
        if turns.get(&self.key).is_some_and(|(s, _)| *s == self.serial) {
            turns.remove(&self.key);
        }
        drop(turns);
        self.relay.running.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
