//! The LingmaInstance operator: CRD types, pure builders of the desired objects, the reconciler,
//! status and conditions, metrics and health.

pub mod accounts;
pub mod builders;
pub mod config;
pub mod crd;
pub mod http;
pub mod login;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod status;
