//! One error enum per layer of the SMPP half: framing/decoding
//! ([`DecodeError`]), encoding ([`EncodeError`]), the session
//! ([`SessionError`]), MO extraction ([`MoError`]) and MT building
//! ([`BuildError`]).
//!
//! Like rustls' `From<InvalidMessage> for AlertDescription`, every failure a
//! peer can cause maps to the `command_status` we answer it with, so the
//! answer is chosen in exactly one place (the `From<…> for CommandStatus`
//! impls below). All errors derive `PartialEq` so tests match exact variants.

use rusmpp::fields::SmppField;
use rusmpp::{CommandId, CommandStatus};

use super::session::{Role, State};

/// Why the bytes of one PDU did not decode.
///
/// Only the two `CommandLength*` variants are fatal: framing is lost, so the
/// session answers `generic_nack` and closes. Every other variant leaves the
/// stream aligned on the next PDU and the connection stays up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// command_length is smaller than the 16-octet header.
    #[error("command_length {command_length} is below the 16-octet header")]
    CommandLengthTooShort {
        /// The value read from the wire.
        command_length: u32,
    },
    /// command_length exceeds [`Config::pdu_len_max`](super::Config::pdu_len_max).
    #[error("command_length {command_length} exceeds the limit of {pdu_len_max} octets")]
    CommandLengthTooLong {
        /// The value read from the wire.
        command_length: u32,
        /// The configured limit.
        pdu_len_max: u32,
    },
    /// command_id is not an SMPP 3.4/5.0 command.
    #[error("unknown command_id {command_id:#010x}")]
    UnknownCommandId {
        /// The raw value read from the wire.
        command_id: u32,
    },
    /// The body ends inside a mandatory field (or is missing altogether).
    #[error("{command_id:?}: body ends inside a mandatory field")]
    Truncated {
        /// The command whose body is short.
        command_id: CommandId,
    },
    /// Octets remain after the last field of the body.
    #[error("{command_id:?}: {count} octets after the last field")]
    TrailingBytes {
        /// The command whose body is long.
        command_id: CommandId,
        /// How many octets were left over.
        count: usize,
    },
    /// sm_length points past the end of the body.
    #[error("{command_id:?}: short_message does not fit in the body")]
    InvalidShortMessage {
        /// The command carrying the short message.
        command_id: CommandId,
    },
    /// A mandatory field is not valid (C-string not terminated within its
    /// maximum size, not ASCII, wrong size for a fixed-size time, …).
    #[error("{command_id:?}: invalid field {field:?}")]
    InvalidField {
        /// The command.
        command_id: CommandId,
        /// The offending field, as named by rusmpp.
        field: SmppField,
    },
    /// The TLV part does not split into whole tag/length/value triples.
    #[error("{command_id:?}: TLV stream does not parse")]
    InvalidTlvStream {
        /// The command.
        command_id: CommandId,
    },
    /// A TLV's length field disagrees with the size of its tag's value type
    /// (e.g. `sar_msg_ref_num` declared 4 octets; it is a 2-octet integer).
    #[error("{command_id:?}: TLV {tag:#06x} declares {declared} octets, its value takes {actual}")]
    InvalidTlvLength {
        /// The command.
        command_id: CommandId,
        /// The TLV tag.
        tag: u16,
        /// The length field as sent.
        declared: u16,
        /// The octets its value actually takes.
        actual: usize,
    },
    /// A TLV value is not valid for its tag.
    #[error("{command_id:?}: TLV value does not parse")]
    InvalidTlvValue {
        /// The command.
        command_id: CommandId,
    },
    /// Anything else rusmpp refused.
    #[error("{command_id:?}: body does not parse")]
    Malformed {
        /// The command.
        command_id: CommandId,
    },
}

impl DecodeError {
    /// True when framing is lost and the connection must close after the
    /// `generic_nack`.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::CommandLengthTooShort { .. } | Self::CommandLengthTooLong { .. }
        )
    }
}

/// The status a PDU that failed to decode is answered with.
impl From<&DecodeError> for CommandStatus {
    fn from(error: &DecodeError) -> Self {
        match error {
            DecodeError::CommandLengthTooShort { .. }
            | DecodeError::CommandLengthTooLong { .. }
            // The length is wrong for this command's body: too short or too long.
            | DecodeError::Truncated { .. }
            | DecodeError::TrailingBytes { .. } => CommandStatus::EsmeRinvcmdlen,
            DecodeError::UnknownCommandId { .. } => CommandStatus::EsmeRinvcmdid,
            DecodeError::InvalidShortMessage { .. } => CommandStatus::EsmeRinvmsglen,
            DecodeError::InvalidField { field, .. } => field_status(*field),
            // 0x000000C0: ESME_RINVOPTPARSTREAM in 3.4, ESME_RINVTLVSTREAM in 5.0.
            DecodeError::InvalidTlvStream { .. } => CommandStatus::EsmeRinvtlvstream,
            // 0x000000C2: ESME_RINVPARLEN in 3.4, ESME_RINVTLVLEN in 5.0.
            DecodeError::InvalidTlvLength { .. } => CommandStatus::EsmeRinvtlvlen,
            // 0x000000C4: ESME_RINVOPTPARAMVAL in 3.4, ESME_RINVTLVVAL in 5.0.
            DecodeError::InvalidTlvValue { .. } => CommandStatus::EsmeRinvtlvval,
            DecodeError::Malformed { .. } => CommandStatus::EsmeRsyserr,
        }
    }
}

impl From<DecodeError> for CommandStatus {
    fn from(error: DecodeError) -> Self {
        Self::from(&error)
    }
}

/// The specific status for an invalid mandatory field, ESME_RSYSERR when the
/// spec has none.
fn field_status(field: SmppField) -> CommandStatus {
    match field {
        SmppField::source_addr | SmppField::source_addr_ton | SmppField::source_addr_npi => {
            CommandStatus::EsmeRinvsrcadr
        }
        SmppField::destination_addr | SmppField::dest_addr_ton | SmppField::dest_addr_npi => {
            CommandStatus::EsmeRinvdstadr
        }
        SmppField::service_type => CommandStatus::EsmeRinvsertyp,
        SmppField::system_id => CommandStatus::EsmeRinvsysid,
        SmppField::password => CommandStatus::EsmeRinvpaswd,
        SmppField::system_type => CommandStatus::EsmeRinvsystyp,
        SmppField::schedule_delivery_time => CommandStatus::EsmeRinvsched,
        SmppField::validity_period => CommandStatus::EsmeRinvexpiry,
        SmppField::message_id => CommandStatus::EsmeRinvmsgid,
        SmppField::esm_class => CommandStatus::EsmeRinvesmclass,
        _ => CommandStatus::EsmeRsyserr,
    }
}

/// Why a PDU could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded PDU would exceed the configured maximum.
    #[error("encoded PDU of {len} octets exceeds the limit of {pdu_len_max} octets")]
    TooLong {
        /// Encoded length, header included.
        len: usize,
        /// The configured limit.
        pdu_len_max: u32,
    },
    /// A TLV value does not fit its 16-bit length field (rusmpp truncates
    /// the length silently; we refuse instead).
    #[error("TLV {tag:#06x}: value of {len} octets does not match its length field")]
    TlvLength {
        /// The TLV tag.
        tag: u16,
        /// The value's real length.
        len: usize,
    },
}

/// Why an application call on a [`Session`](super::Session) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session is closed; nothing can be sent any more.
    #[error("session is closed")]
    Closed,
    /// The command is not allowed in the current state.
    #[error("{command_id:?} is not allowed in state {state:?}")]
    InvalidState {
        /// The command refused.
        command_id: CommandId,
        /// The state the session is in.
        state: State,
    },
    /// Our side of the session never originates this command (an MC does
    /// not send submit_sm, an ESME does not send deliver_sm).
    #[error("a {role:?} does not send {command_id:?}")]
    WrongDirection {
        /// The command refused.
        command_id: CommandId,
        /// Our role.
        role: Role,
    },
    /// The session sends this command itself (bind, unbind, enquire_link,
    /// responses) or it is not an operation at all.
    #[error("{command_id:?} cannot be sent through send_request")]
    NotSendable {
        /// The command refused.
        command_id: CommandId,
    },
    /// Our outbound window is full.
    #[error("outbound window full: {send_window_max} requests await a response")]
    WindowFull {
        /// The configured window.
        send_window_max: usize,
    },
    /// No unanswered inbound request has this sequence number.
    #[error("no unanswered request with sequence number {seq}")]
    UnknownSequence {
        /// The sequence number given.
        seq: u32,
    },
    /// The response body is not the response to the request's command.
    #[error("{got:?} does not answer {request:?}")]
    WrongResponse {
        /// The request being answered.
        request: CommandId,
        /// The body's command.
        got: CommandId,
    },
    /// A credential or system_id does not fit its SMPP field.
    #[error("{field} must be ASCII without NUL and at most {max} octets")]
    InvalidCredential {
        /// Which field.
        field: &'static str,
        /// Its maximum length without the terminating NUL.
        max: usize,
    },
    /// The PDU could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a PDU could not be read as an MO message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoError {
    /// Only submit_sm, deliver_sm and data_sm carry messages.
    #[error("{command_id:?} carries no message")]
    NotAMessage {
        /// The command given.
        command_id: CommandId,
    },
    /// short_message and message_payload are both set (the spec requires
    /// sm_length 0 when message_payload is used).
    #[error("short_message ({sm_len} octets) and message_payload are both present")]
    DuplicatePayload {
        /// sm_length of the PDU.
        sm_len: usize,
    },
    /// A TLV we interpret appears twice, so its meaning is ambiguous.
    #[error("TLV {tag:#06x} appears more than once")]
    DuplicateTlv {
        /// The TLV tag.
        tag: u16,
    },
    /// Some but not all of sar_msg_ref_num, sar_total_segments and
    /// sar_segment_seqnum are present.
    #[error("sar_msg_ref_num, sar_total_segments and sar_segment_seqnum must come together")]
    IncompleteSar,
    /// The sar_* values contradict each other.
    #[error("segment {segment_seqnum} of {total_segments} is impossible")]
    InvalidSar {
        /// sar_total_segments.
        total_segments: u8,
        /// sar_segment_seqnum.
        segment_seqnum: u8,
    },
}

/// The status an MO message that cannot be read is answered with.
impl From<&MoError> for CommandStatus {
    fn from(error: &MoError) -> Self {
        match error {
            MoError::NotAMessage { .. } => CommandStatus::EsmeRinvcmdid,
            MoError::DuplicatePayload { .. } => CommandStatus::EsmeRinvmsglen,
            MoError::DuplicateTlv { .. } => CommandStatus::EsmeRinvtlvstream,
            MoError::IncompleteSar => CommandStatus::EsmeRmissingtlv,
            MoError::InvalidSar { .. } => CommandStatus::EsmeRinvtlvval,
        }
    }
}

impl From<MoError> for CommandStatus {
    fn from(error: MoError) -> Self {
        Self::from(&error)
    }
}

/// Why an MT message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A C-string field is too long, not ASCII, or contains NUL.
    #[error("{field} must be ASCII without NUL and at most {max} octets")]
    InvalidString {
        /// Which field.
        field: &'static str,
        /// Its maximum length without the terminating NUL.
        max: usize,
    },
    /// short_message holds at most 254 octets.
    #[error("short_message holds at most 254 octets, got {len}")]
    ShortMessageTooLong {
        /// The payload length.
        len: usize,
    },
    /// message_payload holds at most 65 535 octets.
    #[error("message_payload holds at most 65535 octets, got {len}")]
    PayloadTooLong {
        /// The payload length.
        len: usize,
    },
}
