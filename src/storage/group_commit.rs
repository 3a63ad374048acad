//! Group commit of appends to one Delta table, as PostgreSQL groups WAL flushes: while one
//! commit of a table is in flight, the appends that finish writing their files meanwhile
//! (INSERT, COPY FROM, CREATE TABLE AS into an existing table, a transaction block's INSERTs at
//! COMMIT) queue up, and the next of them to get its turn commits all queued files in one
//! table commit. Each statement is acknowledged when the commit holding its files is durable.
//!
//! Every statement committing on its own made concurrent writers race for the next log
//! version: with 16 clients most attempts lost, retried against a log that had moved again, and
//! some ran out of retries (40001) although blind appends never conflict in Delta's protocol.
//! Grouped, the writers of this server commit one after another in batches; deltalake's own
//! retry (with its conflict check, which lets blind appends through) remains for writers of
//! other processes, with more attempts than its default since a lost race of an append is
//! never a real conflict. A true conflict (the table's schema or protocol changed meanwhile)
//! still fails, 40001.
//!
//! Appends are grouped only with others read at the same table version (files written for one
//! schema are never committed as if read at another).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, EagerSnapshot};
use deltalake::logstore::LogStoreRef;
use deltalake::protocol::{DeltaOperation, SaveMode};
use tokio::sync::oneshot;

/// Attempts of one grouped commit against commits of other processes.
const APPEND_RETRIES: usize = 100;

/// One statement's files, waiting for a commit.
struct Waiting {
    id: u64,
    version: u64,
    snapshot: EagerSnapshot,
    adds: Vec<Add>,
    /// The pipeline position this append carries (`super::commit_tag`).
    txn: Option<deltalake::kernel::Transaction>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The appends of one table: those waiting, and the turn to commit (held while a commit is in
/// flight; tokio's mutex hands it out first come, first served).
#[derive(Default)]
struct Table {
    waiting: std::sync::Mutex<Vec<Waiting>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Takes a statement's files out of the queue when the statement stops waiting before a turn
/// took them (a cancel, a client gone): they are not committed then.
struct Queued<'a> {
    table: &'a Table,
    id: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.table
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|w| w.id != self.id);
    }
}

static TABLES: LazyLock<std::sync::Mutex<HashMap<String, Arc<Table>>>> =
    LazyLock::new(Default::default);

fn table(log_store: &LogStoreRef) -> Arc<Table> {
    let key = log_store.root_url().to_string();
    let mut tables = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    // Tables nobody appends to any more are forgotten.
    if tables.len() > 1024 {
        tables.retain(|_, t| Arc::strong_count(t) > 1);
    }
    tables.entry(key).or_default().clone()
}

/// Commit `adds` to the table (read at `snapshot`) as an append, with the appends of other
/// statements queued meanwhile; returns when the commit holding them is done.
pub async fn append(
    log_store: LogStoreRef,
    snapshot: &EagerSnapshot,
    adds: Vec<Add>,
) -> Result<(), DeltaTableError> {
    let table = table(&log_store);
    let (done, mut result) = oneshot::channel();
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _queued = Queued { table: &table, id };
    table
        .waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Waiting {
            id,
            version: snapshot.version(),
            snapshot: snapshot.clone(),
            adds,
            txn: super::commit_tag::current(),
            done,
        });
    loop {
        let turn = table.turn.clone().lock_owned().await;
        // Committed by an earlier turn (a group that took ours along)?
        match result.try_recv() {
            Ok(r) => return r.map_err(failed),
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(DeltaTableError::Generic(
                    "the group commit holding this statement's rows ended without an answer".into(),
                ));
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let group = take_group(&table);
        if group.is_empty() {
            // Not expected (ours is answered or waiting): look again after others' turns.
            drop(turn);
            tokio::task::yield_now().await;
            continue;
        }
        // On a task of its own: a commit once started finishes and answers every statement
        // of its group, even when this one is cancelled meanwhile.
        let log_store = log_store.clone();
        let _ = tokio::spawn(async move {
            let outcome = commit(&log_store, &group).await;
            for w in group {
                let _ = w.done.send(outcome.clone());
            }
            drop(turn);
        })
        .await;
    }
}

/// The waiting appends read at the same version as the first waiting one.
fn take_group(table: &Table) -> Vec<Waiting> {
    let mut waiting = table.waiting.lock().unwrap_or_else(|p| p.into_inner());
    let Some(version) = waiting.first().map(|w| w.version) else {
        return vec![];
    };
    let (group, rest) = std::mem::take(&mut *waiting)
        .into_iter()
        .partition(|w| w.version == version);
    *waiting = rest;
    group
}

async fn commit(log_store: &LogStoreRef, group: &[Waiting]) -> Result<(), String> {
    let Some(first) = group.first() else {
        return Ok(());
    };
    let partition_columns = first.snapshot.metadata().partition_columns().to_vec();
    let actions: Vec<Action> = group
        .iter()
        .flat_map(|w| w.adds.iter().cloned().map(Action::Add))
        .chain(group.iter().filter_map(|w| w.txn.clone().map(Action::Txn)))
        .collect();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!partition_columns.is_empty()).then_some(partition_columns),
        predicate: None,
    };
    // With a checkpoint every `delta.checkpointInterval` commits (deltalake's own operations
    // write them; without, every load of the table replays its whole log, and an INSERT into a
    // table of 200 versions took four times as long as one into a new table).
    CommitBuilder::from(CommitProperties::default().with_max_retries(APPEND_RETRIES))
        .with_actions(actions)
        .build(Some(&first.snapshot), log_store.clone(), operation)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            // A lost race or a true conflict: the statement may be run again (40001).
            DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_) => {
                String::new()
            }
            other => format!("the table commit failed: {other}"),
        })
}

/// A group's failure, for each of its statements (conflicts as such: 40001).
fn failed(message: String) -> DeltaTableError {
    if message.is_empty() {
        DeltaTableError::Transaction {
            source: TransactionError::MaxCommitAttempts(APPEND_RETRIES as i32),
        }
    } else {
        DeltaTableError::Generic(message)
    }
}
