//! Hostile input: random bytes, truncations and line-level mutations of real offers must
//! never panic, and whatever parses must survive a write/parse round trip unchanged.

use lkr_sdp::{parse, parse_candidate};

const FIXTURES: [&str; 6] = [
    include_str!("data/python_datachannel_offer.sdp"),
    include_str!("data/browser_datachannel_offer.sdp"),
    include_str!("data/python_single_pc_offer.sdp"),
    include_str!("data/node_single_pc_offer.sdp"),
    include_str!("data/browser_single_pc_offer.sdp"),
    include_str!("data/chrome_simulcast_offer.sdp"),
];

/// Lines that stress the typed fields: duplicates, odd spacing, edge values.
const POOL: &[&str] = &[
    "a=mid:x",
    "a=mid: y ",
    "a=sendrecv",
    "a=inactive",
    "a=sendonly:1",
    "a=setup:active",
    "a=setup:bogus",
    "a=fingerprint:sha-1 AA:BB",
    "a=ice-ufrag:zz",
    "a=ice-pwd:",
    "a=ice-lite",
    "a=group:BUNDLE",
    "a=group:BUNDLE 9",
    "a=group:LS 1 2",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:200 x/1",
    "a=rtpmap:7 L/8000/1",
    "a=rtpmap:x a/1",
    "a=fmtp:96",
    "a=fmtp:96 apt=97",
    "a=fmtp:97  a=b",
    "a=fmtp:* x",
    "a=rtcp-fb:* nack",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:3 nack",
    "a=rtcp-fb:q nack",
    "a=extmap:1 urn:a",
    "a=extmap:2/sendonly urn:b x y",
    "a=extmap:300 urn:c",
    "a=extmap:1/foo urn:a",
    "a=msid:- t",
    "a=msid:s",
    "a=ssrc:1 cname:x",
    "a=ssrc:2 msid:a b",
    "a=ssrc:3 flag",
    "a=ssrc-group:FID 1 2",
    "a=ssrc-group:SIM",
    "a=rid:a send",
    "a=rid:b recv max-width=1",
    "a=simulcast:send a;~b recv c,d",
    "a=simulcast:recv x",
    "a=sctp-port:5000",
    "a=max-message-size:0",
    "a=candidate:1 1 udp 1 1.2.3.4 5 typ host",
    "a=candidate:junk",
    "a=end-of-candidates",
    "a=extmap-allow-mixed",
    "a=msid-semantic:WMS",
    "a=rtcp:9",
    "a=rtcp-mux",
    "a=x",
    "a=x:",
    "a=:",
    "a=",
    "b=AS:100",
    "c=IN IP4 1.2.3.4",
    "i=info",
    "k=clear:x",
    "t=1 2",
    "r=7d 1h 0 25h",
    "z=0 -1h",
    "e=a@b",
    "x=unknown",
    "m=audio 9 RTP/AVP 0 8 96",
    "m=video 0 UDP/TLS/RTP/SAVPF",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=text 9 RTP/AVP 96 96",
    "o=- 1 1 IN IP4 a",
    "s=",
    "v=0",
    "",
    " ",
    "garbage",
];

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check_round_trip(input: &str) {
    if let Ok(first) = parse(input) {
        let written = first.write();
        let second = parse(&written)
            .unwrap_or_else(|e| panic!("written text does not parse ({e}):\n{written}"));
        assert_eq!(
            first, second,
            "round trip changed:\n{input}\n---\n{written}"
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"v=0\r\nmoastcbk:/ ;,~*-_.1234567890abcdefxyzABC\t\xff";
    for i in 0..20_000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        };
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
        let _ = parse_candidate(&text);
        let prefixed = format!("v=0\no=- 1 1 IN IP4 a\ns=-\n{text}");
        check_round_trip(&prefixed);
    }
}

#[test]
fn truncated_offers_never_panic() {
    for text in FIXTURES {
        let mut cut = 0;
        while cut < text.len() {
            check_round_trip(&text[..cut]);
            cut += 1 + cut % 13;
        }
    }
}

#[test]
fn mutated_offers_round_trip() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for round in 0..1500 {
        let base = FIXTURES[round % FIXTURES.len()];
        let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(lines.len());
            match rng.below(6) {
                0 => {
                    lines.remove(at);
                    if lines.is_empty() {
                        lines.push("v=0".into());
                    }
                }
                1 => {
                    let l = lines[at].clone();
                    lines.insert(at, l);
                }
                2 => {
                    let other = rng.below(lines.len());
                    lines.swap(at, other);
                }
                3 | 4 => lines.insert(at, POOL[rng.below(POOL.len())].to_owned()),
                _ => {
                    // flip one byte of a line to another printable character
                    let mut bytes = lines[at].clone().into_bytes();
                    if !bytes.is_empty() {
                        let i = rng.below(bytes.len());
                        bytes[i] = b" :/=;~*0123456789az\t"[rng.below(20)];
                    }
                    lines[at] = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
        }
        let sep = if round % 3 == 0 { "\n" } else { "\r\n" };
        check_round_trip(&lines.join(sep));
    }
}

#[test]
fn candidates_round_trip_through_display() {
    let mut rng = Rng(42);
    let words = [
        "candidate:1",
        "1",
        "2",
        "udp",
        "tcp",
        "2122194687",
        "192.0.2.2",
        "fd00::2",
        "x.local",
        "9",
        "typ",
        "host",
        "srflx",
        "raddr",
        "rport",
        "generation",
        "0",
        "ufrag",
        "z/E2",
        "network-id",
        "tcptype",
        "active",
        "65535",
        "65536",
        "-1",
        "",
    ];
    for _ in 0..20_000 {
        let n = rng.below(14);
        let text: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
        let text = text.join(" ");
        if let Ok(c) = parse_candidate(&text) {
            assert_eq!(parse_candidate(&c.to_string()).unwrap(), c, "{text}");
        }
    }
}
