//! Pipeline: the one place that knows the stage order.
//!
//! complete (a truncated group, from Alertmanager) → route (labels →
//! actions, enrichments) → enrich (Prometheus context) → act → ledger. The
//! worker hands [`Pipeline`] a claimed notification; it records every action
//! run's outcome. The parts:
//!
//! - [`plan`]: [`Planner`], the side-effect-free half (complete, route,
//!   enrich) and the dry-run plan;
//! - [`run`]: [`Pipeline`], acting on a claimed notification and recording
//!   each attempt;
//! - [`retry`]: what a failed attempt leads to, a pure function of the
//!   attempt and the limits.

pub mod plan;
pub mod retry;
pub mod run;

pub use plan::{Planner, Routed, NOTIFICATION_RUN};
pub use retry::RetryPolicy;
pub use run::{Pipeline, Slot};
