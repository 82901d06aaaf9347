//! Relays batch_persisted events and live stats to WebSocket clients; serves the dashboard.
