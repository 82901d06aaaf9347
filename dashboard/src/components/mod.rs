//! One module per component of the page; each reads the [`crate::store::Store`] from the context.

pub mod api_key_field;
pub mod burst_form;
pub mod channel_messages;
pub mod channel_picker;
pub mod channel_view;
pub mod feed_card;
pub mod field_error;
pub mod header;
pub mod health_panel;
pub mod latency_panel;
pub mod live_feed;
pub mod number_field;
pub mod recent_batches;
pub mod reset_form;
pub mod send_form;
pub mod stat_card;
pub mod stat_cards;
pub mod task;
pub mod text_field;
pub mod throughput_chart;
