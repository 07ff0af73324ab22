//! One module per subcommand: its flags and the glue to its library.

pub mod device;
pub mod doctor;
pub mod headless;
pub mod kernel;
pub mod kernel_choice;
pub mod open;
pub mod repro;
pub mod run;
pub mod scenario;
pub mod setup;
pub mod signals;
pub mod tui;
