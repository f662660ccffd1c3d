//! Local writes and reads: each write stores the record and queues its op in one store transaction;
//! reads check each record against its checksum.

use super::*;

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// Stores `data` as the record and queues it for the server, in one store transaction.
    pub async fn put(
        &self,
        collection: &str,
        id: &str,
        data: Value,
        priority: Option<Priority>,
    ) -> Result<Option<Entity>> {
        Ok(self.write_one(collection, id, Mutation::Put(data), priority).await?.entity)
    }

    /// Puts every `(id, data)` of `records` in ONE transaction: all are written, or (on any error,
    /// a quota error included) none. Records are applied in order, so a repeated id ends with its
    /// last data. Returns each record as stored.
    pub async fn put_many(
        &self,
        collection: &str,
        records: Vec<(String, Value)>,
        priority: Option<Priority>,
    ) -> Result<Vec<Option<Entity>>> {
        let writes = records.into_iter().map(|(id, data)| (id, Mutation::Put(data))).collect();
        Ok(self.write(collection, writes, priority).await?.into_iter().map(|e| e.entity).collect())
    }

    /// Merges `fields` into the record (`null` removes a field).
    pub async fn patch(
        &self,
        collection: &str,
        id: &str,
        fields: Value,
        priority: Option<Priority>,
    ) -> Result<Option<Entity>> {
        Ok(self.write_one(collection, id, Mutation::Patch(fields), priority).await?.entity)
    }

    /// Deletes the record; `false` if there was none.
    pub async fn delete(&self, collection: &str, id: &str, priority: Option<Priority>) -> Result<bool> {
        // A delete changes something exactly when the record existed: one transaction, no read first.
        Ok(self.write_one(collection, id, Mutation::Delete, priority).await?.changed)
    }

    /// One write of one record.
    async fn write_one(&self, collection: &str, id: &str, m: Mutation, p: Option<Priority>) -> Result<WriteEffect> {
        let mut effects = self.write(collection, vec![(id.to_string(), m)], p).await?;
        effects.pop().ok_or_else(|| SyncError::Storage("a write had no effect".into()))
    }

    /// Applies `writes` in order in one store transaction (every write of a call, or none), in
    /// parts of `TX_CHUNK` writes: a `putMany` of thousands is never one long task.
    async fn write(
        &self,
        collection: &str,
        writes: Vec<(String, Mutation)>,
        priority: Option<Priority>,
    ) -> Result<Vec<WriteEffect>> {
        let priority = priority.unwrap_or(self.collection(collection)?.priority);
        let keys = writes.iter().map(|(id, _)| self.key(collection, id)).collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now_ms();
        let mut new_id = || uuid(&self.clock);
        let mut corrupt: Option<Entity> = None;
        let mut effects = Vec::with_capacity(keys.len());
        let mut todo = keys.iter().zip(writes);
        let result = self
            .transact_parts(&keys, |tx| {
                for (key, (_, m)) in todo.by_ref().take(TX_CHUNK) {
                    // A patch builds on the stored record: never on a copy that fails its checksum.
                    if let (Mutation::Patch(_), Some(e)) = (&m, tx.entity(key).filter(|e| !intact(e))) {
                        let err =
                            SyncError::Integrity(format!("{}/{} does not match its checksum", e.collection, e.id));
                        corrupt = Some(e.clone());
                        return Err(err);
                    }
                    effects.push(local_write(tx, key, m, now, &mut new_id, priority)?);
                }
                Ok(effects.len() < keys.len())
            })
            .await;
        if let Some(e) = corrupt {
            if let Err(err) = self.verify(&e) {
                self.repair(vec![e.key()], true).await;
                return Err(err);
            }
        }
        result?;
        self.wrote_queue();
        for (key, eff) in keys.iter().zip(&effects) {
            if eff.changed {
                self.emit(change_event(key, eff.entity.as_ref()));
            }
        }
        Ok(effects)
    }

    /// The record's data, checked against its checksum.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        Ok(self.record(collection, id).await?.and_then(|e| e.data))
    }

    /// The record with its sync state (`None` if absent or deleted). A stored copy that fails its
    /// checksum is never returned: the call fails with `INTEGRITY` (also an `error` event). A good
    /// copy in a pending write restores it at once; else a later `pull()` does, from the server
    /// (the bindings start one), once pending writes are answered and no conflict waits for the app.
    pub async fn record(&self, collection: &str, id: &str) -> Result<Option<Entity>> {
        let key = self.key(collection, id)?;
        match self.store.get_entity(&key).await? {
            Some(e) if !e.is_deleted() => {
                if let Err(err) = self.verify(&e) {
                    self.repair(vec![key], true).await;
                    return Err(err);
                }
                Ok(Some(e))
            }
            _ => Ok(None),
        }
    }

    /// Every live record of the collection, ordered by id. A record that fails its checksum is
    /// left out and reported as an `INTEGRITY` error event; it is repaired as `record` says.
    pub async fn list(&self, collection: &str) -> Result<Vec<Entity>> {
        self.check_open()?;
        if !self.config.collections.contains_key(collection) {
            return Err(SyncError::InvalidInput(format!("unknown collection '{collection}'")));
        }
        let stored = self.store.list_entities(collection).await?;
        let (mut out, mut corrupt) = (Vec::with_capacity(stored.len()), Vec::new());
        for (i, e) in stored.into_iter().enumerate() {
            // The checksums are most of list()'s own time: 2,000 to a task, not 10,000 in one.
            if i % 2_000 == 1_999 {
                self.clock.sleep(0).await;
            }
            match self.verify(&e) {
                Ok(()) if e.is_deleted() => {}
                Ok(()) => out.push(e),
                Err(_) => corrupt.push(e.key()),
            }
        }
        if !corrupt.is_empty() {
            self.repair(corrupt, true).await;
        }
        Ok(out)
    }

    /// Checks a stored record against its checksum; a mismatch is reported (an `INTEGRITY` error
    /// event) and remembered for `repair`.
    pub(super) fn verify(&self, e: &Entity) -> Result<()> {
        if intact(e) {
            return Ok(());
        }
        let err = SyncError::Integrity(format!(
            "{}/{} does not match its checksum: the stored copy is not used, and the record is restored \
             from its pending write or from the server",
            e.collection, e.id
        ));
        self.report(&err);
        self.state.borrow_mut().corrupt.insert(e.key());
        Err(err)
    }
}
