//! shortcode-gw: the «Обнови пакет» USSD/SMS short-code gateway.
//!
//! - [`engine`]: the pure billing engine (no IO, no clock).
//! - [`store`]: durable state behind the [`store::Store`] trait (redb, sled).
//! - [`data`]: operator files (catalog, accounts) and the bundled demo data.
//! - [`gateway`]: the engine over the store, one commit per batch.
//! - [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod data;
pub mod engine;
pub mod gateway;
pub mod load;
pub mod peer;
pub mod replay;
pub mod server;
pub mod store;
