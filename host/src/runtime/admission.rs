//! Who gets an instance slot, and who waits how long for one (see the module doc of
//! [`super`]).
//!
//! - A *top-level* call (an API request, an ingestion batch) takes one of
//!   `max_instances` slots. An interactive one (inside [`interactive`], which the HTTP
//!   layer wraps every request in) waits at most [`AdmissionOptions::queue_timeout`],
//!   and not at all when [`AdmissionOptions::max_waiting`] requests already wait: an
//!   overloaded server answers 503 at once instead of letting latency grow without
//!   bound. Background work (ingestion) waits as long as it takes, and behind every
//!   interactive request: it takes a slot only while no interactive request waits for one.
//! - An inference request naming an installed model also queues for that model when the
//!   operator bounds the requests per model ([`AdmissionOptions::max_model_requests`]):
//!   at most that many run on one model, at most [`AdmissionOptions::max_model_waiting`]
//!   wait, with the same timeout, so one busy model cannot take every slot from the rest.
//! - A *nested* call (started by a host call of a running guest) takes a slot from a
//!   second pool without waiting. Each top-level call has at most one chain of nested
//!   calls alive at a time (a guest is single-threaded and its host calls are awaited
//!   one by one), at most [`MAX_NESTED_DEPTH`] deep, so `max_instances` ×
//!   [`MAX_NESTED_DEPTH`] nested slots never run out.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::InvokeError;
use crate::limits::AdmissionOptions;

/// Deepest chain of instances started by instances: request handler → embeddings
/// handler or tool → (a tool's own model call) → ...
pub const MAX_NESTED_DEPTH: u32 = 3;

/// Instances the pooling allocator must hold for `max_instances` top-level slots.
pub(super) fn total_instances(max_instances: u32) -> u32 {
    max_instances.saturating_mul(1 + MAX_NESTED_DEPTH)
}

/// The call a piece of async code runs in: its nesting depth, and whether it serves an
/// interactive request.
#[derive(Debug, Clone, Copy)]
struct CallScope {
    depth: u32,
    interactive: bool,
}

tokio::task_local! {
    static CALL: CallScope;
}

/// Runs `f` as an interactive request: instance slots it asks for are waited on with
/// the queue's timeout. Code outside this scope is background work.
pub async fn interactive<F: Future>(f: F) -> F::Output {
    let scope = CALL.try_with(|c| *c).unwrap_or(CallScope { depth: 0, interactive: true });
    CALL.scope(CallScope { interactive: true, ..scope }, f).await
}

/// The slots of one runtime.
#[derive(Debug)]
pub struct Admission {
    max_instances: u32,
    /// The top-level slots and the interactive requests' queue for them.
    top: Queue,
    nested: Arc<Semaphore>,
    /// Background calls waiting for a slot.
    deferred: AtomicUsize,
    /// Woken when a top-level slot is freed or an interactive wait ends: waiting
    /// background calls look again.
    freed: Arc<Notify>,
    /// Per-model queues, made on a model's first request; empty when unbounded.
    models: Mutex<HashMap<String, Arc<Queue>>>,
    options: AdmissionOptions,
}

/// A bounded wait for a semaphore's permits: at most `max_waiting` wait, each at most
/// `timeout`; past either, 503 `server_overloaded`.
#[derive(Debug)]
pub struct Queue {
    slots: Arc<Semaphore>,
    size: usize,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    timeout: Duration,
    /// Told when a wait ends, however it ends: the server queue's background calls look again.
    ended: Option<Arc<Notify>>,
    refusals: &'static Refusals,
}

/// How a queue's refusals are counted in the metrics (`reason`) and worded.
#[derive(Debug)]
struct Refusals {
    full: &'static str,
    full_message: &'static str,
    timeout: &'static str,
}

const SERVER_QUEUE: Refusals =
    Refusals { full: "queue_full", full_message: "the request queue is full", timeout: "queue_timeout" };
const MODEL_QUEUE: Refusals =
    Refusals { full: "model_queue_full", full_message: "this model's request queue is full", timeout: "model_queue_timeout" };

impl Queue {
    fn new(size: usize, max_waiting: usize, timeout: Duration, ended: Option<Arc<Notify>>, refusals: &'static Refusals) -> Self {
        let (slots, waiting) = (Arc::new(Semaphore::new(size)), Arc::new(AtomicUsize::new(0)));
        Self { slots, size, waiting, max_waiting, timeout, ended, refusals }
    }

    /// A permit now, or after a bounded wait.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, InvokeError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded(self.refusals.full, self.refusals.full_message));
        }
        let _waiting = Waiting(self.waiting.clone(), self.ended.clone());
        match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(e)) => Err(InvokeError::Internal(e.into())),
            Err(_) => Err(overloaded(self.refusals.timeout, "no instance slot became free in time")),
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Requests holding a permit now.
    pub fn running(&self) -> usize {
        self.size.saturating_sub(self.slots.available_permits())
    }
}

/// A slot held for one call; the call's host calls run in [`Ticket::scope`].
#[derive(Debug)]
pub struct Ticket {
    /// `None` only while the ticket is dropped.
    permit: Option<OwnedSemaphorePermit>,
    inner: CallScope,
    /// Top-level tickets: who to tell when the slot is free again.
    freed: Option<Arc<Notify>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // The permit first, so that a woken background call finds the slot free.
        drop(self.permit.take());
        if let Some(freed) = &self.freed {
            freed.notify_waiters();
        }
    }
}

impl Ticket {
    /// Runs `f` (the guest) so that instances its host calls start count as nested.
    pub async fn scope<F: Future>(&self, f: F) -> F::Output {
        CALL.scope(self.inner, f).await
    }
}

/// Decrements the waiting count when a wait ends, however it ends.
struct Waiting(Arc<AtomicUsize>, Option<Arc<Notify>>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        if let Some(ended) = &self.1 {
            ended.notify_waiters();
        }
    }
}

impl Admission {
    /// `max_instances` top-level slots and their nested pool.
    pub fn new(max_instances: u32, options: AdmissionOptions) -> Self {
        let nested = total_instances(max_instances).saturating_sub(max_instances);
        let freed = Arc::new(Notify::new());
        Self {
            max_instances,
            top: Queue::new(
                max_instances as usize,
                options.max_waiting,
                options.queue_timeout,
                Some(freed.clone()),
                &SERVER_QUEUE,
            ),
            nested: Arc::new(Semaphore::new(nested as usize)),
            deferred: AtomicUsize::new(0),
            freed,
            models: Mutex::new(HashMap::new()),
            options,
        }
    }

    /// Top-level slots.
    pub fn max_instances(&self) -> u32 {
        self.max_instances
    }

    /// Top-level slots free now.
    pub fn available(&self) -> usize {
        self.top.slots.available_permits()
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.top.waiting()
    }

    /// `model`'s queue, when the requests per model are bounded.
    pub fn model_queue(&self, model: &str) -> Option<Arc<Queue>> {
        let size = self.options.max_model_requests?;
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        let o = &self.options;
        let queue = models
            .entry(model.to_owned())
            .or_insert_with(|| Arc::new(Queue::new(size, o.max_model_waiting, o.queue_timeout, None, &MODEL_QUEUE)));
        Some(queue.clone())
    }

    /// Each model's queue that has been used: (model, running, waiting).
    pub fn model_queues(&self) -> Vec<(String, usize, usize)> {
        let models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = models.iter().map(|(m, q)| (m.clone(), q.running(), q.waiting())).collect();
        out.sort();
        out
    }

    /// Background calls (ingestion) waiting for a slot now.
    pub fn deferred(&self) -> usize {
        self.deferred.load(Ordering::Acquire)
    }

    fn top_ticket(&self, permit: OwnedSemaphorePermit, inner: CallScope) -> Ticket {
        Ticket { permit: Some(permit), inner, freed: Some(self.freed.clone()) }
    }

    /// A slot for background work: one free while no interactive request waits.
    async fn background(&self, inner: CallScope) -> Ticket {
        self.deferred.fetch_add(1, Ordering::AcqRel);
        loop {
            // Registered before looking, so a slot freed in between still wakes it.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.waiting() == 0
                && let Ok(permit) = self.top.slots.clone().try_acquire_owned()
            {
                self.deferred.fetch_sub(1, Ordering::AcqRel);
                return self.top_ticket(permit, inner);
            }
            freed.await;
        }
    }

    /// A slot for a call made in the current task's scope.
    pub async fn admit(&self) -> Result<Ticket, InvokeError> {
        let call = CALL.try_with(|c| *c).unwrap_or(CallScope { depth: 0, interactive: false });
        let inner = CallScope { depth: call.depth + 1, ..call };
        if call.depth > 0 {
            if call.depth > MAX_NESTED_DEPTH {
                return Err(InvokeError::TooDeep);
            }
            // Sized never to run dry (module doc); failing beats waiting on a parent.
            let permit = self.nested.clone().try_acquire_owned().map_err(|_| overloaded("nested", "no nested instance slot"))?;
            return Ok(Ticket { permit: Some(permit), inner, freed: None });
        }
        if !call.interactive {
            return Ok(self.background(inner).await);
        }
        let permit = self.top.enter().await?;
        Ok(self.top_ticket(permit, inner))
    }
}

/// A refusal for want of a slot, counted in the metrics under `reason`.
fn overloaded(reason: &str, message: &'static str) -> InvokeError {
    crate::metrics::metrics().overloaded.inc(&[reason]);
    InvokeError::Overloaded(message)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn admission(slots: u32, max_waiting: usize) -> Arc<Admission> {
        let options = AdmissionOptions { queue_timeout: Duration::from_secs(3600), max_waiting, ..Default::default() };
        Arc::new(Admission::new(slots, options))
    }

    #[tokio::test]
    async fn nested_calls_never_wait_on_the_slots_their_parents_hold() {
        // Every top-level slot is held by a parent that needs nested ones: with one
        // shared semaphore this is the deadlock; here every chain completes.
        let a = admission(2, 16);
        let tops: Vec<_> = futures::future::join_all((0..2).map(|_| a.admit())).await;
        let tops: Vec<Ticket> = tops.into_iter().collect::<Result<_, _>>().unwrap();
        for t in &tops {
            let first = t.scope(a.admit()).await.unwrap();
            let second = first.scope(a.admit()).await.unwrap();
            let third = second.scope(a.admit()).await.unwrap();
            assert!(matches!(third.scope(a.admit()).await, Err(InvokeError::TooDeep)));
            drop((first, second, third));
        }
        drop(tops);
        assert_eq!(a.available(), 2);
    }

    #[tokio::test]
    async fn interactive_requests_past_the_queue_are_refused_at_once() {
        let a = admission(1, 1);
        let held = interactive(a.admit()).await.unwrap();
        // One may wait...
        let waiter = {
            let a = a.clone();
            tokio::spawn(interactive(async move { a.admit().await.map(|_| ()) }))
        };
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // ...the next is refused without waiting.
        assert!(matches!(interactive(a.admit()).await, Err(InvokeError::Overloaded(_))));
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!(a.waiting(), 0);
    }

    #[tokio::test]
    async fn interactive_requests_go_before_waiting_background_work() {
        let a = admission(1, 8);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = interactive(a.admit()).await.unwrap();
        let background = {
            let (a, order) = (a.clone(), order.clone());
            tokio::spawn(async move {
                let _slot = a.admit().await.unwrap();
                order.lock().unwrap().push("background");
            })
        };
        while a.deferred() == 0 {
            tokio::task::yield_now().await;
        }
        // An interactive request that comes later...
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let request = {
            let (a, order) = (a.clone(), order.clone());
            tokio::spawn(interactive(async move {
                let _slot = a.admit().await.unwrap();
                order.lock().unwrap().push("interactive");
                released.await.unwrap();
            }))
        };
        while a.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // ...gets the slot first, and the background call waits until it is done.
        drop(held);
        while order.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*order.lock().unwrap(), ["interactive"]);
        assert_eq!(a.deferred(), 1);
        release.send(()).unwrap();
        request.await.unwrap();
        background.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["interactive", "background"]);
        assert_eq!((a.deferred(), a.available()), (0, 1));
    }

    #[tokio::test]
    async fn each_model_has_its_own_bounded_queue() {
        let options = AdmissionOptions {
            queue_timeout: Duration::from_secs(3600),
            max_model_requests: Some(1),
            max_model_waiting: 1,
            ..Default::default()
        };
        let a = Arc::new(Admission::new(8, options));
        let busy = a.model_queue("a").unwrap();
        let held = busy.enter().await.unwrap();
        // Another model is not held up by the busy one.
        let _other = a.model_queue("b").unwrap().enter().await.unwrap();
        let waiter = {
            let q = a.model_queue("a").unwrap();
            tokio::spawn(async move { q.enter().await.map(drop) })
        };
        while busy.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(busy.enter().await, Err(InvokeError::Overloaded(_))));
        assert_eq!(a.model_queues(), [("a".to_owned(), 1, 1), ("b".to_owned(), 1, 0)]);
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!((busy.running(), busy.waiting()), (0, 0));
        // Unbounded by default: no queue per model.
        assert!(Admission::new(1, AdmissionOptions::default()).model_queue("a").is_none());
    }

    #[tokio::test]
    async fn an_interactive_wait_ends_with_overloaded_at_its_timeout() {
        let options = AdmissionOptions { queue_timeout: Duration::from_millis(1), max_waiting: 8, ..Default::default() };
        let a = Admission::new(1, options);
        let _held = a.admit().await.unwrap();
        assert!(matches!(interactive(a.admit()).await, Err(InvokeError::Overloaded(_))));
        assert_eq!(a.waiting(), 0);
    }
}
