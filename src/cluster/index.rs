//! Cluster-wide lookups kept current by the nodes' own changes, so that a create or a lookup
//! does not visit every node: container names, swarm IDs and node names to the nodes holding
//! them, and the scheduler's view of every node. A node marks its key in [`Changes`] on every
//! change; a reader first re-reads the nodes marked since the last read (between two creates,
//! the one or two nodes they touched).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::keyed::Keyed;
use super::node::{Derived, Node};
use crate::scheduler::NodeSnapshot;

/// Keys of the nodes changed since [`Index`] last read them.
#[derive(Debug, Default)]
pub struct Changes(Mutex<HashSet<String>>);

impl Changes {
    /// Notes that node `key` changed (or came, or left).
    pub fn mark(&self, key: &str) {
        let mut keys = self.0.lock();
        if !keys.contains(key) {
            keys.insert(key.to_string());
        }
    }

    fn take(&self) -> HashSet<String> {
        std::mem::take(&mut self.0.lock())
    }
}

/// The nodes holding one name: almost always one; many when engines share a hostname, or when
/// every engine runs a container of that name.
enum Keys {
    One(Arc<str>),
    /// Ordered, so that the first by key is at hand and a removal is not a scan.
    Many(BTreeSet<Arc<str>>),
}

impl Keys {
    fn first(&self) -> &Arc<str> {
        match self {
            Keys::One(k) => k,
            Keys::Many(keys) => keys.first().expect("a Many holds keys"),
        }
    }
}

/// Node keys by some name.
type Holders = HashMap<String, Keys>;

fn add(map: &mut Holders, name: &str, key: &Arc<str>) {
    match map.get_mut(name) {
        None => {
            map.insert(name.to_string(), Keys::One(key.clone()));
        }
        Some(Keys::One(k)) if k == key => {}
        Some(keys) => match keys {
            Keys::One(k) => {
                let both = BTreeSet::from([k.clone(), key.clone()]);
                *keys = Keys::Many(both);
            }
            Keys::Many(set) => {
                set.insert(key.clone());
            }
        },
    }
}

fn remove(map: &mut Holders, name: &str, key: &str) {
    let empty = match map.get_mut(name) {
        Some(Keys::One(k)) => &**k == key,
        Some(Keys::Many(keys)) => {
            keys.remove(key);
            keys.is_empty()
        }
        None => false,
    };
    if empty {
        map.remove(name);
    }
}

fn relink_map(map: &mut Holders, old: &Keyed, new: &Keyed, key: &Arc<str>) {
    old.keys().filter(|n| !new.contains_key(n)).for_each(|n| remove(map, n, key));
    new.keys().filter(|n| !old.contains_key(n)).for_each(|n| add(map, n, key));
}

/// What the index knows of one node.
struct Entry {
    key: Arc<str>,
    derived: Arc<Derived>,
    /// Where the node sits in [`Index::view`].
    slot: usize,
}

/// The indexes and the scheduler's view, as of the last [`Index::sync`].
#[derive(Default)]
pub struct Index {
    entries: HashMap<String, Entry>,
    names: Holders,
    swarm_ids: Holders,
    node_names: Holders,
    /// One snapshot per node: creates scan it in place.
    view: Vec<NodeSnapshot>,
    /// Slots whose snapshot counts creates in flight, until [`Index::clear_pending`].
    with_pending: Vec<usize>,
}

impl Index {
    /// Re-reads the nodes in `changes` from `nodes`; the caller holds the node table's lock,
    /// so that no change slips between taking the marks and reading.
    pub fn sync(&mut self, nodes: &BTreeMap<String, Node>, changes: &Changes) {
        self.clear_pending();
        for key in changes.take() {
            match nodes.get(&key) {
                Some(node) => self.update(node),
                None => self.forget(&key),
            }
        }
    }

    fn update(&mut self, node: &Node) {
        let derived = node.derived().clone();
        let health_indicator = node.health.indicator();
        if let Some(entry) = self.entries.get_mut(&node.addr) {
            let slot = entry.slot;
            self.view[slot].health_indicator = health_indicator;
            // A health change only: same derived views, same names.
            if Arc::ptr_eq(&entry.derived, &derived) {
                return;
            }
            let old = std::mem::replace(&mut entry.derived, derived.clone());
            let key = entry.key.clone();
            self.relink(&old, &derived, &key);
            self.view[slot].set_facts(derived.facts.clone());
            return;
        }
        let key: Arc<str> = node.addr.as_str().into();
        self.link(&derived, &key);
        self.view.push(NodeSnapshot::new(derived.facts.clone(), health_indicator));
        self.entries.insert(node.addr.clone(), Entry { key, derived, slot: self.view.len() - 1 });
    }

    fn forget(&mut self, key: &str) {
        let Some(entry) = self.entries.remove(key) else { return };
        self.unlink(&entry.derived, key);
        self.view.swap_remove(entry.slot);
        if let Some(moved) = self.view.get(entry.slot) {
            if let Some(e) = self.entries.get_mut(&moved.key) {
                e.slot = entry.slot;
            }
        }
    }

    fn link(&mut self, derived: &Derived, key: &Arc<str>) {
        derived.names.keys().for_each(|n| add(&mut self.names, n, key));
        derived.swarm_ids.keys().for_each(|s| add(&mut self.swarm_ids, s, key));
        add(&mut self.node_names, &derived.facts.name, key);
    }

    /// Moves node `key` from `old`'s names to `new`'s, touching only the names that differ: a
    /// create changes one of a node's names, and a name every engine holds has a thousand
    /// holders to search.
    fn relink(&mut self, old: &Derived, new: &Derived, key: &Arc<str>) {
        relink_map(&mut self.names, &old.names, &new.names, key);
        relink_map(&mut self.swarm_ids, &old.swarm_ids, &new.swarm_ids, key);
        if old.facts.name != new.facts.name {
            remove(&mut self.node_names, &old.facts.name, key);
            add(&mut self.node_names, &new.facts.name, key);
        }
    }

    fn unlink(&mut self, derived: &Derived, key: &str) {
        derived.names.keys().for_each(|n| remove(&mut self.names, n, key));
        derived.swarm_ids.keys().for_each(|s| remove(&mut self.swarm_ids, s, key));
        remove(&mut self.node_names, &derived.facts.name, key);
    }

    /// The ID of the cached container whose primary name is `name`, on the first node (by key)
    /// holding one.
    pub fn name_holder(&self, name: &str) -> Option<String> {
        let key = self.names.get(name)?.first();
        self.entries.get(&**key)?.derived.names.get(name).map(|c| c.id.clone())
    }

    /// Whether any cached container carries this swarm ID.
    pub fn has_swarm_id(&self, swarm_id: &str) -> bool {
        self.swarm_ids.contains_key(swarm_id)
    }

    /// Whether node `key`'s cache holds a container with this swarm ID.
    pub fn node_has_swarm_id(&self, key: &str, swarm_id: &str) -> bool {
        self.entries.get(key).is_some_and(|e| e.derived.swarm_ids.contains_key(swarm_id))
    }

    /// The key of the node named `name` (the first by key), or whose key is `name`.
    pub fn node_key(&self, name: &str) -> Option<String> {
        let by_name = self.node_names.get(name).map(|keys| keys.first().to_string());
        // Classic lookup order: the first node by key whose name or address matches.
        match (by_name, self.entries.contains_key(name)) {
            (Some(k), true) => Some(if name < k.as_str() { name.to_string() } else { k }),
            (Some(k), false) => Some(k),
            (None, true) => Some(name.to_string()),
            (None, false) => None,
        }
    }

    /// Every node's snapshot.
    pub fn view(&self) -> &[NodeSnapshot] {
        &self.view
    }

    /// Node `key`'s snapshot, for counting a create in flight to it.
    pub fn pending_on(&mut self, key: &str) -> Option<&mut NodeSnapshot> {
        let slot = self.entries.get(key)?.slot;
        self.with_pending.push(slot);
        self.view.get_mut(slot)
    }

    /// Takes the creates in flight out of the view again (also what a decision that panicked
    /// left in it).
    pub fn clear_pending(&mut self) {
        for slot in self.with_pending.drain(..) {
            if let Some(snap) = self.view.get_mut(slot) {
                snap.pending.clear();
                snap.pending_cpus = 0;
                snap.pending_memory = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_held_by_many_nodes_names_the_first_by_key_until_none_holds_it() {
        let mut map = Holders::new();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a:1".into(), "b:1".into(), "c:1".into());
        add(&mut map, "web", &b);
        add(&mut map, "web", &c);
        add(&mut map, "web", &a);
        add(&mut map, "web", &a);
        assert_eq!(&**map["web"].first(), "a:1");
        remove(&mut map, "web", "a:1");
        assert_eq!(&**map["web"].first(), "b:1");
        remove(&mut map, "web", "b:1");
        remove(&mut map, "web", "c:1");
        assert!(!map.contains_key("web"));
        add(&mut map, "db", &c);
        remove(&mut map, "db", "a:1");
        assert_eq!(&**map["db"].first(), "c:1");
        remove(&mut map, "db", "c:1");
        assert!(map.is_empty());
    }
}
