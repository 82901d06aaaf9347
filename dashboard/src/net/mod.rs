//! The browser's I/O: `fetch` with a deadline, the reconnecting WebSocket, and the clock.
//!
//! These call into JavaScript, so they only work in a browser; natively they compile (for the workspace build)
//! but are never called.

pub mod clock;
pub mod http;
pub mod socket;
