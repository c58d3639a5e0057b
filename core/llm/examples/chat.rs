//! One chat turn from the command line, for trying a model by hand:
//! `chat MODEL.gguf "question" [max_tokens] [temperature]`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a tool")]

use std::sync::Arc;

use jarvis_llm::{ChatModel, Event, Message, Request, Role};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = Arc::new(
        ChatModel::load(std::path::Path::new(&args[1]))
            .await
            .unwrap(),
    );
    if let Some(text) = args[2].strip_prefix("prompt:") {
        let messages = [Message {
            role: Role::User,
            content: text.to_owned(),
        }];
        println!("{:?}", model.render_prompt(&messages).await.unwrap());
        return;
    }
    if let Some(text) = args[2].strip_prefix("count:") {
        println!("{} tokens", model.count_tokens(text).await.unwrap());
        return;
    }
    let mut events = model.generate(Request {
        messages: vec![Message {
            role: Role::User,
            content: args[2].clone(),
        }],
        max_tokens: args.get(3).map_or(64, |n| n.parse().unwrap()),
        temperature: args.get(4).map(|t| t.parse().unwrap()),
        top_p: None,
        stop: Vec::new(),
        json_schema: None,
    });
    while let Some(event) = events.recv().await {
        match event {
            Event::Delta(text) => print!("{text}"),
            Event::Done {
                finish_reason,
                usage,
            } => println!("\n[{finish_reason:?}] {usage:?}"),
            Event::Failed(e) => println!("\nfailed: {e}"),
        }
    }
}
