//! A node's containers by a name they carry (primary name, swarm ID), holding the containers
//! rather than copies of their names and IDs: a node re-derives these after every change to
//! it, and two strings copied per container were most of that cost.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use super::node::CachedContainer;

/// Containers by `key_of`; a container without that key is left out, and of two with the same
/// key the later inserted stays.
pub struct Keyed {
    key_of: fn(&CachedContainer) -> Option<&str>,
    table: HashTable<Arc<CachedContainer>>,
    hasher: RandomState,
}

impl Keyed {
    /// Containers by their primary name.
    pub fn by_name(capacity: usize) -> Keyed {
        Keyed::new(|c| Some(c.name()), capacity)
    }

    /// Containers by their swarm ID.
    pub fn by_swarm_id(capacity: usize) -> Keyed {
        Keyed::new(|c| c.swarm_id.as_deref(), capacity)
    }

    fn new(key_of: fn(&CachedContainer) -> Option<&str>, capacity: usize) -> Keyed {
        Keyed { key_of, table: HashTable::with_capacity(capacity), hasher: RandomState::new() }
    }

    pub fn insert(&mut self, container: &Arc<CachedContainer>) {
        let Keyed { key_of, table, hasher } = self;
        let key_of = *key_of;
        let Some(key) = key_of(container) else { return };
        let hash = hasher.hash_one(key);
        match table.entry(hash, |c| key_of(c) == Some(key), |c| hasher.hash_one(key_of(c).unwrap_or_default())) {
            Entry::Occupied(mut held) => *held.get_mut() = container.clone(),
            Entry::Vacant(free) => {
                free.insert(container.clone());
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Arc<CachedContainer>> {
        self.table.find(self.hasher.hash_one(key), |c| (self.key_of)(c) == Some(key))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.table.iter().filter_map(|c| (self.key_of)(c))
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(id: &str, name: &str, swarm_id: Option<&str>) -> Arc<CachedContainer> {
        let labels = swarm_id.map_or_else(|| json!({}), |s| json!({crate::cluster::node::labels::SWARM_ID: s}));
        Arc::new(CachedContainer::new(
            json!({"Id": id, "Names": [format!("/{name}")], "Labels": labels}),
            Default::default(),
        ))
    }

    #[test]
    fn finds_by_key_and_the_later_of_two_stays() {
        let mut names = Keyed::by_name(2);
        let mut swarm_ids = Keyed::by_swarm_id(2);
        for c in [container("c1", "web", Some("s1")), container("c2", "db", None), container("c3", "cache", Some("s1"))]
        {
            names.insert(&c);
            swarm_ids.insert(&c);
        }
        assert_eq!(names.get("web").map(|c| c.id.as_str()), Some("c1"));
        assert!(names.contains_key("db") && !names.contains_key("we"));
        let mut keys: Vec<&str> = names.keys().collect();
        keys.sort();
        assert_eq!(keys, ["cache", "db", "web"]);
        assert_eq!(swarm_ids.len(), 1, "a container without a swarm ID is left out");
        assert_eq!(swarm_ids.get("s1").map(|c| c.id.as_str()), Some("c3"));
    }
}
