//! An ordered worker pipeline: items go to worker threads, results come back in input order,
//! with at most `depth` items in flight, so memory stays bounded by `depth` blocks. With one
//! thread the work runs inline on the caller's thread. Workers are joined on drop: none outlive
//! the writer or reader that started them (the plugin runs inside CRIU, which forks).

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Starts the worker threads of an `Ordered` (kept until the work proves big enough).
type Starter<T> = Box<dyn FnOnce(&mut T)>;

pub(crate) struct Ordered<I, O> {
    inline: Option<Box<dyn FnMut(I) -> O>>,
    /// Builds the workers once `SPAWN_AFTER` items went through inline: small jobs never pay for
    /// threads.
    start: Option<Starter<Self>>,
    tx: Option<SyncSender<(u64, I)>>,
    rx: Option<Receiver<(u64, O)>>,
    workers: Vec<JoinHandle<()>>,
    parked: BTreeMap<u64, O>,
    ready: std::collections::VecDeque<O>,
    next_in: u64,
    next_out: u64,
    depth: u64,
    /// Blocks an item holds once workers run: `BATCH`, or 1 with a single thread.
    batch: usize,
}

/// Items processed inline before workers start (16 blocks of 16 pages: 1 MiB of pages).
const SPAWN_AFTER: u64 = 16;

/// Blocks in one job once workers run: fewer wake-ups between threads. Inline, a job is one
/// block, so that small images stay in small buffers (each fresh large one costs page faults).
const BATCH: usize = 4;

/// How many threads block work uses by default: the machine's cores, at most 4. Asked once per
/// process: std reads the cgroup's CPU quota files each time, which cost the plugin about 30 µs
/// a dumped process (docs/PERFORMANCE.md).
pub fn default_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4))
}

impl<I: Send + 'static, O: Send + 'static> Ordered<I, O> {
    /// `make` builds one worker's function (each worker owns its state, e.g. a zstd context).
    pub fn new<F>(threads: usize, make: impl Fn() -> F + 'static) -> Self
    where
        F: FnMut(I) -> O + Send + 'static,
    {
        let mut me = Ordered {
            inline: Some(Box::new(make())),
            start: None,
            tx: None,
            rx: None,
            workers: Vec::new(),
            parked: BTreeMap::new(),
            ready: Default::default(),
            next_in: 0,
            next_out: 0,
            depth: 2 * threads as u64,
            batch: if threads > 1 { BATCH } else { 1 },
        };
        if threads > 1 {
            me.start = Some(Box::new(move |me: &mut Self| me.spawn(threads, make)));
        }
        me
    }

    fn spawn<F>(&mut self, threads: usize, make: impl Fn() -> F)
    where
        F: FnMut(I) -> O + Send + 'static,
    {
        let (tx, jobs) = mpsc::sync_channel::<(u64, I)>(threads * 2);
        let (done, rx) = mpsc::channel::<(u64, O)>();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..threads {
            let (jobs, done, mut work) = (Arc::clone(&jobs), done.clone(), make());
            self.workers.push(std::thread::spawn(move || loop {
                let job = jobs.lock().map(|j| j.recv());
                let Ok(Ok((i, item))) = job else { return };
                if done.send((i, work(item))).is_err() {
                    return;
                }
            }));
        }
        self.tx = Some(tx);
        self.rx = Some(rx);
        self.inline = None;
    }

    /// How many blocks the next item should hold (see `BATCH`).
    pub fn blocks_per_item(&self) -> usize {
        if self.next_in < SPAWN_AFTER {
            1
        } else {
            self.batch
        }
    }

    /// Hands in the next item. Returns the results that are due, in input order, keeping at
    /// most `depth` items in flight.
    pub fn push(&mut self, item: I) -> impl Iterator<Item = O> + '_ {
        if self.next_in >= SPAWN_AFTER {
            if let Some(start) = self.start.take() {
                start(self);
            }
        }
        if let Some(work) = &mut self.inline {
            self.next_out += 1;
            self.next_in += 1;
            let out = work(item);
            self.ready.push_back(out);
        } else {
            let tx = self.tx.as_ref().expect("workers running");
            tx.send((self.next_in, item)).expect("a worker is alive");
            self.next_in += 1;
            while self.next_in - self.next_out > self.depth {
                let o = self.wait_next();
                self.ready.push_back(o);
            }
        }
        self.ready.drain(..)
    }

    fn wait_next(&mut self) -> O {
        loop {
            if let Some(o) = self.parked.remove(&self.next_out) {
                self.next_out += 1;
                return o;
            }
            let (i, o) = self.rx.as_ref().expect("workers running").recv().expect("a worker is alive");
            self.parked.insert(i, o);
        }
    }

    /// The results still in flight, in input order.
    pub fn drain(&mut self) -> Vec<O> {
        let mut out: Vec<O> = self.ready.drain(..).collect();
        while self.next_out < self.next_in {
            out.push(self.wait_next());
        }
        out
    }
}

impl<I, O> Drop for Ordered<I, O> {
    fn drop(&mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_thread_count() {
        for threads in [1, 2, 3, 8] {
            let mut p = Ordered::new(threads, || {
                |x: u64| {
                    // Uneven work so that workers finish out of order.
                    std::thread::sleep(std::time::Duration::from_micros((x * 37) % 200));
                    x * 2
                }
            });
            let mut got = Vec::new();
            assert_eq!(p.blocks_per_item(), 1, "small work is not batched");
            for x in 0..100 {
                got.extend(p.push(x));
            }
            got.extend(p.drain());
            assert_eq!(got, (0..100).map(|x| x * 2).collect::<Vec<_>>(), "threads {threads}");
            assert_eq!(p.blocks_per_item(), if threads == 1 { 1 } else { BATCH });
        }
    }
}
