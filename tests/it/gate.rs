//! The gatekeeper from the outside: the real launcher, core and Redis. A
//! request goes in through the core's API (or, like a compromised core,
//! straight into Redis); decisions come only from the launcher's approval
//! surface or `jarvis approvals`; everything lands in the audit log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jarvis_tests::brain::Socket;
use jarvis_tests::{Api, TestHome, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

struct Gated {
    home: TestHome,
    launcher: jarvis_tests::Launcher,
    api: Api,
    opened: PathBuf,
    notified: PathBuf,
}

fn start(timeout_s: u32) -> Gated {
    start_with(timeout_s, false)
}

/// [`start`], with the real chat model installed when `model`.
fn start_with(timeout_s: u32, model: bool) -> Gated {
    let home = TestHome::new();
    if model {
        jarvis_tests::brain::install_models(&home, false);
    }
    let (open, opened) = home.recorder("open");
    let (notify, notified) = home.recorder("notify");
    home.set_env("JARVIS_OPEN_COMMAND", open.to_str().unwrap());
    home.set_env("JARVIS_NOTIFY_COMMAND", notify.to_str().unwrap());
    home.set_env("JARVIS_APPROVAL_TIMEOUT_S", &timeout_s.to_string());
    let launcher = home.up();
    let api = home.api();
    Gated {
        home,
        launcher,
        api,
        opened,
        notified,
    }
}

fn request(api: &Api, tool: &str, arguments: Value) -> String {
    let reply = api
        .request(Method::POST, "/v1/actions")
        .json(&json!({"tool": tool, "arguments": arguments}))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 202, "{:?}", reply.text());
    reply.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn action(api: &Api, id: &str) -> Value {
    api.request(Method::GET, &format!("/v1/actions/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    wait_for(
        Duration::from_secs(30),
        &format!("{id} to be {status}"),
        || {
            let a = action(api, id);
            (a["status"] == status).then_some(a)
        },
    )
}

/// What `jarvis approvals list --json` says is pending.
fn pending(home: &TestHome) -> Vec<Value> {
    let out = home.run(&["approvals", "list", "--json"]);
    assert!(out.status.success(), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v["pending"].as_array().unwrap().clone()
}

fn wait_pending(home: &TestHome, id: &str) -> Value {
    wait_for(
        Duration::from_secs(30),
        "the request to wait for a decision",
        || pending(home).into_iter().find(|p| p["id"] == id),
    )
}

fn audit(home: &TestHome) -> Vec<Value> {
    std::fs::read_to_string(home.path("audit/actions.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn audit_of(home: &TestHome, id: &str) -> Vec<Value> {
    audit(home).into_iter().filter(|e| e["id"] == id).collect()
}

/// The approval surface as the terminal uses it (control token, no Origin).
fn surface(
    home: &TestHome,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> (u16, Value) {
    let origin = home.instance().unwrap().approvals_url.unwrap();
    let mut request = reqwest::blocking::Client::new()
        .request(method, format!("{origin}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().unwrap_or(Value::Null))
}

fn control_token(home: &TestHome) -> String {
    std::fs::read_to_string(home.path("run/control-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The core's own Redis connection (its ACL user), read from its
/// environment: what a compromised core could do.
fn core_redis(home: &TestHome) -> redis::Connection {
    let pid = home.instance().unwrap().core.pid;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let url = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("JARVIS_REDIS_URL="))
        .unwrap()
        .to_owned();
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

#[test]
fn an_undecided_request_is_denied_after_the_timeout_and_nothing_happens() {
    let g = start(2);
    let id = request(
        &g.api,
        "write_note",
        json!({"title": "Never", "content": "x"}),
    );
    assert_eq!(action(&g.api, &id)["status"], "pending");
    let expired = wait_status(&g.api, &id, "expired");
    assert_eq!(expired["decided_by"], "timeout");
    assert!(!g.home.path("notes").exists(), "nothing was written");
    let events: Vec<Value> = audit_of(&g.home, &id)
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(events, [json!("requested"), json!("decided")]);
    assert_eq!(audit_of(&g.home, &id)[1]["decision"], "expired");
    // The person was told something waited.
    let notified = std::fs::read_to_string(&g.notified).unwrap();
    assert!(
        notified.contains("Jarvis asks for your approval"),
        "{notified}"
    );
    // Too late to approve now.
    let late = g.home.run(&["approvals", "approve", &id]);
    assert!(!late.status.success());
    assert!(late.stderr.contains("no request"), "{}", late.stderr);
}

#[test]
fn nothing_the_core_can_reach_approves_a_request() {
    let g = start(120);
    let id = request(&g.api, "open_url", json!({"url": "https://example.org/"}));
    let shown = wait_pending(&g.home, &id);
    let hash = shown["arguments_hash"].as_str().unwrap().to_owned();

    // Every core route, with the core's token, any method: no decision.
    for (method, path) in [
        (Method::POST, format!("/v1/actions/{id}")),
        (Method::PUT, format!("/v1/actions/{id}")),
        (Method::PATCH, format!("/v1/actions/{id}")),
        (Method::POST, format!("/v1/actions/{id}/approve")),
        (Method::POST, format!("/v1/actions/{id}/decide")),
        (Method::POST, "/v1/approvals".to_owned()),
        (Method::POST, "/gate/decide".to_owned()),
    ] {
        let reply = g
            .api
            .request(method.clone(), &path)
            .json(&json!({"id": id, "arguments_hash": hash, "choice": "once", "status": "done"}))
            .send()
            .unwrap();
        assert!(
            matches!(reply.status().as_u16(), 404 | 405),
            "{method} {path}: {}",
            reply.status()
        );
    }
    // The core's token is not the control token.
    let (status, _) = surface(
        &g.home,
        Method::POST,
        "/gate/decide",
        Some(json!({"id": id, "arguments_hash": hash, "choice": "once"})),
        &g.api.token,
    );
    assert_eq!(status, 401);

    // Straight into Redis as the core's user: writing a "done" state, or
    // pushing the id again, decides nothing; the launcher's keys are out
    // of reach.
    let mut redis = core_redis(&g.home);
    let key = format!("jarvis:action:{id}");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("state")
        .arg(
            json!({"status": "done", "decided_by": "ui", "arguments_hash": hash, "updated_at": ""})
                .to_string(),
        )
        .query(&mut redis)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("jarvis:actions:queue")
        .arg(&id)
        .query(&mut redis)
        .unwrap();
    let refused: redis::RedisResult<()> = redis::cmd("SET")
        .arg("launcher:reminders")
        .arg("x")
        .query(&mut redis);
    let refused = refused.unwrap_err();
    assert!(
        format!("{refused:?} {refused}")
            .to_lowercase()
            .contains("noperm")
            || refused.code() == Some("NOPERM"),
        "{refused:?}"
    );
    let refused: redis::RedisResult<Vec<String>> =
        redis::cmd("KEYS").arg("launcher:*").query(&mut redis);
    assert!(refused.is_err() || refused.unwrap().is_empty());
    wait_for(Duration::from_secs(10), "the replay to be refused", || {
        audit_of(&g.home, &id)
            .iter()
            .any(|e| e["event"] == "replay_refused")
            .then_some(())
    });
    assert!(
        pending(&g.home).iter().any(|p| p["id"] == id),
        "still waiting for the person"
    );
    assert!(!g.opened.exists(), "nothing was opened");

    // The person approves in the terminal: now it runs, once.
    let out = g.home.run(&["approvals", "approve", &id]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("https://example.org/"),
        "the request is shown in full: {}",
        out.stdout
    );
    let done = wait_status(&g.api, &id, "done");
    assert_eq!(done["decided_by"], "terminal");
    // "done" means the opener started (detached, as the OS's would be);
    // on a loaded machine its line lands a moment later.
    let opened = wait_for(Duration::from_secs(10), "the opener to run", || {
        std::fs::read_to_string(&g.opened)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(opened, "https://example.org/\n");
}

#[test]
fn a_decision_for_other_arguments_or_another_request_is_refused() {
    let g = start(120);
    let a = request(&g.api, "write_note", json!({"title": "A", "content": "a"}));
    let b = request(
        &g.api,
        "write_note",
        json!({"title": "B", "content": "rm -rf"}),
    );
    let hash_a = wait_pending(&g.home, &a)["arguments_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_pending(&g.home, &b);
    let token = control_token(&g.home);
    // A's approval replayed for B, and a made-up hash: both refused.
    for hash in [hash_a.clone(), "0".repeat(64)] {
        let (status, body) = surface(
            &g.home,
            Method::POST,
            "/gate/decide",
            Some(json!({"id": b, "arguments_hash": hash, "choice": "once"})),
            &token,
        );
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "arguments_changed");
    }
    assert!(
        audit_of(&g.home, &b)
            .iter()
            .any(|e| e["event"] == "decision_refused")
    );
    assert!(
        pending(&g.home).iter().any(|p| p["id"] == b),
        "B still waits"
    );
    // "Always" is only for harmless tools; A's own hash works.
    let (status, _) = surface(
        &g.home,
        Method::POST,
        "/gate/decide",
        Some(json!({"id": a, "arguments_hash": hash_a, "choice": "once"})),
        &token,
    );
    assert_eq!(status, 200);
    assert_eq!(wait_status(&g.api, &a, "done")["result"]["title"], "A");
    let out = g.home.run(&["approvals", "deny", &b]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(wait_status(&g.api, &b, "denied")["decided_by"], "terminal");
    let notes: Vec<_> = std::fs::read_dir(g.home.path("notes")).unwrap().collect();
    assert_eq!(notes.len(), 1, "only A's note exists");
}

#[test]
fn a_standing_permission_is_used_and_once_revoked_asks_again() {
    let g = start(120);
    let first = request(
        &g.api,
        "write_note",
        json!({"title": "One", "content": "1"}),
    );
    wait_pending(&g.home, &first);
    let out = g
        .home
        .run(&["approvals", "approve", &first, "--scope", "always"]);
    assert!(out.status.success(), "{}", out.stderr);
    wait_status(&g.api, &first, "done");

    let second = request(
        &g.api,
        "write_note",
        json!({"title": "Two", "content": "2"}),
    );
    let done = wait_status(&g.api, &second, "done");
    assert_eq!(done["decided_by"], "permission");
    let list = g.home.run(&["permissions", "list"]);
    assert!(
        list.stdout.contains("write_note  always"),
        "{}",
        list.stdout
    );

    let out = g.home.run(&["permissions", "revoke", "write_note"]);
    assert!(out.status.success(), "{}", out.stderr);
    let third = request(
        &g.api,
        "write_note",
        json!({"title": "Three", "content": "3"}),
    );
    wait_pending(&g.home, &third);
    assert_eq!(action(&g.api, &third)["status"], "pending");

    // Tools that can leak or act outside Jarvis are never "always".
    let url = request(&g.api, "open_url", json!({"url": "https://example.org/"}));
    wait_pending(&g.home, &url);
    let out = g
        .home
        .run(&["approvals", "approve", &url, "--scope", "always"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("never always"), "{}", out.stderr);
    let entries = audit(&g.home);
    assert!(entries.iter().any(|e| e["event"] == "permission_granted"));
    assert!(entries.iter().any(|e| e["event"] == "permission_revoked"));
    assert!(
        entries
            .iter()
            .any(|e| e["id"] == second && e["by"] == "permission")
    );
}

#[test]
fn files_are_read_only_inside_allowed_folders() {
    let g = start(120);
    let allowed = g.home.scratch().join("allowed");
    let outside = g.home.scratch().join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(allowed.join("plan.txt"), "step one").unwrap();
    std::fs::write(outside.join("secret.txt"), "the secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.join("secret.txt"), allowed.join("link.txt")).unwrap();
    let out = g
        .home
        .run(&["permissions", "allow-folder", allowed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr);

    let path = |p: &Path| p.to_str().unwrap().to_owned();
    // Outside, and a symlink that leads outside: refused by the launcher
    // before anyone is asked.
    for target in [outside.join("secret.txt"), allowed.join("link.txt")] {
        let id = request(&g.api, "read_file", json!({"path": path(&target)}));
        let denied = wait_status(&g.api, &id, "denied");
        assert_eq!(denied["decided_by"], "launcher");
        assert!(
            denied["reason"]
                .as_str()
                .unwrap()
                .contains("outside the folders"),
            "{denied}"
        );
    }
    // `..` and other schemes never get past the core's check.
    for (tool, arguments) in [
        (
            "read_file",
            json!({"path": format!("{}/../outside/secret.txt", path(&allowed))}),
        ),
        ("open_url", json!({"url": "file:///etc/passwd"})),
        ("open_url", json!({"url": "javascript:alert(1)"})),
        ("read_file", json!({"path": "relative.txt"})),
        ("run_shell", json!({"command": "id"})),
    ] {
        let reply = g
            .api
            .request(Method::POST, "/v1/actions")
            .json(&json!({"tool": tool, "arguments": arguments}))
            .send()
            .unwrap();
        assert_eq!(reply.status(), 400, "{tool} {arguments}");
    }
    // A compromised core writing straight into Redis gets the launcher's
    // own check.
    let mut redis = core_redis(&g.home);
    let forged = "0123456789abcdef0123456789abcdef";
    let request_json = json!({
        "id": forged, "tool": "open_url", "arguments": {"url": "file:///etc/passwd"},
        "source": "model", "created_at": "2026-11-30T00:00:00Z",
    });
    let _: () = redis::cmd("HSET")
        .arg(format!("jarvis:action:{forged}"))
        .arg("request")
        .arg(request_json.to_string())
        .query(&mut redis)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("jarvis:actions:queue")
        .arg(forged)
        .query(&mut redis)
        .unwrap();
    let denied = wait_status(&g.api, forged, "denied");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("http and https"),
        "{denied}"
    );

    // Inside: asked, approved, read.
    let id = request(
        &g.api,
        "read_file",
        json!({"path": path(&allowed.join("plan.txt"))}),
    );
    wait_pending(&g.home, &id);
    assert!(g.home.run(&["approvals", "approve", &id]).status.success());
    assert_eq!(
        wait_status(&g.api, &id, "done")["result"]["text"],
        "step one"
    );
    assert!(!g.opened.exists());
}

#[test]
fn slash_commands_in_chat_wait_for_approval_and_answer_with_the_result() {
    let g = start(120);
    let conversation = g.api.create_conversation();
    let ws_url = format!("{}/v1/ws", g.api.base_url.replace("http://", "ws://"));
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()).unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", g.api.token).parse().unwrap(),
    );
    let (mut socket, _) = tungstenite::connect(request).unwrap();
    socket
        .send(tungstenite::Message::text(
            json!({"type": "chat", "turn_id": "t1", "conversation_id": conversation, "content": "/note Call the plumber\nabout the sink"}).to_string(),
        ))
        .unwrap();
    let mut events = Vec::new();
    let mut approved = false;
    loop {
        let message = socket.read().unwrap();
        let Ok(text) = message.to_text() else {
            continue;
        };
        let event: Value = serde_json::from_str(text).unwrap();
        if event["type"] == "action" && event["action"]["status"] == "pending" && !approved {
            let id = event["action"]["id"].as_str().unwrap().to_owned();
            assert_eq!(event["action"]["tool"], "write_note");
            wait_pending(&g.home, &id);
            assert!(g.home.run(&["approvals", "approve", &id]).status.success());
            approved = true;
        }
        let done = event["type"] == "done" || event["type"] == "error";
        events.push(event);
        if done {
            break;
        }
    }
    let last = events.last().unwrap();
    assert_eq!(last["type"], "done", "{events:?}");
    assert_eq!(last["finish_reason"], "action");
    let stored = g.api.messages(&conversation).unwrap();
    assert_eq!(stored[0], "/note Call the plumber\nabout the sink");
    assert!(
        stored[1].contains("Saved the note **Call the plumber**"),
        "{stored:?}"
    );
    let note = std::fs::read_to_string(g.home.path("notes/call-the-plumber.md")).unwrap();
    assert!(note.contains("about the sink"));

    // A malformed command is refused before anything is stored.
    socket
        .send(tungstenite::Message::text(
            json!({"type": "chat", "turn_id": "t2", "conversation_id": conversation, "content": "/remind soon tea"}).to_string(),
        ))
        .unwrap();
    let error: Value = loop {
        let message = socket.read().unwrap();
        let Ok(text) = message.to_text() else {
            continue;
        };
        let event: Value = serde_json::from_str(text).unwrap();
        if event["type"] == "error" {
            break event;
        }
    };
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("usage: /remind"),
        "{error}"
    );
    assert_eq!(g.api.messages(&conversation).unwrap().len(), 2);

    // Stopping a turn that waits takes its request back.
    socket
        .send(tungstenite::Message::text(
            json!({"type": "chat", "turn_id": "t3", "conversation_id": conversation, "content": "/open https://example.org/later"}).to_string(),
        ))
        .unwrap();
    let mut waiting = None;
    loop {
        let message = socket.read().unwrap();
        let Ok(text) = message.to_text() else {
            continue;
        };
        let event: Value = serde_json::from_str(text).unwrap();
        if event["type"] == "action" && event["action"]["status"] == "pending" {
            waiting = event["action"]["id"].as_str().map(str::to_owned);
            socket
                .send(tungstenite::Message::text(
                    json!({"type": "cancel", "turn_id": "t3"}).to_string(),
                ))
                .unwrap();
        }
        if event["type"] == "cancelled" {
            break;
        }
    }
    let id = waiting.unwrap();
    assert_eq!(
        wait_status(&g.api, &id, "denied")["decided_by"],
        "requester"
    );
    assert!(!g.opened.exists());
}

#[test]
fn reminders_fire_after_a_restart() {
    let mut g = start(120);
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(15);
    let id = request(
        &g.api,
        "set_reminder",
        json!({"text": "Water the plants", "due_at": due.to_string()}),
    );
    wait_pending(&g.home, &id);
    assert!(g.home.run(&["approvals", "approve", &id]).status.success());
    wait_status(&g.api, &id, "done");
    g.launcher.terminate();
    assert!(
        !std::fs::read_to_string(&g.notified)
            .unwrap_or_default()
            .contains("Water the plants"),
        "not due yet"
    );
    let _launcher = g.home.up();
    wait_for(Duration::from_secs(30), "the reminder to fire", || {
        std::fs::read_to_string(&g.notified)
            .ok()
            .filter(|n| n.contains("Jarvis reminder Water the plants"))
    });
    let fired = g.home.ui_session().get_json("/launcher/reminders");
    assert_eq!(fired["fired"][0]["text"], "Water the plants", "{fired}");
    assert_eq!(fired["upcoming"], json!([]));
}

#[test]
fn a_withdrawn_request_is_denied_and_can_no_longer_be_approved() {
    let g = start(120);
    let id = request(
        &g.api,
        "open_url",
        json!({"url": "https://example.org/withdrawn"}),
    );
    wait_pending(&g.home, &id);
    let reply = g
        .api
        .request(Method::DELETE, &format!("/v1/actions/{id}"))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 202);
    let denied = wait_status(&g.api, &id, "denied");
    assert_eq!(denied["decided_by"], "requester");
    let late = g.home.run(&["approvals", "approve", &id]);
    assert!(!late.status.success(), "{}", late.stdout);
    assert!(!g.opened.exists());
    // Withdrawing what already ran changes nothing.
    let note = request(
        &g.api,
        "write_note",
        json!({"title": "Kept", "content": "k"}),
    );
    wait_pending(&g.home, &note);
    assert!(
        g.home
            .run(&["approvals", "approve", &note])
            .status
            .success()
    );
    wait_status(&g.api, &note, "done");
    g.api
        .request(Method::DELETE, &format!("/v1/actions/{note}"))
        .send()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(action(&g.api, &note)["status"], "done");
    let unknown = g
        .api
        .request(
            Method::DELETE,
            "/v1/actions/0123456789abcdef0123456789abcdef",
        )
        .send()
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(
        audit_of(&g.home, &id)
            .iter()
            .any(|e| e["decision"] == "withdrawn")
    );
}

/// Reads a turn to its end, approving (or denying) each request the model
/// makes as it comes; returns every message of the turn.
fn model_turn(g: &Gated, socket: &mut Socket, turn: Value, decide: &str) -> Vec<Value> {
    let turn_id = turn["turn_id"].as_str().unwrap().to_owned();
    socket.send(&turn);
    let mut events = Vec::new();
    loop {
        let event = socket.next_message();
        if event["turn_id"] != turn_id.as_str() {
            continue;
        }
        if event["type"] == "action" && event["action"]["status"] == "pending" {
            assert_eq!(event["action"]["source"], "model", "{event}");
            let id = event["action"]["id"].as_str().unwrap().to_owned();
            let listed = wait_pending(&g.home, &id);
            assert_eq!(listed["source"], "model", "{listed}");
            let out = g.home.run(&["approvals", decide, &id]);
            assert!(out.status.success(), "{}", out.stderr);
        }
        let end = matches!(event["type"].as_str(), Some("done" | "error" | "cancelled"));
        events.push(event);
        if end {
            return events;
        }
    }
}

fn streamed(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "token")
        .filter_map(|e| e["text"].as_str())
        .collect()
}

#[test]
fn the_model_asks_for_actions_through_the_gate_and_answers_with_their_outcome() {
    let g = start_with(120, true);
    jarvis_tests::brain::wait_engine(&g.api, "llm", "ready");
    let conversation = g.api.create_conversation();
    let mut socket = Socket::connect(&g.api);

    // Required: the call is the model's, constrained to the tool's
    // schema; approved, it runs and the model answers after its outcome.
    let events = model_turn(
        &g,
        &mut socket,
        json!({"type": "chat", "turn_id": "m1", "conversation_id": conversation,
               "content": "How much memory does this computer have?",
               "tool_choice": "system_info", "max_tokens": 24}),
        "approve",
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "done", "{events:?}");
    let finals: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "action" && e["action"]["status"] != "pending")
        .collect();
    assert_eq!(finals.len(), 1, "{events:?}");
    assert_eq!(finals[0]["action"]["status"], "done");
    let said = streamed(&events);
    let stored = g.api.messages(&conversation).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1], said);
    assert!(said.starts_with("This computer:"), "{said}");
    let after_outcome = &said[said.find("Free disk space").unwrap()..];
    let (_, answer) = after_outcome.split_once("\n\n").unwrap();
    assert!(
        !answer.trim().is_empty(),
        "the model said nothing after the outcome: {said}"
    );
    let id = finals[0]["action"]["id"].as_str().unwrap();
    let trail = audit_of(&g.home, id);
    assert!(trail.iter().any(|e| e["by"] == "terminal"), "{trail:?}");
    assert!(
        trail
            .iter()
            .all(|e| e["event"] != "requested" || e["source"] == "model")
    );

    // Declined: nothing is written, and the answer says so first.
    let events = model_turn(
        &g,
        &mut socket,
        json!({"type": "chat", "turn_id": "m2", "conversation_id": conversation,
               "content": "Open https://example.org/tea please.",
               "tool_choice": "open_url", "max_tokens": 16}),
        "deny",
    );
    assert_eq!(events.last().unwrap()["type"], "done", "{events:?}");
    assert!(
        streamed(&events).starts_with("You declined this request"),
        "{events:?}"
    );
    assert!(!g.opened.exists());

    // Auto (the conversation's setting): the model may pick any tool or
    // none; whatever it picks is well-formed, goes through the gate, and
    // the turn ends with an answer.
    let reply = g
        .api
        .request(
            Method::PUT,
            &format!("/v1/conversations/{conversation}/settings"),
        )
        .json(&json!({"model_actions": true}))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    let events = model_turn(
        &g,
        &mut socket,
        json!({"type": "chat", "turn_id": "m3", "conversation_id": conversation,
               "content": "Remind me to drink water in ten minutes.", "max_tokens": 16}),
        "deny",
    );
    assert_eq!(events.last().unwrap()["type"], "done", "{events:?}");
    for event in events.iter().filter(|e| e["type"] == "action") {
        let tool = event["action"]["tool"].as_str().unwrap();
        let tools = [
            "system_info",
            "read_file",
            "write_note",
            "set_reminder",
            "open_url",
            "open_path",
        ];
        assert!(tools.contains(&tool), "{event}");
    }

    // A choice that is no tool is refused before anything is stored.
    socket.send(
        &json!({"type": "chat", "turn_id": "m4", "conversation_id": conversation,
                        "content": "hi", "tool_choice": "run_shell"}),
    );
    let error = loop {
        let event = socket.next_message();
        if event["turn_id"] == "m4" {
            break event;
        }
    };
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
    assert!(!g.opened.exists());
}
