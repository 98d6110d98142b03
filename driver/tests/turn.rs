//! The TURN server's sockets on loopback: an allocation over UDP relays to the media address
//! and back (Send/Data indications and ChannelData), a permission elsewhere is refused, and
//! bad TCP input (garbage, an oversized length, silence) closes only its own connection.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytecodec::{DecodeExt, EncodeExt};
use lkr_driver::turn::{TurnAddrs, TurnSettings, spawn};
use stun_codec::rfc5389::attributes::{
    ErrorCode, MessageIntegrity, Nonce, Realm, Username, XorMappedAddress,
};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, RequestedTransport, XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, SEND};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, Method, TransactionId};

stun_codec::define_attribute_enums!(
    Attr,
    AttrDecoder,
    AttrEncoder,
    [
        Username,
        Realm,
        Nonce,
        MessageIntegrity,
        ErrorCode,
        XorMappedAddress,
        ChannelNumber,
        XorPeerAddress,
        Data,
        XorRelayAddress,
        RequestedTransport
    ]
);

fn start(media: SocketAddr) -> TurnAddrs {
    start_with(media, 16)
}

fn start_with(media: SocketAddr, max_streams: usize) -> TurnAddrs {
    let mut keys = BTreeMap::new();
    keys.insert("k".to_owned(), "s".to_owned());
    let lo = "127.0.0.1".parse().unwrap();
    spawn(TurnSettings {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        tls: None,
        relay_bind_ip: lo,
        relay_ip: lo,
        relay_ports: (0, 0),
        media_addr: media,
        media_local: media,
        keys,
        max_allocations: 16,
        stream_handshake: Duration::from_secs(2),
        stream_idle: Duration::from_secs(30),
        max_streams,
    })
    .expect("TURN started")
}

struct Auth {
    user: String,
    pass: String,
    nonce: String,
}

fn encode(class: MessageClass, method: Method, attrs: Vec<Attr>, auth: Option<&Auth>) -> Vec<u8> {
    let mut m: Message<Attr> = Message::new(class, method, TransactionId::new(rand_tid()));
    for a in attrs {
        m.add_attribute(a);
    }
    if let Some(a) = auth {
        let user = Username::new(a.user.clone()).unwrap();
        let realm = Realm::new("livekit".to_owned()).unwrap();
        m.add_attribute(user.clone());
        m.add_attribute(realm.clone());
        m.add_attribute(Nonce::new(a.nonce.clone()).unwrap());
        let mi = MessageIntegrity::new_long_term_credential(&m, &user, &realm, &a.pass).unwrap();
        m.add_attribute(mi);
    }
    MessageEncoder::new().encode_into_bytes(m).unwrap()
}

fn rand_tid() -> [u8; 12] {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut t = [0u8; 12];
    t.copy_from_slice(&n.to_le_bytes()[..12]);
    t
}

fn decode(b: &[u8]) -> Message<Attr> {
    MessageDecoder::<Attr>::new()
        .decode_from_bytes(b)
        .unwrap()
        .unwrap()
}

fn ask(s: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Message<Attr> {
    s.send_to(msg, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).expect("an answer");
    decode(&buf[..n])
}

fn code(m: &Message<Attr>) -> Option<u16> {
    m.get_attribute::<ErrorCode>().map(ErrorCode::code)
}

#[test]
fn an_allocation_relays_to_the_media_address_only() {
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    media
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let media_addr = media.local_addr().unwrap();
    let turn = start(media_addr).udp.unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let transport = || vec![Attr::from(RequestedTransport::new(17))];
    let first = ask(
        &c,
        turn,
        &encode(MessageClass::Request, ALLOCATE, transport(), None),
    );
    assert_eq!(code(&first), Some(401));
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let user = lkr_turn::credentials::username(unix + 600, "k", "PA_t");
    let auth = Auth {
        pass: lkr_turn::credentials::password("s", &user),
        user,
        nonce: first.get_attribute::<Nonce>().unwrap().value().to_owned(),
    };
    let r = ask(
        &c,
        turn,
        &encode(MessageClass::Request, ALLOCATE, transport(), Some(&auth)),
    );
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{:?}", code(&r));
    let relay = r.get_attribute::<XorRelayAddress>().unwrap().address();

    // Elsewhere: refused.
    let other: SocketAddr = "127.0.0.2:9".parse().unwrap();
    let r = ask(
        &c,
        turn,
        &encode(
            MessageClass::Request,
            CREATE_PERMISSION,
            vec![XorPeerAddress::new(other).into()],
            Some(&auth),
        ),
    );
    assert_eq!(code(&r), Some(403));
    let r = ask(
        &c,
        turn,
        &encode(
            MessageClass::Request,
            CREATE_PERMISSION,
            vec![XorPeerAddress::new(media_addr).into()],
            Some(&auth),
        ),
    );
    assert_eq!(r.class(), MessageClass::SuccessResponse);

    // Send indication out, Data indication back.
    let send = encode(
        MessageClass::Indication,
        SEND,
        vec![
            XorPeerAddress::new(media_addr).into(),
            Data::new(b"ping".to_vec()).unwrap().into(),
        ],
        None,
    );
    c.send_to(&send, turn).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = media.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"ping"[..], relay));
    media.send_to(b"pong", relay).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(
        decode(&buf[..n]).get_attribute::<Data>().unwrap().data(),
        b"pong"
    );

    // A channel: ChannelData both ways.
    let r = ask(
        &c,
        turn,
        &encode(
            MessageClass::Request,
            CHANNEL_BIND,
            vec![
                ChannelNumber::new(0x4000).unwrap().into(),
                XorPeerAddress::new(media_addr).into(),
            ],
            Some(&auth),
        ),
    );
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    c.send_to(&[0x40, 0x00, 0, 3, b'a', b'b', b'c'], turn)
        .unwrap();
    let (n, from) = media.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"abc"[..], relay));
    media.send_to(b"xyz", relay).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], [0x40, 0x00, 0, 3, b'x', b'y', b'z']);

    // Datagrams from anyone but the media address to the relay port go nowhere.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(b"spam", relay).unwrap();
    media.send_to(b"after", relay).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        [0x40, 0x00, 0, 5, b'a', b'f', b't', b'e', b'r'],
        "the stranger's datagram was dropped"
    );
}

fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut b = [0u8; 512];
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn binding_over(s: &mut TcpStream) -> SocketAddr {
    s.write_all(&encode(MessageClass::Request, BINDING, vec![], None))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 20];
    s.read_exact(&mut head).unwrap();
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let m = decode(&[&head[..], &body].concat());
    m.get_attribute::<XorMappedAddress>().unwrap().address()
}

#[test]
fn bad_tcp_input_closes_only_its_connection() {
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = start(media.local_addr().unwrap()).tcp.unwrap();
    let mut good = TcpStream::connect(tcp).unwrap();
    assert_eq!(binding_over(&mut good), good.local_addr().unwrap());

    let mut garbage = TcpStream::connect(tcp).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(
        closed_within(&mut garbage, Duration::from_secs(5)),
        "garbage"
    );

    let mut huge = TcpStream::connect(tcp).unwrap();
    huge.write_all(&[0, 1, 0xff, 0xf0, 0x21, 0x12, 0xa4, 0x42])
        .unwrap();
    assert!(
        closed_within(&mut huge, Duration::from_secs(5)),
        "oversized"
    );
    // The well-behaved connection is untouched.
    assert_eq!(binding_over(&mut good), good.local_addr().unwrap());

    // Half-open: connected, silent, never allocating.
    let mut silent = TcpStream::connect(tcp).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)), "silent");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed at its deadline, not at once"
    );

    // New connections are still served.
    let mut fresh = TcpStream::connect(tcp).unwrap();
    assert_eq!(binding_over(&mut fresh), fresh.local_addr().unwrap());
}

/// Reads one STUN message from a stream.
fn read_message(s: &mut TcpStream) -> Message<Attr> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 20];
    s.read_exact(&mut head).unwrap();
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    decode(&[&head[..], &body].concat())
}

#[test]
fn tcp_connections_are_capped_and_take_their_allocation_with_them() {
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = start_with(media.local_addr().unwrap(), 2).tcp.unwrap();
    let mut a = TcpStream::connect(tcp).unwrap();
    let mut b = TcpStream::connect(tcp).unwrap();
    assert_eq!(binding_over(&mut a), a.local_addr().unwrap());
    assert_eq!(binding_over(&mut b), b.local_addr().unwrap());
    // A third is over the cap: closed at once; the two are still served.
    let mut c = TcpStream::connect(tcp).unwrap();
    assert!(
        closed_within(&mut c, Duration::from_secs(5)),
        "over the cap"
    );
    assert_eq!(binding_over(&mut a), a.local_addr().unwrap());

    // An allocation over `b`.
    let transport = || vec![Attr::from(RequestedTransport::new(17))];
    b.write_all(&encode(MessageClass::Request, ALLOCATE, transport(), None))
        .unwrap();
    let first = read_message(&mut b);
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let user = lkr_turn::credentials::username(unix + 600, "k", "PA_t");
    let auth = Auth {
        pass: lkr_turn::credentials::password("s", &user),
        user,
        nonce: first.get_attribute::<Nonce>().unwrap().value().to_owned(),
    };
    b.write_all(&encode(
        MessageClass::Request,
        ALLOCATE,
        transport(),
        Some(&auth),
    ))
    .unwrap();
    let r = read_message(&mut b);
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{:?}", code(&r));
    let relay = r.get_attribute::<XorRelayAddress>().unwrap().address();
    assert!(UdpSocket::bind(relay).is_err(), "the relay port is held");
    // The connection goes: its allocation and relay port go with it, and its place is free.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while UdpSocket::bind(relay).is_err() {
        assert!(Instant::now() < deadline, "relay port still held");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut d = TcpStream::connect(tcp).unwrap();
    assert_eq!(binding_over(&mut d), d.local_addr().unwrap());
}
