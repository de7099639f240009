//! Sans-IO protocol layer of shortcode-gw: no sockets, no clock, no store.

pub mod gsm7;
pub mod msisdn;
pub mod segment;
pub mod smpp;
pub mod text;
pub mod ucs2;
pub mod ussd;
