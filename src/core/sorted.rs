//! Sorted maps and sets on a `Vec`: what the engine keeps per transaction and per config holds a
//! handful of entries, and every `BTreeMap<K, V>` type costs 2–4 KB of wasm (its node code is
//! instantiated per key and value type), where these cost a binary search and a `Vec::insert`.
//! Iteration is in key order, as with the B-tree collections they replace.

use std::borrow::Borrow;

use serde::ser::{Serialize, Serializer};

#[derive(Clone, Debug, PartialEq)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub const fn new() -> Self {
        VecMap(Vec::new())
    }

    /// `insert`, appending without a search when `k` is greater than every key (the common case
    /// of keys given in order).
    pub fn insert_last(&mut self, k: K, v: V) -> Option<V> {
        if self.0.last().is_none_or(|(last, _)| *last < k) {
            self.0.push((k, v));
            return None;
        }
        self.insert(k, v)
    }

    fn find<Q: Ord + ?Sized>(&self, k: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(x, _)| x.borrow().cmp(k))
    }

    pub fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(k).is_ok()
    }

    /// Sets `k` to `v`; the value it replaces, if any.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.0.insert(i, (k, v));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| self.0.remove(i).1)
    }

    /// The value of `k`, inserted as `V::default()` first if missing.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (k, V::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.0.into_iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The keys of `a` and `b` in order, each once, with its value on each side: how two maps are merged
/// in one pass (each key then goes at the end of the map being built, with no entries to shift).
pub fn union<'a, K: Ord, V, W>(
    a: &'a VecMap<K, V>,
    b: &'a VecMap<K, W>,
) -> impl Iterator<Item = (&'a K, Option<&'a V>, Option<&'a W>)> {
    walk(a.0.iter().map(|(k, v)| (k, v)), b.0.iter().map(|(k, w)| (k, w)))
}

/// `union` of two maps taken by value.
pub fn union_owned<K: Ord, V, W>(a: VecMap<K, V>, b: VecMap<K, W>) -> impl Iterator<Item = (K, Option<V>, Option<W>)> {
    walk(a.0.into_iter(), b.0.into_iter())
}

fn walk<K: Ord, V, W>(
    a: impl Iterator<Item = (K, V)>,
    b: impl Iterator<Item = (K, W)>,
) -> impl Iterator<Item = (K, Option<V>, Option<W>)> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (Some((x, _)), Some((y, _))) => x.cmp(y),
        };
        Some(match order {
            Less => a.next().map(|(k, v)| (k, Some(v), None))?,
            Greater => b.next().map(|(k, w)| (k, None, Some(w)))?,
            Equal => {
                let (k, v) = a.next()?;
                (k, Some(v), b.next().map(|(_, w)| w))
            }
        })
    })
}

/// Later entries win over earlier ones with the same key, as `BTreeMap::from_iter` does.
impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut v: Vec<(K, V)> = iter.into_iter().collect();
        v.reverse();
        // Stable: among equal keys the last given comes first now, and dedup keeps the first.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|later, earlier| later.0 == earlier.0);
        VecMap(v)
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for VecMap<K, V> {
    fn from(items: [(K, V); N]) -> Self {
        items.into_iter().collect()
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VecSet<K>(Vec<K>);

impl<K> Default for VecSet<K> {
    fn default() -> Self {
        VecSet(Vec::new())
    }
}

impl<K: Ord> VecSet<K> {
    pub const fn new() -> Self {
        VecSet(Vec::new())
    }

    /// Whether `k` was new.
    pub fn insert(&mut self, k: K) -> bool {
        match self.0.binary_search(&k) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, k);
                true
            }
        }
    }

    pub fn contains<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|x| x.borrow().cmp(k)).is_ok()
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        match self.0.binary_search_by(|x| x.borrow().cmp(k)) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, K> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Ord> FromIterator<K> for VecSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        let mut v: Vec<K> = iter.into_iter().collect();
        v.sort();
        v.dedup();
        VecSet(v)
    }
}

impl<K: Ord> Extend<K> for VecSet<K> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        self.0.extend(iter);
        self.0.sort();
        self.0.dedup();
    }
}

impl<K: Ord, const N: usize> From<[K; N]> for VecSet<K> {
    fn from(items: [K; N]) -> Self {
        items.into_iter().collect()
    }
}

impl<K> IntoIterator for VecSet<K> {
    type Item = K;
    type IntoIter = std::vec::IntoIter<K>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, K> IntoIterator for &'a VecSet<K> {
    type Item = &'a K;
    type IntoIter = std::slice::Iter<'a, K>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_keeps_key_order_and_the_last_value_given() {
        let mut m: VecMap<String, u32> = [("b".to_string(), 1), ("a".into(), 2), ("b".into(), 3)].into();
        assert_eq!(m.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("a", 2), ("b", 3)]);
        assert_eq!(m.insert("c".into(), 4), None);
        assert_eq!(m.insert("a".into(), 5), Some(2));
        *m.entry_or_default("0".into()) += 7;
        *m.entry_or_default("c".into()) += 1;
        assert_eq!(m.keys().map(String::as_str).collect::<String>(), "0abc");
        assert_eq!((m.get("0"), m.get("c"), m.get("z")), (Some(&7), Some(&5), None));
        assert_eq!(m.remove("b"), Some(3));
        assert_eq!(m.remove("b"), None);
        assert!(m.contains_key("a") && !m.contains_key("b"));
        assert_eq!(m.len(), 3);
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"0":7,"a":5,"c":5}"#);
    }

    #[test]
    fn a_set_is_sorted_without_repeats() {
        let mut s: VecSet<u32> = [5, 1, 5, 3].into();
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [1, 3, 5]);
        assert!(s.insert(2) && !s.insert(3));
        s.extend([9, 1, 0]);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 3, 5, 9]);
        assert!(s.remove(&2) && !s.remove(&2));
        assert!(s.contains(&9) && !s.contains(&2));
        assert_eq!(s.len(), 5);
    }
}
