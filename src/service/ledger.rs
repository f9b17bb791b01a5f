//! The statement-usage ledger of the active snapshot ([`Usage`]), as the
//! service keeps it: made for a snapshot on its first decision, replaced
//! when a newer snapshot decides, read by `GetUsage`. A decision of an
//! older snapshot than the ledger's (a call that began before a reload)
//! is not counted.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::compile::Snapshot;
use crate::eval::Decision;
use crate::eval::usage::Usage;

/// The ledger holder.
#[derive(Default)]
pub(crate) struct Ledger {
    active: ArcSwapOption<Usage>,
    /// Held while a ledger for a new snapshot is made.
    making: Mutex<()>,
}

impl Ledger {
    /// Count `d`, a decision of `snap`.
    pub(crate) fn record(&self, snap: &Snapshot, d: &Decision) {
        let current = self.active.load();
        match current.as_deref() {
            Some(u) if u.generation() == snap.generation => u.record(d),
            Some(u) if u.generation() > snap.generation => {}
            _ => {
                drop(current);
                self.replace(snap).record(d);
            }
        }
    }

    /// The ledger for `snap`, made unless another call made it first.
    fn replace(&self, snap: &Snapshot) -> Arc<Usage> {
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = self.active.load_full()
            && u.generation() >= snap.generation
        {
            return u;
        }
        let made = Arc::new(Usage::new(snap));
        self.active.store(Some(made.clone()));
        made
    }

    /// The ledger of `snap` (empty when it has decided nothing yet).
    pub(crate) fn of(&self, snap: &Snapshot) -> Arc<Usage> {
        match self.active.load_full() {
            Some(u) if u.generation() == snap.generation => u,
            _ => self.replace(snap),
        }
    }
}
