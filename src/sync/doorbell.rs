//! The wake-up protocol of the pipe rings (`connection::ring`): receivers that sleep on a doorbell
//! (an `eventfd`, or anything that can be rung and silenced), senders that ring it only when
//! someone sleeps, and no sleeper forgotten when several receivers share a ring.
//!
//! - A receiver about to sleep counts itself in [`Sleepers`] and only then looks for data
//!   ([`Sleepers::begin`]); a sender publishes and only then looks for sleepers
//!   ([`Sleepers::published`]). With a full fence on each side, either the receiver sees the data
//!   or the sender sees the receiver and rings.
//! - A receiver woken by the bell silences it (a level-triggered bell would otherwise wake
//!   everybody forever), then, if data remains and others sleep, rings it again
//!   ([`Sleepers::woken_by_bell`]): it may have silenced a ring meant for a receiver that counted
//!   itself but had not yet started sleeping.
//!
//! `sync::loom_models` checks the protocol with two receivers and a sender.

use std::sync::atomic::Ordering;

use super::atomic::{AtomicU32, fence};

/// Something sleepers wait on: rung by whoever wants them awake, silenced by a woken sleeper.
pub(crate) trait Bell {
    /// Makes the bell ring (waking its sleepers) until silenced.
    fn ring(&self);
    /// Stops the bell ringing.
    fn silence(&self);
}

/// How many receivers sleep on a ring's bell (or are about to). In shared memory; zero is none.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Sleepers {
    count: AtomicU32,
}

impl Sleepers {
    /// Counts the caller as a sleeper, then checks `has_data`: true, go to sleep (and call
    /// [`end`](Self::end) after); false, data is there, nothing to undo.
    pub(crate) fn begin(&self, has_data: impl Fn() -> bool) -> bool {
        self.count.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if has_data() {
            self.end();
            return false;
        }
        true
    }

    /// The caller no longer sleeps.
    pub(crate) fn end(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }

    /// After a sender published: rings `bell` if anyone sleeps.
    pub(crate) fn published(&self, bell: &impl Bell) {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) > 0 {
            bell.ring();
        }
    }

    /// After the caller woke because `bell` rang (and ended its sleep): silences it, then rings it
    /// again if data remains and others sleep.
    pub(crate) fn woken_by_bell(&self, bell: &impl Bell, has_data: impl Fn() -> bool) {
        bell.silence();
        fence(Ordering::SeqCst);
        if has_data() && self.count.load(Ordering::SeqCst) > 0 {
            bell.ring();
        }
    }
}
