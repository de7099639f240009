//! USSD: the grammar (`ussd::parse`), the router (`route_str`), and the
//! whole MO classification the gateway does per request (text decode,
//! MSISDN normalisation, routing, dedup key: `server::mo::Routing::classify`).
//!
//! Run: `cargo bench --bench ussd`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shortcode_gw::config::ServiceConfig;
use shortcode_gw::load::build_request;
use shortcode_gw::server::mo::{MoAction, Routing};
use shortcode_protocol::smpp::MoMessage;
use shortcode_protocol::ussd::{self, Routed, UssdRouter};

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("ussd_parse");
    group.throughput(Throughput::Elements(1));
    for input in ["*929#", " *100*1*2# ", "*929*12345678901234567890#", "929#"] {
        group.bench_function(format!("{input:?}"), |b| {
            b.iter(|| ussd::parse(black_box(input)))
        });
    }
    group.finish();
}

fn route(c: &mut Criterion) {
    let mut router = UssdRouter::new();
    for (i, code) in ["*929#", "*100#", "*111#", "*102#", "*555#"]
        .iter()
        .enumerate()
    {
        router.add(code, i).expect("valid code");
    }
    let mut group = c.benchmark_group("ussd_route");
    group.throughput(Throughput::Elements(1));
    group.bench_function("configured", |b| {
        b.iter(|| matches!(router.route_str(black_box("*929#")), Routed::Command(0, _)))
    });
    group.bench_function("unknown", |b| {
        b.iter(|| matches!(router.route_str(black_box("*777*1#")), Routed::Unknown))
    });
    group.finish();
}

fn classify(c: &mut Criterion) {
    let routing = Routing::new(&ServiceConfig::default()).expect("default service config");
    let now: chrono::DateTime<chrono::Utc> = "2026-11-22T07:00:00Z".parse().expect("instant");
    let ussd = MoMessage::from_pdu(&build_request(42, 7, false)).expect("MO reads");
    let sms = MoMessage::from_pdu(&build_request(42, 8, true)).expect("MO reads");
    let mut group = c.benchmark_group("mo_classify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ussd_*929#", |b| {
        b.iter(|| {
            matches!(
                routing.classify(black_box(&ussd), now, 0),
                MoAction::Engine { .. }
            )
        })
    });
    group.bench_function("sms_to_9290", |b| {
        b.iter(|| {
            matches!(
                routing.classify(black_box(&sms), now, 0),
                MoAction::Engine { .. }
            )
        })
    });
    group.finish();
}

criterion_group!(benches, parse, route, classify);
criterion_main!(benches);
