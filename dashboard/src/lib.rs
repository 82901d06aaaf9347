//! The live dashboard. Until the Leptos app lands, this crate only proves that the wire types build without
//! the server feature (as they must for wasm32).

pub use pipeline::events::ServerEvent;
