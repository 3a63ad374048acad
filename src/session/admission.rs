//! Admission of queries: how many compute at once, all users together
//! (`engine.max_running_queries`) and per user (`[[limits]] max_running_queries`), in the order
//! they arrive. A query waits for a turn at most `engine.queue_timeout` (then 57014) among at
//! most `engine.max_queued` others (one more: 53300 at once). A turn is held until the query's
//! rows are all sent, or it is cancelled.
//!
//! Answers from the result cache take no turn: a dashboard's tiles are answered while the
//! turns are all taken.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limit;
use crate::error::{Error, Result, SqlState};

#[derive(Debug)]
pub struct Admission {
    global: Option<Arc<Semaphore>>,
    global_size: usize,
    /// Each limited user's turns (created on the user's first query).
    users: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
    queued: AtomicUsize,
    max_queued: usize,
    timeout: Duration,
    /// `[[limits]]` of the configuration.
    limits: Vec<Limit>,
}

/// A query's turn (both its own and the user's), given back when dropped.
#[derive(Debug)]
pub struct Turn {
    _user: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

/// Counts a waiting query while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub fn new(
        max_running: Option<usize>,
        max_queued: usize,
        timeout: Duration,
        limits: Vec<Limit>,
    ) -> Admission {
        Admission {
            limits,
            global: max_running.map(|n| Arc::new(Semaphore::new(n))),
            global_size: max_running.unwrap_or(0),
            users: Default::default(),
            queued: AtomicUsize::new(0),
            max_queued,
            timeout,
        }
    }

    /// The `[[limits]]` that apply to `user` holding `roles`.
    pub fn limits(&self, user: &str, roles: &[String]) -> Limit {
        limits_for(&self.limits, user, roles)
    }

    /// A turn for a query of `user`, who may compute `per_user` at once (None: no bound of its
    /// own), first come first served.
    pub async fn admit(&self, user: &str, per_user: Option<usize>) -> Result<Turn> {
        let own = per_user.map(|n| {
            self.users
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(user.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(n)))
                .clone()
        });
        let free =
            |s: &Option<Arc<Semaphore>>| s.as_ref().is_none_or(|s| s.available_permits() > 0);
        // No wait: no queue to count.
        if free(&own) && free(&self.global) {
            let user_turn = own
                .as_ref()
                .and_then(|s| s.clone().try_acquire_owned().ok());
            let global_turn = self
                .global
                .as_ref()
                .and_then(|s| s.clone().try_acquire_owned().ok());
            if own.is_none() == user_turn.is_none()
                && self.global.is_none() == global_turn.is_none()
            {
                return Ok(Turn {
                    _user: user_turn,
                    _global: global_turn,
                });
            }
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::TooManyConnections(format!(
                "too many queries waiting to run: {} are waiting for a turn (engine.max_queued); try again later",
                self.max_queued
            )));
        }
        let _waiting = Waiting(&self.queued);
        let wait = async {
            let user_turn = match &own {
                Some(s) => Some(s.clone().acquire_owned().await.ok()),
                None => None,
            };
            let global_turn = match &self.global {
                Some(s) => Some(s.clone().acquire_owned().await.ok()),
                None => None,
            };
            (user_turn.flatten(), global_turn.flatten())
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok((user_turn, global_turn)) => Ok(Turn {
                _user: user_turn,
                _global: global_turn,
            }),
            Err(_) => Err(Error::Data {
                sqlstate: SqlState::QueryCanceled,
                message: format!(
                    "canceling statement due to queue timeout: it waited {} s for a turn to run \
                     ({} queries run at once (engine.max_running_queries){}); try again later",
                    self.timeout.as_secs(),
                    self.global_size,
                    per_user
                        .map(|n| format!(", {n} of yours ([[limits]])"))
                        .unwrap_or_default()
                ),
            }),
        }
    }
}

/// The limits that apply to a user holding `roles`: for each, the lowest of those naming the
/// user, one of its roles, or `*`.
pub fn limits_for(limits: &[Limit], user: &str, roles: &[String]) -> Limit {
    let mut out = Limit {
        to: user.to_string(),
        ..Limit::default()
    };
    for l in limits {
        if !(l.to == "*" || l.to == user || roles.contains(&l.to)) {
            continue;
        }
        out.max_running_queries = match (out.max_running_queries, l.max_running_queries) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        out.statement_timeout = match (out.statement_timeout, l.statement_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_queue_in_order_time_out_and_bound_the_queue() -> Result<()> {
        let a = Admission::new(Some(1), 1, Duration::from_millis(50), vec![]);
        let first = a.admit("u", None).await?;
        // The second waits, and times out (57014).
        let e = a.admit("v", None).await.map(|_| ()).map_err(|e| e.state());
        assert_eq!(e, Err(SqlState::QueryCanceled));
        // One waits; a third finds the queue full (53300).
        let waiting = a.admit("v", None);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(5), &mut waiting)
                .await
                .is_err()
        );
        let full = a.admit("w", None).await.map(|_| ()).map_err(|e| e.state());
        assert_eq!(full, Err(SqlState::TooManyConnections));
        drop(first);
        assert!(waiting.await.is_ok());
        // A user's own bound.
        let b = Admission::new(None, 10, Duration::from_millis(20), vec![]);
        let _one = b.admit("u", Some(1)).await?;
        assert!(b.admit("u", Some(1)).await.is_err());
        assert!(b.admit("other", Some(1)).await.is_ok());
        Ok(())
    }

    #[test]
    fn the_lowest_limit_naming_a_user_applies() {
        let l = |to: &str, n: Option<usize>, t: Option<u64>| Limit {
            to: to.into(),
            max_running_queries: n,
            statement_timeout: t.map(Duration::from_secs),
        };
        let limits = [
            l("*", Some(8), None),
            l("analyst", Some(2), Some(60)),
            l("ana", None, Some(30)),
            l("other", Some(1), Some(1)),
        ];
        let got = limits_for(&limits, "ana", &["analyst".into()]);
        assert_eq!(got.max_running_queries, Some(2));
        assert_eq!(got.statement_timeout, Some(Duration::from_secs(30)));
        let got = limits_for(&limits, "bob", &[]);
        assert_eq!(got.max_running_queries, Some(8));
        assert_eq!(got.statement_timeout, None);
    }
}
