//! Two things sled 0.34 needs from its user under load.
//!
//! - **Transactions apart from writes.** A sled transaction takes a global
//!   write lock that waits for every reader; a flush waits for every write
//!   in flight; a write in flight may need that lock again. Under a flood
//!   of spool writes and flushes the three can wait on each other for
//!   ever (seen in the ingest benchmark). [`IoLock`] keeps our
//!   transactions apart from our plain writes and flushes, so none of
//!   them is ever half-done while a transaction waits.
//! - **Group commit.** Each accepted message must be flushed before its
//!   `250`; one fsync per message would cap ingest at the disk's fsync
//!   rate. [`GroupFlush`] runs one flush for every request that arrived
//!   while the previous one ran.

use std::sync::mpsc;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::oneshot;

/// Plain writes and flushes share it; transactions have it alone.
#[derive(Clone, Default, Debug)]
pub struct IoLock(Arc<RwLock<()>>);

impl IoLock {
    pub fn write(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn transaction(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

type Waiter = oneshot::Sender<Result<(), String>>;

/// A thread that flushes on request, once for all requests waiting.
#[derive(Clone, Debug)]
pub struct GroupFlush {
    requests: mpsc::Sender<Waiter>,
}

impl GroupFlush {
    /// Starts the flushing thread; it ends when the last handle is dropped.
    pub fn start(db: sled::Db, io: IoLock) -> GroupFlush {
        let (requests, queue) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name("embargod-flush".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut waiters = vec![first];
                    waiters.extend(queue.try_iter());
                    let result = {
                        let _writes = io.write();
                        db.flush().map(drop).map_err(|e| e.to_string())
                    };
                    for waiter in waiters {
                        let _ = waiter.send(result.clone());
                    }
                }
            })
            .expect("a thread for flushing");
        GroupFlush { requests }
    }

    /// Returns once every write made before the call is durable.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .map_err(|_| "the flushing thread has stopped".to_string())?;
        rx.await
            .map_err(|_| "the flushing thread has stopped".to_string())?
    }
}
