//! RTP and RTCP for the media plane.
//!
//! This crate will hold borrowed views over RTP/RTCP packets (`RtpView`), writers that fill
//! caller-owned buffers, header extensions (mid, rid, repaired-rid, abs-send-time,
//! transport-cc, audio level), codec payload descriptors with keyframe detection (Opus, VP8,
//! VP9, H264, AV1) and sequence/timestamp unwrapping. Nothing here allocates per packet: the
//! views borrow the datagram and writers write into the driver's buffers.
