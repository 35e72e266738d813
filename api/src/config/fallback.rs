//! Retry and fallback policy, and the failures it reacts to.

use serde::{Deserialize, Serialize};

/// Longest timeout a config may carry: a week.
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;
/// Most retries of one target a config may ask for.
pub const MAX_RETRIES: u32 = 5;

/// Retry and fallback policy, resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledFallback {
    /// Failures that trigger a retry or fallback; empty = none do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<FailureClass>,
    /// Variant names tried in order after the chosen one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    pub retries: u32,
    pub per_attempt_timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_timeout_ms: Option<u64>,
    pub deadline_ms: u64,
}

impl Default for CompiledFallback {
    /// No fallback section: one attempt, generous timeouts suited to long generations.
    fn default() -> Self {
        CompiledFallback {
            on: Vec::new(),
            chain: Vec::new(),
            retries: 0,
            per_attempt_timeout_ms: DEFAULT_PER_ATTEMPT_TIMEOUT_MS,
            first_token_timeout_ms: None,
            deadline_ms: DEFAULT_DEADLINE_MS,
        }
    }
}

pub const DEFAULT_PER_ATTEMPT_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_DEADLINE_MS: u64 = 600_000;

impl CompiledFallback {
    /// Whether this failure moves on to a retry or the next target.
    pub fn applies_to(&self, failure: Failure) -> bool {
        self.on.iter().any(|class| class.matches(failure))
    }

    /// Whether answers are judged before they are trusted: `on` names
    /// `empty` or `contentFilter`, so a stream is held back until its first
    /// content.
    pub fn judges_answers(&self) -> bool {
        self.on
            .iter()
            .any(|c| matches!(c, FailureClass::Empty | FailureClass::ContentFilter))
    }
}

/// An observed failure of one upstream attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    Status(u16),
    /// A successful answer with nothing in it: no text, tool call or refusal
    /// (no vectors, for embeddings).
    Empty,
    /// The provider's content filter stopped the answer
    /// (`finish_reason: content_filter`, Anthropic's `stop_reason: refusal`).
    ContentFilter,
}

/// A class of failures named in `fallback.on`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub enum FailureClass {
    Timeout,
    Connect,
    /// `4xx` or `5xx`: the leading digit.
    StatusClass(u16),
    Status(u16),
    /// `empty`: an answer with no content.
    Empty,
    /// `contentFilter`: an answer the provider's content filter stopped.
    ContentFilter,
}

/// What `fallback.on` accepts, for error messages.
pub const FAILURE_CLASSES: &str =
    "timeout, connect, 4xx, 5xx, empty, contentFilter or a status code 400-599";

impl FailureClass {
    pub fn matches(self, failure: Failure) -> bool {
        match (self, failure) {
            (FailureClass::Timeout, Failure::Timeout) => true,
            (FailureClass::Connect, Failure::Connect) => true,
            (FailureClass::StatusClass(c), Failure::Status(s)) => s / 100 == c,
            (FailureClass::Status(a), Failure::Status(b)) => a == b,
            (FailureClass::Empty, Failure::Empty) => true,
            (FailureClass::ContentFilter, Failure::ContentFilter) => true,
            _ => false,
        }
    }
}

impl TryFrom<String> for FailureClass {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        FailureClass::parse(&s).ok_or_else(|| format!("{s:?} is not one of {FAILURE_CLASSES}"))
    }
}

impl FailureClass {
    pub fn parse(s: &str) -> Option<FailureClass> {
        match s {
            "timeout" => Some(FailureClass::Timeout),
            "connect" => Some(FailureClass::Connect),
            "4xx" => Some(FailureClass::StatusClass(4)),
            "5xx" => Some(FailureClass::StatusClass(5)),
            "empty" => Some(FailureClass::Empty),
            "contentFilter" => Some(FailureClass::ContentFilter),
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|c| (400..600).contains(c) && s.len() == 3)
                .map(FailureClass::Status),
        }
    }
}

impl From<FailureClass> for String {
    fn from(c: FailureClass) -> String {
        match c {
            FailureClass::Timeout => "timeout".into(),
            FailureClass::Connect => "connect".into(),
            FailureClass::StatusClass(d) => format!("{d}xx"),
            FailureClass::Status(s) => s.to_string(),
            FailureClass::Empty => "empty".into(),
            FailureClass::ContentFilter => "contentFilter".into(),
        }
    }
}
