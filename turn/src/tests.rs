//! The TURN machine in virtual time: credentials, relaying only to the media address, caps,
//! lifetimes and hostile input.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{
    ErrorCode, MessageIntegrity, Nonce, Realm, Username, XorMappedAddress,
};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, Method, TransactionId};

use crate::credentials::{Credentials, password, username};
use crate::server::TurnAttribute;
use crate::*;

const UNIX: u64 = 1_800_000_000;
const KEY: &str = "APIkey";
const SECRET: &str = "the-secret-of-the-api-key";

fn media() -> SocketAddr {
    "10.77.0.1:7882".parse().unwrap()
}

fn client(port: u16) -> Client {
    Client {
        transport: Transport::Udp,
        remote: SocketAddr::new("10.77.0.2".parse().unwrap(), port),
    }
}

fn server() -> TurnServer {
    let mut keys = BTreeMap::new();
    keys.insert(KEY.to_owned(), SECRET.to_owned());
    let mut config = TurnConfig::new(media());
    config.max_allocations = 4;
    config.max_allocations_per_user = 2;
    TurnServer::new(config, Credentials::new(keys))
}

struct Creds {
    user: String,
    pass: String,
    nonce: Option<String>,
}

fn creds(expiry: u64) -> Creds {
    let user = username(expiry, KEY, "PA_alice");
    let pass = password(SECRET, &user);
    Creds {
        user,
        pass,
        nonce: None,
    }
}

fn encode(
    class: MessageClass,
    method: Method,
    attrs: Vec<TurnAttribute>,
    auth: Option<&Creds>,
) -> Vec<u8> {
    let mut m: Message<TurnAttribute> =
        Message::new(class, method, TransactionId::new(rand::random()));
    for a in attrs {
        m.add_attribute(a);
    }
    if let Some(c) = auth {
        let user = Username::new(c.user.clone()).unwrap();
        let realm = Realm::new(REALM.to_owned()).unwrap();
        m.add_attribute(user.clone());
        m.add_attribute(realm.clone());
        if let Some(n) = &c.nonce {
            m.add_attribute(Nonce::new(n.clone()).unwrap());
        }
        let mi = MessageIntegrity::new_long_term_credential(&m, &user, &realm, &c.pass).unwrap();
        m.add_attribute(mi);
    }
    MessageEncoder::new().encode_into_bytes(m).unwrap()
}

fn decode(b: &[u8]) -> Message<TurnAttribute> {
    MessageDecoder::<TurnAttribute>::new()
        .decode_from_bytes(b)
        .unwrap()
        .unwrap()
}

fn code(m: &Message<TurnAttribute>) -> Option<u16> {
    m.get_attribute::<ErrorCode>().map(ErrorCode::code)
}

struct World {
    s: TurnServer,
    now: Instant,
    next_port: u16,
    out: Vec<u8>,
}

impl World {
    fn new() -> Self {
        Self {
            s: server(),
            now: Instant::now(),
            next_port: 50000,
            out: Vec::new(),
        }
    }

    fn send(&mut self, c: Client, msg: &[u8]) -> Result<Handled, TurnError> {
        let port = &mut self.next_port;
        let mut bind = || {
            *port += 1;
            Some(SocketAddr::new("10.77.0.1".parse().unwrap(), *port))
        };
        self.s
            .handle_client(self.now, UNIX, c, msg, &mut self.out, &mut bind)
    }

    fn request(
        &mut self,
        c: Client,
        method: Method,
        attrs: Vec<TurnAttribute>,
        auth: Option<&Creds>,
    ) -> Message<TurnAttribute> {
        let msg = encode(MessageClass::Request, method, attrs, auth);
        assert_eq!(self.send(c, &msg), Ok(Handled::Reply));
        decode(&self.out)
    }

    /// A 401 challenge, then the request with the nonce: the final answer.
    fn authed(
        &mut self,
        c: Client,
        method: Method,
        attrs: Vec<TurnAttribute>,
        creds: &mut Creds,
    ) -> Message<TurnAttribute> {
        if creds.nonce.is_none() {
            let r = self.request(c, method, attrs.clone(), None);
            assert_eq!(code(&r), Some(401));
            assert_eq!(r.get_attribute::<Realm>().unwrap().text(), REALM);
            creds.nonce = Some(r.get_attribute::<Nonce>().unwrap().value().to_owned());
        }
        self.request(c, method, attrs, Some(creds))
    }

    fn allocate(&mut self, c: Client, creds: &mut Creds) -> Message<TurnAttribute> {
        self.authed(c, ALLOCATE, vec![RequestedTransport::new(17).into()], creds)
    }
}

fn peer_attr(a: SocketAddr) -> TurnAttribute {
    XorPeerAddress::new(a).into()
}

#[test]
fn binding_requests_are_answered_without_credentials() {
    let mut w = World::new();
    let r = w.request(client(1), BINDING, vec![], None);
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    assert_eq!(
        r.get_attribute::<XorMappedAddress>().unwrap().address(),
        client(1).remote
    );
}

#[test]
fn an_allocation_relays_to_the_media_address_and_back() {
    let mut w = World::new();
    let c = client(1);
    let mut cr = creds(UNIX + 3600);
    let r = w.allocate(c, &mut cr);
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{:?}", code(&r));
    let relay = r.get_attribute::<XorRelayAddress>().unwrap().address();
    assert_eq!(
        r.get_attribute::<Lifetime>().unwrap().lifetime(),
        Duration::from_secs(600)
    );
    // The response is signed with the same credentials.
    let mi = r.get_attribute::<MessageIntegrity>().unwrap();
    let user = Username::new(cr.user.clone()).unwrap();
    let realm = Realm::new(REALM.to_owned()).unwrap();
    assert!(
        mi.check_long_term_credential(&user, &realm, &cr.pass)
            .is_ok()
    );

    // Nothing is relayed before a permission.
    let send = encode(
        MessageClass::Indication,
        SEND,
        vec![
            peer_attr(media()),
            Data::new(b"hello".to_vec()).unwrap().into(),
        ],
        None,
    );
    assert_eq!(w.send(c, &send), Err(TurnError::NoRoute));
    let r = w.authed(c, CREATE_PERMISSION, vec![peer_attr(media())], &mut cr);
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    match w.send(c, &send).unwrap() {
        Handled::Relay {
            relay: from,
            peer,
            payload,
        } => {
            assert_eq!((from, peer), (relay, media()));
            assert_eq!(&send[payload], b"hello");
        }
        other => panic!("{other:?}"),
    }
    // From the media address back: a Data indication until a channel is bound.
    let mut out = Vec::new();
    assert_eq!(
        w.s.handle_peer(w.now, relay, media(), b"back", &mut out),
        Some(c)
    );
    let ind = decode(&out);
    assert_eq!(ind.get_attribute::<Data>().unwrap().data(), b"back");

    let r = w.authed(
        c,
        CHANNEL_BIND,
        vec![
            ChannelNumber::new(0x4001).unwrap().into(),
            peer_attr(media()),
        ],
        &mut cr,
    );
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    let mut cd = vec![0x40, 0x01, 0, 3];
    cd.extend_from_slice(b"abc");
    assert_eq!(
        w.send(c, &cd),
        Ok(Handled::Relay {
            relay,
            peer: media(),
            payload: 4..7
        })
    );
    assert_eq!(
        w.s.handle_peer(w.now, relay, media(), b"xyz", &mut out),
        Some(c)
    );
    assert_eq!(out, [0x40, 0x01, 0, 3, b'x', b'y', b'z']);
}

#[test]
fn wrong_expired_and_foreign_credentials_are_refused() {
    let mut w = World::new();
    // Expired a second ago.
    let mut old = creds(UNIX - 1);
    assert_eq!(code(&w.allocate(client(1), &mut old)), Some(401));
    // Wrong password.
    let mut wrong = creds(UNIX + 60);
    wrong.pass = "guess".into();
    assert_eq!(code(&w.allocate(client(2), &mut wrong)), Some(401));
    // A key this server does not have.
    let user = username(UNIX + 60, "other", "PA_x");
    let mut foreign = Creds {
        pass: password(SECRET, &user),
        user,
        nonce: None,
    };
    assert_eq!(code(&w.allocate(client(3), &mut foreign)), Some(401));
    // An expiry moved forward by hand no longer matches its password.
    let good = creds(UNIX + 60);
    let mut forged = Creds {
        user: username(UNIX + 999_999, KEY, "PA_alice"),
        pass: good.pass,
        nonce: None,
    };
    assert_eq!(code(&w.allocate(client(4), &mut forged)), Some(401));
    // A made-up nonce is stale.
    let mut bad_nonce = creds(UNIX + 60);
    bad_nonce.nonce = Some("5-0000000000000000".into());
    let r = w.request(
        client(5),
        ALLOCATE,
        vec![RequestedTransport::new(17).into()],
        Some(&bad_nonce),
    );
    assert_eq!(code(&r), Some(438));
    assert_eq!(w.s.allocation_count(), 0);
}

#[test]
fn relaying_anywhere_but_the_media_address_is_refused() {
    let mut w = World::new();
    let c = client(1);
    let mut cr = creds(UNIX + 3600);
    let relay = w
        .allocate(c, &mut cr)
        .get_attribute::<XorRelayAddress>()
        .unwrap()
        .address();
    let elsewhere: SocketAddr = "192.0.2.7:7882".parse().unwrap();
    let other_port: SocketAddr = "10.77.0.1:22".parse().unwrap();
    // A permission naming another host, even beside the media address: 403.
    let r = w.authed(
        c,
        CREATE_PERMISSION,
        vec![peer_attr(media()), peer_attr(elsewhere)],
        &mut cr,
    );
    assert_eq!(code(&r), Some(403));
    let r = w.authed(c, CREATE_PERMISSION, vec![peer_attr(elsewhere)], &mut cr);
    assert_eq!(code(&r), Some(403));
    // A channel to another host or another port of this one: 403.
    for peer in [elsewhere, other_port] {
        let r = w.authed(
            c,
            CHANNEL_BIND,
            vec![ChannelNumber::new(0x4000).unwrap().into(), peer_attr(peer)],
            &mut cr,
        );
        assert_eq!(code(&r), Some(403), "{peer}");
    }
    // With the media address permitted, Send to elsewhere still goes nowhere.
    let r = w.authed(c, CREATE_PERMISSION, vec![peer_attr(media())], &mut cr);
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    for peer in [elsewhere, other_port] {
        let send = encode(
            MessageClass::Indication,
            SEND,
            vec![peer_attr(peer), Data::new(vec![1, 2, 3]).unwrap().into()],
            None,
        );
        assert_eq!(w.send(c, &send), Err(TurnError::NoRoute));
    }
    // And nothing from elsewhere reaches the client.
    let mut out = Vec::new();
    assert_eq!(
        w.s.handle_peer(w.now, relay, elsewhere, b"x", &mut out),
        None
    );
    assert_eq!(
        w.s.handle_peer(w.now, relay, other_port, b"x", &mut out),
        None
    );
    // ChannelData on a channel never bound.
    assert_eq!(w.send(c, &[0x40, 0x09, 0, 1, 7]), Err(TurnError::NoRoute));
}

#[test]
fn requests_need_their_own_allocation_and_user() {
    let mut w = World::new();
    let mut cr = creds(UNIX + 3600);
    // No allocation yet: 437.
    let r = w.authed(client(1), REFRESH, vec![], &mut cr);
    assert_eq!(code(&r), Some(437));
    assert_eq!(
        w.allocate(client(1), &mut cr).class(),
        MessageClass::SuccessResponse
    );
    // A second Allocate on the same 5-tuple: 437.
    let r = w.allocate(client(1), &mut cr);
    assert_eq!(code(&r), Some(437));
    // Another user's credentials on this allocation: 441.
    let user = username(UNIX + 60, KEY, "PA_mallory");
    let mut other = Creds {
        pass: password(SECRET, &user),
        user,
        nonce: None,
    };
    let r = w.authed(client(1), REFRESH, vec![], &mut other);
    assert_eq!(code(&r), Some(441));
    // TCP relaying is not offered.
    let r = w.authed(
        client(2),
        ALLOCATE,
        vec![RequestedTransport::new(6).into()],
        &mut cr,
    );
    assert_eq!(code(&r), Some(442));
}

#[test]
fn allocations_are_capped_per_user_and_in_all() {
    let mut w = World::new();
    let mut a = creds(UNIX + 3600);
    for p in 1..=2 {
        assert_eq!(
            w.allocate(client(p), &mut a).class(),
            MessageClass::SuccessResponse
        );
    }
    assert_eq!(code(&w.allocate(client(3), &mut a)), Some(486));
    let mut b = {
        let user = username(UNIX + 60, KEY, "PA_b");
        Creds {
            pass: password(SECRET, &user),
            user,
            nonce: None,
        }
    };
    for p in 4..=5 {
        assert_eq!(
            w.allocate(client(p), &mut b).class(),
            MessageClass::SuccessResponse
        );
    }
    assert_eq!(w.s.allocation_count(), 4);
    let user = username(UNIX + 60, KEY, "PA_c");
    let mut c = Creds {
        pass: password(SECRET, &user),
        user,
        nonce: None,
    };
    assert_eq!(
        code(&w.allocate(client(6), &mut c)),
        Some(508),
        "cap in all"
    );
    assert_eq!(w.s.allocation_count(), 4);
}

#[test]
fn idle_allocations_expire_and_refresh_zero_releases() {
    let mut w = World::new();
    let mut cr = creds(UNIX + 7200);
    let r = w.allocate(client(1), &mut cr);
    let relay = r.get_attribute::<XorRelayAddress>().unwrap().address();
    let r = w.allocate(client(2), &mut cr);
    let relay2 = r.get_attribute::<XorRelayAddress>().unwrap().address();
    // Client 2 releases at once.
    let r = w.authed(
        client(2),
        REFRESH,
        vec![Lifetime::new(Duration::ZERO).unwrap().into()],
        &mut cr,
    );
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    assert_eq!(w.s.poll_output(), Some(Output::Released { relay: relay2 }));
    // Client 1 goes idle: gone at its deadline, not before.
    let deadline = w.s.poll_timeout().unwrap();
    assert_eq!(deadline, w.now + Duration::from_secs(600));
    w.s.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(w.s.allocation_count(), 1);
    w.s.handle_timeout(deadline);
    assert_eq!(w.s.allocation_count(), 0);
    assert_eq!(w.s.poll_output(), Some(Output::Released { relay }));
    assert_eq!(w.s.poll_timeout(), None);
}

#[test]
fn stream_frames_are_measured_and_garbage_is_refused() {
    assert_eq!(frame_len(&[0, 1]), Ok(None));
    assert_eq!(frame_len(&[0, 1, 0, 8]), Ok(Some(28)));
    assert_eq!(frame_len(&[0x40, 0, 0, 5]), Ok(Some(12)));
    assert_eq!(frame_len(&[0x16, 3, 1, 0]), Err(TurnError::Malformed));
    assert_eq!(frame_len(&[0, 1, 0xff, 0xf0]), Err(TurnError::TooLarge));
}

#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut w = World::new();
    let mut cr = creds(UNIX + 3600);
    w.allocate(client(1), &mut cr);
    let seed = encode(
        MessageClass::Request,
        ALLOCATE,
        vec![RequestedTransport::new(17).into()],
        Some(&cr),
    );
    for i in 0..20_000 {
        let mut m = if i % 2 == 0 {
            seed.clone()
        } else {
            let n = rng.random_range(0..64);
            (0..n).map(|_| rng.random()).collect()
        };
        if !m.is_empty() {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..m.len());
                m[at] = rng.random();
            }
            m.truncate(rng.random_range(0..=m.len()));
        }
        let _ = w.send(client(1), &m);
        let _ = frame_len(&m);
        let mut out = Vec::new();
        let _ = w.s.handle_peer(w.now, media(), media(), &m, &mut out);
    }
}
