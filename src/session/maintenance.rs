//! Table maintenance: `OPTIMIZE t [WHERE partition predicates] [ZORDER BY (a, b)]` compacts
//! small files (of the chosen partitions; optionally clustering by columns), `VACUUM t [RETAIN n HOURS] [DRY RUN]` removes files no version within
//! the retention still references (default: the table's retention, 7 days; less is refused).
//! Each reports what it did as a NOTICE. Neither is PostgreSQL syntax, so they are recognised
//! here before the SQL parser sees them.

use datafusion::sql::sqlparser::ast::{self, ObjectName};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use deltalake::operations::optimize::OptimizeType;

use super::{CommandTag, Outcome, Session};
use crate::error::{Error, Result};
use crate::pg::dialect::LakegateDialect;
use crate::pg::names::ident;
use crate::storage::TableFormat;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maintenance {
    Optimize {
        table: ObjectName,
        /// `WHERE` on partition columns: (column, operator, values) with operator one of
        /// `=`, `!=`, `<`, `<=`, `>`, `>=` (one value) or `in`, `not in`.
        partitions: Vec<(String, String, Vec<String>)>,
        zorder: Vec<String>,
    },
    Vacuum {
        table: ObjectName,
        retain_hours: Option<u64>,
        dry_run: bool,
    },
}

/// Recognise OPTIMIZE / VACUUM; `None` for anything else.
pub fn parse(sql: &str) -> Result<Option<Maintenance>> {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if first != "OPTIMIZE" && first != "VACUUM" {
        return Ok(None);
    }
    let dialect = LakegateDialect::default();
    let mut p = Parser::new(&dialect).try_with_sql(sql)?;
    let word = |p: &mut Parser, w: &str| match p.peek_token().token {
        Token::Word(x) if x.value.eq_ignore_ascii_case(w) => {
            p.next_token();
            true
        }
        _ => false,
    };
    let m = if p.parse_keyword(Keyword::OPTIMIZE) {
        let _ = p.parse_keyword(Keyword::TABLE);
        let table = p.parse_object_name(false)?;
        let mut partitions = vec![];
        if p.parse_keyword(Keyword::WHERE) {
            partition_predicates(&p.parse_expr()?, &mut partitions)?;
        }
        let mut zorder = vec![];
        if word(&mut p, "ZORDER") {
            p.expect_keyword(Keyword::BY)?;
            let parens = p.consume_token(&Token::LParen);
            zorder = p
                .parse_comma_separated(|p| p.parse_identifier())?
                .iter()
                .map(ident)
                .collect();
            if parens {
                p.expect_token(&Token::RParen)?;
            }
        }
        Maintenance::Optimize {
            table,
            partitions,
            zorder,
        }
    } else {
        p.expect_keyword(Keyword::VACUUM)?;
        let _ = p.parse_keyword(Keyword::TABLE);
        let table = p.parse_object_name(false)?;
        let mut retain_hours = None;
        let mut dry_run = false;
        loop {
            if word(&mut p, "RETAIN") {
                let n = p.parse_literal_uint()?;
                if !word(&mut p, "HOURS") && !word(&mut p, "HOUR") {
                    return Err(Error::Syntax("expected HOURS after RETAIN n".into()));
                }
                retain_hours = Some(n);
            } else if word(&mut p, "DRY") {
                if !word(&mut p, "RUN") {
                    return Err(Error::Syntax("expected RUN after DRY".into()));
                }
                dry_run = true;
            } else {
                break;
            }
        }
        Maintenance::Vacuum {
            table,
            retain_hours,
            dry_run,
        }
    };
    while p.consume_token(&Token::SemiColon) {}
    if p.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!(
            "unexpected {} after the maintenance command (send it on its own)",
            p.peek_token().token
        )));
    }
    Ok(Some(m))
}

/// Turn `a = 'x' AND b IN (1, 2)` into partition filters; anything else is refused.
fn partition_predicates(e: &ast::Expr, out: &mut Vec<(String, String, Vec<String>)>) -> Result<()> {
    use ast::{BinaryOperator as B, Expr};
    let value = |e: &Expr| -> Result<String> {
        match e {
            Expr::Value(v) => Ok(match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                ast::Value::Number(n, _) => n.clone(),
                ast::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(Error::unsupported(format!(
                        "OPTIMIZE ... WHERE compares partition columns with constants, not {other}"
                    )));
                }
            }),
            other => Err(Error::unsupported(format!(
                "OPTIMIZE ... WHERE compares partition columns with constants, not {other}"
            ))),
        }
    };
    match e {
        Expr::Nested(inner) => partition_predicates(inner, out),
        Expr::BinaryOp {
            left,
            op: B::And,
            right,
        } => {
            partition_predicates(left, out)?;
            partition_predicates(right, out)
        }
        Expr::BinaryOp { left, op, right } => {
            let Expr::Identifier(col) = left.as_ref() else {
                return Err(Error::unsupported(format!(
                    "OPTIMIZE ... WHERE takes `column op constant` terms joined by AND, not {e}"
                )));
            };
            let op = match op {
                B::Eq => "=",
                B::NotEq => "!=",
                B::Lt => "<",
                B::LtEq => "<=",
                B::Gt => ">",
                B::GtEq => ">=",
                other => {
                    return Err(Error::unsupported(format!(
                        "OPTIMIZE ... WHERE does not take the operator {other}"
                    )));
                }
            };
            out.push((ident(col), op.to_string(), vec![value(right)?]));
            Ok(())
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let Expr::Identifier(col) = expr.as_ref() else {
                return Err(Error::unsupported(format!(
                    "OPTIMIZE ... WHERE takes `column IN (constants)`, not {e}"
                )));
            };
            let values = list.iter().map(value).collect::<Result<Vec<_>>>()?;
            let op = if *negated { "not in" } else { "in" };
            out.push((ident(col), op.to_string(), values));
            Ok(())
        }
        other => Err(Error::unsupported(format!(
            "OPTIMIZE ... WHERE takes `column op constant` terms joined by AND, not {other}"
        ))),
    }
}

pub async fn run(session: &mut Session, m: &Maintenance) -> Result<Outcome> {
    let name = match m {
        Maintenance::Optimize { table, .. } | Maintenance::Vacuum { table, .. } => table,
    };
    let what = match m {
        Maintenance::Optimize { .. } => "OPTIMIZE",
        Maintenance::Vacuum { .. } => "VACUUM",
    };
    let (schema, table) = crate::pg::names::qualified(
        name,
        &session.current_schema(),
        session.engine.planner.database(),
    )?;
    let entry = session.writable_target_named(&schema, &table, what)?;
    let catalog = session.engine.planner.catalog().clone();
    let _beat = session.heartbeat(format!("{what} {schema}.{table}"), HEARTBEAT);
    if entry.format == TableFormat::Iceberg {
        let message = iceberg_maintenance(&catalog, &entry, m, &schema, &table).await?;
        tracing::info!("{message}");
        session.notice(message);
        return Ok(Outcome::Command(CommandTag::new(what)));
    }
    let delta = catalog.delta_table(&entry).await?;
    let files = delta
        .snapshot()
        .map(|s| s.log_data().num_files())
        .unwrap_or(0);
    session.progress(format!(
        "{} {schema}.{table}: {files} files in the current version",
        what.to_ascii_lowercase()
    ));
    let (delta, tag, message) = match m {
        Maintenance::Optimize {
            zorder, partitions, ..
        } => {
            let kind = if zorder.is_empty() {
                OptimizeType::Compact
            } else {
                OptimizeType::ZOrder(zorder.clone())
            };
            let partition_columns = delta.snapshot()?.metadata().partition_columns().to_vec();
            let mut filters = Vec::with_capacity(partitions.len());
            for (col, op, values) in partitions {
                if !partition_columns.contains(col) {
                    return Err(Error::InvalidParameter(format!(
                        "OPTIMIZE ... WHERE takes partition columns only; \"{col}\" is not one of \
                         {schema}.{table}'s ({})",
                        partition_columns.join(", ")
                    )));
                }
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                let f = match refs.as_slice() {
                    [v] if op != "in" && op != "not in" => {
                        deltalake::PartitionFilter::try_from((col.as_str(), op.as_str(), *v))?
                    }
                    vs => deltalake::PartitionFilter::try_from((col.as_str(), op.as_str(), vs))?,
                };
                filters.push(f);
            }
            let (delta, metrics) = delta
                .optimize()
                .with_type(kind)
                .with_filters(&filters)
                .await?;
            let message = format!(
                "optimized {schema}.{table}: {} files removed, {} files added",
                metrics.num_files_removed, metrics.num_files_added
            );
            (delta, "OPTIMIZE", message)
        }
        Maintenance::Vacuum {
            retain_hours,
            dry_run,
            ..
        } => {
            let mut op = delta.vacuum().with_dry_run(*dry_run);
            if let Some(h) = retain_hours {
                op = op.with_retention_period(chrono::Duration::hours(*h as i64));
            }
            let (delta, metrics) = op.await.map_err(|e| {
                if e.to_string().contains("Invalid retention period") {
                    Error::InvalidParameter(format!(
                        "VACUUM RETAIN below the table's retention would break time travel and concurrent readers: {e}"
                    ))
                } else {
                    Error::from(e)
                }
            })?;
            let verb = if metrics.dry_run {
                "would remove"
            } else {
                "removed"
            };
            (
                delta,
                "VACUUM",
                format!(
                    "vacuumed {schema}.{table}: {verb} {} files",
                    metrics.files_deleted.len()
                ),
            )
        }
    };
    tracing::info!("{message}");
    catalog.remember(&entry, delta).await;
    session.notice(message);
    Ok(Outcome::Command(CommandTag::new(tag)))
}

/// VACUUM on an Iceberg table expires the snapshots older than the retention (default 7 days),
/// keeping the current one. OPTIMIZE needs a rewrite action iceberg-rust 0.10 does not have.
async fn iceberg_maintenance(
    catalog: &crate::catalog::Catalog,
    entry: &crate::catalog::TableEntry,
    m: &Maintenance,
    schema: &str,
    table: &str,
) -> Result<String> {
    let (ns, name) = catalog.iceberg_ident(entry)?;
    match m {
        Maintenance::Optimize { .. } => Err(Error::unsupported(format!(
            "OPTIMIZE is not supported on Iceberg table \"{table}\": iceberg-rust 0.10 has no \
             rewrite-files action; VACUUM expires its old snapshots"
        ))),
        Maintenance::Vacuum {
            retain_hours,
            dry_run,
            ..
        } => {
            let hours = retain_hours.unwrap_or(DEFAULT_RETAIN_HOURS);
            let cutoff = chrono::Utc::now().timestamp_millis() - (hours as i64) * 3_600_000;
            let store = catalog.iceberg().await?;
            if *dry_run {
                let t = store.load(ns, name).await?;
                let current = t.metadata().current_snapshot_id();
                let n = t
                    .metadata()
                    .snapshots()
                    .filter(|s| s.timestamp_ms() < cutoff && Some(s.snapshot_id()) != current)
                    .count();
                return Ok(format!(
                    "vacuumed {schema}.{table}: would expire {n} snapshots older than {hours} hours"
                ));
            }
            let n = store.expire_snapshots(ns, name, cutoff).await?;
            Ok(format!(
                "vacuumed {schema}.{table}: expired {n} snapshots older than {hours} hours"
            ))
        }
    }
}

/// How often a long maintenance command says it is still running.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// The retention VACUUM keeps when none is given (Delta's default, used for Iceberg too).
const DEFAULT_RETAIN_HOURS: u64 = 168;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() -> Result<()> {
        assert_eq!(parse("SELECT 1")?, None);
        match parse("OPTIMIZE demo.orders ZORDER BY (customer_id, order_date);")? {
            Some(Maintenance::Optimize { zorder, .. }) => {
                assert_eq!(zorder, vec!["customer_id", "order_date"])
            }
            other => panic!("{other:?}"),
        }
        match parse("vacuum t RETAIN 200 HOURS DRY RUN")? {
            Some(Maintenance::Vacuum {
                retain_hours,
                dry_run,
                ..
            }) => {
                assert_eq!(retain_hours, Some(200));
                assert!(dry_run);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("OPTIMIZE t; SELECT 1").is_err());
        Ok(())
    }
}
