//! Named layouts of multi-output constructs (the GeN `If`'s outputs, the carried state, the
//! roots of a probe clone): an ordered list of keys whose positions are computed once. The code
//! that writes the construct lists its values with [`Layout::arrange`], the code that reads it
//! asks [`Layout::get`] by key; neither counts positions.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

/// A key asked of a layout that does not hold it (a bug in the stage that built the layout).
#[derive(Debug, thiserror::Error)]
#[error("no slot {key} in the layout [{slots}]")]
pub struct LayoutError {
    pub key: String,
    pub slots: String,
}

/// Positions of named slots.
#[derive(Clone, Debug)]
pub struct Layout<K> {
    keys: Vec<K>,
    position: HashMap<K, usize>,
}

impl<K: Copy + Eq + Hash + Debug> Layout<K> {
    /// The layout of `keys`, in that order (a repeated key keeps its first position).
    pub fn new(keys: Vec<K>) -> Self {
        let mut position = HashMap::with_capacity(keys.len());
        for (i, &k) in keys.iter().enumerate() {
            position.entry(k).or_insert(i);
        }
        Layout { keys, position }
    }

    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// One value per slot, in layout order: `value(key)` called for each key in turn.
    pub fn arrange<V>(&self, value: impl FnMut(K) -> V) -> Vec<V> {
        self.keys.iter().copied().map(value).collect()
    }

    /// The value of slot `key` in `values`, a list written with this layout.
    pub fn get<V: Copy>(&self, values: &[V], key: K) -> Result<V, LayoutError> {
        self.position
            .get(&key)
            .and_then(|&i| values.get(i))
            .copied()
            .ok_or_else(|| LayoutError {
                key: format!("{key:?}"),
                slots: format!("{:?}", self.keys),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_agree_by_key() {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        enum K {
            A,
            B(usize),
        }
        let l = Layout::new(vec![K::A, K::B(0), K::B(1)]);
        let written = l.arrange(|k| match k {
            K::A => 10,
            K::B(i) => 20 + i,
        });
        assert_eq!(written, vec![10, 20, 21]);
        assert_eq!(l.get(&written, K::B(1)).unwrap(), 21);
        assert_eq!(l.get(&written, K::A).unwrap(), 10);
        let err = l.get(&written, K::B(2)).unwrap_err();
        assert!(err.to_string().contains("B(2)"), "{err}");
    }
}
