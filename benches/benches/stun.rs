//! One ICE consent check through the ICE-lite responder, as an idle connected peer sends
//! one every few seconds: the check is scanned, its FINGERPRINT and MESSAGE-INTEGRITY
//! verified, and the signed success response written (`IceLite::handle_stun`). No sockets.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use lkr_ice::{IceLite, write_binding_request};

const SERVER_UFRAG: &str = "srvUfrag";
const SERVER_PWD: &str = "server-password-0123456789";
const CLIENT_UFRAG: &str = "cliUfrag";
const CLIENT_PWD: &str = "client-password-0123456789";

fn consent_check(c: &mut Criterion) {
    let from: SocketAddr = "10.77.0.2:50000".parse().expect("an address");
    let mut ice = IceLite::new(SERVER_UFRAG.into(), SERVER_PWD.into());
    ice.set_remote_credentials(CLIENT_UFRAG.into(), CLIENT_PWD.into());
    let user = format!("{SERVER_UFRAG}:{CLIENT_UFRAG}");
    let mut check = Vec::new();
    write_binding_request(&mut check, [1; 12], &user, SERVER_PWD, 0x6e7f_1eff, 7, true)
        .expect("a check");
    let mut out = Vec::with_capacity(256);
    let now = Instant::now();
    ice.handle_stun(now, from, &check, &mut out)
        .expect("the check passes");
    c.bench_function("stun/consent_check", |b| {
        b.iter(|| {
            out.clear();
            let r = ice.handle_stun(now, from, black_box(&check), &mut out);
            black_box((r.is_ok(), out.len()))
        });
    });
}

criterion_group!(benches, consent_check);
criterion_main!(benches);
