//! PDU framing + decode + encode: ours (the protocol crate's `Framer` and
//! `encode_pdu`) against raw rusmpp (`Command::decode` + `Command::encode`)
//! on the same bytes, side by side (issue 5 target: ours ≤ 1.2 × rusmpp).
//!
//! "Ours" does what the gateway does per PDU: frame it out of a read
//! buffer (header checks, exact-length body slice), decode the body through
//! rusmpp, check every TLV's declared length, and encode the answer PDU
//! with its length and TLV checks. "rusmpp" decodes the command from the
//! same bytes with rusmpp's own owned decoder (length prefix, then
//! `Command::decode`) and encodes it back with `Command::encode`: no
//! framing, no checks.
//!
//! Run: `cargo bench --bench pdu`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shortcode_gw::load::build_request;
use shortcode_protocol::smpp::rusmpp::decode::DecodeWithLength;
use shortcode_protocol::smpp::rusmpp::encode::{Encode, Length};
use shortcode_protocol::smpp::rusmpp::Command;
use shortcode_protocol::smpp::{
    encode_pdu, submit_sm_resp, CommandStatus, Framer, MtMessage, Pdu, DEFAULT_PDU_LEN_MAX,
};
use shortcode_protocol::text;

/// The PDUs of one USSD renewal, as bytes on the wire.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let encode = |seq: u32, pdu: &Pdu| {
        encode_pdu(CommandStatus::EsmeRok, seq, pdu, DEFAULT_PDU_LEN_MAX).expect("sample encodes")
    };
    // 1. The MO: submit_sm *929# with ussd_service_op, its_session_info,
    //    user_message_reference (what the load tool and a USSDC send).
    let mo = build_request(12_345, 0x0102_0304, false);
    // 2. The USSD answer: deliver_sm, UCS2 Cyrillic text, TLVs echoed.
    let reply = text::encode_reply(
        "Пакет обновлён: -450,00 руб., следующее списание 22.12.2026. Детали в SMS",
    );
    let mo_msg = shortcode_protocol::smpp::MoMessage::from_pdu(&mo).expect("sample MO reads");
    let answer = MtMessage::reply_to(&mo_msg)
        .with_payload(reply.data_coding, reply.bytes)
        .to_deliver_sm()
        .expect("sample answer builds");
    // 3. The commit acknowledgement: submit_sm_resp with a message_id.
    let resp = submit_sm_resp("1f2e3d").expect("sample resp builds");
    vec![
        ("submit_sm_ussd", encode(7, &mo)),
        ("deliver_sm_answer", encode(8, &answer)),
        ("submit_sm_resp", encode(9, &resp)),
    ]
}

/// Ours: frame + decode + TLV checks, then encode.
fn ours(framer: &mut Framer, bytes: &[u8]) -> Vec<u8> {
    let mut input = bytes;
    let frame = framer
        .next_frame(&mut input)
        .expect("one whole PDU")
        .expect("sample decodes");
    let pdu = frame.body.expect("sample has a body");
    encode_pdu(
        frame.header.command_status,
        frame.header.sequence_number,
        &pdu,
        DEFAULT_PDU_LEN_MAX,
    )
    .expect("sample re-encodes")
}

/// rusmpp alone: length prefix, `Command::decode`, `Command::encode`.
fn raw_rusmpp(bytes: &[u8]) -> Vec<u8> {
    let mut src = BytesMut::from(bytes);
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    let _ = src.split_to(4);
    let (command, _) = Command::decode(&mut src, len - 4).expect("sample decodes");
    let body_len = command.length();
    let mut out = vec![0u8; 4 + body_len];
    out[..4].copy_from_slice(&((4 + body_len) as u32).to_be_bytes());
    command.encode(&mut out[4..]);
    out
}

fn per_pdu(c: &mut Criterion) {
    let mut group = c.benchmark_group("pdu_roundtrip");
    group.throughput(Throughput::Elements(1));
    for (name, bytes) in samples() {
        // Both sides must produce the very bytes they read.
        let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
        assert_eq!(ours(&mut framer, &bytes), bytes, "{name}: ours round-trips");
        assert_eq!(raw_rusmpp(&bytes), bytes, "{name}: rusmpp round-trips");
        group.bench_with_input(BenchmarkId::new("ours", name), &bytes, |b, bytes| {
            let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
            b.iter(|| ours(&mut framer, black_box(bytes)))
        });
        group.bench_with_input(BenchmarkId::new("rusmpp", name), &bytes, |b, bytes| {
            b.iter(|| raw_rusmpp(black_box(bytes)))
        });
    }
    group.finish();
}

/// 64 PDUs in one read buffer (a pipelined window), split and decoded.
fn stream(c: &mut Criterion) {
    let samples = samples();
    let mut buf = Vec::new();
    for i in 0..64 {
        buf.extend_from_slice(&samples[i % samples.len()].1);
    }
    let mut group = c.benchmark_group("pdu_stream_64");
    group.throughput(Throughput::Elements(64));
    group.bench_function("ours", |b| {
        let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
        b.iter(|| {
            let mut input: &[u8] = black_box(&buf);
            let mut out = 0usize;
            while let Some(frame) = framer.next_frame(&mut input) {
                let frame = frame.expect("decodes");
                let pdu = frame.body.expect("body");
                out += encode_pdu(
                    frame.header.command_status,
                    frame.header.sequence_number,
                    &pdu,
                    DEFAULT_PDU_LEN_MAX,
                )
                .expect("encodes")
                .len();
            }
            out
        })
    });
    group.bench_function("rusmpp", |b| {
        b.iter(|| {
            let mut src = BytesMut::from(black_box(&buf[..]));
            let mut out = 0usize;
            while src.len() >= 4 {
                let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
                let _ = src.split_to(4);
                let (command, _) = Command::decode(&mut src, len - 4).expect("decodes");
                let body_len = command.length();
                let mut o = vec![0u8; 4 + body_len];
                o[..4].copy_from_slice(&((4 + body_len) as u32).to_be_bytes());
                command.encode(&mut o[4..]);
                out += o.len();
            }
            out
        })
    });
    group.finish();
}

criterion_group!(benches, per_pdu, stream);
criterion_main!(benches);
