//! (placeholder until the netlink branch lands)
use std::net::IpAddr;
use crate::kernel::{Kernel, KernelError};
use crate::model::{ObservedState, Op};
pub struct NetlinkKernel;
impl NetlinkKernel { pub fn new(_protocol: u8) -> Result<Self, KernelError> { todo!() } }
impl Kernel for NetlinkKernel {
    async fn observe(&mut self, _k: &[String]) -> Result<ObservedState, KernelError> { todo!() }
    async fn apply_op(&mut self, _op: &Op) -> Result<(), KernelError> { todo!() }
    async fn interface_addresses(&mut self, _n: &str) -> Result<Vec<IpAddr>, KernelError> { todo!() }
}
