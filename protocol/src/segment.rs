//! SMS concatenation (TS 23.040 §9.2.3.24.1 / .8): splitting a reply into
//! parts, reading the user data header of incoming parts, and reassembling
//! them.
//!
//! This module owns the segment budgets and the concatenation header; the
//! SMPP layer owns where the header travels. Outgoing parts carry the 8-bit
//! reference form `05 00 03 ref total seq` in `short_message` with UDHI set in
//! `esm_class` ([`ESM_CLASS_UDHI`]); [`Part`] also exposes reference, total
//! and sequence so the SMPP layer could send SAR TLVs instead. Incoming parts
//! reach the [`Reassembler`] from either a UDH ([`split_udh`]) or the SAR
//! TLVs: it takes plain `(reference, total, seq)`.
//!
//! The reassembler is sans-IO: time is an argument, expiry is an explicit
//! [`Reassembler::poll_expired`] call, and every resource has a limit
//! ([`ReassemblyLimits`]) so a peer cannot exhaust memory.

use std::collections::btree_map::{BTreeMap, Entry};

use crate::{gsm7, text, ucs2};

/// `esm_class` bit saying `short_message` starts with a user data header.
pub const ESM_CLASS_UDHI: u8 = 0x40;
/// GSM 7-bit septets in a message sent as one part.
pub const SINGLE_GSM7_SEPTETS: usize = 160;
/// GSM 7-bit septets per part of a concatenated message (160 less the 6-octet
/// UDH and its fill bit).
pub const PART_GSM7_SEPTETS: usize = 153;
/// UCS2 code units in a message sent as one part.
pub const SINGLE_UCS2_UNITS: usize = 70;
/// UCS2 code units per part of a concatenated message (140 octets less the
/// 6-octet UDH, halved).
pub const PART_UCS2_UNITS: usize = 67;
/// Most parts a concatenated message can have: `total` is one octet.
pub const MAX_PARTS: usize = 255;

/// Information element: concatenation with an 8-bit reference.
const IE_CONCAT_8: u8 = 0x00;
/// Information element: concatenation with a 16-bit reference.
const IE_CONCAT_16: u8 = 0x08;

/// `esm_class` with the UDHI bit set.
pub fn with_udhi(esm_class: u8) -> u8 {
    esm_class | ESM_CLASS_UDHI
}

/// Whether `esm_class` says `short_message` starts with a UDH.
pub fn has_udhi(esm_class: u8) -> bool {
    esm_class & ESM_CLASS_UDHI != 0
}

/// Why a reply cannot be segmented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The text needs more parts than a one-octet `total` can count.
    #[error("text needs {parts} parts, more than the {MAX_PARTS} a concatenated SMS allows")]
    TooManyParts {
        /// Parts the text would need.
        parts: usize,
    },
}

/// One SMS of a (possibly concatenated) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Concatenation reference shared by all parts (0 for a single part).
    pub reference: u8,
    /// Parts in the message, 1 for an unsegmented message.
    pub total: u8,
    /// This part's position, from 1.
    pub seq: u8,
    /// `05 00 03 ref total seq`, or empty for a single-part message.
    pub udh: Vec<u8>,
    /// The part's text in the message's coding, without the UDH.
    pub payload: Vec<u8>,
    /// Septets (GSM 7-bit) or UTF-16 code units (UCS2) of `payload`.
    pub units: usize,
}

impl Part {
    /// The `short_message` to send: UDH followed by the payload.
    pub fn short_message(&self) -> Vec<u8> {
        [self.udh.as_slice(), self.payload.as_slice()].concat()
    }
}

/// A reply split into SMS parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmented {
    /// `data_coding` for every part: [`text::DC_GSM7`] or [`text::DC_UCS2`].
    pub data_coding: u8,
    /// The parts in order; never empty.
    pub parts: Vec<Part>,
}

impl Segmented {
    /// Whether the parts carry a UDH (more than one part).
    pub fn is_concatenated(&self) -> bool {
        self.parts.len() > 1
    }

    /// The `esm_class` to send the parts with: `base`, plus UDHI when the
    /// parts carry a UDH.
    pub fn esm_class(&self, base: u8) -> u8 {
        if self.is_concatenated() {
            with_udhi(base)
        } else {
            base
        }
    }
}

/// Splits `text` into SMS parts (C2): GSM 7-bit when the alphabet allows,
/// else UCS2; one part up to 160 septets / 70 units, otherwise parts of at
/// most 153 septets / 67 units, each with a UDH carrying `reference`.
///
/// Parts break between characters, so an escape pair (`€`) or a surrogate
/// pair (emoji) is never split; a part may then be one unit short. The caller
/// picks `reference` (e.g. a per-destination counter) since this crate keeps
/// no state across replies.
pub fn segment(text: &str, reference: u8) -> Result<Segmented, SegmentError> {
    // Same choice as `text::encode_reply`: GSM 7-bit when every character
    // has a septet.
    let use_gsm7 = gsm7::is_representable(text);
    let (single_max, part_max, data_coding) = if use_gsm7 {
        (SINGLE_GSM7_SEPTETS, PART_GSM7_SEPTETS, text::DC_GSM7)
    } else {
        (SINGLE_UCS2_UNITS, PART_UCS2_UNITS, text::DC_UCS2)
    };
    let cost = |c: char| {
        if use_gsm7 {
            gsm7::encode_char(c).map_or(1, gsm7::Gsm7Char::septets)
        } else {
            c.len_utf16()
        }
    };
    let encode = |chunk: &str| {
        if use_gsm7 {
            gsm7::encode(chunk).unwrap_or_default()
        } else {
            ucs2::encode(chunk)
        }
    };

    let total_units: usize = text.chars().map(cost).sum();
    if total_units <= single_max {
        let payload = encode(text);
        return Ok(Segmented {
            data_coding,
            parts: vec![Part {
                reference: 0,
                total: 1,
                seq: 1,
                udh: Vec::new(),
                payload,
                units: total_units,
            }],
        });
    }

    let chunks = split_by_cost(text, part_max, cost);
    let total = u8::try_from(chunks.len()).map_err(|_| SegmentError::TooManyParts {
        parts: chunks.len(),
    })?;
    let parts = (1..=total)
        .zip(chunks)
        .map(|(seq, (chunk, units))| Part {
            reference,
            total,
            seq,
            udh: vec![0x05, IE_CONCAT_8, 0x03, reference, total, seq],
            payload: encode(chunk),
            units,
        })
        .collect();
    Ok(Segmented { data_coding, parts })
}

/// Splits `text` at character boundaries into chunks costing at most `max`
/// each, with their costs. Every character costs at most 2 and `max` is
/// large, so no chunk is empty.
fn split_by_cost(text: &str, max: usize, cost: impl Fn(char) -> usize) -> Vec<(&str, usize)> {
    let mut chunks = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, c) in text.char_indices() {
        let k = cost(c);
        if used + k > max {
            chunks.push((&text[start..i], used));
            (start, used) = (i, 0);
        }
        used += k;
    }
    if start < text.len() {
        chunks.push((&text[start..], used));
    }
    chunks
}

/// Concatenation details of one incoming part, from a UDH or SAR TLVs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// Reference shared by the message's parts (8- or 16-bit on the wire).
    pub reference: u16,
    /// Parts in the message, >= 1.
    pub total: u8,
    /// This part's position, 1..=total.
    pub seq: u8,
}

/// What an incoming user data header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udh {
    /// Octets the header occupies, its length octet included.
    pub len: usize,
    /// The concatenation element, if a valid one is present.
    pub concat: Option<Concat>,
}

/// Why a user data header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    /// UDHI is set but `short_message` is empty.
    #[error("UDHI set but short_message is empty")]
    Empty,
    /// The header length octet points past the end of `short_message`.
    #[error("UDH length {udhl} exceeds the {available} octets after it")]
    TooLong {
        /// The UDHL octet.
        udhl: u8,
        /// Octets present after it.
        available: usize,
    },
    /// An information element runs past the end of the header.
    #[error("information element at offset {offset} runs past the end of the UDH")]
    TruncatedElement {
        /// Offset of the element's identifier within `short_message`.
        offset: usize,
    },
    /// A concatenation element has the wrong length.
    #[error("concatenation element {iei:#04X} has length {len}, expected {expected}")]
    BadConcatLength {
        /// The element identifier (0x00 or 0x08).
        iei: u8,
        /// Its length octet.
        len: u8,
        /// The length the identifier requires.
        expected: u8,
    },
}

/// Splits `short_message` (whose `esm_class` has UDHI) into its user data
/// header and the payload after it.
///
/// Concatenation elements 0x00 (8-bit reference) and 0x08 (16-bit) are read;
/// other elements are skipped. As TS 23.040 §9.2.3.24.1 says, a
/// concatenation element whose `total` is 0 or whose `seq` is 0 or above
/// `total` is ignored (the part is then a message on its own), and when the
/// element repeats the last one counts. Structural damage is a [`UdhError`].
pub fn split_udh(short_message: &[u8]) -> Result<(Udh, &[u8]), UdhError> {
    let (&udhl, rest) = short_message.split_first().ok_or(UdhError::Empty)?;
    if usize::from(udhl) > rest.len() {
        return Err(UdhError::TooLong {
            udhl,
            available: rest.len(),
        });
    }
    let (header, payload) = rest.split_at(usize::from(udhl));
    let mut concat = None;
    let mut at = 0;
    while at < header.len() {
        let offset = at + 1; // within short_message
        let (iei, len) = match header.get(at..at + 2) {
            Some(&[iei, len]) => (iei, len),
            _ => return Err(UdhError::TruncatedElement { offset }),
        };
        let body = header
            .get(at + 2..at + 2 + usize::from(len))
            .ok_or(UdhError::TruncatedElement { offset })?;
        at += 2 + usize::from(len);
        let element = match (iei, body) {
            (IE_CONCAT_8, &[r, total, seq]) => Concat {
                reference: u16::from(r),
                total,
                seq,
            },
            (IE_CONCAT_16, &[hi, lo, total, seq]) => Concat {
                reference: u16::from_be_bytes([hi, lo]),
                total,
                seq,
            },
            (IE_CONCAT_8 | IE_CONCAT_16, _) => {
                return Err(UdhError::BadConcatLength {
                    iei,
                    len,
                    expected: if iei == IE_CONCAT_8 { 3 } else { 4 },
                })
            }
            _ => continue,
        };
        concat = (element.total >= 1 && element.seq >= 1 && element.seq <= element.total)
            .then_some(element);
    }
    let udh = Udh {
        len: 1 + usize::from(udhl),
        concat,
    };
    Ok((udh, payload))
}

/// Identifies one concatenated message being reassembled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConcatKey {
    /// Who sent it: the normalised originator, plus the destination when one
    /// gateway serves several short codes (references are per sender and
    /// recipient pair).
    pub sender: String,
    /// The concatenation reference.
    pub reference: u16,
    /// Parts in the message; part of the key so a reused reference with a
    /// different count starts a new message.
    pub total: u8,
}

/// Bounds on what the [`Reassembler`] holds.
///
/// Worst case memory is about `bytes_max` of payload plus, per pending
/// message, its key and 255 slot pointers (~6 KiB), so the defaults cap it
/// near 4 MiB + 1024 × 6 KiB ≈ 10 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// A message whose first part arrived this long ago is expired by
    /// [`Reassembler::poll_expired`]. Counted from the first part so a peer
    /// trickling parts cannot keep an entry alive.
    pub timeout_ms: u64,
    /// Most messages pending at once.
    pub pending_max: usize,
    /// Most payload octets held across all pending messages.
    pub bytes_max: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            timeout_ms: 300_000,
            pending_max: 1024,
            bytes_max: 4 * 1024 * 1024,
        }
    }
}

/// Why a part was not accepted. The SMPP layer should answer the PDU with an
/// error status (e.g. `ESME_RMSGQFUL` for the limits) so the SMSC retries or
/// reports it, rather than drop the part silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// `total` is 0, or `seq` is 0 or above `total`.
    #[error("segment {seq} of {total} is out of range")]
    InvalidSegment {
        /// The part's sequence number.
        seq: u8,
        /// The message's part count.
        total: u8,
    },
    /// A new message would exceed [`ReassemblyLimits::pending_max`].
    #[error("{pending_max} concatenated messages already pending")]
    TooManyPending {
        /// The configured limit.
        pending_max: usize,
    },
    /// The part would exceed [`ReassemblyLimits::bytes_max`].
    #[error("part of {len} octets would exceed the {bytes_max}-octet reassembly budget")]
    TooManyBytes {
        /// The part's payload length.
        len: usize,
        /// The configured limit.
        bytes_max: usize,
    },
}

/// A message that did not complete in time, with the parts that did arrive
/// so the caller can journal it (G5) or act on the partial text (C2 renews
/// on any text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The message's key.
    pub key: ConcatKey,
    /// When its first part arrived.
    pub first_ms: u64,
    /// The SMPP `data_coding` its first part arrived with (all parts of one
    /// message should share it, 3GPP TS 23.040 9.2.3.24.1), so the partial
    /// text is decoded with it rather than guessed.
    pub data_coding: u8,
    /// The parts received, as (seq, payload), in sequence order.
    pub parts: Vec<(u8, Vec<u8>)>,
}

impl Expired {
    /// The received payloads joined in sequence order, gaps closed.
    pub fn partial_payload(&self) -> Vec<u8> {
        self.parts
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .collect()
    }
}

#[derive(Debug)]
struct Pending {
    first_ms: u64,
    data_coding: u8,
    /// Slot `seq - 1` holds that part once received.
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
}

/// A message already handed out (complete, or expired with the parts that
/// came), remembered for one timeout so that its parts arriving again are
/// not a new message.
#[derive(Debug)]
struct Handled {
    until_ms: u64,
    /// Digest of each part that arrived; `None`: it never came.
    parts: Vec<Option<u64>>,
}

/// FNV-1a: a part's identity for retransmission checks (not security: the
/// key already ties it to one sender and reference).
fn digest(payload: &[u8]) -> u64 {
    payload.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reassembles concatenated SMS parts arriving in any order (sans-IO).
///
/// Feed every part with [`insert`](Self::insert); call
/// [`poll_expired`](Self::poll_expired) when
/// [`next_deadline_ms`](Self::next_deadline_ms) passes (or before inserting)
/// to free stale entries. Ordering is deterministic: pending messages live in
/// a `BTreeMap`, so the same inputs give the same outputs (G1).
///
/// A message handed out (completed or expired) is remembered for one
/// timeout: a part of it sent again (the SMSC retransmits when our response
/// was late or lost) is ignored rather than starting a new message that
/// would expire into a second request, and so does a part that comes after
/// its message expired. The same reference with different content is a new
/// message (a sender reusing its references).
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    pending: BTreeMap<ConcatKey, Pending>,
    bytes: usize,
    handled: BTreeMap<ConcatKey, Handled>,
}

impl Reassembler {
    /// An empty reassembler with these limits.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            pending: BTreeMap::new(),
            bytes: 0,
            handled: BTreeMap::new(),
        }
    }

    /// Remember `key` as handed out at `now_ms`, within a bounded memory
    /// (the entry nearest its end goes first).
    fn remember(&mut self, key: ConcatKey, now_ms: u64, parts: Vec<Option<u64>>) {
        let cap = self.limits.pending_max.max(1).saturating_mul(4);
        while self.handled.len() >= cap {
            let Some(oldest) = self
                .handled
                .iter()
                .min_by_key(|(_, h)| h.until_ms)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.handled.remove(&oldest);
        }
        let until_ms = now_ms.saturating_add(self.limits.timeout_ms);
        self.handled.insert(key, Handled { until_ms, parts });
    }

    /// Whether part `slot` with `payload` belongs to a message already
    /// handed out (then it is ignored). Forgets the message when its time
    /// is up or this is different content under the same key.
    fn already_handled(
        &mut self,
        now_ms: u64,
        key: &ConcatKey,
        slot: usize,
        payload: &[u8],
    ) -> bool {
        let Some(h) = self.handled.get(key) else {
            return false;
        };
        let same = now_ms < h.until_ms
            && h.parts
                .get(slot)
                .is_some_and(|p| p.is_none_or(|d| d == digest(payload)));
        if !same {
            self.handled.remove(key);
        }
        same
    }

    /// The limits in force.
    pub fn limits(&self) -> ReassemblyLimits {
        self.limits
    }

    /// Messages waiting for parts.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Payload octets held.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds part `seq` of the message `key`, in SMPP `data_coding`, at
    /// `now_ms` (the first part's coding is kept for [`Expired`]). Returns
    /// the whole payload (parts joined in order) when this part completes
    /// it, `None` while parts are missing. A part already held is a
    /// retransmission: it is ignored (the first copy wins) and `None`
    /// returned. A message with `total == 1` completes at once without
    /// being stored.
    pub fn insert(
        &mut self,
        now_ms: u64,
        key: ConcatKey,
        seq: u8,
        data_coding: u8,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, ReassemblyError> {
        let total = key.total;
        if total == 0 || seq == 0 || seq > total {
            return Err(ReassemblyError::InvalidSegment { seq, total });
        }
        if total == 1 {
            return Ok(Some(payload.to_vec()));
        }
        let slot = usize::from(seq - 1);
        if !self.pending.contains_key(&key) && self.already_handled(now_ms, &key, slot, payload) {
            return Ok(None);
        }
        match self.pending.get(&key) {
            Some(entry) if entry.parts[slot].is_some() => return Ok(None),
            None if self.pending.len() >= self.limits.pending_max => {
                return Err(ReassemblyError::TooManyPending {
                    pending_max: self.limits.pending_max,
                })
            }
            _ => {}
        }
        if self.bytes.saturating_add(payload.len()) > self.limits.bytes_max {
            return Err(ReassemblyError::TooManyBytes {
                len: payload.len(),
                bytes_max: self.limits.bytes_max,
            });
        }
        self.bytes += payload.len();

        match self.pending.entry(key) {
            Entry::Vacant(vacant) => {
                let mut parts = vec![None; usize::from(total)];
                parts[slot] = Some(payload.to_vec());
                vacant.insert(Pending {
                    first_ms: now_ms,
                    data_coding,
                    parts,
                    received: 1,
                    bytes: payload.len(),
                });
                Ok(None)
            }
            Entry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                entry.parts[slot] = Some(payload.to_vec());
                entry.received += 1;
                entry.bytes += payload.len();
                if entry.received < entry.parts.len() {
                    return Ok(None);
                }
                let (key, done) = occupied.remove_entry();
                self.bytes -= done.bytes;
                let digests = done
                    .parts
                    .iter()
                    .map(|p| p.as_deref().map(digest))
                    .collect();
                self.remember(key, now_ms, digests);
                Ok(Some(done.parts.into_iter().flatten().flatten().collect()))
            }
        }
    }

    /// Removes and returns every message whose first part arrived
    /// `timeout_ms` or more before `now_ms`, oldest first.
    pub fn poll_expired(&mut self, now_ms: u64) -> Vec<Expired> {
        self.handled.retain(|_, h| now_ms < h.until_ms);
        let timeout = self.limits.timeout_ms;
        let stale: Vec<ConcatKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.first_ms) >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let mut expired: Vec<Expired> = stale
            .into_iter()
            .filter_map(|key| {
                let p = self.pending.remove(&key)?;
                self.bytes -= p.bytes;
                let digests = p.parts.iter().map(|x| x.as_deref().map(digest)).collect();
                self.remember(key.clone(), now_ms, digests);
                let parts = (1..=key.total)
                    .zip(p.parts)
                    .filter_map(|(seq, part)| Some((seq, part?)))
                    .collect();
                Some(Expired {
                    key,
                    first_ms: p.first_ms,
                    data_coding: p.data_coding,
                    parts,
                })
            })
            .collect();
        expired.sort_by(|a, b| (a.first_ms, &a.key).cmp(&(b.first_ms, &b.key)));
        expired
    }

    /// When the oldest pending message expires, for the caller's timer.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|p| p.first_ms.saturating_add(self.limits.timeout_ms))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(sender: &str, reference: u16, total: u8) -> ConcatKey {
        ConcatKey {
            sender: sender.to_owned(),
            reference,
            total,
        }
    }

    /// Text back from parts, the way a handset would show it.
    fn rejoin(s: &Segmented) -> String {
        let bytes: Vec<u8> = s.parts.iter().flat_map(|p| p.payload.clone()).collect();
        text::decode_short_message(s.data_coding, &bytes)
    }

    #[test]
    fn a_160_character_gsm_text_is_one_part_without_udh() {
        let s = segment(&"a".repeat(160), 7).unwrap();
        assert_eq!(s.data_coding, text::DC_GSM7);
        assert_eq!(s.parts.len(), 1);
        assert!(s.parts[0].udh.is_empty());
        assert_eq!(s.parts[0].short_message().len(), 160);
        assert!(!s.is_concatenated());
        assert_eq!(s.esm_class(0x00), 0x00);
    }

    #[test]
    fn a_161_character_gsm_text_becomes_two_parts_with_udh() {
        let text = "b".repeat(161);
        let s = segment(&text, 0x2A).unwrap();
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.esm_class(0x00), 0x40);
        let first = s.parts[0].short_message();
        assert_eq!(&first[..6], &[0x05, 0x00, 0x03, 0x2A, 0x02, 0x01]);
        assert_eq!(first.len(), 6 + 153);
        let second = s.parts[1].short_message();
        assert_eq!(&second[..6], &[0x05, 0x00, 0x03, 0x2A, 0x02, 0x02]);
        assert_eq!(second.len(), 6 + 8);
        assert_eq!(rejoin(&s), text);
    }

    #[test]
    fn part_counts_follow_the_segment_budgets() {
        let cases = [
            ("a".repeat(0), text::DC_GSM7, 1),
            ("a".repeat(306), text::DC_GSM7, 2),
            ("a".repeat(307), text::DC_GSM7, 3),
            ("€".repeat(80), text::DC_GSM7, 1), // 160 septets
            ("€".repeat(81), text::DC_GSM7, 2),
            ("Ж".repeat(70), text::DC_UCS2, 1),
            ("Ж".repeat(71), text::DC_UCS2, 2),
            ("Ж".repeat(134), text::DC_UCS2, 2),
            ("Ж".repeat(135), text::DC_UCS2, 3),
        ];
        for (text, dc, parts) in cases {
            let s = segment(&text, 1).unwrap();
            assert_eq!(
                (s.data_coding, s.parts.len()),
                (dc, parts),
                "{} chars",
                text.chars().count()
            );
            assert_eq!(rejoin(&s), text);
        }
    }

    #[test]
    fn an_escape_pair_is_never_split_across_parts() {
        // 152 plain septets then '€': the escape would land in septet 153.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let s = segment(&text, 9).unwrap();
        assert_eq!(s.parts[0].payload.len(), 152);
        assert_eq!(s.parts[0].units, 152);
        assert_eq!(&s.parts[1].payload[..2], &[gsm7::ESC, 0x65]);
        for part in &s.parts {
            assert_ne!(part.payload.last(), Some(&gsm7::ESC));
        }
        assert_eq!(rejoin(&s), text);
    }

    #[test]
    fn a_surrogate_pair_is_never_split_across_parts() {
        let text = format!("{}😀{}", "Ж".repeat(66), "Ж".repeat(10));
        let s = segment(&text, 9).unwrap();
        assert_eq!(s.data_coding, text::DC_UCS2);
        assert_eq!(s.parts[0].units, 66);
        assert_eq!(&s.parts[1].payload[..4], &[0xD8, 0x3D, 0xDE, 0x00]);
        for part in &s.parts {
            assert!(!text::decode_short_message(8, &part.payload).contains('\u{FFFD}'));
        }
        assert_eq!(rejoin(&s), text);
    }

    #[test]
    fn a_text_needing_more_than_255_parts_is_refused() {
        let text = "Ж".repeat(67 * 255 + 1);
        assert_eq!(
            segment(&text, 0),
            Err(SegmentError::TooManyParts { parts: 256 })
        );
        assert_eq!(segment(&"Ж".repeat(67 * 255), 0).unwrap().parts.len(), 255);
    }

    #[test]
    fn udh_concatenation_elements_are_read() {
        type Case<'a> = (&'a [u8], Option<Concat>, usize, &'a [u8]);
        let c = |reference, total, seq| {
            Some(Concat {
                reference,
                total,
                seq,
            })
        };
        let cases: &[Case] = &[
            (
                &[0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, b'h', b'i'],
                c(0x2A, 3, 2),
                6,
                b"hi",
            ),
            (
                &[0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01, b'x'],
                c(0x1234, 2, 1),
                7,
                b"x",
            ),
            // A port-addressing element (0x05) before the concat one is skipped.
            (
                &[
                    0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x01, 0x02, 0x02,
                ],
                c(1, 2, 2),
                12,
                b"",
            ),
            // No concatenation element at all.
            (&[0x04, 0x05, 0x02, 0x0B, 0x84, b'z'], None, 5, b"z"),
            (&[0x00, b'a'], None, 1, b"a"),
            // seq 0, seq > total and total 0 make the element ignored (TS 23.040).
            (&[0x05, 0x00, 0x03, 0x01, 0x02, 0x00], None, 6, b""),
            (&[0x05, 0x00, 0x03, 0x01, 0x02, 0x03], None, 6, b""),
            (&[0x05, 0x00, 0x03, 0x01, 0x00, 0x00], None, 6, b""),
            // A repeated element: the last one counts.
            (
                &[
                    0x0A, 0x00, 0x03, 0x01, 0x02, 0x01, 0x00, 0x03, 0x07, 0x03, 0x03,
                ],
                c(7, 3, 3),
                11,
                b"",
            ),
        ];
        for &(sm, concat, len, payload) in cases {
            let (udh, rest) = split_udh(sm).unwrap_or_else(|e| panic!("{sm:02X?}: {e}"));
            assert_eq!(
                (udh.concat, udh.len, rest),
                (concat, len, payload),
                "{sm:02X?}"
            );
        }
    }

    #[test]
    fn malformed_udh_is_an_error() {
        let cases: &[(&[u8], UdhError)] = &[
            (&[], UdhError::Empty),
            (
                &[0x05, 0x00, 0x03],
                UdhError::TooLong {
                    udhl: 5,
                    available: 2,
                },
            ),
            (&[0x01, 0x00], UdhError::TruncatedElement { offset: 1 }),
            (
                &[0x04, 0x00, 0x03, 0x01, 0x02],
                UdhError::TruncatedElement { offset: 1 },
            ),
            (
                &[0x04, 0x00, 0x02, 0x01, 0x02],
                UdhError::BadConcatLength {
                    iei: 0x00,
                    len: 2,
                    expected: 3,
                },
            ),
            (
                &[0x05, 0x08, 0x03, 0x01, 0x02, 0x01],
                UdhError::BadConcatLength {
                    iei: 0x08,
                    len: 3,
                    expected: 4,
                },
            ),
        ];
        for (sm, err) in cases {
            assert_eq!(split_udh(sm), Err(err.clone()), "{sm:02X?}");
        }
    }

    #[test]
    fn a_three_part_cyrillic_message_reassembles_in_any_order() {
        let text = "Пакет обновлён. ".repeat(10); // 160 UCS2 units -> 3 parts
        let s = segment(&text, 0x51).unwrap();
        assert_eq!(s.parts.len(), 3);
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let mut r = Reassembler::new(ReassemblyLimits::default());
            let mut done = None;
            for (step, &i) in order.iter().enumerate() {
                let sm = s.parts[i].short_message();
                let (udh, payload) = split_udh(&sm).unwrap();
                let c = udh.concat.unwrap();
                let out = r
                    .insert(
                        1_000,
                        key("79161234567", c.reference, c.total),
                        c.seq,
                        s.data_coding,
                        payload,
                    )
                    .unwrap();
                assert_eq!(out.is_some(), step == 2, "order {order:?} step {step}");
                done = done.or(out);
            }
            let whole = done.unwrap();
            assert_eq!(text::decode_short_message(s.data_coding, &whole), text);
            assert_eq!((r.pending_len(), r.pending_bytes()), (0, 0));
        }
    }

    #[test]
    fn parts_from_different_senders_or_references_do_not_mix() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        assert_eq!(r.insert(0, key("A", 1, 2), 1, 0, b"a1"), Ok(None));
        assert_eq!(r.insert(0, key("B", 1, 2), 2, 0, b"b2"), Ok(None));
        assert_eq!(r.insert(0, key("A", 2, 2), 2, 0, b"x2"), Ok(None));
        assert_eq!(r.insert(0, key("A", 1, 3), 2, 0, b"y2"), Ok(None));
        assert_eq!(r.pending_len(), 4);
        assert_eq!(
            r.insert(0, key("A", 1, 2), 2, 0, b"a2"),
            Ok(Some(b"a1a2".to_vec()))
        );
        assert_eq!(
            r.insert(0, key("B", 1, 2), 1, 0, b"b1"),
            Ok(Some(b"b1b2".to_vec()))
        );
    }

    #[test]
    fn a_retransmitted_part_is_ignored_and_the_first_copy_wins() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        assert_eq!(r.insert(0, key("A", 1, 2), 1, 0, b"first"), Ok(None));
        assert_eq!(r.insert(5, key("A", 1, 2), 1, 0, b"again"), Ok(None));
        assert_eq!(r.pending_bytes(), 5);
        assert_eq!(
            r.insert(6, key("A", 1, 2), 2, 0, b"+"),
            Ok(Some(b"first+".to_vec()))
        );
    }

    #[test]
    fn single_part_and_out_of_range_segments() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        assert_eq!(
            r.insert(0, key("A", 1, 1), 1, 0, b"one"),
            Ok(Some(b"one".to_vec()))
        );
        assert_eq!(r.pending_len(), 0);
        for (total, seq) in [(0, 0), (0, 1), (3, 0), (3, 4)] {
            assert_eq!(
                r.insert(0, key("A", 1, total), seq, 0, b"x"),
                Err(ReassemblyError::InvalidSegment { seq, total })
            );
        }
        assert_eq!(r.pending_len(), 0);
    }

    #[test]
    fn incomplete_messages_expire_with_the_parts_received() {
        let limits = ReassemblyLimits {
            timeout_ms: 1_000,
            ..ReassemblyLimits::default()
        };
        let mut r = Reassembler::new(limits);
        assert_eq!(r.next_deadline_ms(), None);
        // The first part's coding (UCS2 here) is the message's.
        r.insert(100, key("B", 9, 3), 3, 8, b"c").unwrap();
        r.insert(100, key("B", 9, 3), 1, 0, b"a").unwrap();
        r.insert(500, key("A", 1, 2), 1, 0, b"z").unwrap();
        assert_eq!(r.next_deadline_ms(), Some(1_100));
        assert!(r.poll_expired(1_099).is_empty());

        let expired = r.poll_expired(1_100);
        assert_eq!(
            expired,
            vec![Expired {
                key: key("B", 9, 3),
                first_ms: 100,
                data_coding: 8,
                parts: vec![(1, b"a".to_vec()), (3, b"c".to_vec())],
            }]
        );
        assert_eq!(expired[0].partial_payload(), b"ac");
        assert_eq!((r.pending_len(), r.pending_bytes()), (1, 1));
        assert_eq!(r.next_deadline_ms(), Some(1_500));

        // A late part of the expired message belongs to what was already
        // handed out: it starts nothing that would expire into a second
        // request.
        assert_eq!(r.insert(1_200, key("B", 9, 3), 2, 0, b"b"), Ok(None));
        assert_eq!(r.pending_len(), 1, "only A is still pending");
        assert_eq!(r.poll_expired(u64::MAX).len(), 1);
        assert_eq!((r.pending_len(), r.pending_bytes()), (0, 0));
    }

    #[test]
    fn a_part_sent_again_after_its_message_completed_is_not_a_new_message() {
        let limits = ReassemblyLimits {
            timeout_ms: 1_000,
            ..ReassemblyLimits::default()
        };
        let mut r = Reassembler::new(limits);
        let k = || key("79000000048", 0x77, 2);
        assert_eq!(r.insert(0, k(), 1, 0, b"part one"), Ok(None));
        assert_eq!(
            r.insert(10, k(), 2, 0, b" and two"),
            Ok(Some(b"part one and two".to_vec()))
        );
        // The SMSC retransmits part 2 (its response was lost): ignored.
        assert_eq!(r.insert(500, k(), 2, 0, b" and two"), Ok(None));
        assert_eq!(r.pending_len(), 0);
        assert!(
            r.poll_expired(5_000).is_empty(),
            "nothing expires into a second request"
        );

        // After the window the same key is a message again.
        assert_eq!(r.insert(6_000, k(), 1, 0, b"part one"), Ok(None));
        assert_eq!(r.pending_len(), 1);
        assert_eq!(
            r.insert(6_001, k(), 2, 0, b" and two"),
            Ok(Some(b"part one and two".to_vec()))
        );

        // Within the window, the same reference with other content is a
        // new message (a sender reusing references).
        assert_eq!(r.insert(6_100, k(), 1, 0, b"another"), Ok(None));
        assert_eq!(
            r.insert(6_101, k(), 2, 0, b" text"),
            Ok(Some(b"another text".to_vec()))
        );
    }

    #[test]
    fn pending_messages_and_bytes_are_capped() {
        let limits = ReassemblyLimits {
            timeout_ms: 1_000,
            pending_max: 2,
            bytes_max: 10,
        };
        let mut r = Reassembler::new(limits);
        r.insert(0, key("A", 1, 2), 1, 0, b"1234").unwrap();
        r.insert(0, key("B", 1, 2), 1, 0, b"1234").unwrap();
        assert_eq!(
            r.insert(0, key("C", 1, 2), 1, 0, b"1"),
            Err(ReassemblyError::TooManyPending { pending_max: 2 })
        );
        assert_eq!(
            r.insert(0, key("A", 1, 2), 2, 0, b"123"),
            Err(ReassemblyError::TooManyBytes {
                len: 3,
                bytes_max: 10
            })
        );
        // An existing message may still complete within the budget.
        assert_eq!(
            r.insert(0, key("A", 1, 2), 2, 0, b"12"),
            Ok(Some(b"123412".to_vec()))
        );
        assert_eq!(r.insert(0, key("C", 1, 2), 1, 0, b"1"), Ok(None));
        assert_eq!(r.pending_bytes(), 5);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert {
            sender: u8,
            reference: u16,
            total: u8,
            seq: u8,
            len: usize,
            dt_ms: u64,
        },
        Poll {
            dt_ms: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3, 0u16..3, 0u8..5, 0u8..6, 0usize..40, 0u64..300).prop_map(
                |(sender, reference, total, seq, len, dt_ms)| Op::Insert {
                    sender,
                    reference,
                    total,
                    seq,
                    len,
                    dt_ms,
                }
            ),
            1 => (0u64..2_000).prop_map(|dt_ms| Op::Poll { dt_ms }),
        ]
    }

    proptest! {
        #[test]
        fn split_udh_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((udh, payload)) = split_udh(&bytes) {
                prop_assert_eq!(udh.len + payload.len(), bytes.len());
                if let Some(c) = udh.concat {
                    prop_assert!(c.seq >= 1 && c.seq <= c.total);
                }
            }
        }

        #[test]
        fn any_text_segments_within_budget_and_rejoins(text in any::<String>(), reference in any::<u8>()) {
            let s = segment(&text, reference).unwrap();
            let (single, part) = if s.data_coding == text::DC_GSM7 {
                (SINGLE_GSM7_SEPTETS, PART_GSM7_SEPTETS)
            } else {
                (SINGLE_UCS2_UNITS, PART_UCS2_UNITS)
            };
            let max = if s.parts.len() == 1 { single } else { part };
            for p in &s.parts {
                prop_assert!(p.units <= max);
                prop_assert_eq!(p.total as usize, s.parts.len());
                // 160 septets alone, 6 + 153 septets, or 140 octets of UCS2.
                prop_assert!(p.short_message().len() <= 160);
            }
            prop_assert_eq!(rejoin(&s), text);
        }

        #[test]
        fn long_text_parts_each_decode_on_their_own(text in "[a-z€Ж😀 ]{150,700}") {
            // Because pairs are never split, each part is valid text alone.
            let s = segment(&text, 3).unwrap();
            let pieces: String = s
                .parts
                .iter()
                .map(|p| text::decode_short_message(s.data_coding, &p.payload))
                .collect();
            prop_assert!(!pieces.contains(char::REPLACEMENT_CHARACTER), "a part decoded with a replacement");
            prop_assert_eq!(pieces, text);
        }

        #[test]
        fn reassembler_respects_its_limits_under_any_traffic(ops in proptest::collection::vec(op(), 0..200)) {
            let limits = ReassemblyLimits { timeout_ms: 1_000, pending_max: 4, bytes_max: 200 };
            let mut r = Reassembler::new(limits);
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Insert { sender, reference, total, seq, len, dt_ms } => {
                        now += dt_ms;
                        let k = key(&sender.to_string(), reference, total);
                        if let Ok(Some(whole)) = r.insert(now, k, seq, 0, &vec![seq; len]) {
                            prop_assert!(whole.len() <= limits.bytes_max.max(len));
                        }
                    }
                    Op::Poll { dt_ms } => {
                        now += dt_ms;
                        for e in r.poll_expired(now) {
                            prop_assert!(now - e.first_ms >= limits.timeout_ms);
                        }
                        if let Some(deadline) = r.next_deadline_ms() {
                            prop_assert!(deadline > now);
                        }
                    }
                }
                prop_assert!(r.pending_len() <= limits.pending_max);
                prop_assert!(r.pending_bytes() <= limits.bytes_max);
            }
        }
    }
}
