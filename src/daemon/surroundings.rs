//! What the daemon's loop waits on besides the provider, behind three small traits:
//! the kernel's events, the poll clock and the operator's controls. `daemon::run`
//! wires the real ones (the netlink watch, a timerfd, Unix signals); tests drive the
//! same loop with channels and tokio's paused clock, as a fake kernel's user, without
//! root.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

use super::DaemonError;
use crate::kernel::KernelEvent;
use crate::kernel::watch::Watch;
use crate::timer::PollTimer;

/// The kernel's change notifications.
pub trait Events {
    /// The next event; `None` when the stream ended.
    fn next(&mut self) -> impl Future<Output = Option<KernelEvent>>;
    /// An event already queued, without waiting.
    fn try_next(&mut self) -> Option<KernelEvent>;
    /// Start a new stream after the last one ended.
    fn restart(&mut self) -> Result<(), DaemonError>;
}

/// The poll timer: one deadline, re-armed after every poll.
pub trait Clock {
    fn set(&mut self, deadline: Instant) -> Result<(), DaemonError>;
    /// Until the deadline. Cancel-safe: a deadline passed while nobody waited fires
    /// on the next call.
    fn wait(&self) -> impl Future<Output = Result<(), DaemonError>>;
}

/// What the operator asks of the running daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: read the configuration again.
    Reload,
    /// SIGTERM or SIGINT: stop per `on_stop`.
    Stop,
}

pub trait Controls {
    /// The next request. Cancel-safe.
    fn next(&mut self) -> impl Future<Output = Control>;
}

/// Everything the loop waits on, and the systemd watchdog period (half of
/// `WatchdogSec=`), if systemd asked for pings.
pub struct Surroundings<E, C, S> {
    pub events: E,
    pub clock: C,
    pub controls: S,
    pub watchdog: Option<Duration>,
}

impl Events for Watch {
    async fn next(&mut self) -> Option<KernelEvent> {
        Watch::next(self).await
    }

    fn try_next(&mut self) -> Option<KernelEvent> {
        Watch::try_next(self)
    }

    fn restart(&mut self) -> Result<(), DaemonError> {
        *self = self.restarted()?;
        Ok(())
    }
}

impl Clock for PollTimer {
    fn set(&mut self, deadline: Instant) -> Result<(), DaemonError> {
        Ok(PollTimer::set(self, deadline)?)
    }

    async fn wait(&self) -> Result<(), DaemonError> {
        Ok(PollTimer::wait(self).await?)
    }
}

/// SIGHUP, SIGTERM and SIGINT.
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> Result<Signals, DaemonError> {
        let install = |kind| signal(kind).map_err(DaemonError::Signals);
        Ok(Signals {
            hangup: install(SignalKind::hangup())?,
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
        })
    }
}

impl Controls for Signals {
    async fn next(&mut self) -> Control {
        tokio::select! {
            _ = self.hangup.recv() => Control::Reload,
            _ = self.terminate.recv() => Control::Stop,
            _ = self.interrupt.recv() => Control::Stop,
        }
    }
}
