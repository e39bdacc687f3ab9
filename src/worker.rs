//! Worker: claims stored notifications with a lease and runs the pipeline.
//!
//! [`Worker::try_execute_task`] is one step, so tests drain the inbox
//! deterministically; [`Worker::run`] loops it until shutdown.

use crate::clock::now_ms;
use crate::pipeline::{Pipeline, Slot};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
        }
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
        self.pipeline.process(claimed, Slot::default()).await?;
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
        let pipeline = self.pipeline.clone();
        running.spawn(
            async move {
                match pipeline.process(claimed, slot).await {
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
