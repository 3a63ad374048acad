//! A position carried inside a table commit: the application transaction (`txn` action) of
//! the Delta protocol, `(app_id, version)` (Iceberg: a snapshot summary property, see
//! [`super::iceberg_commit`]). A pipeline (CDC subscription) runs its writes
//! inside [`scope`]; every Delta commit this layer makes while it runs (INSERT's group commit,
//! UPDATE/DELETE/MERGE, appends and truncations) carries the tag, so the rows and the source
//! position they came from are committed together or not at all. [`version`] reads it back.
//!
//! A task-local rather than a parameter: the writes go through the same statements clients
//! send (planned, checked and audited as theirs), which reach this layer through many calls
//! that have no business knowing about pipelines.

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;

use crate::error::Result;

tokio::task_local! {
    static TAG: (String, i64);
}

/// Run `f` with every Delta commit it makes tagged `(app_id, version)`.
pub async fn scope<F: std::future::Future>(app_id: String, version: i64, f: F) -> F::Output {
    TAG.scope((app_id, version), f).await
}

/// The tag in force: `(app_id, version)`.
pub fn pair() -> Option<(String, i64)> {
    TAG.try_with(|t| t.clone()).ok()
}

/// The tag in force, as the commit's `txn` action.
pub fn current() -> Option<Transaction> {
    pair().map(|(app, version)| Transaction::new(app, version))
}

/// `props` with the tag in force, if any.
pub fn tagged(props: CommitProperties) -> CommitProperties {
    match current() {
        Some(t) => props.with_application_transaction(t),
        None => props,
    }
}

/// The version last committed under `app_id` in `table` (None: never).
pub async fn version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let log_store = table.log_store();
    Ok(table
        .snapshot()?
        .transaction_version(log_store.as_ref(), app_id)
        .await?)
}

/// Commit the position `(app_id, version)` alone (no data): a table with nothing to write.
pub async fn mark(table: &DeltaTable, app_id: &str, version: i64) -> Result<()> {
    use deltalake::kernel::transaction::CommitBuilder;
    use deltalake::protocol::{DeltaOperation, SaveMode};
    let snapshot = table.snapshot()?.snapshot().clone();
    CommitBuilder::from(
        CommitProperties::default().with_application_transaction(Transaction::new(app_id, version)),
    )
    .with_actions(vec![])
    .build(
        Some(&snapshot),
        table.log_store(),
        DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        },
    )
    .await?;
    Ok(())
}
