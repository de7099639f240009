//! End to end over loopback, MC role: a USSDC/SMSC binds to the gateway.

mod common;

use std::time::Duration;

use shortcode_gw::peer::{mt_text, ussd_request, EsmePeer, PeerEvent};
use shortcode_protocol::smpp::CommandStatus;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ussd_929_renews_and_answers_in_the_session() {
    let gw = common::start(16).await;
    let mut peer = EsmePeer::connect(gw.addr, "demo", "demo").await.unwrap();
    let mo = ussd_request("79000000000", "*929#", 0x3100);
    let seq = peer.send(mo.to_submit_sm().unwrap()).await.unwrap();
    let events = peer
        .collect_until(WAIT, |evs| {
            evs.iter()
                .any(|e| matches!(e, PeerEvent::Mt(m) if m.ussd_service_op == Some(17)))
        })
        .await;
    let resp = events.iter().find_map(|e| match e {
        PeerEvent::Response { seq: s, status, .. } if *s == seq => Some(*status),
        _ => None,
    });
    assert_eq!(resp, Some(CommandStatus::EsmeRok));
    let answer = events
        .iter()
        .find_map(|e| match e {
            PeerEvent::Mt(m) if m.ussd_service_op == Some(17) => Some(m.clone()),
            _ => None,
        })
        .expect("a PSSR response");
    assert_eq!(answer.its_session_info, Some(0x3100), "session echoed");
    assert_eq!(answer.dest_addr, "79000000000");
    assert!(
        mt_text(&answer).starts_with("Пакет обновлён"),
        "{}",
        mt_text(&answer)
    );
    let acct = gw.store.account("79000000000").unwrap().unwrap();
    assert!(acct.account.saved.is_some(), "carried over");
    peer.unbind().await.unwrap();
    gw.server.unwrap().shutdown().await;
}
