//! Materialized views and the result cache (DESIGN section 5).
//!
//! A materialized view is a table of the catalog holding its query's result, with the query and,
//! for each source, the version it was computed from (`catalog::MatView`); it is fresh exactly
//! when every source is still at that version. `ddl` reads the statements, `rewrite` finds the
//! queries a view can answer (the same query, or a roll-up of it with other literals), `cache`
//! keeps query results by their governed plan and the versions of what they read. Uses the
//! catalog's types only; the session carries the statements out, plans, and applies policies.

pub mod avg_merge;
pub mod cache;
pub mod ddl;
pub mod incremental;
pub mod rewrite;

use crate::catalog::MatView;
use crate::error::{Error, Result};

/// How a view is kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPolicy {
    /// Only by REFRESH MATERIALIZED VIEW.
    Manual,
    /// By the server, soon after a source commits.
    Auto,
    /// By the server, this often (seconds).
    Every(u64),
}

impl RefreshPolicy {
    pub fn parse(s: &str) -> Result<RefreshPolicy> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "manual" | "off" | "none" => Ok(RefreshPolicy::Manual),
            "auto" | "on_commit" | "on commit" | "automatic" => Ok(RefreshPolicy::Auto),
            other => match other.strip_prefix("every") {
                Some(rest) => Ok(RefreshPolicy::Every(duration_secs(rest)?.max(1))),
                None => Err(Error::InvalidParameter(format!(
                    "invalid refresh \"{s}\": use 'manual', 'auto' or 'every <interval>' (e.g. 'every 10 minutes')"
                ))),
            },
        }
    }

    pub fn text(self) -> String {
        match self {
            RefreshPolicy::Manual => "manual".into(),
            RefreshPolicy::Auto => "auto".into(),
            RefreshPolicy::Every(s) => format!("every {s} seconds"),
        }
    }
}

/// `90`, `90s`, `5 minutes`, `2 hours`, `1 day` as seconds.
pub fn duration_secs(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.trim().parse().map_err(|_| {
        Error::InvalidParameter(format!(
            "invalid interval \"{s}\": expected e.g. '30 seconds', '5 minutes'"
        ))
    })?;
    let factor = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86400,
        other => {
            return Err(Error::InvalidParameter(format!(
                "invalid interval unit \"{other}\" in \"{s}\": use seconds, minutes, hours or days"
            )));
        }
    };
    Ok(n.saturating_mul(factor))
}

/// Apply `WITH (...)` / `SET (...)` options, and `RESET (...)` names, to a view's definition.
pub fn apply_options(mv: &mut MatView, set: &[(String, String)], reset: &[String]) -> Result<()> {
    for (k, v) in set {
        match k.as_str() {
            "refresh" => mv.refresh = RefreshPolicy::parse(v)?.text(),
            "max_staleness" => {
                mv.max_staleness_secs = match v.trim().to_ascii_lowercase().as_str() {
                    "" | "none" | "0" => None,
                    _ => Some(duration_secs(v)?),
                }
            }
            other => {
                return Err(Error::InvalidParameter(format!(
                    "unrecognized materialized view option \"{other}\": use refresh, max_staleness"
                )));
            }
        }
    }
    for k in reset {
        match k.as_str() {
            "refresh" => mv.refresh = RefreshPolicy::Manual.text(),
            "max_staleness" => mv.max_staleness_secs = None,
            other => {
                return Err(Error::InvalidParameter(format!(
                    "unrecognized materialized view option \"{other}\""
                )));
            }
        }
    }
    Ok(())
}

/// Whether a view may answer a query now: fresh (every source at its recorded version), or
/// stale by less than its `max_staleness` (measured from the refresh, the newest its contents
/// can be).
pub fn usable(mv: &MatView, current: &[Option<i64>], now_ms: i64) -> bool {
    if !mv.populated || current.len() != mv.sources.len() {
        return false;
    }
    let fresh = mv
        .sources
        .iter()
        .zip(current)
        .all(|(s, c)| s.version.is_some() && s.version == *c);
    if fresh {
        return true;
    }
    match (mv.max_staleness_secs, mv.refreshed_at_ms) {
        (Some(max), Some(at)) => now_ms.saturating_sub(at) <= (max as i64).saturating_mul(1000),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_policies_and_intervals() -> Result<()> {
        assert_eq!(RefreshPolicy::parse("auto")?, RefreshPolicy::Auto);
        assert_eq!(
            RefreshPolicy::parse("every 10 minutes")?,
            RefreshPolicy::Every(600)
        );
        assert_eq!(duration_secs("90")?, 90);
        assert_eq!(duration_secs("2 hours")?, 7200);
        assert!(RefreshPolicy::parse("sometimes").is_err());
        Ok(())
    }
}

/// `lakegate.materialized_views` (each view: definition, refresh policy, sources with the
/// versions it was computed from and their versions now, freshness, last refresh) and
/// `lakegate.cache_stats` (the result cache's counts).
#[derive(Debug)]
pub struct SystemTables {
    pub catalog: std::sync::Arc<crate::catalog::Catalog>,
    pub cache: std::sync::Arc<cache::ResultCache>,
}

pub const SYSTEM_TABLES: &[&str] = &["materialized_views", "cache_stats"];

impl SystemTables {
    pub async fn table(
        &self,
        name: &str,
    ) -> datafusion::error::Result<Option<std::sync::Arc<dyn datafusion::catalog::TableProvider>>>
    {
        use datafusion::arrow::array::{
            ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
        };
        use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        use std::sync::Arc;
        let batch = match name {
            "cache_stats" => {
                let s = self.cache.stats();
                let n = |v: u64| {
                    Arc::new(Int64Array::from(vec![i64::try_from(v).unwrap_or(i64::MAX)]))
                        as ArrayRef
                };
                RecordBatch::try_new(
                    Arc::new(Schema::new(
                        [
                            "hits", "misses", "inserted", "evicted", "entries", "bytes", "capacity",
                        ]
                        .iter()
                        .map(|c| Field::new(*c, DataType::Int64, false))
                        .collect::<Vec<_>>(),
                    )),
                    vec![
                        n(s.hits),
                        n(s.misses),
                        n(s.inserted),
                        n(s.evicted),
                        n(s.entries as u64),
                        n(s.bytes as u64),
                        n(s.capacity as u64),
                    ],
                )?
            }
            "materialized_views" => {
                let views = self.catalog.matviews();
                let now = chrono::Utc::now().timestamp_millis();
                let mut cols: Vec<Vec<Option<String>>> = vec![vec![]; 8];
                let (mut populated, mut fresh, mut incremental) = (vec![], vec![], vec![]);
                let (mut at, mut took, mut staleness) = (vec![], vec![], vec![]);
                for (schema, name, entry) in views {
                    let Some(mv) = entry.matview.clone() else {
                        continue;
                    };
                    let mut now_versions = vec![];
                    for s in &mv.sources {
                        let v = match s.object.split_once('.') {
                            Some((sc, t)) => match self.catalog.relation(sc, t) {
                                Some(crate::catalog::Relation::Table(e)) => {
                                    self.catalog.current_version(&e).await.ok().flatten()
                                }
                                _ => None,
                            },
                            None => None,
                        };
                        now_versions.push(v);
                    }
                    let show = |v: &Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
                    cols[0].push(Some(schema));
                    cols[1].push(Some(name));
                    cols[2].push(Some(mv.owner.clone()));
                    cols[3].push(Some(mv.sql.clone()));
                    cols[4].push(Some(mv.refresh.clone()));
                    cols[5].push(Some(
                        mv.sources
                            .iter()
                            .map(|s| format!("{}@{}", s.object, show(&s.version)))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ));
                    cols[6].push(Some(
                        mv.sources
                            .iter()
                            .zip(&now_versions)
                            .map(|(s, v)| format!("{}@{}", s.object, show(v)))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ));
                    let is_fresh = mv.populated
                        && mv
                            .sources
                            .iter()
                            .zip(&now_versions)
                            .all(|(s, v)| s.version.is_some() && s.version == *v);
                    cols[7].push(Some(if !mv.populated {
                        "not populated".to_string()
                    } else if is_fresh {
                        "fresh".to_string()
                    } else if usable(&mv, &now_versions, now) {
                        "stale (within max_staleness)".to_string()
                    } else {
                        "stale".to_string()
                    }));
                    populated.push(mv.populated);
                    fresh.push(is_fresh);
                    incremental.push(mv.incremental);
                    at.push(mv.refreshed_at_ms);
                    took.push(mv.refresh_ms.and_then(|m| i64::try_from(m).ok()));
                    staleness.push(mv.max_staleness_secs.and_then(|m| i64::try_from(m).ok()));
                }
                let text =
                    |c: &Vec<Option<String>>| Arc::new(StringArray::from(c.clone())) as ArrayRef;
                let names = [
                    "schema",
                    "name",
                    "owner",
                    "definition",
                    "refresh",
                    "sources",
                    "sources_now",
                    "freshness",
                ];
                let mut fields: Vec<Field> = names
                    .iter()
                    .map(|n| Field::new(*n, DataType::Utf8, true))
                    .collect();
                fields.extend([
                    Field::new("populated", DataType::Boolean, false),
                    Field::new("fresh", DataType::Boolean, false),
                    Field::new(
                        "last_refresh",
                        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                        true,
                    ),
                    Field::new("last_refresh_ms", DataType::Int64, true),
                    Field::new("last_refresh_incremental", DataType::Boolean, false),
                    Field::new("max_staleness_secs", DataType::Int64, true),
                ]);
                let mut arrays: Vec<ArrayRef> = cols.iter().map(text).collect();
                arrays.extend([
                    Arc::new(BooleanArray::from(populated)) as ArrayRef,
                    Arc::new(BooleanArray::from(fresh)),
                    Arc::new(TimestampMillisecondArray::from(at).with_timezone("UTC")),
                    Arc::new(Int64Array::from(took)),
                    Arc::new(BooleanArray::from(incremental)),
                    Arc::new(Int64Array::from(staleness)),
                ]);
                RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?
            }
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(datafusion::datasource::MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }
}
