//! (in progress)
pub async fn run() -> Result<(), crate::cli::Failure> { todo!() }
