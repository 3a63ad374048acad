//! Change notices for local folders: "has anything in this folder changed since I last
//! looked?" answered by draining the kernel's inotify queue (one non-blocking read) instead of
//! listing the folder or looking up paths in it. Every statement asks it of the policy folder
//! and of the `_delta_log` of each local Delta table it reads; a `stat` of a missing path or
//! a listing costs a path walk each (measured: ~10 % of the server's time per prepared
//! `SELECT count(*)` under pgbench).
//!
//! Written on rustix's inotify calls rather than with the `notify` crate: `notify` delivers
//! events on a thread of its own, so a change finished just before a statement might not be
//! known to it yet. Here the statement drains the queue itself, and the kernel queues an event
//! before the call that made the change returns: whatever changed before the statement started
//! is seen by it.
//!
//! A folder that cannot be watched (not Linux, no inotify, out of watches, removed or moved
//! since) answers `None`: the caller looks at the files as it did without notices.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// One watched folder: how many changes were seen in it, and whether that count can still be
/// trusted.
#[derive(Debug, Default)]
struct Slot {
    changes: AtomicU64,
    lost: AtomicBool,
}

/// A watched folder.
#[derive(Debug, Clone)]
pub struct Watch {
    slot: Arc<Slot>,
}

impl Watch {
    /// Start watching `dir` and its files' contents (None: it cannot be watched).
    pub fn new(dir: &Path) -> Option<Watch> {
        watcher()?
            .add(dir, Watched::Contents)
            .map(|slot| Watch { slot })
    }

    /// Start watching `dir`'s own attributes (a chmod) and which files are in it (created,
    /// removed, moved), not what is written to them: for a folder the server itself appends
    /// to (the audit log), where a change of contents is no news.
    pub fn layout(dir: &Path) -> Option<Watch> {
        watcher()?
            .add(dir, Watched::Layout)
            .map(|slot| Watch { slot })
    }

    /// How many changes were seen in the folder so far, counting every change made before this
    /// call; None when they can no longer be counted (the folder was removed or moved).
    pub fn count(&self) -> Option<u64> {
        watcher()?.drain();
        if self.slot.lost.load(Ordering::SeqCst) {
            return None;
        }
        Some(self.slot.changes.load(Ordering::SeqCst))
    }
}

#[cfg(target_os = "linux")]
fn watcher() -> Option<&'static Watcher> {
    static WATCHER: OnceLock<Option<Watcher>> = OnceLock::new();
    WATCHER
        .get_or_init(|| match Watcher::new() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::info!(error = %e, "no inotify: folders are looked at on every statement");
                None
            }
        })
        .as_ref()
}

#[cfg(not(target_os = "linux"))]
fn watcher() -> Option<&'static Watcher> {
    None
}

/// What a watch of a folder counts as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    Contents,
    Layout,
}

/// The process's inotify instance (one for all folders: the kernel allows few per user).
#[derive(Debug)]
struct Watcher {
    #[cfg(target_os = "linux")]
    fd: rustix::fd::OwnedFd,
    /// Each watch descriptor's folder.
    slots: Mutex<HashMap<i32, Arc<Slot>>>,
    /// Held while draining, so that a caller sees the events another one is reading.
    buf: Mutex<Vec<std::mem::MaybeUninit<u8>>>,
    /// Drains asked for so far, and how many of them a drain has served: a caller whose
    /// request a drain begun after it served need not read again (the concurrent statements of
    /// a busy server share reads instead of queueing for the lock to each read nothing).
    asked: AtomicU64,
    served: AtomicU64,
}

#[cfg(target_os = "linux")]
impl Watcher {
    fn new() -> rustix::io::Result<Watcher> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
        Ok(Watcher {
            fd,
            slots: Mutex::new(HashMap::new()),
            buf: Mutex::new(vec![std::mem::MaybeUninit::uninit(); 8192]),
            asked: AtomicU64::new(0),
            served: AtomicU64::new(0),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, dir: &Path, watched: Watched) -> Option<Arc<Slot>> {
        use rustix::fs::inotify::{WatchFlags as W, add_watch};
        let layout = W::CREATE
            | W::DELETE
            | W::ATTRIB
            | W::MOVED_FROM
            | W::MOVED_TO
            | W::DELETE_SELF
            | W::MOVE_SELF
            | W::ONLYDIR;
        // A folder watched both ways gets both sets of events (MASK_ADD keeps the other's).
        let flags = match watched {
            Watched::Contents => layout | W::MODIFY | W::CLOSE_WRITE | W::MASK_ADD,
            Watched::Layout => layout | W::MASK_ADD,
        };
        // Events already queued for an earlier watch of the same folder count for it: drained
        // first, so that a slot handed out below starts from the folder's present state.
        self.drain();
        let wd = match add_watch(&self.fd, dir, flags) {
            Ok(wd) => wd,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "folder not watched");
                return None;
            }
        };
        let mut slots = self.slots();
        let slot = slots.entry(wd).or_default();
        if slot.lost.load(Ordering::SeqCst) {
            // The descriptor of a folder gone since, given to a new one.
            *slot = Arc::default();
        }
        Some(slot.clone())
    }

    /// Read every queued event into the folders' counts (or wait for a read begun after this
    /// call to have done so).
    fn drain(&self) {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut spins = 0;
        let mut buf = loop {
            if self.served.load(Ordering::SeqCst) >= ticket {
                return;
            }
            match self.buf.try_lock() {
                Ok(buf) => break buf,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if spins < 100 => {
                    spins += 1;
                    std::hint::spin_loop();
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    let buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
                    if self.served.load(Ordering::SeqCst) >= ticket {
                        return;
                    }
                    break buf;
                }
            }
        };
        // Every request made so far is served by the read below.
        let upto = self.asked.load(Ordering::SeqCst);
        self.read_events(&mut buf);
        self.served.fetch_max(upto, Ordering::SeqCst);
    }

    fn read_events(&self, buf: &mut [std::mem::MaybeUninit<u8>]) {
        use rustix::fs::inotify::{ReadFlags as R, Reader};
        let mut reader = Reader::new(&self.fd, buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let (wd, what) = (event.wd(), event.events());
                    let slots = self.slots();
                    if what.contains(R::QUEUE_OVERFLOW) {
                        // Events were dropped: any folder may have changed.
                        for slot in slots.values() {
                            slot.changes.fetch_add(1, Ordering::SeqCst);
                        }
                    } else if let Some(slot) = slots.get(&wd) {
                        slot.changes.fetch_add(1, Ordering::SeqCst);
                        if what.intersects(R::IGNORED | R::DELETE_SELF | R::MOVE_SELF) {
                            slot.lost.store(true, Ordering::SeqCst);
                        }
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // Not expected from an inotify descriptor; nothing can be trusted after it.
                    tracing::warn!(error = %e, "cannot read folder change notices");
                    for slot in self.slots().values() {
                        slot.lost.store(true, Ordering::SeqCst);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl Watcher {
    fn add(&self, _dir: &Path, _watched: Watched) -> Option<Arc<Slot>> {
        None
    }

    fn drain(&self) {}
}
