//! The threads that seal copies: one per core, each at a lower CPU
//! priority (nice 10) than the threads that take mail in. While a fan-out
//! keeps every core busy, the kernel still runs an LMTP session first, so
//! an MTA's accept never waits behind a hundred signatures; the fan-out
//! gets what is left.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Work = Box<dyn FnOnce() + Send>;

/// A pool of sealing threads; they end when it is dropped.
pub struct Sealers {
    work: mpsc::Sender<Work>,
}

/// The work panicked (a bug): no result.
#[derive(Debug)]
pub struct Panicked;

impl Sealers {
    /// Starts `threads` threads (at least one).
    pub fn start(threads: usize) -> Sealers {
        let (work, queue) = mpsc::channel::<Work>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("embargod-seal-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let next = queue.lock().expect("sealing queue").recv();
                        match next {
                            Ok(work) => work(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("a thread for sealing");
        }
        Sealers { work }
    }

    /// Runs `work` on a sealing thread, in turn, and returns its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, Panicked>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Work = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = done.send(outcome.map_err(|_| Panicked));
        });
        self.work.send(job).map_err(|_| Panicked)?;
        result.await.map_err(|_| Panicked)?
    }
}

/// Nice 10 for the calling thread (Linux gives each thread its own).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: setpriority on the calling thread's own id changes only its
    // scheduling weight; failure leaves it as it was.
    let lowered =
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
    if lowered != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "a sealing thread could not lower its CPU priority; LMTP accepts may wait during fan-outs"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
