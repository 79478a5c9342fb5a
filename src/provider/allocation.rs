//! When to ask a provider for what is missing (HostUp's `allocate`, DigitalOcean's
//! claim) and when not to ask again. See issue 14, item 3.
//!
//! A transient failure (no answer, 5xx, 429, a DigitalOcean action that did not finish)
//! is asked again at the next poll that still finds something missing: the poll's own
//! pace, or later when the provider said `Retry-After`. Never faster, for the reason
//! polls are never faster (`daemon::next_delay`). A definitive refusal (any other 4xx:
//! a cooldown, a VPS that is not eligible, a key without the write scope) is logged
//! once with its reason and asked again only once the provider's answer differs from
//! the one it was refused on; a reload (SIGHUP) starts afresh with a new gate.

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Provider, ProviderError};
use crate::model::Assignment;

/// What the last request for an allocation came to.
#[derive(Debug, Default)]
pub struct AllocationGate {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Ask at the next poll that finds something missing.
    #[default]
    Ready,
    /// Failed `failures` times in a row without an answer that says no: ask again
    /// at a poll from `not_before` on.
    Transient { not_before: Instant, failures: u32 },
    /// Refused: ask again only once what the provider says differs from this.
    Refused { on: Seen },
}

/// What a refusal is remembered against: the answer, and what was missing in it.
#[derive(Debug, PartialEq)]
struct Seen {
    answer: Assignment,
    missing: String,
}

impl ProviderError {
    /// A failure that asking again later may cure: no answer, a server error, a rate
    /// limit, an answer that could not be read, an action that did not finish. Every
    /// other 4xx is the provider's word on this request, and asking again unchanged
    /// gets the same word.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Transport { .. }
            | ProviderError::Invalid { .. }
            | ProviderError::Refused(_)
            | ProviderError::NotFound(_)
            | ProviderError::ActionFailed(_) => true,
            ProviderError::Status { status, .. } => *status >= 500 || *status == 429,
            ProviderError::Unsupported(_)
            | ProviderError::NotAllowed(_)
            | ProviderError::Config(_) => false,
        }
    }
}

impl AllocationGate {
    /// May an allocation be asked for now, given the provider's `seen` answer?
    fn due(&self, seen: &Seen, now: Instant) -> bool {
        match &self.state {
            State::Ready => true,
            State::Transient { not_before, .. } => now >= *not_before,
            State::Refused { on } => on != seen,
        }
    }

    /// If the provider finds something missing in `answer`, ask for it unless the
    /// gate says not now. Returns the answer to use: the provider's answer to the
    /// allocation when it gave one, else `answer` as it was.
    pub async fn allocate_if_missing<P: Provider>(
        &mut self,
        provider: &mut P,
        answer: Assignment,
    ) -> Assignment {
        if !provider.wants_allocation(&answer) {
            self.state = State::Ready;
            return answer;
        }
        let seen = Seen {
            missing: provider.missing_what(),
            answer,
        };
        match self.ask(provider, seen).await {
            Ok(allocated) => allocated,
            Err(answer) => answer,
        }
    }

    /// The poll's `fetch` failed with `error`, which the provider says may mean that
    /// nothing is allocated: ask for an allocation as for an empty answer. The poll
    /// fails with `error` unless the allocation answers.
    pub async fn allocate_after_failure<P: Provider>(
        &mut self,
        provider: &mut P,
        error: ProviderError,
    ) -> Result<Assignment, ProviderError> {
        debug!("fetch failed in a way that may mean nothing is allocated: {error}");
        let seen = Seen {
            missing: provider.missing_what(),
            answer: Assignment::default(),
        };
        self.ask(provider, seen).await.map_err(|_| error)
    }

    /// Ask for the allocation when the gate allows: the provider's answer, or `seen`'s
    /// answer back when it was not asked or did not answer.
    async fn ask<P: Provider>(
        &mut self,
        provider: &mut P,
        seen: Seen,
    ) -> Result<Assignment, Assignment> {
        let now = Instant::now();
        if !self.due(&seen, now) {
            return Err(seen.answer);
        }
        info!("{}: asking the provider for it", seen.missing);
        match provider.allocate().await {
            Ok(allocated) => {
                self.state = State::Ready;
                Ok(allocated)
            }
            Err(e) if e.is_transient() => {
                let failures = match self.state {
                    State::Transient { failures, .. } => failures + 1,
                    _ => 1,
                };
                if failures == 1 {
                    warn!("allocate failed; asking again at the next poll: {e}");
                } else {
                    debug!(FAILURES = failures, "allocate failed again: {e}");
                }
                self.state = State::Transient {
                    not_before: now + e.retry_after().unwrap_or_default(),
                    failures,
                };
                Err(seen.answer)
            }
            Err(e) => {
                warn!(
                    "allocate refused; not asking again until the provider's answer changes or the configuration is reloaded: {e}"
                );
                let answer = seen.answer.clone();
                self.state = State::Refused { on: seen };
                Err(answer)
            }
        }
    }
}

#[cfg(test)]
mod tests;
