//! One module per subcommand: its flags and the glue to its library.

pub mod doctor;
pub mod kernel;
pub mod pending;
pub mod scenario;
pub mod setup;
