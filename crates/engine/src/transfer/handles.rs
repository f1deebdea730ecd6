//! Maps from a key to a handle on running work, swept of handles whose work has ended.
//!
//! A sweep walks the whole map, so sweeping before every insert makes a push of 1,000 blobs,
//! all started at once, quadratic. The map is swept only when it has grown to twice what the
//! last sweep kept (and at least [`FIRST_SWEEP_AT`] entries); a lookup must treat an ended
//! handle as absent, which a `Weak` that no longer upgrades already is.

use std::collections::HashMap;
use std::hash::Hash;

/// Below this many entries the map is never swept.
const FIRST_SWEEP_AT: usize = 64;

pub(crate) struct Handles<K, V> {
    map: HashMap<K, V>,
    sweep_at: usize,
}

impl<K, V> Default for Handles<K, V> {
    fn default() -> Self {
        Handles {
            map: HashMap::new(),
            sweep_at: FIRST_SWEEP_AT,
        }
    }
}

impl<K: Eq + Hash, V> Handles<K, V> {
    /// The map, first swept of the entries `running` says have ended if it has grown enough
    /// since the last sweep.
    pub fn swept(&mut self, mut running: impl FnMut(&V) -> bool) -> &mut HashMap<K, V> {
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, handle| running(handle));
            self.sweep_at = (self.map.len() * 2).max(FIRST_SWEEP_AT);
        }
        &mut self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_handles_are_swept_in_batches_and_running_ones_kept() {
        let mut handles: Handles<u32, bool> = Handles::default();
        // 1,000 ended handles never make the map grow past twice the first sweep point.
        for key in 0..1000 {
            let map = handles.swept(|running| *running);
            map.insert(key, false);
            assert!(map.len() <= FIRST_SWEEP_AT, "{} entries", map.len());
        }
        // Running handles are never swept; the sweep point follows what they hold.
        for key in 1000..1200 {
            handles.swept(|running| *running).insert(key, true);
        }
        let map = handles.swept(|running| *running);
        assert_eq!(map.values().filter(|running| **running).count(), 200);
        assert!(map.len() < 400, "{} entries", map.len());
    }
}
