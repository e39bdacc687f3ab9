//! The evidence guard of `traffic_shift`: shift only when an always-valid
//! test says the alerting variant is worse than the destination.

pub mod stats;
