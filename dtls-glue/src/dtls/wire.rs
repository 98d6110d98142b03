//! Just enough of the DTLS 1.2 wire format (RFC 6347 §4.1, §4.2.2) to screen datagrams, to
//! recognise a peer repeating its previous flight, and to read the SRTP profiles a ClientHello
//! offers (RFC 5764 §4.1.1) before the handshake proper starts.
//!
//! Everything here reads through bounds-checked slice accessors (`get`, `split_at_checked`)
//! and indexes only into slices those returned, so a datagram of any shape gets an error, not
//! a panic.

/// `ChangeCipherSpec` content type.
pub(super) const CHANGE_CIPHER_SPEC: u8 = 20;
/// `Alert` content type.
pub(super) const ALERT: u8 = 21;
/// `Handshake` content type.
pub(super) const HANDSHAKE: u8 = 22;
/// `ApplicationData` content type.
pub(super) const APPLICATION_DATA: u8 = 23;

/// Record header: type (1), version (2), epoch (2), sequence number (6), length (2).
const RECORD_HEADER_LEN: usize = 13;
/// Handshake header: type (1), length (3), message_seq (2), fragment_offset (3),
/// fragment_length (3).
const HANDSHAKE_HEADER_LEN: usize = 12;
/// `client_hello` handshake type.
const CLIENT_HELLO: u8 = 1;
/// `use_srtp` extension type (RFC 5764 §4.1.1).
const USE_SRTP: u16 = 14;

/// The largest ClientHello we reassemble. Chromium's, with a post-quantum key share, is about
/// 1.4 KB; anything near this limit is not a WebRTC peer.
const MAX_CLIENT_HELLO_LEN: usize = 16 * 1024;
/// The most datagram bytes held while waiting for a whole first ClientHello.
const MAX_BUFFERED_BYTES: usize = 32 * 1024;

// Caps on what a peer's handshake fragments can make the endpoint (and the DTLS stack behind
// it, which keeps every fragment it is given and rescans them all on each one) hold or do. A
// WebRTC handshake has about eight messages of at most a few KB, each in a few fragments,
// repeated a handful of times when datagrams are lost; anything beyond these is refused
// before the stack sees it, so one peer's datagrams cost time linear in their size.

/// Plaintext handshake fragments in one datagram.
const MAX_FRAGMENTS_PER_DATAGRAM: usize = 64;
/// Fragments of one handshake message over the association's life, repeats included.
pub(super) const MAX_FRAGMENTS_PER_MESSAGE: u32 = 64;
/// Largest handshake message (a certificate chain of a WebRTC peer is far smaller).
const MAX_MESSAGE_LEN: u32 = 32 * 1024;
/// Fragment bytes of one handshake message over the association's life, repeats included.
const MAX_MESSAGE_BYTES: u32 = 4 * MAX_MESSAGE_LEN;
/// Distinct handshake messages (message_seq) tracked; more are refused.
pub(super) const MAX_TRACKED_MESSAGES: usize = 16;
/// Encrypted handshake records (the peer's Finished and its repeats) over the association's
/// life; the stack parses those itself, so they are only counted.
pub(super) const MAX_ENCRYPTED_HANDSHAKE_RECORDS: u32 = 32;

/// Why a datagram was refused before it reached the DTLS stack.
pub(super) type Malformed = &'static str;

/// One DTLS record inside a datagram.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record<'a> {
    pub(super) content_type: u8,
    pub(super) epoch: u16,
    pub(super) body: &'a [u8],
}

/// Splits a datagram into records, checking every header: known content type, DTLS 1.0 or 1.2
/// version, a non-empty body that fits. A datagram is refused whole if any record is bad: the
/// DTLS stack would refuse it too, silently.
pub(super) fn records(datagram: &[u8]) -> Result<Vec<Record<'_>>, Malformed> {
    let mut out = Vec::new();
    let mut rest = datagram;
    if rest.is_empty() {
        return Err("empty datagram");
    }
    while !rest.is_empty() {
        let header = rest
            .get(..RECORD_HEADER_LEN)
            .ok_or("truncated record header")?;
        let content_type = header[0];
        if !(CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&content_type) {
            return Err("unknown record content type");
        }
        // RFC 6347 §4.1: {254, 253} for DTLS 1.2; {254, 255} (DTLS 1.0) is what many clients
        // put on their first ClientHello record.
        if header[1] != 0xfe || !(header[2] == 0xfd || header[2] == 0xff) {
            return Err("unsupported record version");
        }
        let epoch = u16::from_be_bytes([header[3], header[4]]);
        let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        if len == 0 {
            return Err("empty record");
        }
        let body = rest
            .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)
            .ok_or("record longer than the datagram")?;
        out.push(Record {
            content_type,
            epoch,
            body,
        });
        rest = &rest[RECORD_HEADER_LEN + len..];
    }
    Ok(out)
}

/// One handshake message fragment from a plaintext (epoch 0) record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fragment<'a> {
    pub(super) msg_type: u8,
    pub(super) length: u32,
    pub(super) message_seq: u16,
    pub(super) offset: u32,
    pub(super) body: &'a [u8],
}

impl Fragment<'_> {
    /// Where this fragment sits in its message, without its bytes.
    pub(super) fn span(&self) -> FragmentSpan {
        FragmentSpan {
            message_seq: self.message_seq,
            length: self.length,
            start: self.offset,
            end: self.offset + self.body.len() as u32,
        }
    }
}

/// Which bytes of which handshake message a fragment carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FragmentSpan {
    message_seq: u16,
    length: u32,
    start: u32,
    end: u32,
}

#[cfg(test)]
impl FragmentSpan {
    pub(super) fn new(message_seq: u16, length: u32, start: u32, end: u32) -> Self {
        Self {
            message_seq,
            length,
            start,
            end,
        }
    }
}

fn u24(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(3)
        .fold(0, |acc, byte| (acc << 8) | u32::from(*byte))
}

/// The handshake fragments of an epoch-0 handshake record (a record may carry several).
pub(super) fn fragments(body: &[u8]) -> Result<Vec<Fragment<'_>>, Malformed> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let header = rest
            .get(..HANDSHAKE_HEADER_LEN)
            .ok_or("truncated handshake header")?;
        let length = u24(&header[1..4]);
        let message_seq = u16::from_be_bytes([header[4], header[5]]);
        let offset = u24(&header[6..9]);
        let fragment_len = u24(&header[9..12]);
        if u64::from(offset) + u64::from(fragment_len) > u64::from(length) {
            return Err("handshake fragment beyond its message");
        }
        if length > MAX_MESSAGE_LEN {
            return Err("handshake message too large");
        }
        if fragment_len == 0 && length != 0 {
            // Carries nothing, yet the DTLS stack would keep it and rescan it forever.
            return Err("empty handshake fragment");
        }
        let end = HANDSHAKE_HEADER_LEN + fragment_len as usize;
        let fragment_body = rest
            .get(HANDSHAKE_HEADER_LEN..end)
            .ok_or("handshake fragment longer than its record")?;
        out.push(Fragment {
            msg_type: header[0],
            length,
            message_seq,
            offset,
            body: fragment_body,
        });
        rest = &rest[end..];
    }
    Ok(out)
}

/// What a datagram carries that the endpoint cares about before handing it on.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Where its plaintext handshake fragments sit in their messages.
    pub(super) fragments: Vec<FragmentSpan>,
    /// Whether it holds nothing but plaintext handshake records.
    pub(super) only_plaintext_handshake: bool,
    /// The first plaintext alert, as (level, description).
    pub(super) alert: Option<(u8, u8)>,
    /// Encrypted (epoch > 0) handshake records.
    pub(super) encrypted_handshake: u32,
}

/// Screens a datagram (see [`records`]) and lists its plaintext handshake fragments and alert.
/// Encrypted records (epoch > 0) are passed over: only the DTLS stack can read them.
pub(super) fn scan(datagram: &[u8]) -> Result<Scan, Malformed> {
    let mut scan = Scan {
        only_plaintext_handshake: true,
        ..Scan::default()
    };
    for record in records(datagram)? {
        if record.epoch != 0 || record.content_type != HANDSHAKE {
            scan.only_plaintext_handshake = false;
        }
        if record.epoch != 0 {
            if record.content_type == HANDSHAKE {
                scan.encrypted_handshake += 1;
            }
            continue;
        }
        match record.content_type {
            HANDSHAKE => {
                for fragment in fragments(record.body)? {
                    if scan.fragments.len() == MAX_FRAGMENTS_PER_DATAGRAM {
                        return Err("too many handshake fragments in one datagram");
                    }
                    scan.fragments.push(fragment.span());
                }
            }
            ALERT => {
                if let (None, [level, description]) = (scan.alert, record.body) {
                    scan.alert = Some((*level, *description));
                }
            }
            _ => {}
        }
    }
    Ok(scan)
}

/// Sorted, disjoint, non-touching byte ranges of one message received so far. Its length is
/// bounded by the fragments a message may have ([`MAX_FRAGMENTS_PER_MESSAGE`]), and adding a
/// range costs time linear in it: no sorting, no new allocation once grown.
#[derive(Debug, Default, Clone)]
struct Ranges(Vec<(u32, u32)>);

impl Ranges {
    fn add(&mut self, start: u32, end: u32) {
        // Ranges [first, past) overlap or touch [start, end]; they merge into one.
        let first = self.0.partition_point(|r| r.1 < start);
        let past = self.0.partition_point(|r| r.0 <= end);
        if first >= past {
            self.0.insert(first, (start, end));
        } else {
            let merged = (start.min(self.0[first].0), end.max(self.0[past - 1].1));
            self.0[first] = merged;
            self.0.drain(first + 1..past);
        }
    }

    fn covers(&self, length: u32) -> bool {
        self.0.as_slice() == [(0, length)]
    }
}

/// One of the peer's handshake messages: what arrived of it, and what it cost so far.
#[derive(Debug, Clone)]
struct TrackedMessage {
    seq: u16,
    length: u32,
    ranges: Ranges,
    fragments: u32,
    bytes: u32,
}

/// The peer's plaintext handshake messages received so far, to tell a repeated flight
/// (RFC 6347 §4.2.4) from new data however the peer fragments its retransmission, and to
/// hold the peer to the fragment caps above.
#[derive(Debug, Default, Clone)]
pub(super) struct PeerMessages(Vec<TrackedMessage>);

impl PeerMessages {
    /// Whether every fragment belongs to a message already received whole.
    pub(super) fn all_complete(&self, fragments: &[FragmentSpan]) -> bool {
        fragments.iter().all(|fragment| {
            self.0.iter().any(|m| {
                m.seq == fragment.message_seq
                    && m.length == fragment.length
                    && m.ranges.covers(m.length)
            })
        })
    }

    /// Notes the fragments of a datagram, or refuses the datagram whole (noting nothing) if
    /// one of them goes past a cap.
    pub(super) fn admit(&mut self, fragments: &[FragmentSpan]) -> Result<(), Malformed> {
        if fragments.is_empty() {
            return Ok(());
        }
        let mut next = self.clone();
        for fragment in fragments {
            next.note(fragment)?;
        }
        *self = next;
        Ok(())
    }

    fn note(&mut self, fragment: &FragmentSpan) -> Result<(), Malformed> {
        let index = match self.0.iter().position(|m| m.seq == fragment.message_seq) {
            Some(index) => index,
            None if self.0.len() < MAX_TRACKED_MESSAGES => {
                self.0.push(TrackedMessage {
                    seq: fragment.message_seq,
                    length: fragment.length,
                    ranges: Ranges::default(),
                    fragments: 0,
                    bytes: 0,
                });
                self.0.len() - 1
            }
            None => return Err("too many handshake messages"),
        };
        let message = &mut self.0[index];
        message.fragments += 1;
        message.bytes = message
            .bytes
            .saturating_add(fragment.end.saturating_sub(fragment.start));
        if message.fragments > MAX_FRAGMENTS_PER_MESSAGE {
            return Err("too many fragments of one handshake message");
        }
        if message.bytes > MAX_MESSAGE_BYTES {
            return Err("too many bytes of one handshake message");
        }
        // A fragment claiming another length for the message counts, but adds no range.
        if message.length == fragment.length {
            message.ranges.add(fragment.start, fragment.end);
        }
        Ok(())
    }
}

/// Whether a datagram we produced carries handshake messages (or ChangeCipherSpec), and so
/// belongs to a flight, rather than only alerts or application data.
pub(super) fn is_flight_datagram(datagram: &[u8]) -> bool {
    records(datagram).is_ok_and(|records| {
        records
            .iter()
            .any(|r| r.content_type == HANDSHAKE || r.content_type == CHANGE_CIPHER_SPEC)
    })
}

/// The RFC 5246 §7.2 name of an alert description, for failure messages.
pub(super) fn alert_name(description: u8) -> &'static str {
    match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        90 => "user_canceled",
        110 => "unsupported_extension",
        _ => "unknown",
    }
}

/// What [`ClientHelloCollector::push`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Collected {
    /// Part of the first ClientHello is still missing.
    Pending,
    /// The first ClientHello is whole. `offered_profiles` is its `use_srtp` list in the
    /// client's order (`None` without the extension or when the message does not parse);
    /// `datagrams` are all the datagrams that carried it, in arrival order, for the DTLS stack.
    Complete {
        offered_profiles: Option<Vec<u16>>,
        datagrams: Vec<Vec<u8>>,
    },
}

/// Reassembles the peer's first ClientHello, which may come in several fragments and
/// datagrams (Chromium's always does), so that a server can read the SRTP profiles offered
/// before it configures its DTLS stack.
#[derive(Debug, Default)]
pub(super) struct ClientHelloCollector {
    datagrams: Vec<Vec<u8>>,
    buffered: usize,
    message: Option<PartialMessage>,
}

#[derive(Debug)]
struct PartialMessage {
    message_seq: u16,
    body: Vec<u8>,
    covered: Ranges,
}

impl PartialMessage {
    fn add(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if let Some(target) = self.body.get_mut(offset..end) {
            target.copy_from_slice(bytes);
            // Both fit in u32: `fragments` checked them against a 24-bit message length.
            self.covered.add(offset as u32, end as u32);
        }
    }

    fn is_complete(&self) -> bool {
        self.covered.covers(self.body.len() as u32)
    }
}

impl ClientHelloCollector {
    /// Takes a datagram that arrived before the handshake started. Datagrams carrying no
    /// fragment of the first ClientHello are refused (and not kept).
    pub(super) fn push(&mut self, datagram: &[u8]) -> Result<Collected, Malformed> {
        if self.buffered + datagram.len() > MAX_BUFFERED_BYTES {
            return Err("too much data before a whole ClientHello");
        }
        let mut relevant = false;
        for record in records(datagram)? {
            if record.epoch != 0 || record.content_type != HANDSHAKE {
                continue;
            }
            for fragment in fragments(record.body)? {
                if fragment.msg_type != CLIENT_HELLO {
                    continue;
                }
                let length = fragment.length as usize;
                if length > MAX_CLIENT_HELLO_LEN {
                    return Err("ClientHello too large");
                }
                let message = self.message.get_or_insert_with(|| PartialMessage {
                    message_seq: fragment.message_seq,
                    body: vec![0; length],
                    covered: Ranges::default(),
                });
                if message.message_seq != fragment.message_seq || message.body.len() != length {
                    // A fragment of some other ClientHello; the stack will see it later.
                    continue;
                }
                message.add(fragment.offset as usize, fragment.body);
                relevant = true;
            }
        }
        if !relevant {
            return Err("no ClientHello before the handshake started");
        }
        self.buffered += datagram.len();
        self.datagrams.push(datagram.to_vec());
        match &self.message {
            Some(message) if message.is_complete() => Ok(Collected::Complete {
                offered_profiles: offered_srtp_profiles(&message.body),
                datagrams: std::mem::take(&mut self.datagrams),
            }),
            _ => Ok(Collected::Pending),
        }
    }
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

/// The `use_srtp` profile ids of a ClientHello body, in the client's order (RFC 6347 §4.2.1
/// adds the cookie to the TLS 1.2 ClientHello of RFC 5246 §7.4.1.2).
pub(super) fn offered_srtp_profiles(client_hello: &[u8]) -> Option<Vec<u16>> {
    let mut reader = Reader(client_hello);
    reader.take(2 + 32)?; // client_version, random
    reader.vec8()?; // session_id
    reader.vec8()?; // cookie
    reader.vec16()?; // cipher_suites
    reader.vec8()?; // compression_methods
    let mut extensions = Reader(reader.vec16()?);
    while !extensions.0.is_empty() {
        let extension_type = extensions.u16()?;
        let data = extensions.vec16()?;
        if extension_type == USE_SRTP {
            let list = Reader(data).vec16()?;
            return Some(
                list.chunks_exact(2)
                    .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                    .collect(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(content_type: u8, epoch: u16, seq: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![content_type, 0xfe, 0xfd];
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes()[2..]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn fragment(msg_type: u8, seq: u16, total: &[u8], offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![msg_type];
        out.extend_from_slice(&(total.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&total[offset..offset + len]);
        out
    }

    /// A ClientHello body with the given `use_srtp` list (or none), a cookie and one other
    /// extension before it.
    fn client_hello(profiles: Option<&[u16]>) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session_id
        body.push(3);
        body.extend_from_slice(&[1, 2, 3]); // cookie
        body.extend_from_slice(&[0, 2, 0xc0, 0x2b]);
        body.extend_from_slice(&[1, 0]);
        let mut extensions = vec![0x00, 0x17, 0x00, 0x00]; // extended_master_secret
        if let Some(profiles) = profiles {
            let mut data = ((profiles.len() * 2) as u16).to_be_bytes().to_vec();
            for profile in profiles {
                data.extend_from_slice(&profile.to_be_bytes());
            }
            data.push(0); // mki
            extensions.extend_from_slice(&USE_SRTP.to_be_bytes());
            extensions.extend_from_slice(&(data.len() as u16).to_be_bytes());
            extensions.extend_from_slice(&data);
        }
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        body
    }

    #[test]
    fn records_splits_and_checks_headers() {
        let mut datagram = record(HANDSHAKE, 0, 1, &[1, 2, 3]);
        datagram.extend(record(APPLICATION_DATA, 1, 9, &[4; 30]));
        let parsed = records(&datagram).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].content_type, HANDSHAKE);
        assert_eq!(parsed[0].body, &[1, 2, 3]);
        assert_eq!(parsed[1].epoch, 1);
        assert_eq!(parsed[1].body.len(), 30);

        assert!(records(&[]).is_err());
        assert!(records(&datagram[..datagram.len() - 1]).is_err());
        assert!(records(&datagram[..10]).is_err());
        let mut trailing = datagram.clone();
        trailing.push(0x16);
        assert!(records(&trailing).is_err());
        let mut bad_type = datagram.clone();
        bad_type[0] = 24;
        assert!(records(&bad_type).is_err());
        let mut bad_version = datagram.clone();
        bad_version[2] = 0x03;
        assert!(records(&bad_version).is_err());
        assert!(records(&record(ALERT, 0, 0, &[])).is_err());
        let mut dtls10 = datagram;
        dtls10[2] = 0xff;
        assert!(records(&dtls10).is_ok());
    }

    #[test]
    fn fragments_reject_lengths_that_do_not_add_up() {
        let message = [9u8; 40];
        let two = [
            fragment(CLIENT_HELLO, 0, &message, 0, 10),
            fragment(CLIENT_HELLO, 0, &message, 10, 30),
        ]
        .concat();
        let parsed = fragments(&two).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].offset, 10);
        assert_eq!(parsed[1].body.len(), 30);
        assert_ne!(parsed[0].span(), parsed[1].span());

        let mut beyond = fragment(CLIENT_HELLO, 0, &message, 30, 10);
        beyond[8] = 31; // offset 31 + 10 > 40
        assert!(fragments(&beyond).is_err());
        let short = fragment(CLIENT_HELLO, 0, &message, 0, 20);
        assert!(fragments(&short[..short.len() - 1]).is_err());
        assert!(fragments(&short[..11]).is_err());
    }

    #[test]
    fn scan_lists_plaintext_fragments_and_the_first_alert() {
        let message = [5u8; 12];
        let mut datagram = record(HANDSHAKE, 0, 0, &fragment(2, 1, &message, 0, 12));
        datagram.extend(record(ALERT, 0, 1, &[2, 42]));
        datagram.extend(record(HANDSHAKE, 1, 0, &[0xaa; 40])); // encrypted: not parsed
        let scan = scan(&datagram).unwrap();
        assert_eq!(scan.fragments.len(), 1);
        assert_eq!(scan.alert, Some((2, 42)));
        assert!(!scan.only_plaintext_handshake);
        assert_eq!(alert_name(42), "bad_certificate");
        assert!(is_flight_datagram(&datagram));
        assert!(!is_flight_datagram(&record(
            APPLICATION_DATA,
            1,
            3,
            &[1; 20]
        )));
    }

    #[test]
    fn peer_messages_recognise_a_repeat_however_it_is_fragmented() {
        let certificate = [3u8; 300];
        let hello = [1u8; 100];
        let first_try = [
            record(HANDSHAKE, 0, 5, &fragment(11, 2, &certificate, 0, 200)),
            record(HANDSHAKE, 0, 6, &fragment(11, 2, &certificate, 200, 100)),
        ];
        let mut peer = PeerMessages::default();
        for datagram in &first_try {
            let scan = scan(datagram).unwrap();
            assert!(scan.only_plaintext_handshake);
            // The second half of a new message is not a repeat.
            assert!(!peer.all_complete(&scan.fragments));
            peer.admit(&scan.fragments).unwrap();
        }
        // The same message again, cut differently, is a repeat.
        let retry = [
            fragment(11, 2, &certificate, 0, 120),
            fragment(11, 2, &certificate, 120, 180),
        ]
        .concat();
        let retry = scan(&record(HANDSHAKE, 0, 9, &retry)).unwrap();
        assert!(peer.all_complete(&retry.fragments));
        // A message not seen whole, or of another length, is not.
        let other = scan(&record(HANDSHAKE, 0, 10, &fragment(1, 3, &hello, 0, 100))).unwrap();
        assert!(!peer.all_complete(&other.fragments));
        let resized = scan(&record(
            HANDSHAKE,
            0,
            11,
            &fragment(11, 2, &certificate[..299], 0, 299),
        ))
        .unwrap();
        assert!(!peer.all_complete(&resized.fragments));
        peer.admit(&resized.fragments).unwrap();
        assert!(!peer.all_complete(&resized.fragments));
        assert!(peer.all_complete(&retry.fragments));
    }

    #[test]
    fn offered_profiles_are_read_in_client_order() {
        let chromium = [0x0001, 0x0008, 0x0007];
        assert_eq!(
            offered_srtp_profiles(&client_hello(Some(&chromium))),
            Some(chromium.to_vec())
        );
        assert_eq!(offered_srtp_profiles(&client_hello(None)), None);
        let full = client_hello(Some(&chromium));
        for cut in 0..full.len() {
            assert_eq!(offered_srtp_profiles(&full[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn collector_reassembles_out_of_order_fragments_across_datagrams() {
        let body = client_hello(Some(&[0x0001, 0x0007]));
        let first = record(HANDSHAKE, 0, 0, &fragment(CLIENT_HELLO, 0, &body, 0, 20));
        let second = record(
            HANDSHAKE,
            0,
            1,
            &fragment(CLIENT_HELLO, 0, &body, 20, body.len() - 20),
        );
        let mut collector = ClientHelloCollector::default();
        assert_eq!(collector.push(&second), Ok(Collected::Pending));
        assert_eq!(collector.push(&second), Ok(Collected::Pending));
        match collector.push(&first) {
            Ok(Collected::Complete {
                offered_profiles,
                datagrams,
            }) => {
                assert_eq!(offered_profiles, Some(vec![0x0001, 0x0007]));
                assert_eq!(datagrams, vec![second.clone(), second, first]);
            }
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn collector_refuses_what_is_not_a_client_hello() {
        let mut collector = ClientHelloCollector::default();
        assert!(collector.push(&record(ALERT, 0, 0, &[2, 40])).is_err());
        let hello_verify = [0u8; 3];
        assert!(
            collector
                .push(&record(
                    HANDSHAKE,
                    0,
                    0,
                    &fragment(3, 0, &hello_verify, 0, 3)
                ))
                .is_err()
        );
        assert!(collector.push(b"garbage").is_err());
        let mut huge = fragment(CLIENT_HELLO, 0, &[0; 4], 0, 4);
        huge[1..4].copy_from_slice(&(1u32 << 20).to_be_bytes()[1..]);
        assert!(collector.push(&record(HANDSHAKE, 0, 0, &huge)).is_err());
        assert!(collector.datagrams.is_empty());
    }

    #[test]
    fn collector_bounds_what_it_buffers() {
        let body = [0u8; 8000];
        let mut collector = ClientHelloCollector::default();
        // The same first fragment over and over never completes the message.
        let datagram = record(HANDSHAKE, 0, 0, &fragment(CLIENT_HELLO, 0, &body, 0, 1000));
        let mut accepted = 0;
        for _ in 0..100 {
            if collector.push(&datagram).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted * datagram.len() <= MAX_BUFFERED_BYTES);
        assert!(accepted < 100);
    }
}
