//! BEGIN ... COMMIT for INSERT: rows inserted in a transaction block are held by the session and
//! written at COMMIT, one Delta or Iceberg commit per table, so other sessions see nothing before COMMIT and
//! ROLLBACK (or a dropped connection) leaves no trace. The statement still checks NOT NULL and
//! types when it runs, like PostgreSQL. What it does not give yet: the transaction's own later
//! reads do not see its pending rows, and several tables are committed one after the other
//! (a failure part-way leaves the earlier tables committed). UPDATE and DELETE commit at once.

use datafusion::arrow::compute::cast;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;

use super::{CommandTag, Outcome, Session, bind};
use crate::catalog::TableEntry;
use crate::error::{Error, Result};

/// Rows waiting for COMMIT, for one table.
#[derive(Debug)]
pub struct Pending {
    entry: TableEntry,
    name: String,
    batches: Vec<RecordBatch>,
}

/// Run an INSERT's source query now and keep its rows for COMMIT.
pub async fn buffer_insert(
    session: &mut Session,
    stmt: &DfStatement,
    params: Vec<ScalarValue>,
) -> Result<Outcome> {
    let plan = bind(session.plan(stmt).await?, params)?;
    let LogicalPlan::Dml(dml) = &plan else {
        return Err(Error::internal("INSERT did not plan as an insert"));
    };
    let (schema, table) = match (dml.table_name.schema(), dml.table_name.table()) {
        (Some(s), t) => (s.to_string(), t.to_string()),
        (None, t) => (session.current_schema(), t.to_string()),
    };
    let entry = session.writable_target_named(&schema, &table, "INSERT")?;
    if entry.external {
        return Err(Error::unsupported(format!(
            "INSERT into the external table \"{table}\" inside a transaction block is not supported"
        )));
    }
    let target = dml.target.schema();
    let batches = match session
        .context()
        .execute_logical_plan(dml.input.as_ref().clone())
        .await
    {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            let ctx = session.context();
            return Err(crate::planner::not_null::explain_values_error(ctx, stmt, e.into()).await);
        }
    };
    // NOT NULL is checked now, as PostgreSQL does, not at COMMIT.
    for b in &batches {
        for (i, f) in target.fields().iter().enumerate() {
            if !f.is_nullable() && b.column(i).null_count() > 0 {
                return Err(Error::NotNull(format!(
                    "null value in column \"{}\" of relation \"{table}\" violates not-null constraint",
                    f.name()
                )));
            }
        }
    }
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    match session
        .pending
        .iter_mut()
        .find(|p| p.entry.location == entry.location)
    {
        Some(p) => p.batches.extend(batches),
        None => session.pending.push(Pending {
            entry,
            name: format!("{schema}.{table}"),
            batches,
        }),
    }
    Ok(Outcome::Command(CommandTag::rows("INSERT", rows)))
}

/// Write the pending rows: one append commit per table, through the table's own INSERT path
/// (Delta or Iceberg alike).
pub async fn commit(session: &mut Session) -> Result<()> {
    use datafusion::datasource::provider_as_source;
    use datafusion::logical_expr::LogicalPlanBuilder;
    use datafusion::logical_expr::dml::InsertOp;
    let pending = std::mem::take(&mut session.pending);
    let catalog = session.engine.planner.catalog().clone();
    for p in pending {
        if p.batches.iter().all(|b| b.num_rows() == 0) {
            continue;
        }
        let provider = catalog.table_provider(&p.entry).await?;
        let schema = provider.schema();
        let batches = p
            .batches
            .iter()
            .map(|b| {
                let columns = b
                    .columns()
                    .iter()
                    .zip(schema.fields())
                    .map(|(c, f)| cast(c, f.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(RecordBatch::try_new(schema.clone(), columns)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let ctx = session.context();
        let input = ctx.read_batches(batches)?.into_unoptimized_plan();
        let plan = LogicalPlanBuilder::insert_into(
            input,
            p.name.as_str(),
            provider_as_source(provider),
            InsertOp::Append,
        )?
        .build()?;
        ctx.execute_logical_plan(plan).await?.collect().await?;
    }
    Ok(())
}
