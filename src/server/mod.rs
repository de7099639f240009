//! The tokio shell: SMPP listener (MC role), SMPP client (ESME role), the
//! engine queue, the outbox sender and graceful shutdown.

pub mod queue;
