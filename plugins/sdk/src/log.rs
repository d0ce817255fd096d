//! Writes to weir's log (capped per call). Outside WebAssembly (a plugin's native unit
//! tests) the lines go to stderr.

use crate::bindings::weir::transform::types::Level;

fn write(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    crate::bindings::weir::transform::log::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    eprintln!("{level:?}: {message}");
}

/// A line at debug level.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}
/// A line at info level.
pub fn info(message: &str) {
    write(Level::Info, message);
}
/// A line at warn level.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}
/// A line at error level.
pub fn error(message: &str) {
    write(Level::Error, message);
}
