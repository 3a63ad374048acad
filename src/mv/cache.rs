//! The result cache: query results kept in memory (bounded, least recently used goes first),
//! keyed by what the query is once governed and planned (the asking user's row filters and masks
//! are part of that plan, with the user's attributes bound in), the policy version, and the
//! version of every table it read. Never by SQL text: two users whose policies make different
//! plans never share an entry; a write to a table moves it to a new version, so entries of the
//! old one are never reached again (and age out).

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use sha2::{Digest, Sha256};

/// A cache key: the digest of the governed plan, the policy version and the table versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    pub fn new(plan: &str, policy_version: &str, versions: &[(String, i64)]) -> Key {
        let mut h = Sha256::new();
        h.update(plan.as_bytes());
        h.update([0]);
        h.update(policy_version.as_bytes());
        for (object, v) in versions {
            h.update([0]);
            h.update(object.as_bytes());
            h.update(v.to_le_bytes());
        }
        Key(h.finalize().into())
    }
}

struct Entry {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    bytes: usize,
    used: u64,
}

/// Counts for `lakegate.cache_stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub inserted: u64,
    pub evicted: u64,
    pub entries: usize,
    pub bytes: usize,
    pub capacity: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    clock: u64,
    stats: Stats,
}

pub struct ResultCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl ResultCache {
    /// A cache of at most `capacity` bytes of results (0: off).
    pub fn new(capacity: usize) -> ResultCache {
        ResultCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept result, counted as a hit or a miss.
    pub fn get(&self, key: &Key) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let found = inner.map.get_mut(key).map(|e| {
            e.used = clock;
            (e.schema.clone(), e.batches.clone())
        });
        if found.is_some() {
            inner.stats.hits += 1;
        } else {
            inner.stats.misses += 1;
        }
        found
    }

    /// Keep a result; one larger than a quarter of the cache is not kept.
    pub fn put(&self, key: Key, schema: SchemaRef, batches: Vec<RecordBatch>) {
        let bytes: usize = batches
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>()
            + 64;
        if !self.enabled() || bytes > self.capacity / 4 {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.map.insert(
            key,
            Entry {
                schema,
                batches,
                bytes,
                used,
            },
        ) {
            inner.stats.bytes -= old.bytes;
        }
        inner.stats.bytes += bytes;
        inner.stats.inserted += 1;
        while inner.stats.bytes > self.capacity {
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.map.remove(&oldest) {
                inner.stats.bytes -= e.bytes;
                inner.stats.evicted += 1;
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let inner = self.lock();
        Stats {
            entries: inner.map.len(),
            capacity: self.capacity,
            ..inner.stats
        }
    }
}

/// A result stream that keeps its batches and puts them into the cache when it ends (not when
/// it fails, is cancelled, or grows past what an entry may hold).
pub struct Filling {
    inner: datafusion::execution::SendableRecordBatchStream,
    cache: std::sync::Arc<ResultCache>,
    key: Option<Key>,
    batches: Vec<RecordBatch>,
    bytes: usize,
}

impl Filling {
    pub fn wrap(
        inner: datafusion::execution::SendableRecordBatchStream,
        cache: std::sync::Arc<ResultCache>,
        key: Key,
    ) -> datafusion::execution::SendableRecordBatchStream {
        Box::pin(Filling {
            inner,
            cache,
            key: Some(key),
            batches: vec![],
            bytes: 0,
        })
    }
}

impl futures::Stream for Filling {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        let next = this.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(b))) if this.key.is_some() => {
                this.bytes += b.get_array_memory_size();
                if this.bytes > this.cache.capacity / 4 {
                    this.key = None;
                    this.batches.clear();
                } else {
                    this.batches.push(b.clone());
                }
            }
            Poll::Ready(Some(Err(_))) => this.key = None,
            Poll::Ready(None) => {
                if let Some(k) = this.key.take() {
                    let batches = std::mem::take(&mut this.batches);
                    this.cache.put(k, this.inner.schema(), batches);
                }
            }
            _ => {}
        }
        next
    }
}

impl datafusion::physical_plan::RecordBatchStream for Filling {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn keys_differ_by_plan_policy_and_version_and_old_entries_age_out() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int32Array::from(vec![1; 1000]))],
        )
        .map_err(|e| e.to_string());
        let Ok(batch) = batch else { panic!("batch") };
        let cache = ResultCache::new(4 * (batch.get_array_memory_size() + 64) + 10);
        let v1 = Key::new("plan", "p1", &[("s.t".into(), 1)]);
        assert_ne!(v1, Key::new("plan", "p1", &[("s.t".into(), 2)]));
        assert_ne!(v1, Key::new("plan", "p2", &[("s.t".into(), 1)]));
        assert_ne!(v1, Key::new("other plan", "p1", &[("s.t".into(), 1)]));
        assert!(cache.get(&v1).is_none());
        cache.put(v1.clone(), schema.clone(), vec![batch.clone()]);
        assert!(cache.get(&v1).is_some());
        for v in 2..8 {
            cache.put(
                Key::new("plan", "p1", &[("s.t".into(), v)]),
                schema.clone(),
                vec![batch.clone()],
            );
        }
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (1, 1));
        assert!(s.evicted >= 3 && s.entries <= 4, "{s:?}");
        assert!(
            cache.get(&v1).is_none(),
            "the least recently used went first"
        );
    }
}
