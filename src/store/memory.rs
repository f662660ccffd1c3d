//! An in-memory `Store` for the native tests and the simulation. The browser always uses
//! IndexedDB (`store::idb`): where it is unavailable, `open()` fails with `STORAGE` rather than
//! keeping writes that would be lost with the page.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::core::error::{Result, SyncError};
use crate::core::op::{Conflict, DeadLetter, Entity, EntityKey, Operation};
use crate::core::sorted::VecSet;
use crate::core::traits::{Counts, Store, Tx, Write, SEQ_META};
use crate::core::value::Value;

#[derive(Clone, Debug, Default)]
pub struct MemoryData {
    pub entities: BTreeMap<EntityKey, Entity>,
    pub ops: BTreeMap<String, Operation>,
    pub dead_letters: BTreeMap<String, DeadLetter>,
    pub conflicts: BTreeMap<String, Conflict>,
    pub meta: BTreeMap<String, Value>,
}

/// Cheap to clone: clones share the same data (like two handles on one IndexedDB database).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    data: std::rc::Rc<RefCell<MemoryData>>,
    /// Fail the next N transactions with this error (tests: quota, a closed database).
    fail_next: std::rc::Rc<RefCell<Option<(usize, SyncError)>>>,
    /// Store calls made: each is one transaction in IndexedDB.
    calls: std::rc::Rc<std::cell::Cell<u64>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many store calls (transactions) have been made so far.
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }

    fn count(&self) {
        self.calls.set(self.calls.get() + 1);
    }

    /// A copy of everything stored.
    pub fn dump(&self) -> MemoryData {
        self.data.borrow().clone()
    }

    /// Changes the stored records directly, behind the engine's back (tests: a corrupted record,
    /// a record edited by an old version of the app).
    pub fn tamper(&self, f: impl FnOnce(&mut MemoryData)) {
        f(&mut self.data.borrow_mut());
    }

    /// Makes the next `n` transactions fail with `error`, writing nothing.
    /// `n == 0` clears a failure set earlier.
    pub fn fail_next(&self, n: usize, error: SyncError) {
        *self.fail_next.borrow_mut() = (n > 0).then_some((n, error));
    }

    fn injected_failure(&self) -> Result<()> {
        let mut f = self.fail_next.borrow_mut();
        if let Some((n, e)) = f.as_mut() {
            let e = e.clone();
            *n -= 1;
            if *n == 0 {
                *f = None;
            }
            return Err(e);
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    async fn transact<R>(&self, keys: &[EntityKey], f: impl FnOnce(&mut Tx) -> Result<R>) -> Result<R> {
        self.count();
        self.injected_failure()?;
        let mut tx = {
            let d = self.data.borrow();
            let mut tx = Tx::new(d.meta.get(SEQ_META).and_then(Value::as_u64).unwrap_or(1));
            for k in keys.iter().cloned().collect::<VecSet<EntityKey>>() {
                let lane = d.ops.values().filter(|o| o.collection == k.collection && o.entity_id == k.id).cloned();
                tx.add(k.clone(), d.entities.get(&k).cloned(), lane.collect());
            }
            tx
        };
        let r = f(&mut tx)?;
        let mut d = self.data.borrow_mut();
        for w in tx.into_writes() {
            match w {
                Write::PutEntity(e) => {
                    d.entities.insert(e.key(), e);
                }
                Write::DeleteEntity(k) => {
                    d.entities.remove(&k);
                }
                Write::PutOp(o) => {
                    d.ops.insert(o.id.clone(), o);
                }
                Write::DeleteOp(id) => {
                    d.ops.remove(&id);
                }
                Write::PutDeadLetter(dl) => {
                    d.dead_letters.insert(dl.op.id.clone(), dl);
                }
                Write::DeleteDeadLetter(id) => {
                    d.dead_letters.remove(&id);
                }
                Write::PutConflict(c) => {
                    d.conflicts.insert(c.id.clone(), c);
                }
                Write::DeleteConflict(id) => {
                    d.conflicts.remove(&id);
                }
                Write::PutMeta(k, v) => {
                    d.meta.insert(k, v);
                }
            }
        }
        Ok(r)
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>> {
        self.count();
        Ok(self.data.borrow().entities.get(key).cloned())
    }

    async fn list_entities(&self, collection: &str) -> Result<Vec<Entity>> {
        self.count();
        Ok(self.data.borrow().entities.values().filter(|e| e.collection == collection).cloned().collect())
    }

    async fn load_queue(&self) -> Result<(Vec<Operation>, Vec<Conflict>)> {
        self.count();
        let d = self.data.borrow();
        Ok((d.ops.values().cloned().collect(), d.conflicts.values().cloned().collect()))
    }

    async fn counts(&self) -> Result<Counts> {
        self.count();
        let d = self.data.borrow();
        Ok(Counts { pending: d.ops.len(), dead_letters: d.dead_letters.len(), conflicts: d.conflicts.len() })
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.count();
        Ok(self.data.borrow().dead_letters.values().cloned().collect())
    }

    async fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.count();
        Ok(self.data.borrow().conflicts.values().cloned().collect())
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Value>> {
        self.count();
        Ok(self.data.borrow().meta.get(name).cloned())
    }

    async fn put_meta(&self, name: &str, value: Value) -> Result<()> {
        self.count();
        self.injected_failure()?;
        self.data.borrow_mut().meta.insert(name.to_string(), value);
        Ok(())
    }
}
