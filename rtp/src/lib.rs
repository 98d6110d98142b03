//! RTP and RTCP for the media plane, without allocation on the packet path.
//!
//! Role: everything the router and our own client need to read and write RTP/RTCP bytes.
//!
//! - [`RtpView`] borrows a decrypted RTP datagram, checks every length once (RFC 3550 §5.1,
//!   RFC 8285 header extensions) and then answers field queries without failing.
//!   [`is_rtcp`] separates RTP from RTCP on a muxed port (RFC 5761 §4).
//! - The `set_*` functions, [`rewrite_extension`] and [`extension_mut`] rewrite an accepted
//!   packet in place (SSRC, sequence number, timestamp, payload type, marker, extension ids
//!   and values) as a forwarder does per subscriber; [`RtpWriter`] writes a fresh header.
//! - Header extension values (audio level, transport-wide sequence number, abs-send-time,
//!   mid/rid) and the RTX original sequence number are decoded from borrowed slices.
//! - [`rtcp_packets`] iterates a compound RTCP datagram as [`RtcpPacket`] views; report
//!   blocks, NACK lists, FIR entries and transport-cc statuses are lazy iterators over the
//!   datagram. The `write_*` functions fill caller buffers; [`TwccBuilder`] turns receive
//!   times into transport-cc feedback.
//! - [`SeqUnwrapper`] and [`TimestampUnwrapper`] extend wire counters across wraps;
//!   [`seq_newer`] compares sequence numbers (RFC 1982).
//! - [`vp8`], [`vp9`], [`h264`] and [`av1`] detect keyframes; [`vp8`] also reads and
//!   rewrites the payload descriptor in place.
//!
//! Data flow: the driver hands a datagram to the core, which unprotects it in place, parses
//! an [`RtpView`] or walks [`rtcp_packets`], and for each subscriber rewrites the header with
//! the setters before protecting it again. Nothing here reads a clock or touches a socket:
//! times (for example arrival times given to [`TwccBuilder::push`]) come from the caller.
//!
//! Errors: parsers return [`RtpError`] or [`RtcpError`] for any malformed input and never
//! panic on peer bytes; writers return `BufferTooSmall` instead of writing partially. Only
//! [`TwccBuilder`] owns heap memory, reused between feedback packets.

mod error;
mod ext;
mod rtcp;
mod rtp;
mod seq;

pub mod av1;
pub mod h264;
pub mod opus;
pub mod vp8;
pub mod vp9;

pub use error::{RtcpError, RtpError};
pub use ext::{
    abs_send_time, parse_abs_send_time, parse_audio_level, parse_str_ext, parse_transport_cc,
    rtx_original_sequence,
};
pub use rtcp::*;
pub use rtp::{
    ExtensionForm, Extensions, FIXED_HEADER_LEN, ONE_BYTE_PROFILE, RtpView, RtpWriter,
    TWO_BYTE_PROFILE, extension_mut, is_rtcp, rewrite_extension, set_marker, set_payload_type,
    set_sequence, set_ssrc, set_timestamp,
};
pub use seq::{SeqUnwrapper, TimestampUnwrapper, seq_diff, seq_newer};

#[cfg(test)]
mod robustness;
