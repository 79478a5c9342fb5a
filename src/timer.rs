//! The poll timer: a timerfd, so the kernel wakes the daemon once, at the deadline.
//!
//! tokio's timer wheel is hierarchical: a deadline far away sits in a coarse level
//! and the runtime wakes at each level boundary on the way to re-file it. With a 60 s
//! poll that is a wakeup up to 4 s before every poll, and another, up to a minute
//! early, whenever the interval crosses one of the wheel's 262 s boundaries (two in
//! ten minutes, measured by the bench). A host agent at rest should sleep until it has
//! work: with no tokio timer pending, the runtime parks in epoll with no timeout and
//! this fd is the one thing that ends the sleep.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// A one-shot monotonic timer that can be re-armed.
pub struct PollTimer {
    fd: AsyncFd<OwnedFd>,
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
        // SAFETY: plain syscall; the fd is checked and owned right after.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(TimerError::Create(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an OwnedFd stays open, and is the same fd, until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(|e| TimerError::Create(e.into_parts().1))?;
        Ok(PollTimer { fd })
    }

    /// Fire at `deadline` (at once if it has passed), replacing any earlier setting.
    pub fn set(&mut self, deadline: Instant) -> Result<(), TimerError> {
        // A zero it_value would disarm the timer: a passed deadline fires in 1 ns.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let value = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 10^9: fits any c_long.
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the fd is a timerfd we own; `value` outlives the call and the old
        // value is not asked for. Re-arming also resets the expiration count.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &value, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(TimerError::Arm(io::Error::last_os_error()))
        }
    }

    /// Wait until the timer fires. Cancel-safe: dropping the future loses nothing,
    /// an expiration not yet read is still there for the next call.
    pub async fn wait(&self) -> Result<(), TimerError> {
        loop {
            let mut ready = self.fd.readable().await.map_err(TimerError::Read)?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads 8 bytes into a buffer of 8 from a timerfd we own.
            let read = ready.try_io(|fd| {
                let n = unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        expirations.as_mut_ptr().cast(),
                        expirations.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(TimerError::Read(e)),
                // Readiness was stale (re-armed since): wait again.
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
