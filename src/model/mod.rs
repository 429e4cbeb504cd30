//! Plain data: no I/O, easy to build in tests.

pub mod analysis;
pub mod duration;
pub mod emergency;
pub mod emergency_report;
pub mod estate;
pub mod kubernetes;
pub mod notify;
pub mod release;

pub use analysis::*;
pub use duration::HumanDuration;
pub use emergency::*;
pub use emergency_report::*;
pub use estate::*;
pub use kubernetes::*;
pub use notify::*;
pub use release::*;
