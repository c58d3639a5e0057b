//! Server mode: the same `jarvis-core` as N stateless replicas behind a
//! real load balancer (haproxy), over a real Redis Cluster or a TLS Redis
//! with an ACL user, serving several users.

use std::collections::BTreeSet;
use std::time::Duration;

use jarvis_protocol::env;
use jarvis_tests::brain::{Socket, install_models};
use jarvis_tests::server::{
    Balancer, RedisCluster, RedisSettings, Replica, TlsRedis, add_user, users,
};
use jarvis_tests::{Api, TestHome, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

/// Three replicas over `redis` (with the models in `models`), and haproxy
/// in front of them once all three are ready.
fn three_replicas(
    redis: &RedisSettings,
    data: &std::path::Path,
    models: &std::path::Path,
    extra: &[(&str, &str)],
) -> (Vec<Replica>, Balancer) {
    let replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::start(&format!("core{i}"), redis, data, models, extra))
        .collect();
    for replica in &replicas {
        replica.wait_ready();
    }
    let backends: Vec<(&str, u16)> = replicas
        .iter()
        .map(|r| (r.name.as_str(), r.port()))
        .collect();
    let balancer = Balancer::start(&backends);
    let probe = Api::new(&balancer.url(), "");
    wait_for(
        Duration::from_secs(30),
        "the balancer to see every replica",
        || {
            let served: BTreeSet<String> = (0..12)
                .filter_map(|_| {
                    probe
                        .anonymous(Method::GET, "/readyz")
                        .send()
                        .ok()?
                        .headers()
                        .get("x-served-by")?
                        .to_str()
                        .ok()
                        .map(str::to_owned)
                })
                .collect();
            (served.len() == 3).then_some(())
        },
    );
    (replicas, balancer)
}

fn served_by(response: &reqwest::blocking::Response) -> String {
    response
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn status(request: reqwest::blocking::RequestBuilder) -> u16 {
    request.send().unwrap().status().as_u16()
}

#[test]
fn users_are_isolated_conversations_continue_across_replicas_and_a_cluster_node_restart_loses_nothing()
 {
    let cluster = RedisCluster::start(3);
    let redis = RedisSettings {
        url: cluster.url(),
        ca_file: None,
    };
    let data = tempfile::tempdir().unwrap();
    let (_replicas, balancer) = three_replicas(
        &redis,
        data.path(),
        data.path(),
        &[(env::ALLOWED_HOSTS, "127.0.0.1,localhost")],
    );
    let alice_key = add_user(&redis, "alice");
    let bob_key = add_user(&redis, "bob");
    let alice = Api::new(&balancer.url(), &alice_key);
    let bob = Api::new(&balancer.url(), &bob_key);

    // A conversation grows one message per request, each on whichever
    // replica the balancer picks, and reads back whole everywhere.
    let id = alice.create_conversation();
    let mut served = BTreeSet::new();
    let mut sent = Vec::new();
    for i in 0..9 {
        let text = format!("alice's secret number {i}");
        let response = alice.add_message(&id, "user", &text);
        assert_eq!(response.status(), 201);
        served.insert(served_by(&response));
        sent.push(text);
    }
    assert_eq!(
        served.len(),
        3,
        "the balancer spread the appends: {served:?}"
    );
    for _ in 0..3 {
        assert_eq!(alice.messages(&id).unwrap(), sent);
    }

    // Bob sees none of it, through any route, on any replica.
    let conversation = format!("/v1/conversations/{id}");
    for _ in 0..3 {
        assert_eq!(status(bob.request(Method::GET, &conversation)), 404);
        assert_eq!(bob.add_message(&id, "user", "intruder").status(), 404);
        assert_eq!(
            status(
                bob.request(Method::PATCH, &conversation)
                    .json(&json!({"title": "mine"}))
            ),
            404
        );
        assert_eq!(
            status(bob.request(Method::GET, &format!("{conversation}/settings"))),
            404
        );
        assert_eq!(
            status(
                bob.request(Method::PUT, &format!("{conversation}/settings"))
                    .json(&json!({"system_prompt": "leak"}))
            ),
            404
        );
        assert_eq!(status(bob.request(Method::DELETE, &conversation)), 404);
        let listed: Value = bob
            .request(Method::GET, "/v1/conversations")
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(listed["conversations"], json!([]), "{listed}");
        let found: Value = bob
            .request(Method::GET, "/v1/conversations?q=secret")
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(found["conversations"], json!([]), "{found}");
    }
    assert_eq!(alice.messages(&id).unwrap(), sent, "bob changed nothing");
    let bobs = bob.create_conversation();
    assert_eq!(
        status(alice.request(Method::GET, &format!("/v1/conversations/{bobs}"))),
        404
    );

    // Each user's keys carry their own hash tag; nothing is in the
    // desktop namespace.
    let keys = cluster.keys();
    assert!(
        keys.iter()
            .all(|k| !k.starts_with("jarvis:v2:conversation")),
        "{keys:?}"
    );
    let tags: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("jarvis:v2:{u:"))
        .filter_map(|k| k.split('}').next())
        .collect();
    assert_eq!(tags.len(), 2, "one hash tag per user: {keys:?}");

    // No key, a wrong key, a desktop-style token: 401 everywhere.
    for api in [
        Api::new(&balancer.url(), ""),
        Api::new(&balancer.url(), "jk_0000"),
        Api::new(&balancer.url(), "unused"),
    ] {
        let response = api
            .request(Method::GET, "/v1/conversations")
            .send()
            .unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // A host the servers do not answer to.
    let response = alice
        .request(Method::GET, "/v1/conversations")
        .header("host", "evil.example")
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);

    // A server never acts: the action routes and settings say why.
    let response = alice
        .request(Method::POST, "/v1/actions")
        .json(&json!({"tool": "note", "arguments": {"text": "x"}}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "actions_not_on_server");
    assert_eq!(
        status(
            alice
                .request(Method::PUT, &format!("{conversation}/settings"))
                .json(&json!({"model_actions": true}))
        ),
        403
    );

    // Revoking bob stops his key at once, on every replica.
    let out = users(&redis, &["revoke", "bob"]);
    assert!(out.status.success(), "{out:?}");
    let mut refused_by = BTreeSet::new();
    for _ in 0..6 {
        let response = bob
            .request(Method::GET, "/v1/conversations")
            .send()
            .unwrap();
        assert_eq!(response.status(), 401);
        refused_by.insert(served_by(&response));
    }
    assert_eq!(refused_by.len(), 3, "{refused_by:?}");
    let listed = users(&redis, &["list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("alice") && listed.contains("active"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("bob") && l.contains("revoked")),
        "{listed}"
    );
    let again = users(&redis, &["add", "alice"]);
    assert!(
        !again.status.success(),
        "an active name cannot be added twice"
    );
    // A new key for bob gives him his own memory back, not a fresh one.
    let bob = Api::new(&balancer.url(), &add_user(&redis, "bob"));
    assert_eq!(
        status(bob.request(Method::GET, &format!("/v1/conversations/{bobs}"))),
        200
    );
    assert_eq!(
        status(Api::new(&balancer.url(), &bob_key).request(Method::GET, "/v1/conversations")),
        401
    );

    // A cluster node dies and comes back: requests fail with a retryable
    // 503 meanwhile (never a lie), and every acknowledged message is kept.
    // (The node that holds alice's conversation.)
    let mut cluster = cluster;
    let node = cluster.node_holding(&format!("*{id}:messages"));
    cluster.kill(node);
    let mut acknowledged = sent.clone();
    let mut refused = 0;
    for i in 0..15 {
        let text = format!("during the outage {i}");
        match alice.try_add_message(&id, "user", &text) {
            Some(201) => acknowledged.push(text),
            Some(503) | None => refused += 1,
            Some(other) => panic!("unexpected status {other}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refused > 0, "the outage was real");
    cluster.restart(node);
    wait_for(Duration::from_secs(60), "appends to work again", || {
        let text = "after the restart".to_owned();
        (alice.try_add_message(&id, "user", &text) == Some(201)).then(|| acknowledged.push(text))
    });
    let stored = alice.messages(&id).unwrap();
    for message in &acknowledged {
        assert!(stored.contains(message), "lost '{message}': {stored:?}");
    }
}

#[test]
fn a_tls_redis_with_an_acl_user_serves_and_each_user_has_a_rate_limit() {
    let tls = TlsRedis::start();
    let redis = RedisSettings {
        url: tls.url(),
        ca_file: Some(tls.ca_file.clone()),
    };
    let data = tempfile::tempdir().unwrap();
    let replica = Replica::start(
        "tls",
        &redis,
        data.path(),
        data.path(),
        &[
            (env::RATE_LIMIT_PER_MINUTE, "5"),
            (env::ALLOWED_ORIGINS, "https://app.example"),
        ],
    );
    replica.wait_ready();
    // CORS: a preflight from the allowed origin is answered without a key;
    // another origin is refused outright.
    let probe = Api::new(replica.url(), "");
    let preflight = probe
        .anonymous(Method::OPTIONS, "/v1/conversations")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let foreign = probe
        .anonymous(Method::OPTIONS, "/v1/conversations")
        .header("origin", "https://evil.example")
        .send()
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let carol = Api::new(replica.url(), &add_user(&redis, "carol"));
    let from_app = carol
        .request(Method::GET, "/v1/conversations")
        .header("origin", "https://app.example")
        .send()
        .unwrap();
    assert_eq!(from_app.status(), 200);
    assert_eq!(
        from_app.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let dave = Api::new(replica.url(), &add_user(&redis, "dave"));
    let id = carol.create_conversation();
    for i in 0..3 {
        assert_eq!(
            carol.add_message(&id, "user", &format!("m{i}")).status(),
            201
        );
    }
    let limited = carol
        .request(Method::GET, "/v1/conversations")
        .send()
        .unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = limited.json().unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another user's budget is their own.
    assert_eq!(status(dave.request(Method::GET, "/v1/conversations")), 200);
    // Each WebSocket turn counts too: one socket is no way around it.
    let daves = dave.create_conversation();
    let mut socket = Socket::connect(&dave);
    for turn in ["d1", "d2", "d3"] {
        socket.send(&chat(turn, &daves, "hello", 8));
    }
    let mut ended = socket.collect_all(&["d1", "d2", "d3"]);
    // (This core has no model: the turns within the limit say so.)
    assert_eq!(
        ended.remove("d1").unwrap().1["error"]["code"],
        "model_not_installed"
    );
    assert_eq!(
        ended.remove("d2").unwrap().1["error"]["code"],
        "model_not_installed"
    );
    let (_, limited) = ended.remove("d3").unwrap();
    assert_eq!(limited["error"]["code"], "rate_limited", "{limited}");
    // The data went over TLS, as the ACL user, into that Redis.
    let keys = tls.cli(&["--raw", "keys", "jarvis:v2:*"]).unwrap();
    assert!(keys.contains(":messages"), "{keys}");

    // Without the CA the server's certificate is not trusted: never ready,
    // and the log says why.
    let untrusted = Replica::start(
        "untrusted",
        &RedisSettings {
            url: tls.url(),
            ca_file: None,
        },
        data.path(),
        data.path(),
        &[],
    );
    let api = Api::new(untrusted.url(), "");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!api.ready());
    let log = untrusted.log();
    assert!(log.contains("Redis not reachable"), "{log}");
}

/// Reads `socket` until `turn_id` sends its first token.
fn wait_first_token(socket: &mut Socket, turn_id: &str) {
    loop {
        let message = socket.next_message();
        if message["turn_id"] == turn_id {
            match message["type"].as_str() {
                Some("token") => return,
                Some("done" | "cancelled" | "error") => panic!("{turn_id} ended early: {message}"),
                _ => {}
            }
        }
    }
}

fn chat(turn_id: &str, conversation: &str, content: &str, max_tokens: u32) -> Value {
    json!({
        "type": "chat",
        "turn_id": turn_id,
        "conversation_id": conversation,
        "content": content,
        "max_tokens": max_tokens,
    })
}

const STORY: &str = "Write a very long story about a dragon who learns to bake bread.";

#[test]
fn websocket_turns_are_relayed_cancelled_from_any_replica_and_survive_a_killed_or_draining_one() {
    let home = TestHome::new();
    install_models(&home, false);
    // The replicas share one read-only models volume (a tmpfs remounted
    // read-only, where this machine lets tests mount).
    let volume = jarvis_tests::Tmpfs::mount(400);
    let models = match &volume {
        Some(volume) => {
            jarvis_tests::copy_dir(&home.path("models"), &volume.path);
            volume.set_read_only(true);
            volume.path.clone()
        }
        None => {
            eprintln!("no mount here: the replicas share a writable models folder");
            home.path("models")
        }
    };
    let cluster = RedisCluster::start(3);
    let redis = RedisSettings {
        url: cluster.url(),
        ca_file: None,
    };
    let data = tempfile::tempdir().unwrap();
    let (mut replicas, balancer) =
        three_replicas(&redis, data.path(), &models, &[(env::DRAIN_S, "60")]);
    let alice = Api::new(&balancer.url(), &add_user(&redis, "alice"));
    let bob = Api::new(&balancer.url(), &add_user(&redis, "bob"));
    for replica in &replicas {
        jarvis_tests::brain::wait_engine(&Api::new(replica.url(), ""), "llm", "ready");
    }
    let id = alice.create_conversation();

    // Two sockets of alice's on two different replicas.
    let (mut first, first_replica) = Socket::connect_served_by(&alice);
    let first_replica = first_replica.unwrap();
    let mut second = loop {
        let (socket, replica) = Socket::connect_served_by(&alice);
        if replica.as_deref() != Some(first_replica.as_str()) {
            break socket;
        }
    };
    let (mut bobs, _) = Socket::connect_served_by(&bob);

    // A turn on one replica streams to alice's other socket too.
    let (said, done) = first.chat("t1", &id, "What is the capital of France?");
    assert_eq!(done["type"], "done", "{done}");
    let (relayed, relayed_done) = second.collect("t1");
    assert_eq!(relayed, said);
    assert_eq!(relayed_done["message_index"], done["message_index"]);
    // ...and the conversation reads the same on every replica.
    for _ in 0..3 {
        let messages = alice.messages(&id).unwrap();
        assert_eq!(messages.last().unwrap(), &said);
    }

    // Bob can neither stop alice's turn nor see it, nor chat in her
    // conversation.
    first.send(&chat("t2", &id, STORY, 48));
    wait_first_token(&mut first, "t2");
    bobs.send(&json!({"type": "cancel", "turn_id": "t2"}));
    let (_, ended) = first.collect("t2");
    assert_eq!(
        ended["type"], "done",
        "bob's cancel stopped alice's turn: {ended}"
    );
    bobs.send(&chat("b1", &id, "hello", 8));
    let refused = loop {
        let message = bobs.next_message();
        if message["turn_id"] == "b1" {
            break message;
        }
        assert!(
            message["turn_id"].is_null(),
            "bob saw a turn that is not his: {message}"
        );
    };
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["error"]["code"], "not_found");
    while let Some(message) = bobs.try_next_message(Duration::from_millis(300)) {
        assert!(message["turn_id"].is_null(), "bob saw {message}");
    }

    // A cancel sent through another replica stops the turn.
    first.send(&chat("t3", &id, STORY, 400));
    wait_first_token(&mut first, "t3");
    // While it streams, requests land on the other replicas, which see
    // the question already stored.
    let mut readers = BTreeSet::new();
    for _ in 0..3 {
        let response = alice
            .request(Method::GET, &format!("/v1/conversations/{id}"))
            .send()
            .unwrap();
        readers.insert(served_by(&response));
        let body: Value = response.json().unwrap();
        assert_eq!(
            body["messages"].as_array().unwrap().last().unwrap()["content"],
            STORY
        );
    }
    assert!(readers.len() >= 2, "{readers:?}");
    second.send(&json!({"type": "cancel", "turn_id": "t3"}));
    let (_, ended) = first.collect("t3");
    assert_eq!(ended["type"], "cancelled", "{ended}");
    assert!(
        ended["message_index"].is_u64(),
        "the partial answer is kept: {ended}"
    );

    // A slash command is refused: a server never acts.
    first.send(&chat("t4", &id, "/sysinfo", 8));
    let (_, refused) = first.collect("t4");
    assert_eq!(
        refused["error"]["code"], "actions_not_on_server",
        "{refused}"
    );

    // The replica under the first socket is killed mid-turn: the user's
    // message, acknowledged by `started`, is kept, and the conversation
    // goes on elsewhere.
    first.send(&chat("t5", &id, "Remember the word pomegranate.", 400));
    wait_first_token(&mut first, "t5");
    replicas
        .iter_mut()
        .find(|r| r.name == first_replica)
        .unwrap()
        .kill();
    assert!(first.is_broken());
    wait_for(
        Duration::from_secs(30),
        "the message on the other replicas",
        || {
            alice
                .messages(&id)
                .filter(|m| m.iter().any(|m| m == "Remember the word pomegranate."))
        },
    );
    let (mut third, _) = Socket::connect_served_by(&alice);
    let (_, done) = third.chat("t6", &id, "And what is the capital of Italy?");
    assert_eq!(done["type"], "done", "{done}");

    // A replica asked to stop drains: its running turn finishes, a new one
    // is refused, and then it exits.
    let (mut draining_socket, draining) = Socket::connect_served_by(&alice);
    let draining = draining.unwrap();
    draining_socket.send(&chat("t7", &id, STORY, 200));
    wait_first_token(&mut draining_socket, "t7");
    let replica = replicas.iter_mut().find(|r| r.name == draining).unwrap();
    jarvis_tests::signal(replica.pid(), jarvis_tests::Signal::Term);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !Api::new(replica.url(), "").ready(),
        "a draining replica is not ready"
    );
    draining_socket.send(&chat("t8", &id, "hello", 8));
    let mut ended = draining_socket.collect_all(&["t7", "t8"]);
    let (_, refused) = ended.remove("t8").unwrap();
    assert_eq!(refused["error"]["code"], "shutting_down", "{refused}");
    let (_, finished) = ended.remove("t7").unwrap();
    assert_eq!(
        finished["type"], "done",
        "the running turn finished: {finished}"
    );
    let core = replica.core.as_mut().unwrap();
    let status = wait_for(
        Duration::from_secs(30),
        "the drained replica to exit",
        || core.try_exit(),
    );
    assert!(status.success(), "{status}");
}

/// The deployment examples name only settings the core reads, and the
/// balancer's configuration is one haproxy accepts.
#[test]
fn the_deployment_examples_use_only_real_settings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let known = std::fs::read_to_string(root.join("foundation/protocol/src/env.rs")).unwrap();
    let server = root.join("dist/server");
    let mut seen = 0;
    for file in ["Containerfile", "compose.yaml", "kubernetes.yaml"] {
        let text = std::fs::read_to_string(server.join(file)).unwrap();
        for (at, _) in text.match_indices("JARVIS_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            if name == "JARVIS_REDIS_PASSWORD" {
                continue; // compose's own variable, not the core's
            }
            assert!(
                known.contains(&format!("\"{name}\"")),
                "{file} names {name}, which the core does not read"
            );
            seen += 1;
        }
    }
    assert!(seen > 10, "{seen}");
    let out = std::process::Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(server.join("haproxy.cfg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Appends from another thread until told to stop; returns the messages
/// the server acknowledged (201), in order, and how many it refused.
fn keep_appending(
    api: Api,
    id: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, usize)> {
    std::thread::spawn(move || {
        let (mut acknowledged, mut refused) = (Vec::new(), 0);
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let text = format!("steady message {i}");
            match api.try_add_message(&id, "user", &text) {
                Some(201) => acknowledged.push(text),
                Some(503) | None => refused += 1,
                Some(other) => panic!("unexpected status {other}"),
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        (acknowledged, refused)
    })
}

#[test]
fn a_reshard_and_a_primary_failover_under_writes_lose_no_acknowledged_message() {
    // Three primaries with a replica each; writes are acknowledged only
    // once the replica has them (JARVIS_REDIS_WAIT_REPLICAS=1).
    let mut cluster = RedisCluster::start_with_replicas(3, 1);
    let redis = RedisSettings {
        url: cluster.url(),
        ca_file: None,
    };
    let data = tempfile::tempdir().unwrap();
    let replica = Replica::start(
        "core",
        &redis,
        data.path(),
        data.path(),
        &[
            (env::REDIS_WAIT_REPLICAS, "1"),
            (env::RATE_LIMIT_PER_MINUTE, "0"),
        ],
    );
    replica.wait_ready();
    let alice = Api::new(replica.url(), &add_user(&redis, "alice"));
    let id = alice.create_conversation();
    assert_eq!(alice.add_message(&id, "user", "first").status(), 201);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = keep_appending(alice.clone(), id.clone(), stop.clone());

    // The slot of alice's keys moves to another primary, key by key,
    // under the writes (ASK and TRYAGAIN mid-migration, MOVED after).
    let pattern = format!("*{id}:messages");
    let from = cluster.node_holding(&pattern);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    let tagged = cluster
        .keys()
        .into_iter()
        .find(|k| k.ends_with(&format!("{id}:messages")))
        .unwrap();
    cluster.move_slot_of(&tagged, from, to);
    let holder = cluster.node_holding(&pattern);
    assert_eq!(holder, to, "alice's keys moved");
    std::thread::sleep(Duration::from_millis(500));

    // Her new primary dies: its replica takes over (once the cluster saw
    // the death: wait_ok right after the kill proves nothing). That has no
    // replica of its own yet, so writes are refused (503, never a 201 that
    // a second failure could lose) until the dead node is back, as its
    // replica.
    cluster.kill(holder);
    std::thread::sleep(Duration::from_secs(3));
    cluster.wait_ok();
    wait_for(
        Duration::from_secs(30),
        "a write refused for want of a replica",
        || {
            let response = alice.add_message(&id, "user", "with no replica");
            assert_eq!(response.status(), 503, "acknowledged without a replica");
            let body: Value = response.json().unwrap();
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("replica")
                .then_some(())
        },
    );
    cluster.restart(holder);
    wait_for(
        Duration::from_secs(60),
        "writes to work after the failover",
        || (alice.try_add_message(&id, "user", "after the failover") == Some(201)).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acknowledged, refused) = writer.join().unwrap();
    eprintln!(
        "{} acknowledged, {refused} refused during the reshard and failover",
        acknowledged.len()
    );
    assert!(acknowledged.len() > 20, "{}", acknowledged.len());
    let stored = alice.messages(&id).unwrap();
    let steady: Vec<&String> = stored.iter().filter(|m| m.starts_with("steady")).collect();
    for message in &acknowledged {
        assert!(steady.contains(&message), "lost '{message}'");
    }
    assert_eq!(stored.first().map(String::as_str), Some("first"));
    assert!(stored.iter().any(|m| m == "after the failover"));
    // In the order they were acknowledged.
    let order: Vec<&String> = steady
        .iter()
        .copied()
        .filter(|m| acknowledged.contains(m))
        .collect();
    assert_eq!(order, acknowledged.iter().collect::<Vec<_>>());
}
