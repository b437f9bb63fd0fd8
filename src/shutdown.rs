//! A clonable shutdown signal: every background task holds a [`Shutdown`] and stops when the
//! [`ShutdownTrigger`] fires (SIGTERM/SIGINT in the binary, drop or `trigger` in tests).

use std::time::Duration;

use tokio::sync::watch;

/// Fires the shutdown signal.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Waits for the shutdown signal.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and signal.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Tells every holder of a [`Shutdown`] to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// The tick of every periodic background task (file watchers, the state writer): waits
    /// `period` and returns true, or returns false as soon as shutdown is triggered.
    pub async fn tick(&mut self, period: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(period) => true,
            _ = self.wait() => false,
        }
    }

    /// Completes when shutdown is triggered (or the trigger is dropped).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A signal that fires when either fires: the process shutting down, or one part of it (an
/// account, a discovery source) removed by a reload.
pub(crate) fn either(mut a: Shutdown, mut b: Shutdown) -> Shutdown {
    let (trigger, signal) = channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = a.wait() => {}
            _ = b.wait() => {}
        }
        trigger.trigger();
    });
    signal
}
