//! Command line and environment of the operator binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "operator",
    about = "Kubernetes operator of LingmaInstance pools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the LingmaInstance CRD as YAML.
    Crd,
    /// Init step of a Lingma pod: keep only the pod's own account (ordinal mod n).
    SelectAccount(SelectAccountArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SelectAccountArgs {
    /// Every account (the accounts Secret, mounted only in the init container).
    #[arg(long)]
    pub input: PathBuf,
    /// Where the pod's own account is written (an in-memory volume).
    #[arg(long)]
    pub output: PathBuf,
    /// The pod's name, whose ordinal picks the account (downward API).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunConfig {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Namespace whose LingmaInstances are reconciled; empty = all namespaces.
    #[arg(long, env = "OPERATOR_WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Pod image (sidecar + Lingma) used when a LingmaInstance names none.
    #[arg(
        long,
        env = "OPERATOR_LINGMA_POD_IMAGE",
        default_value = "lingma-pod:latest"
    )]
    pub lingma_pod_image: String,
    /// Image of the Lingma pods' `select-account` init container: the operator's own image.
    #[arg(
        long,
        env = "OPERATOR_ACCOUNT_SELECTOR_IMAGE",
        default_value = "operator:latest"
    )]
    pub account_selector_image: String,
    /// Elect a leader through a coordination.k8s.io Lease (off only for a single replica).
    #[arg(long, env = "OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(long, env = "OPERATOR_LEASE_NAME", default_value = "lingma-operator")]
    pub lease_name: String,
    /// Namespace of the Lease; empty = the operator's own namespace.
    #[arg(long, env = "OPERATOR_LEASE_NAMESPACE", default_value = "")]
    pub lease_namespace: String,
    /// Identity in the Lease and in events (the pod name, from the downward API).
    #[arg(long, env = "OPERATOR_POD_NAME", default_value = "")]
    pub pod_name: String,
    /// Log level (tracing EnvFilter directive).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// text | json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}
