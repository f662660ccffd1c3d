//! Dead letters and discarded writes: resending writes the server may have applied, the app's
//! retry and discard, and clearing the queue.

use super::*;

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// When a write the server may have applied (dead-lettered at `at`, made at `created_at`) is
    /// resent by the flush: one backoff cap after it stopped, while it is younger than `maxAgeMs`.
    pub(super) fn settle_at(&self, at: u64, created_at: u64) -> Option<u64> {
        let r = &self.config.retry;
        let when = at.saturating_add(r.cap_ms.max(r.base_ms));
        (when.saturating_sub(created_at) < r.max_age_ms).then_some(when)
    }

    /// Resends the writes the server may have applied whose time has come (`settle_at`): the op
    /// goes back to the head of its lane under the same id, so the server's idempotency answers it
    /// (REST writes read the record first when their version is unknown). Its age is kept: after
    /// `maxAgeMs` only the app can settle it.
    ///
    /// The dead letters are read only when one may be due (`State::settle_due`): a flush costs no
    /// extra store transaction otherwise.
    pub(super) async fn settle(&self, now: u64) -> Result<()> {
        if self.network().paused || self.state.borrow().settle_due.is_none_or(|t| t > now) {
            return Ok(());
        }
        let mut next = None;
        for d in self.store.dead_letters().await? {
            match self.settle_at(d.at, d.op.created_at).filter(|_| d.maybe_applied) {
                Some(t) if t <= now => self.put_back(d, false).await?,
                Some(t) => next = Some(next.map_or(t, |n: u64| n.min(t))),
                None => {}
            }
        }
        self.state.borrow_mut().settle_due = next;
        Ok(())
    }

    /// Puts a dead-lettered op back in its lane with a fresh attempt count. If the server may have
    /// applied it, it keeps its id (the server's ledger deduplicates it) and its place at the head
    /// of the lane; if the server refused it, it gets a new id (so the ledger does not replay the
    /// refusal) and goes after the record's later writes.
    pub async fn retry_dead_letter(&self, op_id: &str) -> Result<()> {
        let dl = self.find_dead_letter(op_id).await?;
        self.put_back(dl, true).await
    }

    /// `retry_dead_letter`; `renew`: its age starts again (the app asked), else it is kept.
    async fn put_back(&self, dl: DeadLetter, renew: bool) -> Result<()> {
        let key = dl.op.key();
        let now = self.clock.now_ms();
        let fresh_id = uuid(&self.clock);
        let entity = self
            .transact(std::slice::from_ref(&key), |tx| {
                let mut op = dl.op.clone();
                if !dl.maybe_applied {
                    op.id = fresh_id;
                    op.sent = false;
                }
                // An op the server may have applied goes back to the head of its lane (its lane
                // was paused behind it): later writes were made on top of it. A refused op is
                // re-made at the end, after them.
                if !dl.maybe_applied {
                    op.seq = tx.take_seq();
                }
                op.attempts = 0;
                op.next_attempt_at = now;
                if renew {
                    op.created_at = now;
                }
                op.last_error = None;
                op.last_status = None;
                // A fresh op is made against the record's current version. An op that keeps its
                // id keeps every field the server may have seen under that id: a retry changes
                // nothing but the attempt bookkeeping (a stale base version is a conflict, and
                // the merge takes care of it).
                if !op.sent && tx.lane(&key).is_empty() {
                    let e = tx.entity(&key);
                    op.base_version = e.and_then(|e| e.version);
                    // An update queued behind a create that never reached the server: nothing
                    // exists there to update.
                    if op.kind == OpKind::Update && e.is_none_or(|e| e.base.is_none()) {
                        op.kind = OpKind::Create;
                    }
                }
                tx.write(Write::DeleteDeadLetter(dl.op.id.clone()));
                tx.write(Write::PutOp(op));
                let e = tx.entity(&key).cloned().map(|mut e| {
                    e.sync_status = SyncStatus::Pending;
                    e
                });
                if let Some(e) = &e {
                    tx.write(Write::PutEntity(e.clone()));
                }
                Ok(e)
            })
            .await?;
        self.wrote_queue();
        self.emit(change_event(&key, entity.as_ref()));
        Ok(())
    }

    /// Drops a dead-lettered write. A record with nothing else pending goes back to what the server
    /// last acknowledged (gone, if the server never had it), with a change event.
    pub async fn discard_dead_letter(&self, op_id: &str) -> Result<()> {
        self.check_open()?;
        let dead = self.store.dead_letters().await?;
        let dl = dead.iter().find(|d| d.op.id == op_id).ok_or_else(|| not_a_dead_letter(op_id))?;
        let key = dl.op.key();
        let held = self.held_elsewhere(dead.iter().filter(|d| d.op.id != op_id)).await?;
        let events = self
            .transact(std::slice::from_ref(&key), |tx| {
                tx.write(Write::DeleteDeadLetter(dl.op.id.clone()));
                Ok(revert_unsent(tx, std::slice::from_ref(&key), &held))
            })
            .await?;
        self.deliver(events);
        Ok(())
    }

    /// Records another write of theirs still speaks for: one with a dead letter of `dead` or a
    /// conflict waiting for the app. Discarding a write must not undo those.
    async fn held_elsewhere(&self, dead: impl Iterator<Item = &DeadLetter>) -> Result<VecSet<EntityKey>> {
        let mut held: VecSet<EntityKey> = dead.map(|d| d.op.key()).collect();
        held.extend(self.store.conflicts().await?.iter().map(Conflict::key));
        Ok(held)
    }

    async fn find_dead_letter(&self, op_id: &str) -> Result<DeadLetter> {
        self.check_open()?;
        self.store.dead_letters().await?.into_iter().find(|d| d.op.id == op_id).ok_or_else(|| not_a_dead_letter(op_id))
    }
    /// Discards every pending op; their records go back to what the server last acknowledged (see
    /// `revert_unsent`). For the debug tools.
    pub async fn clear_queue(&self) -> Result<usize> {
        self.check_open()?;
        let (ops, _) = self.store.load_queue().await?;
        let keys: VecSet<EntityKey> = ops.iter().map(Operation::key).collect();
        let keys: Vec<EntityKey> = keys.into_iter().collect();
        let held = self.held_elsewhere(self.store.dead_letters().await?.iter()).await?;
        let (n, events) = self
            .transact(&keys, |tx| {
                let ops: Vec<Operation> = tx.ops().cloned().collect();
                for o in &ops {
                    tx.write(Write::DeleteOp(o.id.clone()));
                }
                Ok((ops.len(), revert_unsent(tx, &keys, &held)))
            })
            .await?;
        self.deliver(events);
        Ok(n)
    }
}

fn not_a_dead_letter(op_id: &str) -> SyncError {
    SyncError::NotFound(format!("dead letter {op_id}"))
}

/// Records of `keys` left with no pending write, no other dead letter and no conflict waiting for
/// the app (`held`) after their writes were discarded: each goes back to what the server last
/// acknowledged (its `base`), or is removed if the server never had it. Returns the change events.
fn revert_unsent(tx: &mut Tx, keys: &[EntityKey], held: &VecSet<EntityKey>) -> Vec<Event> {
    let mut events = Vec::new();
    for key in keys {
        let Some(mut e) = tx.entity(key).cloned() else { continue };
        let settled = matches!(e.sync_status, SyncStatus::Synced | SyncStatus::Conflict);
        if settled || !tx.lane(key).is_empty() || held.contains(key) {
            continue;
        }
        match e.base.clone() {
            Some(base) => {
                e.checksum = Some(checksum(&base));
                e.data = Some(base);
                e.sync_status = SyncStatus::Synced;
                events.push(change_event(key, Some(&e)));
                tx.write(Write::PutEntity(e));
            }
            None => {
                events.push(change_event(key, None));
                tx.write(Write::DeleteEntity(key.clone()));
            }
        }
    }
    events
}
