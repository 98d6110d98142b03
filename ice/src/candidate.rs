//! Candidate priorities and the `candidate:` lines written into SDP and trickled.

use std::net::IpAddr;

/// Type preference of host candidates, RFC 8445 §5.1.2.2.
pub const HOST_TYPE_PREFERENCE: u32 = 126;
/// Type preference of peer-reflexive candidates, RFC 8445 §5.1.2.2.
pub const PEER_REFLEXIVE_TYPE_PREFERENCE: u32 = 110;
/// Type preference of server-reflexive candidates, RFC 8445 §5.1.2.2.
pub const SERVER_REFLEXIVE_TYPE_PREFERENCE: u32 = 100;
/// Type preference of relayed candidates, RFC 8445 §5.1.2.2.
pub const RELAYED_TYPE_PREFERENCE: u32 = 0;

/// Candidate priority, RFC 8445 §5.1.2.1:
/// `2^24 * type_pref + 2^8 * local_pref + (256 - component)`.
///
/// Inputs are clamped to their ranges (type preference 0..=126, local preference 0..=65535,
/// component 1..=256) so the result always fits the formula's 32 bits.
pub fn candidate_priority(type_pref: u32, local_pref: u32, component: u32) -> u32 {
    let type_pref = type_pref.min(126);
    let local_pref = local_pref.min(0xffff);
    let component = component.clamp(1, 256);
    (type_pref << 24) + (local_pref << 8) + (256 - component)
}

/// A host candidate for component 1 over UDP, as it appears after `a=` in SDP and in the
/// `candidate` field of a trickled RTCIceCandidateInit (RFC 8839 §5.1), for example
/// `candidate:1 1 udp 2130706431 10.77.0.1 7882 typ host generation 0`.
pub fn host_candidate_line(foundation: &str, ip: IpAddr, port: u16, priority: u32) -> String {
    format!("candidate:{foundation} 1 udp {priority} {ip} {port} typ host generation 0")
}
