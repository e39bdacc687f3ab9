//! Worker: claims stored notifications with a lease and runs the pipeline.
//!
//! [`Worker::try_execute_task`] is one step, so tests drain the inbox
//! deterministically; [`Worker::run`] loops it until shutdown.

use crate::clock::now_ms;
use crate::pipeline::{Pipeline, Slot};
use crate::store::{Claimed, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Notifications all workers together keep in flight once only their
/// queued chat runs are left (each holds its enrichment context and rendered
/// alerts); each worker gets its share (see [`Worker::share_in_flight`]).
pub const MAX_IN_FLIGHT: usize = 256;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed one notification.
    Completed,
    /// Nothing was due.
    Empty,
}

/// Processes the inbox.
#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn Store>,
    pipeline: Arc<Pipeline>,
    lease: Duration,
    poll_interval: Duration,
    /// Ingest pokes this after storing, so new work starts without waiting a poll.
    wake: Arc<Notify>,
    /// Notifications this worker keeps in flight at most.
    max_in_flight: usize,
}

impl Worker {
    /// A worker over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        pipeline: Arc<Pipeline>,
        lease: Duration,
        poll_interval: Duration,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            pipeline,
            lease,
            poll_interval,
            wake,
            max_in_flight: MAX_IN_FLIGHT,
        }
    }

    /// For one of `workers` workers: its share of [`MAX_IN_FLIGHT`] (at least one).
    pub fn share_in_flight(mut self, workers: usize) -> Self {
        self.max_in_flight = (MAX_IN_FLIGHT / workers.max(1)).max(1);
        self
    }

    /// Claims and processes at most one due notification.
    pub async fn try_execute_task(&self) -> Result<Outcome, StoreError> {
        let Some(claimed) = self
            .store
            .claim(now_ms(), self.lease.as_millis() as i64)
            .await?
        else {
            return Ok(Outcome::Empty);
        };
        process_renewing(
            self.pipeline.clone(),
            self.store.clone(),
            self.lease,
            claimed,
            Slot::default(),
        )
        .await?;
        Ok(Outcome::Completed)
    }

    /// Claims one due notification and processes it in a task of `running`;
    /// returns once the pipeline released the worker's slot (the
    /// notification is done, or only its queued chat runs are left).
    async fn step(&self, running: &mut tokio::task::JoinSet<()>) -> Result<Outcome, StoreError> {
        let Some(claimed) = self
            .store
            .claim(now_ms(), self.lease.as_millis() as i64)
            .await?
        else {
            return Ok(Outcome::Empty);
        };
        let (slot, released) = Slot::new();
        let (pipeline, store, lease) = (self.pipeline.clone(), self.store.clone(), self.lease);
        running.spawn(
            async move {
                match process_renewing(pipeline, store, lease, claimed, slot).await {
                    Ok(()) => {}
                    // Logged once by the store when the fault starts.
                    Err(e @ StoreError::Storage { .. }) => {
                        tracing::debug!(error = %e, "Worker step failed")
                    }
                    Err(e) => tracing::error!(error = %e, "Worker step failed"),
                }
            }
            .in_current_span(),
        );
        // Err: the task ended (and dropped the slot).
        let _ = released.await;
        Ok(Outcome::Completed)
    }

    /// Loops until `shutdown`; the items in hand are always finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut running = tokio::task::JoinSet::new();
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            // A storm must not put every notification in memory at once:
            // at most MAX_IN_FLIGHT in all wait on chat queues.
            while running.len() >= self.max_in_flight {
                running.join_next().await;
            }
            match self.step(&mut running).await {
                Ok(Outcome::Completed) => continue,
                Ok(Outcome::Empty) => {}
                // Logged once by the store when the fault starts.
                Err(e @ StoreError::Storage { .. }) => {
                    tracing::debug!(error = %e, "Worker step failed")
                }
                Err(e) => tracing::error!(error = %e, "Worker step failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        // Notifications whose chat runs wait in a queue: at most the digest delay.
        while running.join_next().await.is_some() {}
    }
}

/// Runs the pipeline on `claimed`, renewing its lease every third of it:
/// a live worker's notification is never taken over by another replica,
/// however long its actions (or its queued chat runs) take. A worker that
/// dies stops renewing, and its work is taken over once the lease runs out.
async fn process_renewing(
    pipeline: Arc<Pipeline>,
    store: Arc<dyn Store>,
    lease: Duration,
    claimed: Claimed,
    slot: Slot,
) -> Result<(), StoreError> {
    let id = claimed.id;
    let lease_ms = lease.as_millis() as i64;
    let process = pipeline.process(claimed, slot);
    tokio::pin!(process);
    let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await;
    loop {
        tokio::select! {
            result = &mut process => return result,
            _ = renew.tick() => {
                if let Err(e) = store.renew_lease(id, now_ms(), lease_ms).await {
                    tracing::warn!(error = %e, notification = id, "Cannot renew the lease; another replica may take over when it runs out");
                }
            }
        }
    }
}
