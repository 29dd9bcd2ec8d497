//! Everything that touches the terminal: the printer (stdout/stderr/JSON), progress bars, tables
//! and prompts. Library modules never print; commands go through this module.

pub mod logging;
pub mod printer;
pub mod progress;
pub mod prompt;
pub mod table;

pub use printer::Printer;
