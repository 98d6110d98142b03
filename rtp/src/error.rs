//! Typed errors for RTP and RTCP parsing and writing.

/// Why an RTP packet, header extension or payload descriptor was rejected, or why a writer
/// could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the 12-byte fixed header (RFC 3550 §5.1).
    #[error("packet of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC count points past the end of the packet.
    #[error("CSRC list of {0} entries runs past the end of the packet")]
    CsrcOverrun(u8),
    /// The header extension (or its 4-byte preamble) runs past the end of the packet.
    #[error("header extension runs past the end of the packet")]
    ExtensionOverrun,
    /// The padding count is zero or larger than what follows the header.
    #[error("padding count {0} does not fit the packet")]
    BadPadding(u8),
    /// The caller's output buffer is too small.
    #[error("output buffer of {have} bytes is too small, {needed} needed")]
    BufferTooSmall {
        /// Bytes the writer needs.
        needed: usize,
        /// Bytes the caller offered.
        have: usize,
    },
    /// A header extension id of 0 (or one the chosen form cannot carry).
    #[error("header extension id {0} is not allowed")]
    BadExtensionId(u8),
    /// A header extension element longer than the two-byte form can carry (255 bytes), or a
    /// block longer than the 16-bit length field allows.
    #[error("header extension of {0} bytes is too long")]
    ExtensionTooLong(usize),
    /// A codec payload descriptor ends before its declared fields.
    #[error("codec payload descriptor is truncated")]
    TruncatedDescriptor,
}

/// Why an RTCP packet was rejected, or why a writer could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Fewer than the 4 bytes of a common header remain.
    #[error("RTCP packet of {0} bytes is shorter than its 4-byte header")]
    TooShort(usize),
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    /// The length field claims more bytes than remain in the compound packet.
    #[error("RTCP length field says {declared} bytes, only {available} remain")]
    LengthOverrun {
        /// Bytes the length field declares.
        declared: usize,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// The padding count is zero or larger than the packet body.
    #[error("RTCP padding count {0} does not fit the packet")]
    BadPadding(u8),
    /// The body is shorter than the fixed fields (or item count) of its type require.
    #[error("RTCP packet type {pt} format {fmt} is truncated")]
    Truncated {
        /// Packet type (200 = SR, 205 = RTPFB, ...).
        pt: u8,
        /// Count or feedback message type field.
        fmt: u8,
    },
    /// A transport-cc status chunk uses the reserved symbol 3.
    #[error("transport-cc feedback uses the reserved status symbol")]
    ReservedStatusSymbol,
    /// The caller's output buffer is too small.
    #[error("output buffer of {have} bytes is too small, {needed} needed")]
    BufferTooSmall {
        /// Bytes the writer needs.
        needed: usize,
        /// Bytes the caller offered.
        have: usize,
    },
    /// More items than the packet's count or length field can carry.
    #[error("{0} items do not fit one RTCP packet")]
    TooManyItems(usize),
    /// A writer was given nothing to write (for example a NACK without lost packets).
    #[error("nothing to write")]
    Empty,
    /// An SDES text longer than its 8-bit length field allows.
    #[error("SDES text of {0} bytes is longer than 255")]
    TextTooLong(usize),
}
