use super::*;
use std::collections::VecDeque;
use std::time::Duration;

use crate::model::RoutedPrefix;
use crate::provider::Release;

/// Nothing routed; allocate answers from a script.
#[derive(Default)]
struct Scripted {
    answers: VecDeque<Result<Assignment, ProviderError>>,
    asked: usize,
}

impl Provider for Scripted {
    async fn fetch(&mut self) -> Result<Assignment, ProviderError> {
        unreachable!("the gate never fetches")
    }
    async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> {
        unreachable!("the gate never refreshes")
    }
    async fn allocate(&mut self) -> Result<Assignment, ProviderError> {
        self.asked += 1;
        self.answers.pop_front().expect("script exhausted")
    }
    async fn release(&mut self) -> Result<Release, ProviderError> {
        unreachable!("the gate never releases")
    }
}

fn allocated() -> Assignment {
    Assignment {
        prefixes: vec![RoutedPrefix {
            workload: None,
            prefix: "2001:db8:42:100::/64".parse().unwrap(),
            next_hop: Some("2001:db8:42::1".parse().unwrap()),
            origin: "ripv6_1".into(),
        }],
        ..Assignment::default()
    }
}

fn status(status: u16, retry_after: Option<Duration>) -> ProviderError {
    ProviderError::Status {
        url: "http://sim/api".into(),
        status,
        code: Some("x".into()),
        request_id: None,
        detail: None,
        retry_after,
    }
}

fn nothing() -> Assignment {
    Assignment::default()
}

#[test]
fn transient_and_definitive_failures() {
    for e in [
        status(500, None),
        status(503, None),
        status(429, None),
        ProviderError::Transport {
            url: "u".into(),
            message: "timed out".into(),
        },
        ProviderError::ActionFailed("still in progress after 120s".into()),
    ] {
        assert!(e.is_transient(), "{e}");
    }
    for e in [
        status(400, None),
        status(403, None),
        status(409, None),
        status(422, None),
        ProviderError::Unsupported("no".into()),
    ] {
        assert!(!e.is_transient(), "{e}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_asked_again_at_the_next_poll() {
    let mut provider = Scripted {
        answers: VecDeque::from([Err(status(503, None)), Ok(allocated())]),
        ..Scripted::default()
    };
    let mut gate = AllocationGate::default();
    assert_eq!(
        gate.allocate_if_missing(&mut provider, nothing()).await,
        nothing()
    );
    assert_eq!(
        gate.allocate_if_missing(&mut provider, nothing()).await,
        allocated()
    );
    assert_eq!(provider.asked, 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_holds_the_next_request_back() {
    let mut provider = Scripted {
        answers: VecDeque::from([
            Err(status(429, Some(Duration::from_secs(90)))),
            Ok(allocated()),
        ]),
        ..Scripted::default()
    };
    let mut gate = AllocationGate::default();
    gate.allocate_if_missing(&mut provider, nothing()).await;
    tokio::time::advance(Duration::from_secs(60)).await;
    gate.allocate_if_missing(&mut provider, nothing()).await;
    assert_eq!(provider.asked, 1, "not before Retry-After");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        gate.allocate_if_missing(&mut provider, nothing()).await,
        allocated()
    );
    assert_eq!(provider.asked, 2);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_waits_for_a_different_answer() {
    let mut provider = Scripted {
        answers: VecDeque::from([Err(status(403, None)), Ok(allocated())]),
        ..Scripted::default()
    };
    let mut gate = AllocationGate::default();
    gate.allocate_if_missing(&mut provider, nothing()).await;
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(3600)).await;
        gate.allocate_if_missing(&mut provider, nothing()).await;
    }
    assert_eq!(provider.asked, 1, "the same answer gets the same refusal");
    let changed = Assignment {
        suggested_next_hop: Some("2001:db8:42::2".parse().unwrap()),
        ..Assignment::default()
    };
    assert_eq!(
        gate.allocate_if_missing(&mut provider, changed).await,
        allocated()
    );
    assert_eq!(provider.asked, 2);
}

#[tokio::test(start_paused = true)]
async fn nothing_missing_asks_nothing_and_clears_the_gate() {
    let mut provider = Scripted {
        answers: VecDeque::from([Err(status(403, None)), Ok(allocated())]),
        ..Scripted::default()
    };
    let mut gate = AllocationGate::default();
    gate.allocate_if_missing(&mut provider, nothing()).await;
    // Allocated by other means (the control panel): the refusal is history.
    assert_eq!(
        gate.allocate_if_missing(&mut provider, allocated()).await,
        allocated()
    );
    assert_eq!(provider.asked, 1);
    gate.allocate_if_missing(&mut provider, nothing()).await;
    assert_eq!(provider.asked, 2, "gone again: asked again");
}
