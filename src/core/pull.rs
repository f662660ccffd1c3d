//! Pulling the server's changes: records with no pending write take the server's state; records
//! with pending writes are rebased (3-way merge, the pending write re-made against the server's
//! version); tombstones delete. Each page and its cursor are stored in one transaction.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::engine::{change_event, Applied, Engine, Event};
use super::error::{Result, SyncError};
use super::op::{Entity, EntityKey, SyncStatus};
use super::traits::{Clock, ServerRecord, Store, Transport, Tx, Write};

/// What one `pull()` did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullReport {
    /// Records the server sent.
    pub received: usize,
    /// Records that took the server's state.
    pub applied: usize,
    /// Records with pending writes merged with the server's state.
    pub rebased: usize,
    pub deleted: usize,
    /// Records left alone: a write of ours is in flight, or a conflict waits for the app.
    pub skipped: usize,
}

/// The meta record holding a collection's pull cursor.
pub fn cursor_meta(collection: &str) -> String {
    format!("cursor:{collection}")
}

/// At most this many pages per pull, so a server that always says `hasMore` cannot hold us.
const MAX_PAGES: usize = 1_000;

impl<S: Store, T: Transport, C: Clock> Engine<S, T, C> {
    /// Pulls `collection`'s changes from the server (all declared collections with `None`).
    pub async fn pull(&self, collection: Option<&str>) -> Result<PullReport> {
        self.check_open()?;
        let names: Vec<String> = match collection {
            Some(c) if self.config.collections.contains_key(c) => vec![c.to_string()],
            Some(c) => return Err(SyncError::InvalidInput(format!("unknown collection '{c}'"))),
            None => self.config.collections.keys().cloned().collect(),
        };
        let mut report = PullReport::default();
        for name in names {
            self.pull_collection(&name, &mut report).await?;
        }
        Ok(report)
    }

    async fn pull_collection(&self, collection: &str, report: &mut PullReport) -> Result<()> {
        let meta = cursor_meta(collection);
        for _ in 0..MAX_PAGES {
            let cursor = self.store.get_meta(&meta).await?.and_then(|v| v.as_str().map(str::to_string));
            let page = self.transport.pull(collection, cursor.as_deref()).await.map_err(|f| f.error)?;
            report.received += page.items.len();
            let mut items = page.items;
            if page.cursor.is_none() {
                // A full listing: our synced records missing from it were deleted on the server.
                let listed: BTreeSet<&str> = items.iter().map(|r| r.id.as_str()).collect();
                let gone: Vec<ServerRecord> = self
                    .store
                    .list_entities(collection)
                    .await?
                    .into_iter()
                    .filter(|e| e.sync_status == SyncStatus::Synced && !listed.contains(e.id.as_str()))
                    .map(|e| ServerRecord { id: e.id, version: None, data: None, modified_ms: None })
                    .collect();
                items.extend(gone);
            }
            let keys: Vec<EntityKey> = items.iter().map(|r| EntityKey::new(collection, r.id.clone())).collect();
            let now = self.clock.now_ms();
            let out = self
                .store
                .transact(&keys, |tx| {
                    let mut out = Applied::default();
                    for (key, item) in keys.iter().zip(&items) {
                        self.apply_remote(tx, key, item, now, report, &mut out)?;
                    }
                    if let Some(c) = &page.cursor {
                        tx.write(Write::PutMeta(meta.clone(), Value::String(c.clone())));
                    }
                    Ok(out)
                })
                .await?;
            self.absorb(out);
            if !page.has_more || page.cursor.is_none() || page.cursor == cursor {
                return Ok(());
            }
        }
        self.emit(Event::Error {
            code: "PROTOCOL".into(),
            message: format!("pull of '{collection}' stopped after {MAX_PAGES} pages"),
            status: None,
        });
        Ok(())
    }

    fn apply_remote(
        &self,
        tx: &mut Tx,
        key: &EntityKey,
        item: &ServerRecord,
        now: u64,
        report: &mut PullReport,
        out: &mut Applied,
    ) -> Result<()> {
        let entity = tx.entity(key).cloned();
        if let (Some(e), Some(v)) = (&entity, item.version) {
            if e.version.is_some_and(|ours| ours >= v) && e.sync_status != SyncStatus::Conflict {
                return Ok(()); // we have this version (or a newer one) already
            }
        }
        let lane = tx.lane(key).to_vec();
        if entity.as_ref().is_some_and(|e| e.sync_status == SyncStatus::Conflict)
            || lane.first().is_some_and(|o| o.sent)
        {
            // A conflict waits for the app, or our write is in flight: its answer settles this.
            report.skipped += 1;
            return Ok(());
        }
        if let Some(head) = lane.first() {
            report.rebased += 1;
            return self.on_conflict(tx, head, item.version, item.data.clone(), item.modified_ms, now, out);
        }
        match &item.data {
            None => {
                if entity.is_some() {
                    tx.write(Write::DeleteEntity(key.clone()));
                    out.events.push(change_event(key, None));
                    report.deleted += 1;
                }
            }
            Some(data) => {
                let unchanged = entity.as_ref().is_some_and(|e| {
                    e.sync_status == SyncStatus::Synced && e.data.as_ref() == Some(data) && e.version == item.version
                });
                if unchanged {
                    return Ok(());
                }
                let e = Entity {
                    collection: key.collection.clone(),
                    id: key.id.clone(),
                    checksum: Some(super::checksum::checksum(data)),
                    data: Some(data.clone()),
                    base: Some(data.clone()),
                    version: item.version,
                    last_modified: item.modified_ms.unwrap_or(now),
                    sync_status: SyncStatus::Synced,
                };
                if entity.as_ref() != Some(&e) {
                    out.events.push(change_event(key, Some(&e)));
                    tx.write(Write::PutEntity(e));
                    report.applied += 1;
                }
            }
        }
        Ok(())
    }
}
