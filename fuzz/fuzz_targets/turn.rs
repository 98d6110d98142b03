//! TURN: raw messages from clients over UDP and streams (STUN decoding, the credential and
//! nonce checks, ChannelData), stream framing, datagrams arriving on relay ports, timeouts and
//! closed connections, as a sequence of inputs in virtual time. (Requests signed with valid
//! credentials are covered by the unit tests' mutated inputs in `turn/src/tests.rs`.)
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lkr_turn::{Client, Credentials, Transport, TurnConfig, TurnServer, frame_len};

#[derive(Debug, Arbitrary)]
enum Step {
    /// Bytes from client `client` (0..4) over UDP or a stream.
    FromClient {
        client: u8,
        stream: bool,
        data: Vec<u8>,
    },
    /// Bytes split off a stream the way the driver does.
    Stream(Vec<u8>),
    /// A datagram on a relay port from the media address or elsewhere.
    FromPeer {
        relay: u8,
        media: bool,
        data: Vec<u8>,
    },
    /// Time passes.
    Wait { secs: u16 },
    /// A stream client's connection closes.
    Closed { client: u8 },
}

fn client(n: u8, stream: bool) -> Client {
    Client {
        transport: if stream {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        remote: SocketAddr::from(([10, 0, 0, 2], 40000 + u16::from(n % 4))),
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let media: SocketAddr = "10.0.0.1:7882".parse().unwrap();
    let mut keys = BTreeMap::new();
    keys.insert("k".to_owned(), "s".to_owned());
    let mut config = TurnConfig::new(media);
    config.max_allocations = 4;
    let mut server = TurnServer::new(config, Credentials::new(keys));
    let mut now = Instant::now();
    let unix = 1_800_000_000;
    let mut next_port = 30000u16;
    let mut out = Vec::new();
    for step in steps.into_iter().take(64) {
        match step {
            Step::FromClient {
                client: c,
                stream,
                data,
            } => {
                let mut bind = || {
                    next_port = next_port.wrapping_add(1);
                    Some(SocketAddr::from(([10, 0, 0, 1], next_port)))
                };
                if let Ok(lkr_turn::Handled::Relay { payload, .. }) =
                    server.handle_client(now, unix, client(c, stream), &data, &mut out, &mut bind)
                {
                    assert!(payload.end <= data.len());
                }
            }
            Step::Stream(data) => {
                if let Ok(Some(n)) = frame_len(&data) {
                    assert!(n >= 4);
                }
            }
            Step::FromPeer {
                relay,
                media: from_media,
                data,
            } => {
                let relay = SocketAddr::from(([10, 0, 0, 1], 30001 + u16::from(relay % 8)));
                let from = if from_media {
                    media
                } else {
                    "192.0.2.1:9".parse().unwrap()
                };
                let to = server.handle_peer(now, relay, from, &data, &mut out);
                assert!(
                    from_media || to.is_none(),
                    "only the media address is relayed"
                );
            }
            Step::Wait { secs } => {
                now += Duration::from_secs(u64::from(secs));
                server.handle_timeout(now);
            }
            Step::Closed { client: c } => server.handle_closed(client(c, true)),
        }
        while server.poll_output().is_some() {}
        assert!(server.allocation_count() <= 4);
    }
});
