//! (placeholder until the netlink branch lands)
use crate::kernel::{KernelError, KernelEvent};
pub struct Watch;
impl Watch { pub fn start() -> Result<Watch, KernelError> { todo!() } pub async fn next(&mut self) -> Option<KernelEvent> { todo!() } }
