//! The smallest whole stack: one simulator, one sidecar attached to it, one gateway in front.

use super::{Gateway, GatewayOptions, Sidecar, SidecarOptions, Sim, SimOptions};
use crate::Binaries;
use anyhow::Result;

pub struct SingleStack {
    pub sim: Sim,
    pub sidecar: Sidecar,
    pub gateway: Gateway,
}

impl SingleStack {
    /// Start the three, each ready before the next; the gateway's sidecar list and token
    /// come from the sidecar (whatever `gateway` says about them).
    pub async fn start(
        bins: &Binaries,
        sim: SimOptions,
        sidecar: SidecarOptions,
        gateway: GatewayOptions,
    ) -> Result<Self> {
        let sim = Sim::start(&bins.sim, sim).await?;
        let sidecar = Sidecar::start(&bins.sidecar, &sim, sidecar).await?;
        let gateway = Gateway::start(&bins.gateway, gateway.in_front_of(&[&sidecar])).await?;
        Ok(Self {
            sim,
            sidecar,
            gateway,
        })
    }
}
