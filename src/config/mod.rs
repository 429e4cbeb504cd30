//! Files a person writes: the estate, and where state lives.

pub mod estate;
pub mod merge;
pub mod paths;

pub use estate::{ConfigError, Estate};
