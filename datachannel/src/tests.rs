use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::*;

/// A client and a server transport wired back to back, with a virtual clock.
struct Pair {
    client: SctpTransport,
    server: SctpTransport,
    now: Instant,
    client_events: Vec<DataChannelEvent>,
    server_events: Vec<DataChannelEvent>,
    /// Every packet delivered client → server and server → client.
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
    /// Decides, per client → server packet (by index), whether the network loses it.
    drop_to_server: Box<dyn FnMut(usize) -> bool>,
    /// When each client → server packet was sent, lost or not (its index is its place).
    sent_to_server_at: Vec<Instant>,
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            client: SctpTransport::new(true, now),
            server: SctpTransport::new(false, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            to_server: Vec::new(),
            to_client: Vec::new(),
            drop_to_server: Box::new(|_| false),
            sent_to_server_at: Vec::new(),
        }
    }

    fn established() -> Self {
        let mut pair = Self::new();
        assert!(pair.run_until(|p| p.client.is_established() && p.server.is_established()));
        assert_eq!(pair.take_client_events(), [DataChannelEvent::Established]);
        assert_eq!(pair.take_server_events(), [DataChannelEvent::Established]);
        pair
    }

    /// An established pair with an ordered, reliable channel the client opened (the
    /// server's events so far taken).
    fn with_reliable_channel() -> (Self, u16) {
        let mut pair = Self::established();
        let id = pair.open_reliable();
        (pair, id)
    }

    /// The client opens an ordered, reliable channel; the server's events so far are taken.
    fn open_reliable(&mut self) -> u16 {
        let id = self
            .client
            .open_channel("_reliable", true, None, "")
            .unwrap();
        self.flush();
        self.take_server_events();
        id
    }

    /// Delivers packets both ways until neither side has anything to send.
    fn flush(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(packet) = self.client.poll_transmit(self.now) {
                moved = true;
                let index = self.sent_to_server_at.len();
                self.sent_to_server_at.push(self.now);
                if (self.drop_to_server)(index) {
                    continue;
                }
                self.server.handle_receive(self.now, &packet);
                self.to_server.push(packet);
            }
            while let Some(packet) = self.server.poll_transmit(self.now) {
                moved = true;
                self.client.handle_receive(self.now, &packet);
                self.to_client.push(packet);
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
            }
            while let Some(event) = self.server.poll_event() {
                self.server_events.push(event);
            }
            if !moved {
                return;
            }
        }
        panic!("the two sides never went quiet");
    }

    /// Flushes, then moves the clock to the next timer and fires it on both sides.
    fn tick(&mut self) {
        self.flush();
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        self.now = match next {
            Some(at) if at > self.now => at,
            _ => self.now + Duration::from_millis(1),
        };
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.flush();
    }

    /// Runs until `done` holds, for at most two virtual minutes.
    fn run_until(&mut self, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = self.now + Duration::from_secs(120);
        self.flush();
        while self.now < deadline {
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }

    fn take_client_events(&mut self) -> Vec<DataChannelEvent> {
        std::mem::take(&mut self.client_events)
    }

    fn take_server_events(&mut self) -> Vec<DataChannelEvent> {
        std::mem::take(&mut self.server_events)
    }
}

fn opened(stream_id: u16, label: &str) -> DataChannelEvent {
    DataChannelEvent::ChannelOpen {
        stream_id,
        label: label.to_owned(),
    }
}

fn message(stream_id: u16, binary: bool, data: &[u8]) -> DataChannelEvent {
    DataChannelEvent::Message {
        stream_id,
        binary,
        data: data.to_vec(),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn on_stream(events: &[DataChannelEvent], id: u16) -> Vec<DataChannelEvent> {
    events
        .iter()
        .filter(|event| matches!(event, DataChannelEvent::Message { stream_id, .. } if *stream_id == id))
        .cloned()
        .collect()
}

fn count_messages(events: &[DataChannelEvent]) -> usize {
    events
        .iter()
        .filter(|event| matches!(event, DataChannelEvent::Message { .. }))
        .count()
}

#[test]
fn association_comes_up() {
    let pair = Pair::established();
    assert!(pair.client.is_established());
    assert!(pair.server.is_established());
}

#[test]
fn livekit_channels_open_and_carry_messages_both_ways() {
    let mut pair = Pair::new();

    // The client creates `_reliable` before the association is up, as browsers do.
    let reliable = pair
        .client
        .open_channel("_reliable", true, None, "")
        .unwrap();
    assert_eq!(reliable, 0);
    assert_eq!(
        pair.client.send(reliable, false, b"too early"),
        Err(DataChannelError::NotEstablished)
    );
    assert!(pair.run_until(|p| p.client.is_established() && p.server.is_established()));

    let lossy = pair
        .client
        .open_channel("_lossy", false, Some(0), "")
        .unwrap();
    let data_track = pair
        .client
        .open_channel("_data_track", false, Some(0), "")
        .unwrap();
    assert_eq!(
        (lossy, data_track),
        (2, 4),
        "the DTLS client uses even stream ids"
    );
    pair.flush();

    assert_eq!(
        pair.take_server_events(),
        [
            DataChannelEvent::Established,
            opened(0, "_reliable"),
            opened(2, "_lossy"),
            opened(4, "_data_track"),
        ]
    );
    assert_eq!(
        pair.take_client_events(),
        [
            DataChannelEvent::Established,
            opened(0, "_reliable"),
            opened(2, "_lossy"),
            opened(4, "_data_track"),
        ]
    );
    assert_eq!(
        pair.server.channel(reliable),
        Some(&ChannelInfo {
            label: "_reliable".to_owned(),
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
            protocol: String::new(),
            open: true,
        })
    );
    assert_eq!(
        pair.server.channel(lossy),
        Some(&ChannelInfo {
            label: "_lossy".to_owned(),
            ordered: false,
            max_retransmits: Some(0),
            max_packet_life_time: None,
            protocol: String::new(),
            open: true,
        })
    );
    assert!(pair.client.channel(lossy).unwrap().open);
    assert_eq!(pair.client.channel(lossy).unwrap().max_retransmits, Some(0));

    // Client → server: strings, binaries, empties, a 64 KiB message.
    let big = pattern(65_536);
    pair.client
        .send(reliable, false, "héllo".as_bytes())
        .unwrap();
    pair.client.send(reliable, true, &[0, 1, 2, 255]).unwrap();
    pair.client.send(reliable, false, b"").unwrap();
    pair.client.send(reliable, true, b"").unwrap();
    pair.client.send(reliable, true, &big).unwrap();
    pair.client.send(lossy, true, b"lossy").unwrap();
    pair.client.send(data_track, true, b"frame").unwrap();
    assert!(pair.run_until(|p| count_messages(&p.server_events) == 7));
    // Channels are independent streams: order holds within each, not across them.
    let events = pair.take_server_events();
    assert_eq!(
        on_stream(&events, reliable),
        [
            message(0, false, "héllo".as_bytes()),
            message(0, true, &[0, 1, 2, 255]),
            message(0, false, b""),
            message(0, true, b""),
            message(0, true, &big),
        ]
    );
    assert_eq!(on_stream(&events, lossy), [message(lossy, true, b"lossy")]);
    assert_eq!(
        on_stream(&events, data_track),
        [message(data_track, true, b"frame")]
    );

    // Server → client, on the client's channels, including a message larger than 64 KiB.
    let bigger = pattern(200_000);
    pair.server.send(reliable, false, b"welcome").unwrap();
    pair.server.send(reliable, true, &bigger).unwrap();
    pair.server.send(lossy, false, b"").unwrap();
    assert!(pair.run_until(|p| count_messages(&p.client_events) == 3));
    let events = pair.take_client_events();
    assert_eq!(
        on_stream(&events, reliable),
        [
            message(reliable, false, b"welcome"),
            message(reliable, true, &bigger),
        ]
    );
    assert_eq!(on_stream(&events, lossy), [message(lossy, false, b"")]);
}

#[test]
fn server_opens_a_channel_toward_the_client() {
    let mut pair = Pair::established();
    let id = pair
        .server
        .open_channel("_reliable", true, None, "lk")
        .unwrap();
    assert_eq!(id % 2, 1, "the DTLS server uses odd stream ids");
    assert!(!pair.server.channel(id).unwrap().open);
    pair.flush();

    assert_eq!(pair.take_client_events(), [opened(id, "_reliable")]);
    assert_eq!(pair.take_server_events(), [opened(id, "_reliable")]);
    let info = pair.client.channel(id).unwrap();
    assert!(info.open && info.ordered);
    assert_eq!(info.protocol, "lk");
    assert!(pair.server.channel(id).unwrap().open);

    pair.server.send(id, false, b"down").unwrap();
    pair.client.send(id, true, b"up").unwrap();
    pair.flush();
    assert_eq!(pair.take_client_events(), [message(id, false, b"down")]);
    assert_eq!(pair.take_server_events(), [message(id, true, b"up")]);

    // A second server channel takes the next odd id.
    let next = pair
        .server
        .open_channel("_lossy", false, Some(0), "")
        .unwrap();
    assert_eq!(next, id + 2);
}

#[test]
fn server_channels_created_before_the_init_arrive_open_once_up() {
    let mut pair = Pair::new();
    // The server creates LiveKit's channels for the subscriber connection before the
    // client's INIT has arrived.
    let ids: Vec<u16> = ["_reliable", "_lossy", "_data_track"]
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let reliable = i == 0;
            pair.server
                .open_channel(label, reliable, (!reliable).then_some(0), "")
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 3, 5]);
    assert!(pair.run_until(|p| p.client_events.len() == 4 && p.server_events.len() == 4));
    assert_eq!(
        pair.take_client_events(),
        [
            DataChannelEvent::Established,
            opened(1, "_reliable"),
            opened(3, "_lossy"),
            opened(5, "_data_track"),
        ]
    );
    assert_eq!(
        pair.client
            .channel(3)
            .map(|info| (info.ordered, info.max_retransmits)),
        Some((false, Some(0)))
    );
    pair.server.send(5, true, b"track frame").unwrap();
    pair.flush();
    assert!(
        pair.client_events
            .contains(&message(5, true, b"track frame"))
    );
}

#[test]
fn closing_a_channel_reaches_both_sides() {
    let mut pair = Pair::established();
    let keep = pair
        .client
        .open_channel("_reliable", true, None, "")
        .unwrap();
    let gone = pair
        .client
        .open_channel("_lossy", false, Some(0), "")
        .unwrap();
    pair.flush();
    pair.take_client_events();
    pair.take_server_events();

    pair.client.close_channel(gone).unwrap();
    assert_eq!(
        pair.client.send(gone, true, b"x"),
        Err(DataChannelError::ChannelClosing(gone))
    );
    assert!(pair.run_until(|p| !p.client_events.is_empty() && !p.server_events.is_empty()));
    assert_eq!(
        pair.take_server_events(),
        [DataChannelEvent::ChannelClosed { stream_id: gone }]
    );
    assert_eq!(
        pair.take_client_events(),
        [DataChannelEvent::ChannelClosed { stream_id: gone }]
    );
    assert_eq!(pair.server.channel(gone), None);
    assert_eq!(
        pair.server.send(gone, true, b"x"),
        Err(DataChannelError::UnknownChannel(gone))
    );

    // The other channel is untouched.
    pair.server.send(keep, false, b"still here").unwrap();
    pair.flush();
    assert_eq!(
        pair.take_client_events(),
        [message(keep, false, b"still here")]
    );
}

#[test]
fn peer_abort_closes_and_a_restarted_peer_is_accepted() {
    let (mut pair, id) = Pair::with_reliable_channel();

    // An ABORT (RFC 4960 §3.3.7) with the association's verification tag, as the client's
    // packets carry it.
    let tag = pair.to_server.last().unwrap()[4..8].to_vec();
    let mut abort = vec![0x13, 0x88, 0x13, 0x88];
    abort.extend_from_slice(&tag);
    abort.extend_from_slice(&[0, 0, 0, 0, 6, 0, 0, 4]);
    fix_checksum(&mut abort);
    pair.server.handle_receive(pair.now, &abort);
    pair.flush();
    assert_eq!(pair.take_server_events(), [DataChannelEvent::Closed]);
    assert!(!pair.server.is_established());
    assert_eq!(pair.server.channel(id), None);
    assert_eq!(
        pair.server.send(id, true, b"x"),
        Err(DataChannelError::Closed)
    );

    // The client side starts over with a new association; the server takes it.
    pair.client = SctpTransport::new(true, pair.now);
    pair.client_events.clear();
    assert!(pair.run_until(|p| p.client.is_established() && p.server.is_established()));
    assert_eq!(pair.take_server_events(), [DataChannelEvent::Established]);
    let id = pair
        .client
        .open_channel("_reliable", true, None, "")
        .unwrap();
    pair.client.send(id, false, b"again").unwrap();
    pair.flush();
    assert_eq!(
        pair.take_server_events(),
        [opened(id, "_reliable"), message(id, false, b"again")]
    );
}

/// (stream id, unordered flag, PPID) of every DATA chunk in `packets` (RFC 4960 §3.3.1).
fn data_chunks(packets: &[Vec<u8>]) -> Vec<(u16, bool, u32)> {
    let mut found = Vec::new();
    for packet in packets {
        let mut at = 12;
        while at + 4 <= packet.len() {
            let kind = packet[at];
            let flags = packet[at + 1];
            let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
            if len < 4 {
                break;
            }
            if kind == 0 && len >= 16 {
                let stream = u16::from_be_bytes([packet[at + 8], packet[at + 9]]);
                let ppid = u32::from_be_bytes([
                    packet[at + 12],
                    packet[at + 13],
                    packet[at + 14],
                    packet[at + 15],
                ]);
                found.push((stream, flags & 0x04 != 0, ppid));
            }
            at += len.next_multiple_of(4);
        }
    }
    found
}

#[test]
fn unordered_channel_goes_ordered_until_acknowledged() {
    let mut pair = Pair::established();
    let lossy = pair
        .client
        .open_channel("_lossy", false, Some(0), "")
        .unwrap();
    // Sent before the ACK can have arrived: must not overtake the OPEN.
    pair.client.send(lossy, true, b"early").unwrap();
    pair.flush();
    assert_eq!(
        pair.take_server_events(),
        [opened(lossy, "_lossy"), message(lossy, true, b"early")]
    );
    let before = pair.to_server.len();
    pair.client.send(lossy, true, b"late").unwrap();
    pair.flush();
    assert_eq!(pair.take_server_events(), [message(lossy, true, b"late")]);

    let early = data_chunks(&pair.to_server[..before]);
    assert!(early.contains(&(lossy, false, 50)), "DCEP goes ordered");
    assert!(
        early.contains(&(lossy, false, 53)),
        "early data goes ordered"
    );
    assert_eq!(data_chunks(&pair.to_server[before..]), [(lossy, true, 53)]);

    // The server answers on the same channel unordered from the start: it sent the ACK.
    let before = pair.to_client.len();
    pair.server.send(lossy, false, b"down").unwrap();
    pair.flush();
    assert_eq!(data_chunks(&pair.to_client[before..]), [(lossy, true, 51)]);
}

#[test]
fn refused_calls() {
    let (mut pair, id) = Pair::with_reliable_channel();
    assert_eq!(
        pair.client.send(99, false, b"x"),
        Err(DataChannelError::UnknownChannel(99))
    );
    let too_big = vec![0u8; MAX_MESSAGE_SIZE as usize + 1];
    assert!(matches!(
        pair.client.send(id, true, &too_big),
        Err(DataChannelError::MessageTooLarge { .. })
    ));
    pair.client.set_remote_max_message_size(1000);
    assert!(matches!(
        pair.client.send(id, true, &[0; 1001]),
        Err(DataChannelError::MessageTooLarge {
            len: 1001,
            max: 1000
        })
    ));
    pair.client.send(id, true, &[0; 1000]).unwrap();
    let long = "x".repeat(70_000);
    assert_eq!(
        pair.client.open_channel(&long, true, None, ""),
        Err(DataChannelError::LabelTooLong)
    );
}

#[test]
fn reliable_messages_survive_packet_loss() {
    let (mut pair, id) = Pair::with_reliable_channel();

    // Lose every third client → server packet from here on.
    pair.drop_to_server = Box::new(|index| index % 3 == 2);
    let messages: Vec<Vec<u8>> = (0..40).map(|i| pattern(1000 + i * 700)).collect();
    for data in &messages {
        pair.client.send(id, true, data).unwrap();
    }
    assert!(pair.run_until(|p| count_messages(&p.server_events) == messages.len()));
    let expected: Vec<_> = messages
        .iter()
        .map(|data| message(id, true, data))
        .collect();
    assert_eq!(pair.take_server_events(), expected);
}

#[test]
fn after_a_long_outage_a_waiting_message_is_retried_within_rto_max() {
    let (mut pair, id) = Pair::with_reliable_channel();

    // The path is down for a minute: every client → server packet is lost meanwhile.
    let down = std::rc::Rc::new(std::cell::Cell::new(true));
    let path = down.clone();
    pair.drop_to_server = Box::new(move |_| path.get());
    let start = pair.now;
    let first = pair.sent_to_server_at.len();
    pair.client.send(id, true, b"held").unwrap();
    while pair.now < start + Duration::from_secs(60) {
        pair.tick();
    }
    assert_eq!(count_messages(&pair.server_events), 0);
    // The timer backed off, but never past 3 s between two tries (libwebrtc's cap too).
    let rto_max = Duration::from_secs(3);
    let tries = &pair.sent_to_server_at[first..];
    assert!(tries.len() >= 20, "{} tries in 60 s", tries.len());
    let longest = tries.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest <= rto_max, "{longest:?} between two tries");

    // Back: the message arrives by the next try, at most 3 s later.
    down.set(false);
    let back = pair.now;
    assert!(pair.run_until(|p| count_messages(&p.server_events) == 1));
    assert!(
        pair.now - back <= rto_max,
        "{:?} after the return",
        pair.now - back
    );
    assert_eq!(pair.take_server_events(), [message(id, true, b"held")]);
}

/// Replaces the CRC32c of an SCTP packet (RFC 4960 §6.8; little-endian on the wire, as
/// sctp-proto writes it) so that a mutated packet gets past the checksum.
fn fix_checksum(packet: &mut [u8]) {
    if packet.len() < 12 {
        return;
    }
    packet[8..12].fill(0);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(packet);
    packet[8..12].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5c7b);
    let now = Instant::now();

    // Noise into fresh transports on both sides.
    let mut client = SctpTransport::new(true, now);
    let mut server = SctpTransport::new(false, now);
    for _ in 0..5_000 {
        let len = rng.random_range(0..300);
        let mut packet: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        client.handle_receive(now, &packet);
        server.handle_receive(now, &packet);
        fix_checksum(&mut packet);
        client.handle_receive(now, &packet);
        server.handle_receive(now, &packet);
        while client.poll_transmit(now).is_some() {}
        while server.poll_transmit(now).is_some() {}
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
    }

    // Record a real session, then replay truncated and mutated copies of its own packets
    // into it (with valid checksums and verification tags, so they reach the chunk parsers
    // and the association).
    for round in 0..40 {
        let mut pair = Pair::established();
        let id = pair
            .client
            .open_channel("_reliable", true, None, "")
            .unwrap();
        pair.server
            .open_channel("_lossy", false, Some(0), "")
            .unwrap();
        pair.flush();
        pair.client.send(id, true, &pattern(5000)).unwrap();
        pair.server.send(id, false, b"hi").unwrap();
        pair.flush();
        if round % 2 == 0 {
            pair.client.close_channel(id).unwrap();
            pair.run_until(|p| p.server.channel(id).is_none());
        }
        let to_server = pair.to_server.clone();
        let to_client = pair.to_client.clone();
        assert!(!to_server.is_empty() && !to_client.is_empty());

        for _ in 0..200 {
            let (source, to_client_side) = if rng.random() {
                (&to_server, false)
            } else {
                (&to_client, true)
            };
            let mut packet = source[rng.random_range(0..source.len())].clone();
            if round % 3 == 0 {
                let end = rng.random_range(0..=packet.len());
                packet.truncate(end);
            } else {
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(12..packet.len());
                    packet[at] = rng.random();
                }
            }
            fix_checksum(&mut packet);
            if to_client_side {
                pair.client.handle_receive(pair.now, &packet);
            } else {
                pair.server.handle_receive(pair.now, &packet);
            }
            pair.tick();
            pair.take_client_events();
            pair.take_server_events();
            let _ = pair.client.send(id, false, b"still talking?");
        }
    }
}

/// A pair whose server side has `limits`.
fn established_with_server_limits(limits: SctpLimits) -> Pair {
    let mut pair = Pair::new();
    pair.server = SctpTransport::with_limits(false, pair.now, limits);
    assert!(pair.run_until(|p| p.client.is_established() && p.server.is_established()));
    pair.take_client_events();
    pair.take_server_events();
    pair
}

#[test]
fn channels_past_the_cap_and_long_labels_are_refused() {
    let mut pair = established_with_server_limits(SctpLimits {
        max_channels: 3,
        max_label_len: 16,
        ..SctpLimits::default()
    });
    let long = "x".repeat(17);
    let mut ids = Vec::new();
    for label in ["a", "b", long.as_str(), "c", "d", "e"] {
        ids.push(pair.client.open_channel(label, true, None, "").unwrap());
    }
    pair.run_until(|p| p.server.refused_channels() >= 3);
    let server_events = pair.take_server_events();
    let opened: Vec<&DataChannelEvent> = server_events
        .iter()
        .filter(|e| matches!(e, DataChannelEvent::ChannelOpen { .. }))
        .collect();
    assert_eq!(opened.len(), 3, "{server_events:?}");
    assert_eq!(pair.server.channel_ids().count(), 3);
    assert_eq!(pair.server.refused_channels(), 3);
    // The refused ones close on the client's side; the others carry messages.
    assert!(pair.run_until(|p| p.client.channel_ids().count() == 3));
    for id in pair.client.channel_ids().collect::<Vec<_>>() {
        pair.client.send(id, true, b"hi").unwrap();
    }
    pair.flush();
    assert_eq!(count_messages(&pair.take_server_events()), 3);
    // Our own side keeps to the same caps.
    assert_eq!(
        pair.server.open_channel("f", true, None, ""),
        Err(DataChannelError::TooManyChannels(3))
    );
    assert_eq!(
        pair.server.open_channel(&long, true, None, ""),
        Err(DataChannelError::LabelTooLong)
    );
}

#[test]
fn a_peer_that_never_acknowledges_cannot_grow_the_send_buffer() {
    let limit = 64 * 1024;
    let mut pair = established_with_server_limits(SctpLimits {
        max_buffered_bytes: limit,
        ..SctpLimits::default()
    });
    let id = pair.open_reliable();
    // The client stops reading: nothing the server sends is delivered or acknowledged.
    let chunk = pattern(1024);
    let mut sent = 0;
    let mut refused = 0;
    for _ in 0..1000 {
        match pair.server.send(id, true, &chunk) {
            Ok(()) => sent += 1,
            Err(DataChannelError::BufferFull { limit: l, .. }) => {
                assert_eq!(l, limit);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
        while pair.server.poll_transmit(pair.now).is_some() {}
    }
    assert!(sent <= 64, "{sent}");
    assert_eq!(sent + refused, 1000);
    assert_eq!(pair.server.dropped_messages(), refused as u64);
    assert!(pair.server.buffered_amount() <= limit);
}
