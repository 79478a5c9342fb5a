//! (in progress)
use std::net::IpAddr;
use crate::config::ProviderConfig;
use crate::model::Assignment;
use super::{ProviderError, Release};
pub struct HostUp { vps_id: Option<String> }
impl HostUp {
    pub fn new(config: &ProviderConfig) -> Result<Self, ProviderError> { Ok(HostUp { vps_id: config.vps_id.clone() }) }
    pub fn vps_id(&self) -> Option<&str> { self.vps_id.as_deref() }
    pub async fn identify(&mut self, _uplink_ips: &[IpAddr]) -> Result<(), ProviderError> { todo!() }
    pub async fn fetch(&mut self) -> Result<Assignment, ProviderError> { todo!() }
    pub async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> { todo!() }
    pub async fn allocate(&mut self) -> Result<Assignment, ProviderError> { todo!() }
    pub async fn release(&mut self) -> Result<Release, ProviderError> { todo!() }
}
