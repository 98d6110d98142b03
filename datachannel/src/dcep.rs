//! The Data Channel Establishment Protocol wire format (RFC 8832 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Message Type |  Channel Type |            Priority           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Reliability Parameter                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Label Length          |       Protocol Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Label  ...  Protocol                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! DATA_CHANNEL_ACK is the single byte 0x02.

/// Message Type of DATA_CHANNEL_ACK (RFC 8832 §8.2.1).
const DATA_CHANNEL_ACK: u8 = 0x02;
/// Message Type of DATA_CHANNEL_OPEN (RFC 8832 §8.2.1).
const DATA_CHANNEL_OPEN: u8 = 0x03;

/// The unordered bit of the Channel Type (RFC 8832 §5.1).
const UNORDERED: u8 = 0x80;
const RELIABLE: u8 = 0x00;
const PARTIAL_RELIABLE_REXMIT: u8 = 0x01;
const PARTIAL_RELIABLE_TIMED: u8 = 0x02;

const OPEN_HEADER_LEN: usize = 12;

/// "Normal" priority (RFC 8831 §6.4), what browsers send by default.
pub(crate) const NORMAL_PRIORITY: u16 = 256;

/// The encoded DATA_CHANNEL_ACK.
pub(crate) const ACK: [u8; 1] = [DATA_CHANNEL_ACK];

/// How hard SCTP tries to deliver a channel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reliability {
    /// Retransmit until acknowledged.
    Reliable,
    /// At most this many retransmissions.
    Rexmit(u32),
    /// Retransmit for at most this many milliseconds.
    Timed(u32),
}

/// A DATA_CHANNEL_OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Open {
    pub(crate) ordered: bool,
    pub(crate) reliability: Reliability,
    pub(crate) priority: u16,
    pub(crate) label: String,
    pub(crate) protocol: String,
}

/// A DCEP message received with PPID 50.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    Open(Open),
    Ack,
}

/// Parses a DCEP message; `None` for anything malformed or unknown, which the caller drops.
pub(crate) fn parse(buf: &[u8]) -> Option<Message> {
    match *buf.first()? {
        DATA_CHANNEL_ACK => Some(Message::Ack),
        DATA_CHANNEL_OPEN => parse_open(buf).map(Message::Open),
        _ => None,
    }
}

fn parse_open(buf: &[u8]) -> Option<Open> {
    let header = buf.get(..OPEN_HEADER_LEN)?;
    let channel_type = header[1];
    let priority = u16::from_be_bytes([header[2], header[3]]);
    let parameter = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let label_len = usize::from(u16::from_be_bytes([header[8], header[9]]));
    let protocol_len = usize::from(u16::from_be_bytes([header[10], header[11]]));
    let label_end = OPEN_HEADER_LEN + label_len;
    let label = std::str::from_utf8(buf.get(OPEN_HEADER_LEN..label_end)?).ok()?;
    let protocol = std::str::from_utf8(buf.get(label_end..label_end + protocol_len)?).ok()?;
    let reliability = match channel_type & !UNORDERED {
        RELIABLE => Reliability::Reliable,
        PARTIAL_RELIABLE_REXMIT => Reliability::Rexmit(parameter),
        PARTIAL_RELIABLE_TIMED => Reliability::Timed(parameter),
        _ => return None,
    };
    Some(Open {
        ordered: channel_type & UNORDERED == 0,
        reliability,
        priority,
        label: label.to_owned(),
        protocol: protocol.to_owned(),
    })
}

/// Encodes a DATA_CHANNEL_OPEN. Label and protocol must each fit a u16 length; the caller
/// checks that before building `open`.
pub(crate) fn write_open(open: &Open) -> Vec<u8> {
    let (kind, parameter) = match open.reliability {
        Reliability::Reliable => (RELIABLE, 0),
        Reliability::Rexmit(count) => (PARTIAL_RELIABLE_REXMIT, count),
        Reliability::Timed(ms) => (PARTIAL_RELIABLE_TIMED, ms),
    };
    let channel_type = if open.ordered { kind } else { kind | UNORDERED };
    let label_len = u16::try_from(open.label.len()).unwrap_or(u16::MAX);
    let protocol_len = u16::try_from(open.protocol.len()).unwrap_or(u16::MAX);
    let label = &open.label.as_bytes()[..usize::from(label_len)];
    let protocol = &open.protocol.as_bytes()[..usize::from(protocol_len)];

    let mut out = Vec::with_capacity(OPEN_HEADER_LEN + label.len() + protocol.len());
    out.push(DATA_CHANNEL_OPEN);
    out.push(channel_type);
    out.extend_from_slice(&open.priority.to_be_bytes());
    out.extend_from_slice(&parameter.to_be_bytes());
    out.extend_from_slice(&label_len.to_be_bytes());
    out.extend_from_slice(&protocol_len.to_be_bytes());
    out.extend_from_slice(label);
    out.extend_from_slice(protocol);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_round_trip_and_wire_layout() {
        let open = Open {
            ordered: false,
            reliability: Reliability::Rexmit(0),
            priority: NORMAL_PRIORITY,
            label: "_lossy".to_owned(),
            protocol: String::new(),
        };
        let bytes = write_open(&open);
        assert_eq!(
            bytes,
            [
                0x03, 0x81, 0x01, 0x00, 0, 0, 0, 0, 0, 6, 0, 0, b'_', b'l', b'o', b's', b's', b'y'
            ]
        );
        assert_eq!(parse(&bytes), Some(Message::Open(open)));

        let reliable = Open {
            ordered: true,
            reliability: Reliability::Reliable,
            priority: 512,
            label: "_reliable".to_owned(),
            protocol: "proto".to_owned(),
        };
        let bytes = write_open(&reliable);
        assert_eq!(bytes[1], 0x00);
        assert_eq!(parse(&bytes), Some(Message::Open(reliable)));

        let timed = Open {
            ordered: true,
            reliability: Reliability::Timed(1500),
            priority: 128,
            label: String::new(),
            protocol: String::new(),
        };
        let bytes = write_open(&timed);
        assert_eq!(&bytes[1..8], &[0x02, 0, 128, 0, 0, 0x05, 0xdc]);
        assert_eq!(parse(&bytes), Some(Message::Open(timed)));
    }

    #[test]
    fn ack_and_malformed() {
        assert_eq!(parse(&ACK), Some(Message::Ack));
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x04]), None);
        // Unknown channel type.
        assert_eq!(parse(&[3, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        // Label longer than the message.
        assert_eq!(parse(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, b'a']), None);
        // Label not UTF-8.
        assert_eq!(parse(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff]), None);
        for len in 0..12 {
            assert_eq!(parse(&[3; 12][..len]), None);
        }
    }
}
