//! DTLS as the server meets it: datagrams from a peer into a server endpoint (record demux,
//! the ClientHello collector and its fragment reassembly, repeat-flight detection, then the
//! DTLS stack), with timer firings in between.
//!
//! Input: datagrams framed by a big-endian u16 length; an empty one advances the clock by
//! 500 ms and fires the endpoint's timer.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lkr_dtls_glue::dtls::{DtlsEndpoint, Role};
use lkr_fuzz::{certificate, peer_certificate, split_frames};

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let remote = "198.51.100.7:50000".parse().unwrap();
    let Ok(mut server) = DtlsEndpoint::new(
        Role::Server,
        certificate(),
        peer_certificate().fingerprint(),
        remote,
        now,
    ) else {
        return;
    };
    for datagram in split_frames(data).take(64) {
        if datagram.is_empty() {
            now += Duration::from_millis(500);
            server.handle_timeout(now);
        } else {
            let _ = server.handle_receive(now, datagram);
        }
        while server.poll_transmit().is_some() {}
        while server.poll_event().is_some() {}
        let _ = server.poll_timeout();
        let _ = server.is_connected();
    }
    let _ = server.send_application_data(b"x");
    server.close();
    while server.poll_transmit().is_some() {}
});
