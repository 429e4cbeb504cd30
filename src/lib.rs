//! shipdeck: a terminal console and engine for releasing software safely.

pub mod analysis;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod engine;
pub mod flags;
pub mod host;
pub mod http;
pub mod model;
pub mod notify;
pub mod store;
pub mod tui;
