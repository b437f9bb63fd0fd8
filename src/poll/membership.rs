//! Which digests an account's scheduler holds: the configured targets (`targets`, target files)
//! and the discovered ones, merged so that each digest is polled once, configured labels win, and
//! a digest stays exactly as long as either names it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{PollingConfig, Target};
use crate::poll::discovered::SharedDiscovered;
use crate::poll::scheduler::Inner;
use crate::poll::store::{Interner, TargetState};
use crate::poll::timing::{failed_poll_wait, initial_state, refresh_interval};
use crate::telemetry::Trigger;

impl Inner {
    /// Makes `targets` the configured set: configured digests that left it go unless discovery
    /// names them (then they take the discovered labels); new ones are due at once.
    pub(crate) fn set_configured(
        &mut self,
        targets: &[&Target],
        polling: &PollingConfig,
        now: Instant,
    ) {
        let wanted: HashMap<&str, &Target> =
            targets.iter().map(|t| (t.digest.as_str(), *t)).collect();
        let dropped: Vec<Arc<str>> = self
            .targets
            .iter()
            .filter(|(d, s)| s.configured && !wanted.contains_key(&***d))
            .map(|(d, _)| Arc::clone(d))
            .collect();
        for digest in dropped {
            let Some(state) = self.targets.get(&digest) else {
                continue;
            };
            match state.discovered.clone() {
                Some(discovered) => {
                    let mut state = TargetState::clone(state);
                    state.configured = false;
                    state.labels = Arc::clone(&discovered.labels);
                    self.targets.insert(digest, Arc::new(state));
                }
                None => self.forget(&digest),
            }
        }
        let mut interner = Interner::default();
        for t in targets {
            match self.targets.get(t.digest.as_str()) {
                Some(existing) if existing.configured && existing.labels_match(t) => {}
                Some(existing) => {
                    let fresh = TargetState::new_shared(t, existing.refresh, &mut interner);
                    let mut state = TargetState::clone(existing);
                    state.labels = fresh.labels;
                    state.configured = true;
                    let key = Arc::clone(&state.digest);
                    self.targets.insert(key, Arc::new(state));
                }
                None => {
                    let state = TargetState::new_shared(t, polling.interval, &mut interner);
                    let key = Arc::clone(&state.digest);
                    self.targets.insert(Arc::clone(&key), Arc::new(state));
                    self.schedule(&key, now, Trigger::New);
                }
            }
        }
    }

    /// Makes `found` the discovered set (see `Scheduler::discover`); true when a target was
    /// added, removed or changed.
    pub(crate) fn set_discovered(
        &mut self,
        account: &Arc<str>,
        found: Vec<(Arc<str>, SharedDiscovered)>,
        changed: &HashSet<String>,
        polling: &PollingConfig,
        now: Instant,
    ) -> bool {
        // Whether the target set (not only the schedule) changed, so a snapshot is due.
        let mut touched = false;
        let wanted: HashSet<&str> = found.iter().map(|(d, _)| &**d).collect();
        let dropped: Vec<Arc<str>> = self
            .targets
            .iter()
            .filter(|(d, s)| s.discovered.is_some() && !wanted.contains(&***d))
            .map(|(d, _)| Arc::clone(d))
            .collect();
        for digest in dropped {
            let Some(state) = self.targets.get(&digest) else {
                continue;
            };
            if state.configured {
                let mut state = TargetState::clone(state);
                state.discovered = None;
                self.targets.insert(digest, Arc::new(state));
            } else {
                self.forget(&digest);
            }
            touched = true;
        }
        for (digest, discovered) in found {
            let is_changed = changed.contains(&*digest);
            match self.targets.get(&digest) {
                Some(existing) => {
                    // A configured target's first listed row is news too: its scan may have
                    // moved since the last poll.
                    let first_row = discovered.image.is_some()
                        && existing.polled()
                        && existing
                            .discovered
                            .as_ref()
                            .is_none_or(|d| d.image.is_none());
                    let is_changed = is_changed || first_row;
                    let same = existing
                        .discovered
                        .as_ref()
                        .is_some_and(|d| Arc::ptr_eq(d, &discovered));
                    if !same {
                        let mut state = TargetState::clone(existing);
                        if !state.configured {
                            state.labels = Arc::clone(&discovered.labels);
                        }
                        state.discovered = Some(discovered);
                        let key = Arc::clone(&state.digest);
                        self.targets.insert(key, Arc::new(state));
                        touched = true;
                    }
                    if is_changed {
                        if self.scheduled.contains_key(&digest) {
                            self.schedule(&digest, now, Trigger::Changed);
                        } else {
                            // Being polled right now: poll again once that ends.
                            self.recheck.insert(Arc::clone(&digest));
                        }
                    }
                }
                None => {
                    let fresh = TargetState::discovered(
                        Arc::clone(account),
                        Arc::clone(&digest),
                        discovered,
                        polling.interval,
                    );
                    let saved = self.restored.remove(&*digest);
                    let (state, at, why) = initial_state(fresh, saved, polling, now);
                    let (at, why) = if is_changed {
                        (now, Trigger::Changed)
                    } else {
                        (at, why)
                    };
                    self.targets.insert(Arc::clone(&digest), Arc::new(state));
                    self.schedule(&digest, at, why);
                    touched = true;
                }
            }
        }
        touched
    }
}

impl Inner {
    /// After a reload that shortened the intervals, no digest waits longer than its new refresh
    /// interval (or, for a failing digest, its failure wait) from now.
    pub(crate) fn pull_in_due_times(&mut self, polling: &PollingConfig, now: Instant) {
        let inner = self;
        let late: Vec<(Arc<str>, Trigger, Duration)> = inner
            .scheduled
            .iter()
            .filter_map(|(digest, ((at, _, _), why))| {
                let state = inner.targets.get(digest)?;
                let (limit, wait) = match inner.failures.get(digest) {
                    Some(&n) => {
                        let w = failed_poll_wait(n, polling);
                        (w, w)
                    }
                    // Spread over the new interval, so a big reload does not poll everything at once.
                    None => {
                        let r = refresh_interval(state, polling);
                        (r, r.mul_f64(fastrand::f64()))
                    }
                };
                (*at > now + limit).then(|| (Arc::clone(digest), *why, wait))
            })
            .collect();
        for (digest, why, wait) in late {
            inner.schedule(&digest, now + wait, why);
        }
    }
}
