//! `core::memory` against a real `redis-server`: the parts no HTTP route
//! reaches yet (tool state for the executor, events) and the rules on
//! settings and token counts.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use jarvis_core::memory::{Memory, Role, Settings, ToolName};
use jarvis_protocol::events::Event;
use jarvis_tests::TestRedis;

/// A plain redis-server in a temporary folder (kept alive with it).
struct Redis {
    server: TestRedis,
    _dir: tempfile::TempDir,
}

fn redis() -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let server = TestRedis::start(dir.path(), &[]);
    Redis { server, _dir: dir }
}

async fn connected(redis: &Redis) -> Memory {
    let memory =
        Memory::connect_in_background(format!("redis://127.0.0.1:{}/0", redis.server.port))
            .unwrap();
    let start = Instant::now();
    while memory.ping().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Redis never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    memory
}

#[tokio::test]
async fn tool_state_round_trips_and_tool_names_cannot_escape_their_key() {
    let redis = redis();
    let memory = connected(&redis).await;
    let tool = ToolName::parse("calendar").unwrap();
    assert!(memory.tool_state(&tool).await.unwrap().is_empty());
    memory
        .set_tool_state(&tool, "last_sync", "2026-11-24T05:00:00Z")
        .await
        .unwrap();
    memory.set_tool_state(&tool, "cursor", "42").await.unwrap();
    let state = memory.tool_state(&tool).await.unwrap();
    assert_eq!(state.get("cursor").map(String::as_str), Some("42"));
    assert_eq!(state.len(), 2);
    for hostile in ["", "../x", "a:b", "UPPER", "x y", &"a".repeat(65)] {
        assert!(ToolName::parse(hostile).is_none(), "{hostile:?}");
    }
}

#[tokio::test]
async fn settings_need_an_existing_conversation_and_token_counts_are_kept() {
    let redis = redis();
    let memory = connected(&redis).await;
    let conversation = memory.create_conversation().await.unwrap();
    let settings = Settings {
        system_prompt: Some("Be brief.".into()),
        temperature: Some(0.2),
        max_tokens: None,
        model_actions: true,
    };
    assert!(
        memory
            .set_settings(&conversation.id, &settings)
            .await
            .unwrap()
    );
    assert_eq!(
        memory.settings(&conversation.id).await.unwrap(),
        Some(settings)
    );

    let unknown = jarvis_core::memory::ConversationId::generate();
    assert!(
        !memory
            .set_settings(&unknown, &Settings::default())
            .await
            .unwrap()
    );
    assert_eq!(memory.settings(&unknown).await.unwrap(), None);

    let (index, _) = memory
        .append_message(&conversation.id, Role::User, "hello".into(), Some(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index, 0);
    let stored = memory
        .conversation(&conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.messages[0].tokens, Some(3));
}

#[tokio::test]
async fn published_events_reach_every_subscriber() {
    let redis = redis();
    let memory = connected(&redis).await;
    let mut first = memory.events();
    let mut second = memory.clone().events();
    let event = Event::ModelActivated {
        name: "smollm2-135m-instruct".into(),
        version: "q4_1-1".into(),
    };
    // The subscription connects in the background: publish until seen.
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            memory.publish(&event).await.unwrap();
            if let Ok(Ok(got)) =
                tokio::time::timeout(Duration::from_millis(200), first.recv()).await
            {
                return got;
            }
        }
    })
    .await
    .expect("no event arrived");
    assert_eq!(received, event);
    assert_eq!(second.recv().await.unwrap(), event);
}
