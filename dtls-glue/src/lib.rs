//! DTLS-SRTP glue.
//!
//! This crate will wrap the DTLS crate behind a small sans-IO trait (datagrams in, datagrams
//! out, `Connected(keys)` or `Failed` out), own the certificate and its SDP fingerprint, and
//! provide SRTP/SRTCP contexts (AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_80) that protect and
//! unprotect packets in place.
