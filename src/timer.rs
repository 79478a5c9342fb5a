//! The poll timer: a timerfd, so the kernel wakes the daemon once, at the deadline.
//!
//! tokio's timer wheel is hierarchical: a deadline far away sits in a coarse level
//! and the runtime wakes at each level boundary on the way to re-file it. With a 60 s
//! poll that is a wakeup up to 4 s before every poll, and another, up to a minute
//! early, whenever the interval crosses one of the wheel's 262 s boundaries. A host agent at rest should sleep until it has
//! work: with no tokio timer pending, the runtime parks in epoll with no timeout and
//! this fd is the one thing that ends the sleep.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// A one-shot monotonic timer that can be re-armed.
pub struct PollTimer {
    fd: AsyncFd<Registered>,
}

/// The timerfd as tokio's reactor registers it (by its raw fd).
struct Registered(TimerFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("cannot create the poll timer (timerfd): {0}")]
    Create(io::Error),
    #[error("cannot arm the poll timer (timerfd_settime): {0}")]
    Arm(io::Error),
    #[error("cannot read the poll timer: {0}")]
    Read(io::Error),
}

impl PollTimer {
    /// A disarmed timer. Needs a tokio runtime with I/O enabled.
    pub fn new() -> Result<PollTimer, TimerError> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(|e| TimerError::Create(e.into()))?;
        // SAFETY: the TimerFd stays open, and is the same fd, until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register_with_interest(Registered(timer), Interest::READABLE) }
            .map_err(|e| TimerError::Create(e.into_parts().1))?;
        Ok(PollTimer { fd })
    }

    /// Fire at `deadline` (at once if it has passed), replacing any earlier setting.
    /// Re-arming also resets the expiration count.
    pub fn set(&mut self, deadline: Instant) -> Result<(), TimerError> {
        // A zero it_value would disarm the timer: a passed deadline fires in 1 ns.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        self.fd
            .get_ref()
            .0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(wait)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(|e| TimerError::Arm(e.into()))
    }

    /// Wait until the timer fires. Cancel-safe: dropping the future loses nothing,
    /// an expiration not yet read is still there for the next call.
    pub async fn wait(&self) -> Result<(), TimerError> {
        loop {
            let mut ready = self.fd.readable().await.map_err(TimerError::Read)?;
            // Non-blocking: reads the expiration count, or EAGAIN when the readiness
            // was stale (re-armed since).
            match ready.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(TimerError::Read(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn fires_at_the_deadline_not_before() {
        run(async {
            let mut timer = PollTimer::new().expect("timer");
            let started = Instant::now();
            timer.set(started + Duration::from_millis(60)).expect("set");
            timer.wait().await.expect("wait");
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(60), "{took:?}");
            assert!(took < Duration::from_secs(2), "{took:?}");
        });
    }

    #[test]
    fn a_new_deadline_replaces_the_old_and_a_passed_one_fires_at_once() {
        run(async {
            let mut timer = PollTimer::new().expect("timer");
            let started = Instant::now();
            timer.set(started + Duration::from_secs(30)).expect("set");
            // Moved earlier: the 30 s deadline is gone.
            timer
                .set(started + Duration::from_millis(40))
                .expect("set again");
            timer.wait().await.expect("wait");
            assert!(started.elapsed() < Duration::from_secs(2));
            // Moved later: an expiration of the old setting is not seen.
            timer
                .set(Instant::now() + Duration::from_millis(10))
                .expect("set");
            tokio::time::sleep(Duration::from_millis(30)).await;
            let later = Instant::now();
            timer
                .set(later + Duration::from_millis(80))
                .expect("re-arm");
            timer.wait().await.expect("wait");
            assert!(later.elapsed() >= Duration::from_millis(80));
            // In the past: at once.
            timer.set(started).expect("set in the past");
            let now = Instant::now();
            timer.wait().await.expect("wait");
            assert!(now.elapsed() < Duration::from_millis(500));
        });
    }

    #[test]
    fn an_unread_expiration_survives_a_dropped_wait() {
        run(async {
            let mut timer = PollTimer::new().expect("timer");
            timer
                .set(Instant::now() + Duration::from_millis(20))
                .expect("set");
            // A select! that took another branch drops the wait before it fires.
            let _ = tokio::time::timeout(Duration::from_millis(1), timer.wait()).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
            let now = Instant::now();
            tokio::time::timeout(Duration::from_millis(500), timer.wait())
                .await
                .expect("the expiration is still there")
                .expect("wait");
            assert!(now.elapsed() < Duration::from_millis(500));
        });
    }
}
