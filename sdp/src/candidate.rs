//! ICE candidate attribute values (RFC 8839 §5.1).

use std::fmt;

use crate::SdpError;

/// One ICE candidate:
/// `candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
/// [raddr <addr> rport <port>] *(<name> <value>)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Foundation, 1 to 32 ice-chars.
    pub foundation: String,
    /// Component id: 1 for RTP (and everything under rtcp-mux), 2 for RTCP.
    pub component: u16,
    /// Transport as written, e.g. `udp`, `tcp`, `UDP`.
    pub transport: String,
    /// Priority.
    pub priority: u32,
    /// Connection address: an IP address or a host name (such as an mDNS `.local` name).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Candidate type: `host`, `srflx`, `prflx`, `relay`.
    pub typ: String,
    /// `raddr` and `rport`.
    pub related: Option<(String, u16)>,
    /// Every further name/value pair in order, e.g. `("generation", "0")`, `("tcptype", "active")`.
    pub extensions: Vec<(String, String)>,
}

impl Candidate {
    /// The value of an extension attribute such as `ufrag` or `tcptype`.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the transport is UDP.
    pub fn is_udp(&self) -> bool {
        self.transport.eq_ignore_ascii_case("udp")
    }
}

/// Parses a candidate, with or without a leading `a=` and `candidate:`.
pub fn parse_candidate(s: &str) -> Result<Candidate, SdpError> {
    let s = s.trim();
    let s = s.strip_prefix("a=").unwrap_or(s);
    let s = s.strip_prefix("candidate:").unwrap_or(s);
    let mut it = s.split_ascii_whitespace();
    let mut next = |what: &'static str| it.next().ok_or(SdpError::InvalidCandidate(what));

    let foundation = next("foundation")?;
    if foundation.len() > 32 || !foundation.bytes().all(is_ice_char) {
        return Err(SdpError::InvalidCandidate("foundation"));
    }
    let component = next("component")?
        .parse()
        .map_err(|_| SdpError::InvalidCandidate("component"))?;
    let transport = next("transport")?;
    let priority = next("priority")?
        .parse()
        .map_err(|_| SdpError::InvalidCandidate("priority"))?;
    let address = next("address")?;
    let port = next("port")?
        .parse()
        .map_err(|_| SdpError::InvalidCandidate("port"))?;
    if next("typ")? != "typ" {
        return Err(SdpError::InvalidCandidate("typ"));
    }
    let typ = next("type")?;

    let mut raddr = None;
    let mut rport = None;
    let mut extensions = Vec::new();
    while let Some(name) = it.next() {
        let value = it
            .next()
            .ok_or(SdpError::InvalidCandidate("extension without value"))?;
        match name {
            "raddr" if raddr.is_none() => raddr = Some(value),
            "rport" if rport.is_none() => {
                rport = Some(
                    value
                        .parse::<u16>()
                        .map_err(|_| SdpError::InvalidCandidate("rport"))?,
                );
            }
            _ => extensions.push((name.to_owned(), value.to_owned())),
        }
    }
    let related = match (raddr, rport) {
        (Some(a), Some(p)) => Some((a.to_owned(), p)),
        (None, None) => None,
        _ => {
            return Err(SdpError::InvalidCandidate(
                "raddr and rport must come together",
            ));
        }
    };
    Ok(Candidate {
        foundation: foundation.to_owned(),
        component,
        transport: transport.to_owned(),
        priority,
        address: address.to_owned(),
        port,
        typ: typ.to_owned(),
        related,
        extensions,
    })
}

/// `ice-char = ALPHA / DIGIT / "+" / "/"` (RFC 8839 §5.1).
fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

impl fmt::Display for Candidate {
    /// Writes `candidate:...`, the form used in `a=` lines and in trickled candidates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "candidate:{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            self.transport,
            self.priority,
            self.address,
            self.port,
            self.typ
        )?;
        if let Some((addr, port)) = &self.related {
            write!(f, " raddr {addr} rport {port}")?;
        }
        for (k, v) in &self.extensions {
            write!(f, " {k} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromium_host_candidates() {
        let s = "candidate:4030963561 1 udp 2122194687 192.0.2.2 40585 typ host generation 0 ufrag z/E2 network-id 1";
        let c = parse_candidate(s).unwrap();
        assert_eq!(c.foundation, "4030963561");
        assert_eq!(c.component, 1);
        assert!(c.is_udp());
        assert_eq!(c.priority, 2122194687);
        assert_eq!(c.address, "192.0.2.2");
        assert_eq!(c.port, 40585);
        assert_eq!(c.typ, "host");
        assert_eq!(c.related, None);
        assert_eq!(c.extension("ufrag"), Some("z/E2"));
        assert_eq!(c.extension("network-id"), Some("1"));
        assert_eq!(c.to_string(), s);

        let tcp =
            "candidate:250170365 1 tcp 1518214911 fd00::2 9 typ host tcptype active generation 0";
        let c = parse_candidate(tcp).unwrap();
        assert_eq!(c.address, "fd00::2");
        assert_eq!(c.extension("tcptype"), Some("active"));
        assert!(!c.is_udp());
        assert_eq!(c.to_string(), tcp);
    }

    #[test]
    fn prefixes_and_related_address() {
        let s = "a=candidate:842163049 1 UDP 1677729535 203.0.113.7 61000 typ srflx raddr 10.0.0.2 rport 50000 generation 0";
        let c = parse_candidate(s).unwrap();
        assert_eq!(c.typ, "srflx");
        assert_eq!(c.related, Some(("10.0.0.2".to_owned(), 50000)));
        assert_eq!(c.extensions, vec![("generation".into(), "0".into())]);
        assert_eq!(c.to_string(), &s[2..]);
        let bare = parse_candidate("1 1 udp 1 h.local 5 typ host").unwrap();
        assert_eq!(bare.address, "h.local");
        assert_eq!(bare.to_string(), "candidate:1 1 udp 1 h.local 5 typ host");
        // rport before raddr is accepted and normalized
        let c = parse_candidate("1 1 udp 1 1.2.3.4 5 typ relay rport 7 raddr 5.6.7.8").unwrap();
        assert_eq!(c.related, Some(("5.6.7.8".to_owned(), 7)));
    }

    #[test]
    fn malformed_candidates() {
        for bad in [
            "",
            "candidate:",
            "candidate:1 1 udp 1 1.2.3.4 5",
            "candidate:1 1 udp 1 1.2.3.4 5 typ",
            "candidate:1 1 udp 1 1.2.3.4 5 type host",
            "candidate:1 x udp 1 1.2.3.4 5 typ host",
            "candidate:1 1 udp 4294967296 1.2.3.4 5 typ host",
            "candidate:1 1 udp 1 1.2.3.4 65536 typ host",
            "candidate:1 1 udp 1 1.2.3.4 5 typ host generation",
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.1.1.1",
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.1.1.1 rport x",
            "candidate:a-b 1 udp 1 1.2.3.4 5 typ host",
            "candidate:123456789012345678901234567890123 1 udp 1 1.2.3.4 5 typ host",
        ] {
            assert!(parse_candidate(bad).is_err(), "{bad:?}");
        }
    }
}
