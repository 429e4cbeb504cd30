//! Files a person writes: the estate, and where state lives.

mod emergency;
pub mod estate;
pub mod keymap;
pub mod merge;
pub mod paths;
pub mod settings;
pub mod theme;

pub use estate::{ConfigError, Estate};
