//! Table maintenance: `OPTIMIZE t [ZORDER BY (a, b)]` compacts small files (optionally
//! clustering by columns), `VACUUM t [RETAIN n HOURS] [DRY RUN]` removes files no version within
//! the retention still references (default: the table's retention, 7 days; less is refused).
//! Each reports what it did as a NOTICE. Neither is PostgreSQL syntax, so they are recognised
//! here before the SQL parser sees them.

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use deltalake::operations::optimize::OptimizeType;

use super::{CommandTag, Outcome, Session};
use crate::error::{Error, Result};
use crate::planner::dialect::LakegateDialect;
use crate::planner::names::ident;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maintenance {
    Optimize {
        table: ObjectName,
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
        if p.parse_keyword(Keyword::WHERE) {
            return Err(Error::unsupported(
                "OPTIMIZE ... WHERE needs partitioned tables, which are not supported yet",
            ));
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
        Maintenance::Optimize { table, zorder }
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

pub async fn run(session: &mut Session, m: &Maintenance) -> Result<Outcome> {
    let name = match m {
        Maintenance::Optimize { table, .. } | Maintenance::Vacuum { table, .. } => table,
    };
    let what = match m {
        Maintenance::Optimize { .. } => "OPTIMIZE",
        Maintenance::Vacuum { .. } => "VACUUM",
    };
    let (schema, table) = crate::planner::names::qualified(
        name,
        &session.current_schema(),
        session.engine.planner.database(),
    )?;
    let entry = session.writable_target_named(&schema, &table, what)?;
    let catalog = session.engine.planner.catalog().clone();
    if entry.format == "iceberg" {
        let message = iceberg_maintenance(&catalog, &entry, m, &schema, &table).await?;
        tracing::info!("{message}");
        session.notice(message);
        return Ok(Outcome::Command(CommandTag::new(what)));
    }
    let delta = catalog.delta_table(&entry).await?;
    let (delta, tag, message) = match m {
        Maintenance::Optimize { zorder, .. } => {
            let kind = if zorder.is_empty() {
                OptimizeType::Compact
            } else {
                OptimizeType::ZOrder(zorder.clone())
            };
            let (delta, metrics) = delta.optimize().with_type(kind).await?;
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
