//! One module per subcommand: its flags and the glue to its library.

pub mod b4check;
pub mod checkout;
pub mod device;
pub mod doctor;
pub mod exit;
pub mod fetch;
pub mod headless;
pub mod kernel;
pub mod kernel_choice;
pub mod merge;
pub mod open;
pub mod repro;
pub mod run;
pub mod scenario;
pub mod setup;
pub mod shard;
pub mod signals;
pub mod tui;
