//! SMPP 3.4/5.0 for the gateway, sans-IO: no sockets, no clock, no tokio.
//!
//! This module owns everything between the bytes of one TCP connection and
//! the gateway's messages:
//! - [`framing`]: splitting the stream into PDUs, decoding each body
//!   through `rusmpp` from exactly its own octets, choosing the answer to a
//!   PDU that does not decode, encoding outgoing PDUs;
//! - [`session`]: the bind/unbind state machine for both roles (ESME and
//!   MC), sequence numbers, windows, response timeouts and enquire_link
//!   keepalive, driven quinn-proto style by `handle_*(now, …)` and
//!   `poll_*()`;
//! - [`message`]: reading MO messages and building MT answers (USSD TLVs
//!   included) so the gateway does not touch `rusmpp` types for them;
//! - [`error`]: one error enum per layer, each failure mapped to the
//!   `command_status` it is answered with.
//!
//! The `rusmpp` types that appear in this API are re-exported here, and the
//! crate itself as [`rusmpp`], so callers build PDUs against the exact
//! pinned version.

pub mod error;
pub mod framing;
pub mod message;
pub mod session;

#[cfg(test)]
pub(crate) mod test_util;

pub use error::{BuildError, DecodeError, EncodeError, MoError, SessionError};
pub use framing::{
    encode_header_only, encode_pdu, Frame, FrameError, Framer, Header, Reply, DEFAULT_PDU_LEN_MAX,
    HEADER_LEN,
};
pub use message::{
    data_sm_resp, deliver_sm_resp, response_message_id, submit_sm_resp, ussd_service_op,
    MessageCommand, MoMessage, MtMessage, PayloadField, ReceiptKind, Sar, ESM_CLASS_UDHI,
    SHORT_MESSAGE_LEN_MAX,
};
pub use rusmpp;
pub use rusmpp::fields::SmppField;
pub use rusmpp::{CommandId, CommandStatus, Pdu};
pub use session::{
    Authenticate, BindMode, BindRefusal, BindRequest, CloseReason, Config, EsmeCredentials, Event,
    PeerTable, Role, Session, State,
};
