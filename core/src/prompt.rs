//! Fitting a conversation into a model's context window.
//!
//! Memory keeps every message; a prompt takes the system prompt, then as
//! many of the most recent messages as fit in what the context leaves
//! after the answer's budget. The newest message always goes in, or the
//! request is refused as too long.

/// Tokens a chat template adds around each message (role markers and
/// separators): a safe upper bound for the templates in use.
pub const TEMPLATE_TOKENS_PER_MESSAGE: usize = 8;

/// One message with its size in tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sized<'a> {
    pub role: jarvis_llm::Role,
    pub content: &'a str,
    pub tokens: usize,
}

/// The newest message alone does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the message needs about {needed} tokens but the model's context of {context} leaves {available} after the answer's {answer} tokens"
)]
pub struct TooLong {
    pub needed: usize,
    pub available: usize,
    pub context: usize,
    pub answer: usize,
}

/// A token count for text no model has counted: about three bytes per
/// token, which over-counts English, so a prompt built on estimates still
/// fits.
pub fn estimate_tokens(text: &str) -> usize {
    text.len() / 3 + 1
}

/// Picks the system prompt and the most recent messages that fit in
/// `context - answer` tokens. Returns them oldest first, and how many older
/// messages were left out.
pub fn fit<'a>(
    system: Option<Sized<'a>>,
    history: &[Sized<'a>],
    context: usize,
    answer: usize,
) -> Result<(Vec<jarvis_llm::Message>, usize), TooLong> {
    let available = context.saturating_sub(answer);
    let cost = |m: &Sized<'_>| m.tokens + TEMPLATE_TOKENS_PER_MESSAGE;
    let mut used = system.as_ref().map_or(0, cost);
    let mut kept = 0;
    for message in history.iter().rev() {
        let next = used + cost(message);
        if next > available {
            break;
        }
        used = next;
        kept += 1;
    }
    if kept == 0 && !history.is_empty() {
        let needed = system.as_ref().map_or(0, cost) + history.last().map_or(0, cost);
        return Err(TooLong {
            needed,
            available,
            context,
            answer,
        });
    }
    let start = history.len() - kept;
    let messages = system
        .iter()
        .chain(&history[start..])
        .map(|m| jarvis_llm::Message {
            role: m.role,
            content: m.content.to_owned(),
        })
        .collect();
    Ok((messages, start))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use jarvis_llm::Role;

    fn msg(role: Role, content: &str, tokens: usize) -> Sized<'_> {
        Sized {
            role,
            content,
            tokens,
        }
    }

    #[test]
    fn everything_fits_in_a_large_context() {
        let history = [
            msg(Role::User, "a", 10),
            msg(Role::Assistant, "b", 10),
            msg(Role::User, "c", 10),
        ];
        let (messages, dropped) =
            fit(Some(msg(Role::System, "s", 5)), &history, 1000, 100).unwrap();
        assert_eq!(dropped, 0);
        let text: Vec<_> = messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(text, ["s", "a", "b", "c"]);
    }

    #[test]
    fn the_oldest_messages_are_left_out_first_and_the_system_prompt_stays() {
        let history: Vec<_> = (0..10).map(|_| msg(Role::User, "x", 92)).collect();
        // 100 tokens a message with the template; 1000 - 200 - 100 (system) leaves 7.
        let (messages, dropped) =
            fit(Some(msg(Role::System, "s", 92)), &history, 1000, 200).unwrap();
        assert_eq!(dropped, 3);
        assert_eq!(messages.len(), 8);
        assert_eq!(messages[0].role, Role::System);
    }

    #[test]
    fn a_newest_message_that_cannot_fit_is_refused() {
        let history = [msg(Role::User, "old", 1), msg(Role::User, "huge", 5000)];
        let err = fit(None, &history, 2048, 256).unwrap_err();
        assert_eq!(err.available, 2048 - 256);
        assert!(err.needed > err.available);
    }

    #[test]
    fn estimates_over_count_english() {
        // "The capital of France is Paris." is 7 tokens for SmolLM2.
        assert!(estimate_tokens("The capital of France is Paris.") >= 7);
    }
}
