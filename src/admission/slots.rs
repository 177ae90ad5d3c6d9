//! Counted places: a [`Slot`] is one of at most `limit` per key, given back when dropped, so a
//! count can never leak whatever path its holder ends by.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// At most `limit` slots per key.
#[derive(Debug)]
pub struct Slots<K: Eq + Hash> {
    limit: usize,
    taken: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    pub fn new(limit: usize) -> Arc<Slots<K>> {
        Arc::new(Slots {
            limit,
            taken: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `key`, if it has fewer than `limit`.
    pub fn try_take(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut taken = self
            .taken
            .lock()
            .expect("slot counts are never left half-written");
        let n = taken.entry(key.clone()).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            key: Some(key),
        })
    }

    /// How many slots `key` holds.
    pub fn count(&self, key: &K) -> usize {
        let taken = self
            .taken
            .lock()
            .expect("slot counts are never left half-written");
        taken.get(key).copied().unwrap_or(0)
    }
}

/// One place, given back on drop.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash> {
    slots: Arc<Slots<K>>,
    key: Option<K>,
}

impl<K: Eq + Hash> Drop for Slot<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut taken = self
            .slots
            .taken
            .lock()
            .expect("slot counts are never left half-written");
        if let Some(n) = taken.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                taken.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_given_back_on_drop_and_empty_keys_forgotten() {
        let slots = Slots::new(2);
        let a = slots.try_take("a").unwrap();
        let b = slots.try_take("a").unwrap();
        assert!(slots.try_take("a").is_none());
        assert!(slots.try_take("b").is_some());
        drop(a);
        assert_eq!(slots.count(&"a"), 1);
        drop(b);
        assert_eq!(slots.count(&"a"), 0);
        assert!(slots.taken.lock().unwrap().is_empty());
    }
}
