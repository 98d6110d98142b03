//! DTLS-SRTP glue: the handshake that authenticates a peer and yields the SRTP keys, and the
//! SRTP/SRTCP contexts that use them.
//!
//! - [`cert`]: the process's self-signed ECDSA P-256 certificate, generated once and shared by
//!   every peer, and SDP fingerprints (`a=fingerprint:sha-256 AB:CD:...`).
//! - [`dtls`]: [`dtls::DtlsEndpoint`], one peer's sans-IO DTLS 1.2 association over the
//!   `rtc-dtls` crate. Datagrams in (`handle_receive`), datagrams out (`poll_transmit`), timers
//!   (`handle_timeout` / `poll_timeout`), and events out (`poll_event`): `Connected` with the
//!   negotiated SRTP profile id and the `EXTRACTOR-dtls_srtp` keying material, decrypted SCTP
//!   packets, `Closed` or `Failed`. It never reads a clock or touches a socket.
//! - `srtp`: SRTP/SRTCP contexts (AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_80) built from that
//!   keying material, which protect and unprotect packets in place.
//! - [`keying`]: [`keying::SrtpSession::from_dtls`] turns the fields of `Connected` into the
//!   inbound and outbound contexts; the server's engine and our own client both key there.
//!
//! Data flow for one peer: the driver demultiplexes DTLS datagrams (first byte 20..=63,
//! RFC 7983) from an ICE-validated address into that peer's `DtlsEndpoint`, sends what it
//! polls out, and on `Connected` builds the SRTP contexts with [`keying::SrtpSession`]. Only addresses that passed ICE may
//! reach an endpoint: DTLS itself does not authenticate where a datagram came from.

pub mod cert;
pub mod dtls;
pub mod keying;
pub mod srtp;
