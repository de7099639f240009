//! End to end over loopback, MC role: a USSDC/SMSC binds to the gateway.
//!
//! Every test asserts what the peer or the subscriber would notice: the
//! responses on the wire, the USSD answer, the SMS from 9290, and the
//! account's statement and journal in the store.

mod common;

use common::{
    balance, into_mt, is_response_to, monthly_fees, msisdn, sms_from_9290, status_of, WAIT,
};

use std::time::Duration;

use rust_decimal::Decimal;
use shortcode_gw::engine::model::Outcome;
use shortcode_gw::engine::texts::Texts;
use shortcode_gw::peer::{mt_text, sms_parts, ussd_request, EsmePeer, PeerError, PeerEvent};
use shortcode_gw::store::{self, StoreKind};
use shortcode_protocol::segment;
use shortcode_protocol::smpp::{
    encode_header_only, encode_pdu, BindMode, CommandId, CommandStatus, MoMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raw PDUs start their sequence numbers here, far from the session's own.
const RAW_SEQ: u32 = 0x4000_0000;

/// A number no account has (R0).
const STRANGER: &str = "79990000000";

fn command_of(ev: &PeerEvent) -> CommandId {
    match ev {
        PeerEvent::Response { command_id, .. } => *command_id,
        other => panic!("not a response: {other:?}"),
    }
}

/// The PSSR response in USSD session `session`.
fn ussd_answer_in(session: u16) -> impl Fn(&PeerEvent) -> bool {
    move |e| {
        matches!(e, PeerEvent::Mt(m)
            if m.ussd_service_op == Some(17) && m.its_session_info == Some(session))
    }
}

/// Dial `code` from `from` in USSD session `session`; the submit_sm's
/// status and the text of the answer in the same session.
async fn dial(
    peer: &mut EsmePeer,
    from: &str,
    code: &str,
    session: u16,
) -> (CommandStatus, MoMessage) {
    let seq = peer
        .send(ussd_request(from, code, session).to_submit_sm().unwrap())
        .await
        .unwrap();
    let resp = peer.wait_for(WAIT, is_response_to(seq)).await.unwrap();
    let answer = into_mt(
        peer.wait_for(WAIT, ussd_answer_in(session))
            .await
            .expect("a USSD answer in the same session"),
    );
    assert_eq!(answer.dest_addr, from, "answer goes to the dialler");
    (status_of(&resp), answer)
}

async fn stop(gw: common::Gw, peer: EsmePeer) {
    peer.unbind().await.unwrap();
    tokio::time::timeout(WAIT, gw.server.unwrap().shutdown())
        .await
        .expect("shutdown returns");
}

/// A submit_sm as raw bytes with sequence number `seq`.
fn raw_submit(from: &str, code: &str, session: u16, seq: u32) -> Vec<u8> {
    let pdu = ussd_request(from, code, session).to_submit_sm().unwrap();
    encode_pdu(CommandStatus::EsmeRok, seq, &pdu, 8192).unwrap()
}

/// Read one PDU header (and skip its body) from a raw stream.
async fn read_header(stream: &mut TcpStream) -> (u32, CommandId, CommandStatus, u32) {
    let mut head = [0u8; 16];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head))
        .await
        .expect("a PDU in time")
        .expect("a PDU");
    let word = |i: usize| u32::from_be_bytes(head[i..i + 4].try_into().unwrap());
    let len = word(0);
    let mut body = vec![0u8; len as usize - 16];
    stream.read_exact(&mut body).await.unwrap();
    (
        len,
        CommandId::from(word(4)),
        CommandStatus::from(word(8)),
        word(12),
    )
}

// ---------------------------------------------------------------- USSD

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ussd_929_renews_and_answers_in_the_session() {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let (status, answer) = dial(&mut peer, "79000000000", "*929#", 0x3100).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    assert_eq!(answer.its_session_info, Some(0x3100), "session echoed");
    assert!(
        mt_text(&answer).starts_with("Пакет обновлён"),
        "{}",
        mt_text(&answer)
    );
    // The details follow by SMS from the short number (step 6).
    let (_, sms) = sms_from_9290(&mut peer, "79000000000").await;
    assert!(sms.starts_with("«Обнови пакет»: списано"), "{sms}");
    let acct = gw.store.account("79000000000").unwrap().unwrap();
    assert!(acct.account.saved.is_some(), "carried over");
    assert_eq!(monthly_fees(&gw, "79000000000"), 1);
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_r0_to_r6_answers_with_its_text_over_ussd() {
    let gw = common::start(16).await;
    let texts = Texts::default();
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let cases: Vec<(String, Outcome, &str)> = vec![
        (STRANGER.into(), Outcome::UnknownSubscriber, "R0"),
        (msisdn(3), Outcome::Blocked, "R1 financial"),
        (msisdn(4), Outcome::Blocked, "R1 voluntary"),
        (msisdn(5), Outcome::Blocked, "R1 lost SIM"),
        (msisdn(6), Outcome::Blocked, "R1 fraud+other"),
        (msisdn(7), Outcome::UnpaidPeriod, "R2"),
        (msisdn(8), Outcome::NoService, "R3 plan"),
        (msisdn(9), Outcome::NoService, "R3 region"),
        (msisdn(10), Outcome::NoService, "R3 no package service"),
        (msisdn(11), Outcome::DailyBilling, "R4"),
        (msisdn(12), Outcome::FullDiscount, "R5"),
    ];
    for (i, (who, outcome, rule)) in cases.iter().enumerate() {
        let account = |who: &str| gw.store.account(who).unwrap().map(|s| s.account);
        let before = account(who);
        let (status, answer) = dial(&mut peer, who, "*929#", 0x4000 + i as u16 * 2).await;
        assert_eq!(status, CommandStatus::EsmeRok, "{rule}");
        assert_eq!(mt_text(&answer), texts.short(*outcome), "{rule}");
        assert_eq!(account(who), before, "{rule}: no change");
        if before.is_some() {
            let journal = gw.store.journal(Some(who)).unwrap();
            assert_eq!(journal.len(), 1, "{rule}");
            assert_eq!(journal[0].outcome, *outcome, "{rule}");
        }
    }
    // R6: says how much is needed and how much there is.
    let poor = msisdn(2);
    let had = balance(&gw, &poor);
    let (status, answer) = dial(&mut peer, &poor, "*929#", 0x4100).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let text = mt_text(&answer);
    let had_s = shortcode_gw::engine::model::money::format(had);
    assert!(text.starts_with("Недостаточно средств: нужно "), "{text}");
    assert!(text.ends_with(&format!("на счёте {had_s} руб.")), "{text}");
    let needed: Decimal = text
        .trim_start_matches("Недостаточно средств: нужно ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(needed > had, "{text}");
    assert_eq!(balance(&gw, &poor), had, "not charged");
    assert_eq!(monthly_fees(&gw, &poor), 0);
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ussd_code_names_929() {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let who = msisdn(0);
    let had = balance(&gw, &who);
    for (i, code) in ["*100#", "*930#", "hello"].iter().enumerate() {
        let (status, answer) = dial(&mut peer, &who, code, 0x5000 + i as u16 * 2).await;
        assert_eq!(status, CommandStatus::EsmeRok);
        let text = mt_text(&answer);
        assert!(text.starts_with("Неизвестная команда"), "{code}: {text}");
        assert!(text.contains("*929#"), "{code}: {text}");
    }
    assert_eq!(balance(&gw, &who), had);
    let journal = gw.store.journal(Some(&who)).unwrap();
    assert_eq!(journal.len(), 3);
    assert!(journal.iter().all(|j| j.outcome == Outcome::UnknownCommand));
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_ussd_pdu_is_charged_once_and_answered_the_same_g4() {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let who = msisdn(13);
    let had = balance(&gw, &who);
    let (s1, a1) = dial(&mut peer, &who, "*929#", 0x6100).await;
    let after_first = balance(&gw, &who);
    let (s2, a2) = dial(&mut peer, &who, "*929#", 0x6100).await;
    assert_eq!((s1, s2), (CommandStatus::EsmeRok, CommandStatus::EsmeRok));
    assert_eq!(mt_text(&a1), mt_text(&a2), "the original answer");
    assert!(mt_text(&a1).starts_with("Пакет обновлён"));
    assert!(after_first < had);
    assert_eq!(balance(&gw, &who), after_first, "not charged again");
    assert_eq!(monthly_fees(&gw, &who), 1);
    let journal = gw.store.journal(Some(&who)).unwrap();
    assert_eq!(journal.len(), 2, "both journaled (G5)");
    assert!(!journal[0].duplicate && journal[1].duplicate);
    // One confirmation SMS, not two: another subscriber's confirmation,
    // queued after both, arrives with only one for `who` before it.
    let other = msisdn(0);
    let (_, a) = dial(&mut peer, &other, "*929#", 0x6300).await;
    assert!(mt_text(&a).starts_with("Пакет обновлён"));
    let (_, sms) = sms_from_9290(&mut peer, &who).await;
    assert!(sms.starts_with("«Обнови пакет»"), "{sms}");
    sms_from_9290(&mut peer, &other).await;
    assert!(
        peer.wait_for(Duration::ZERO, |e| {
            matches!(e, PeerEvent::Mt(m) if m.source_addr == "9290" && m.dest_addr == who)
        })
        .await
        .is_err(),
        "a second confirmation for the retransmission"
    );
    // A deliberate new request (a new USSD session) is a new renewal; the
    // account has already renewed today, so only the outcome is checked.
    let (_, a3) = dial(&mut peer, &who, "*929#", 0x6200).await;
    let journal = gw.store.journal(Some(&who)).unwrap();
    assert_eq!(journal.len(), 3);
    assert!(
        !journal[2].duplicate,
        "a new session is not a retransmission"
    );
    assert_eq!(journal[2].reply, mt_text(&a3));
    stop(gw, peer).await;
}

// ----------------------------------------------------------------- SMS

/// Send `text` as SMS to 9290 from `who`; every part is acknowledged.
async fn send_sms(peer: &mut EsmePeer, who: &str, text: &str, reference: u8) -> usize {
    let parts = sms_parts(who, "9290", text, reference);
    assert!(!parts.is_empty());
    let mut seqs = Vec::new();
    for p in &parts {
        seqs.push(peer.send(p.to_submit_sm().unwrap()).await.unwrap());
    }
    for seq in seqs {
        let resp = peer.wait_for(WAIT, is_response_to(seq)).await.unwrap();
        assert_eq!(status_of(&resp), CommandStatus::EsmeRok, "part {seq}");
    }
    parts.len()
}

async fn sms_renews(text: &str, expect_parts: usize) {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let who = msisdn(0);
    let had = balance(&gw, &who);
    assert_eq!(send_sms(&mut peer, &who, text, 42).await, expect_parts);
    let (parts, answer) = sms_from_9290(&mut peer, &who).await;
    assert!(answer.starts_with("«Обнови пакет»: списано"), "{answer}");
    assert_eq!(
        parts,
        segment::segment(&answer, 0).unwrap().parts.len(),
        "a long answer is a concatenated SMS"
    );
    assert!(balance(&gw, &who) < had, "charged");
    assert_eq!(monthly_fees(&gw, &who), 1, "one renewal");
    let journal = gw.store.journal(Some(&who)).unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].outcome, Outcome::Renewed);
    assert_eq!(journal[0].request, text, "reassembled text journaled");
    assert_eq!(
        journal[0].reply, answer,
        "the answer SMS is the confirmation"
    );
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_with_an_empty_body_renews() {
    sms_renews("", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_with_latin_text_renews() {
    sms_renews("renew please", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_with_cyrillic_ucs2_text_renews() {
    sms_renews("Обновите пакет", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_part_sms_is_one_renewal() {
    sms_renews(&"Обновите мой пакет, пожалуйста! ".repeat(5), 3).await;
}

// ------------------------------------------------------ SMPP behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_with_rinvpaswd() {
    let gw = common::start(1).await;
    match EsmePeer::connect(gw.addr, "demo", "wrong").await {
        Err(PeerError::BindRefused(s)) => assert_eq!(s, CommandStatus::EsmeRinvpaswd),
        Err(other) => panic!("expected a refused bind, got {other:?}"),
        Ok(_) => panic!("expected a refused bind, got a bind"),
    }
    // The gateway still serves a correct bind.
    let peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_sm_before_bind_is_refused_with_rinvbndsts() {
    let gw = common::start(1).await;
    let mut raw = TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(&raw_submit(&msisdn(0), "*929#", 0x100, 7))
        .await
        .unwrap();
    let (_, id, status, seq) = read_header(&mut raw).await;
    assert_eq!(
        (id, status, seq),
        (CommandId::SubmitSmResp, CommandStatus::EsmeRinvbndsts, 7)
    );
    assert!(gw.store.journal(None).unwrap().is_empty(), "nothing done");
    drop(raw);
    tokio::time::timeout(WAIT, gw.server.unwrap().shutdown())
        .await
        .expect("shutdown returns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_command_id_is_nacked_and_the_link_stays_up() {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let mut pdu = encode_header_only(CommandId::EnquireLink, CommandStatus::EsmeRok, RAW_SEQ);
    pdu[4..8].copy_from_slice(&0x0000_0999u32.to_be_bytes());
    peer.write_raw(&pdu).await.unwrap();
    let nack = peer.wait_for(WAIT, is_response_to(RAW_SEQ)).await.unwrap();
    assert_eq!(command_of(&nack), CommandId::GenericNack);
    assert_eq!(status_of(&nack), CommandStatus::EsmeRinvcmdid);
    let (status, answer) = dial(&mut peer, &msisdn(0), "*929#", 0x100).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    assert!(mt_text(&answer).starts_with("Пакет обновлён"));
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_is_nacked_and_the_next_request_is_served() {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    // command_length 40: a submit_sm whose 24 body octets decode to nothing.
    let mut pdu = encode_header_only(CommandId::SubmitSm, CommandStatus::EsmeRok, RAW_SEQ + 1);
    pdu[0..4].copy_from_slice(&40u32.to_be_bytes());
    pdu.extend_from_slice(&[b'A'; 24]);
    peer.write_raw(&pdu).await.unwrap();
    let nack = peer
        .wait_for(WAIT, is_response_to(RAW_SEQ + 1))
        .await
        .unwrap();
    assert!(
        matches!(
            command_of(&nack),
            CommandId::SubmitSmResp | CommandId::GenericNack
        ),
        "{nack:?}"
    );
    assert_ne!(status_of(&nack), CommandStatus::EsmeRok);
    let (status, answer) = dial(&mut peer, &msisdn(0), "*929#", 0x100).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    assert!(mt_text(&answer).starts_with("Пакет обновлён"));
    assert_eq!(gw.store.journal(None).unwrap().len(), 1);
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_pdu_is_nacked_with_rinvcmdlen_and_the_link_closed() {
    let gw = common::start(1).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let mut pdu = encode_header_only(CommandId::SubmitSm, CommandStatus::EsmeRok, RAW_SEQ + 2);
    pdu[0..4].copy_from_slice(&9000u32.to_be_bytes());
    peer.write_raw(&pdu).await.unwrap();
    let nack = peer
        .wait_for(WAIT, is_response_to(RAW_SEQ + 2))
        .await
        .unwrap();
    assert_eq!(command_of(&nack), CommandId::GenericNack);
    assert_eq!(status_of(&nack), CommandStatus::EsmeRinvcmdlen);
    match peer
        .wait_for(WAIT, |e| matches!(e, PeerEvent::Closed(_)))
        .await
    {
        Ok(PeerEvent::Closed(_)) | Err(PeerError::Closed(_)) => {}
        other => panic!("expected the link closed, got {other:?}"),
    }
    tokio::time::timeout(WAIT, gw.server.unwrap().shutdown())
        .await
        .expect("shutdown returns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enquire_link_is_answered() {
    let gw = common::start(1).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    peer.write_raw(&encode_header_only(
        CommandId::EnquireLink,
        CommandStatus::EsmeRok,
        RAW_SEQ + 3,
    ))
    .await
    .unwrap();
    let resp = peer
        .wait_for(WAIT, is_response_to(RAW_SEQ + 3))
        .await
        .unwrap();
    assert_eq!(command_of(&resp), CommandId::EnquireLinkResp);
    assert_eq!(status_of(&resp), CommandStatus::EsmeRok);
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbind_is_answered_and_the_socket_closes() {
    let gw = common::start(1).await;
    let peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let mut stream = peer.unbind_keep_stream().await.expect("unbind_resp");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("the gateway closes the socket")
        .unwrap();
    assert_eq!(n, 0, "nothing after unbind_resp: {rest:?}");
    tokio::time::timeout(WAIT, gw.server.unwrap().shutdown())
        .await
        .expect("shutdown returns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_window_are_throttled() {
    let mut config = common::listen_config();
    config.smpp.window_max = 10;
    let gw = common::start_with(config, 16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let who = msisdn(0);
    // 30 requests in one write, nothing read meanwhile: the engine cannot
    // answer the first ones before the rest arrive.
    const N: u32 = 30;
    let bytes: Vec<u8> = (0..N)
        .flat_map(|i| raw_submit(&who, "*100#", 0x7000 + i as u16 * 2, RAW_SEQ + 100 + i))
        .collect();
    peer.write_raw(&bytes).await.unwrap();
    let (mut ok, mut throttled) = (0, 0);
    for i in 0..N {
        let resp = peer
            .wait_for(WAIT, is_response_to(RAW_SEQ + 100 + i))
            .await
            .unwrap();
        assert_eq!(command_of(&resp), CommandId::SubmitSmResp);
        match status_of(&resp) {
            CommandStatus::EsmeRok => ok += 1,
            CommandStatus::EsmeRthrottled => throttled += 1,
            other => panic!("request {i}: {other:?}"),
        }
    }
    assert_eq!(ok + throttled, N);
    assert!(throttled > 0, "the window is 10");
    assert!(ok >= 10, "the window is filled first: {ok}");
    // Every request answered OK was done and journaled; none of the
    // throttled ones was.
    assert_eq!(gw.store.journal(Some(&who)).unwrap().len(), ok as usize);
    for _ in 0..ok {
        peer.wait_for(
            WAIT,
            |e| matches!(e, PeerEvent::Mt(m) if m.ussd_service_op == Some(17)),
        )
        .await
        .expect("a USSD answer for each request done");
    }
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_request_in_flight() {
    let mut gw = common::start(64).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let renewable: Vec<String> = (0..64u64)
        .filter(|i| [0, 1, 13, 14, 15].contains(&(i % 16)))
        .map(msisdn)
        .take(8)
        .collect();
    let bytes: Vec<u8> = renewable
        .iter()
        .enumerate()
        .flat_map(|(i, who)| {
            raw_submit(
                who,
                "*929#",
                0x7100 + i as u16 * 2,
                RAW_SEQ + 200 + i as u32,
            )
        })
        .collect();
    peer.write_raw(&bytes).await.unwrap();
    let server = gw.server.take().unwrap();
    let shutdown = tokio::spawn(server.shutdown());
    let mut ok = Vec::new();
    for (i, who) in renewable.iter().enumerate() {
        let resp = peer
            .wait_for(WAIT, is_response_to(RAW_SEQ + 200 + i as u32))
            .await
            .unwrap_or_else(|e| panic!("request {i} unanswered: {e}"));
        match status_of(&resp) {
            CommandStatus::EsmeRok => ok.push(who.clone()),
            CommandStatus::EsmeRthrottled => {}
            other => panic!("request {i}: {other:?}"),
        }
    }
    // The gateway unbinds; the peer answers and the link closes.
    match peer
        .wait_for(WAIT, |e| matches!(e, PeerEvent::Closed(_)))
        .await
    {
        Ok(_) | Err(PeerError::Closed(_)) => {}
        Err(e) => panic!("the gateway did not unbind: {e}"),
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown returns")
        .unwrap();
    // Nothing lost: exactly the requests answered OK are journaled and
    // charged.
    let journal = gw.store.journal(None).unwrap();
    assert_eq!(journal.len(), ok.len(), "journal = OK answers");
    for who in &renewable {
        let done = ok.contains(who);
        assert_eq!(monthly_fees(&gw, who), usize::from(done), "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_confirmation_is_delivered_after_a_restart() {
    let mut gw = common::start(16).await;
    let who = msisdn(0);
    // A transmitter bind cannot carry MT: the confirmation stays queued.
    let mut tx = EsmePeer::connect_mode(gw.addr, "demo", "demo", BindMode::Transmitter)
        .await
        .unwrap();
    let seq = tx
        .send(ussd_request(&who, "*929#", 0x100).to_submit_sm().unwrap())
        .await
        .unwrap();
    let resp = tx.wait_for(WAIT, is_response_to(seq)).await.unwrap();
    assert_eq!(status_of(&resp), CommandStatus::EsmeRok);
    assert_eq!(monthly_fees(&gw, &who), 1);
    assert_eq!(gw.store.outbox(10).unwrap().len(), 1, "queued durably");
    let shutdown = tokio::spawn(gw.server.take().unwrap().shutdown());
    match tx
        .wait_for(WAIT, |e| matches!(e, PeerEvent::Closed(_)))
        .await
    {
        Ok(_) | Err(PeerError::Closed(_)) => {}
        Err(e) => panic!("the gateway did not unbind: {e}"),
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown returns")
        .unwrap();

    // Start again on what is on disk.
    let common::Gw {
        store, dir, config, ..
    } = gw;
    drop(store);
    let store = store::open(StoreKind::Redb, dir.path()).expect("the store reopens");
    assert_eq!(store.outbox(10).unwrap().len(), 1, "survived the restart");
    let gw = common::start_on(dir, store, config).await;
    let mut rx = EsmePeer::connect_mode(gw.addr, "demo", "demo", BindMode::Receiver)
        .await
        .unwrap();
    let (_, sms) = sms_from_9290(&mut rx, &who).await;
    assert!(sms.starts_with("«Обнови пакет»: списано"), "{sms}");
    assert_eq!(monthly_fees(&gw, &who), 1, "not charged again");
    // Acknowledged (the peer answers every deliver_sm): unbind, stop, and
    // the outbox is empty.
    let store = gw.store.clone();
    stop(gw, rx).await;
    assert!(
        store.outbox(10).unwrap().is_empty(),
        "removed once acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ussd_answer_to_a_transmitter_bind_goes_out_on_the_receiver_bind() {
    let gw = common::start(16).await;
    // A USSDC with separate transmitter and receiver binds.
    let mut rx = EsmePeer::connect_mode(gw.addr, "demo", "demo", BindMode::Receiver)
        .await
        .unwrap();
    let mut tx = EsmePeer::connect_mode(gw.addr, "demo", "demo", BindMode::Transmitter)
        .await
        .unwrap();
    let who = msisdn(1);
    let seq = tx
        .send(ussd_request(&who, "*929#", 0x8800).to_submit_sm().unwrap())
        .await
        .unwrap();
    let resp = tx.wait_for(WAIT, is_response_to(seq)).await.unwrap();
    assert_eq!(status_of(&resp), CommandStatus::EsmeRok);
    let answer = into_mt(rx.wait_for(WAIT, ussd_answer_in(0x8800)).await.unwrap());
    assert_eq!(answer.dest_addr, who);
    assert!(mt_text(&answer).starts_with("Пакет обновлён"));
    let (_, sms) = sms_from_9290(&mut rx, &who).await;
    assert!(sms.starts_with("«Обнови пакет»"), "{sms}");
    tx.unbind().await.unwrap();
    stop(gw, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_loses_its_slot_and_does_not_stall_shutdown() {
    let mut config = common::listen_config();
    config.smpp.connections_max = 1;
    config.smpp.write_timeout_ms = 500;
    let gw = common::start_with(config, 4).await;

    // Takes the only slot, floods enquire_link (answered even before a
    // bind) and reads nothing, with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stalled = socket.connect(gw.addr).await.unwrap();
    let (_keep_reader, mut writer) = stalled.into_split();
    let flood = tokio::spawn(async move {
        let one = encode_header_only(CommandId::EnquireLink, CommandStatus::EsmeRok, RAW_SEQ);
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4096).collect();
        // 32 MiB of requests at most, or until the gateway hangs up.
        for _ in 0..512 {
            if writer.write_all(&batch).await.is_err() {
                break;
            }
        }
    });

    // A real USSDC gets the slot once the gateway has given up on it.
    let started = std::time::Instant::now();
    let mut peer = loop {
        match tokio::time::timeout(
            Duration::from_secs(2),
            EsmePeer::connect(gw.addr, "demo", "demo"),
        )
        .await
        {
            Ok(Ok(p)) => break p,
            _ if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok(Err(e)) => panic!("no bind while a peer that never reads holds the slot: {e}"),
            Err(_) => panic!("no bind while a peer that never reads holds the slot"),
        }
    };
    let (status, answer) = dial(&mut peer, &msisdn(1), "*929#", 0x0101).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    assert!(mt_text(&answer).starts_with("Пакет обновлён"));
    flood.abort();
    stop(gw, peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbind_right_behind_a_ussd_request_waits_for_its_answer() {
    let gw = common::start(8).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // The bind bytes an ESME session opens with.
    let mut esme = shortcode_protocol::smpp::Session::esme(
        std::time::Instant::now(),
        shortcode_protocol::smpp::Config::default(),
        shortcode_protocol::smpp::EsmeCredentials::new("demo", "demo"),
    )
    .unwrap();
    s.write_all(&esme.poll_transmit().expect("a bind"))
        .await
        .unwrap();
    let (_, id, status, _) = read_header(&mut s).await;
    assert_eq!(
        (id, status),
        (CommandId::BindTransceiverResp, CommandStatus::EsmeRok)
    );

    // The USSDC sends the MO and its unbind in one write.
    let who = msisdn(1);
    let mut both = raw_submit(&who, "*929#", 0x0202, RAW_SEQ + 1);
    both.extend(encode_header_only(
        CommandId::Unbind,
        CommandStatus::EsmeRok,
        RAW_SEQ + 2,
    ));
    s.write_all(&both).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let (_, id, status, seq) = read_header(&mut s).await;
        seen.push((id, status, seq));
        if id == CommandId::UnbindResp {
            break;
        }
    }
    assert_eq!(
        seen.first(),
        Some(&(CommandId::SubmitSmResp, CommandStatus::EsmeRok, RAW_SEQ + 1)),
        "the MO is answered before the unbind: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&(CommandId::UnbindResp, CommandStatus::EsmeRok, RAW_SEQ + 2))
    );
    assert_eq!(monthly_fees(&gw, &who), 1, "charged once, and told so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_acknowledged_before_a_shutdown_are_not_lost() {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let who = msisdn(0);
    let text = "обновите пакет, пожалуйста: ".repeat(4);
    let parts = sms_parts(&who, "9290", &text, 77);
    assert!(parts.len() >= 2);
    // Only the first part arrives (and is acknowledged) before the stop.
    let seq = peer.send(parts[0].to_submit_sm().unwrap()).await.unwrap();
    let resp = peer.wait_for(WAIT, is_response_to(seq)).await.unwrap();
    assert_eq!(status_of(&resp), CommandStatus::EsmeRok);
    let store = gw.store.clone();
    stop(gw, peer).await;
    let journal = store.journal(Some(&who)).unwrap();
    assert_eq!(
        journal.len(),
        1,
        "the partial message is a request: {journal:?}"
    );
    assert_eq!(journal[0].outcome, Outcome::Renewed);
    assert!(
        text.starts_with(&journal[0].request),
        "{:?}",
        journal[0].request
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ussd_answer_goes_out_before_queued_sms() {
    let mut config = common::listen_config();
    // Two deliver_sm in flight at most, and unacknowledged ones give up soon.
    config.smpp.window_max = 2;
    config.smpp.response_timeout_ms = 300;
    let gw = common::start_with(config, 16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    // A slow SMSC: it acknowledges none of our deliver_sm.
    peer.set_auto_ack(false);
    let sms_part = |e: &PeerEvent| matches!(e, PeerEvent::Mt(m) if m.source_addr == "9290");
    let ussd_answer =
        |e: &PeerEvent| matches!(e, PeerEvent::Mt(m) if m.ussd_service_op == Some(17));

    // An SMS renewal: its confirmation (several parts) takes what the
    // window allows SMS (one slot of two; the other is kept for answers).
    let parts = sms_parts(&msisdn(0), "9290", "обнови", 5);
    let seq = peer.send(parts[0].to_submit_sm().unwrap()).await.unwrap();
    peer.wait_for(WAIT, is_response_to(seq)).await.unwrap();
    peer.wait_for(WAIT, sms_part).await.unwrap();

    // Then a USSD request: its answer must not wait behind the SMS parts.
    let seq = peer
        .send(
            ussd_request(&msisdn(1), "*929#", 0x0303)
                .to_submit_sm()
                .unwrap(),
        )
        .await
        .unwrap();
    peer.wait_for(WAIT, is_response_to(seq)).await.unwrap();
    let next = peer
        .wait_for(WAIT, |e| sms_part(e) || ussd_answer(e))
        .await
        .unwrap();
    assert!(ussd_answer(&next), "an SMS part went first: {next:?}");
}
