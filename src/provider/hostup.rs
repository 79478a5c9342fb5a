//! (in progress)
use std::net::IpAddr;
use crate::config::ProviderConfig;
use crate::model::Assignment;
use super::{ProviderError, Release};
pub struct HostUp { vps_id: String }
impl HostUp {
    pub async fn connect(_config: &ProviderConfig, _uplink_ips: &[IpAddr]) -> Result<Self, ProviderError> { todo!() }
    pub fn vps_id(&self) -> &str { &self.vps_id }
    pub async fn fetch(&mut self) -> Result<Assignment, ProviderError> { todo!() }
    pub async fn refresh_next_hop(&mut self) -> Result<Assignment, ProviderError> { todo!() }
    pub async fn allocate(&mut self) -> Result<Assignment, ProviderError> { todo!() }
    pub async fn release(&mut self) -> Result<Release, ProviderError> { todo!() }
}
