//! AV1 over RTP (the AV1 RTP payload specification, §4): OBU parsing, a packetizer and a
//! depacketizer.
//!
//! Packets carry one aggregation header `Z Y W W N - - -` and OBU elements. The packetizer
//! drops temporal delimiters, strips each OBU's size field (as the specification asks),
//! and puts one element per packet (W = 1), fragmenting large OBUs with Z/Y. N is set on
//! the first packet of a temporal unit that starts a coded video sequence (it holds a
//! sequence header). The depacketizer accepts any W, joins fragments, and writes the
//! temporal unit back in the low-overhead format IVF needs: a temporal delimiter, then
//! every OBU with its size field.

/// OBU type of a sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of a temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

/// One OBU of a temporal unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// `obu_type`.
    pub obu_type: u8,
    /// The header byte(s): the OBU header and, when present, its extension.
    pub header: &'a [u8],
    /// The payload, without the size field.
    pub payload: &'a [u8],
}

fn read_leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..8 {
        let b = *data.get(i)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn write_leb128(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The OBUs of a temporal unit in the low-overhead format (each OBU with a size field; a
/// last OBU without one runs to the end). Stops at malformed data.
pub fn obus(data: &[u8]) -> impl Iterator<Item = Obu<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let &h = rest.first()?;
        let has_ext = h & 0x04 != 0;
        let has_size = h & 0x02 != 0;
        let header_len = if has_ext { 2 } else { 1 };
        let header = rest.get(..header_len)?;
        let after = &rest[header_len..];
        let (payload, next) = if has_size {
            let (len, n) = read_leb128(after)?;
            let len = usize::try_from(len).ok()?;
            let payload = after.get(n..n + len)?;
            (payload, &after[n + len..])
        } else {
            (after, &after[after.len()..])
        };
        rest = next;
        Some(Obu {
            obu_type: (h >> 3) & 0x0f,
            header,
            payload,
        })
    })
}

/// Splits temporal units into RTP payloads.
#[derive(Debug, Default)]
pub struct Av1Packetizer;

impl Av1Packetizer {
    /// The payloads of one temporal unit, each at most `mtu` bytes.
    pub fn packetize(&mut self, tu: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mtu = mtu.max(16);
        let mut out: Vec<Vec<u8>> = Vec::new();
        let new_sequence = obus(tu).any(|o| o.obu_type == OBU_SEQUENCE_HEADER);
        for o in obus(tu) {
            if matches!(
                o.obu_type,
                OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING
            ) {
                continue;
            }
            let mut element = Vec::with_capacity(o.header.len() + o.payload.len());
            element.push(o.header[0] & !0x02);
            element.extend_from_slice(&o.header[1..]);
            element.extend_from_slice(o.payload);
            let chunks: Vec<&[u8]> = element.chunks(mtu - 1).collect();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let mut agg = 0x10; // W = 1: one element, no length field
                if i > 0 {
                    agg |= 0x80; // Z: continues the previous packet's element
                }
                if i < last {
                    agg |= 0x40; // Y: continues in the next packet
                }
                let mut p = Vec::with_capacity(1 + chunk.len());
                p.push(agg);
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        if new_sequence && let Some(first) = out.first_mut() {
            first[0] |= 0x08;
        }
        out
    }
}

/// Joins RTP payloads back into temporal units.
#[derive(Debug, Default)]
pub struct Av1Depacketizer {
    obus: Vec<Vec<u8>>,
    partial: Option<Vec<u8>>,
    damaged: bool,
}

impl Av1Depacketizer {
    /// Forgets a partly received temporal unit (after loss).
    pub fn reset(&mut self) {
        self.obus.clear();
        self.partial = None;
        self.damaged = true;
    }

    /// Adds one payload; with `marker` (the last packet of a temporal unit), returns the
    /// unit, unless part of it was lost.
    pub fn push(&mut self, payload: &[u8], marker: bool) -> Option<Vec<u8>> {
        let (&agg, mut rest) = payload.split_first()?;
        let z = agg & 0x80 != 0;
        let y = agg & 0x40 != 0;
        let w = (agg >> 4) & 0x03;
        let mut elements: Vec<&[u8]> = Vec::new();
        let mut index = 0u8;
        while !rest.is_empty() {
            index += 1;
            let last = w != 0 && index == w;
            if last {
                elements.push(rest);
                break;
            }
            let Some((len, n)) = read_leb128(rest) else {
                self.reset();
                return None;
            };
            let Some(e) = usize::try_from(len)
                .ok()
                .and_then(|len| rest.get(n..n + len))
            else {
                self.reset();
                return None;
            };
            elements.push(e);
            rest = &rest[n + e.len()..];
        }
        let count = elements.len();
        for (i, e) in elements.into_iter().enumerate() {
            let mut obu = if i == 0 && z {
                match self.partial.take() {
                    Some(p) => p,
                    None => {
                        self.damaged = true;
                        continue;
                    }
                }
            } else {
                if i == 0 {
                    self.partial = None;
                }
                Vec::new()
            };
            obu.extend_from_slice(e);
            if i == count - 1 && y {
                self.partial = Some(obu);
            } else {
                self.obus.push(obu);
            }
        }
        if !marker {
            return None;
        }
        let obus = std::mem::take(&mut self.obus);
        self.partial = None;
        if std::mem::take(&mut self.damaged) || obus.is_empty() {
            return None;
        }
        let mut tu = vec![(OBU_TEMPORAL_DELIMITER << 3) | 0x02, 0];
        for o in obus {
            let Some(&h) = o.first() else { continue };
            let header_len = if h & 0x04 != 0 { 2 } else { 1 };
            if o.len() < header_len {
                continue;
            }
            let obu_type = (h >> 3) & 0x0f;
            if obu_type == OBU_TEMPORAL_DELIMITER {
                continue;
            }
            // The payload, without any size field the sender left in.
            let payload = if h & 0x02 != 0 {
                match read_leb128(&o[header_len..]) {
                    Some((len, n)) => {
                        let start = header_len + n;
                        let end =
                            usize::try_from(len).map_or(o.len(), |l| (start + l).min(o.len()));
                        &o[start..end]
                    }
                    None => continue,
                }
            } else {
                &o[header_len..]
            };
            tu.push(h | 0x02);
            tu.extend_from_slice(&o[1..header_len]);
            write_leb128(payload.len() as u64, &mut tu);
            tu.extend_from_slice(payload);
        }
        Some(tu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obu(obu_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(obu_type << 3) | 0x02];
        write_leb128(payload.len() as u64, &mut v);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trip_with_fragmentation() {
        let frame: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut tu = obu(OBU_TEMPORAL_DELIMITER, &[]);
        tu.extend(obu(OBU_SEQUENCE_HEADER, &[1, 2, 3]));
        tu.extend(obu(6, &frame));
        let parts = Av1Packetizer.packetize(&tu, 1000);
        assert!(parts.len() >= 4);
        assert!(
            parts[0][0] & 0x08 != 0,
            "N set for a new coded video sequence"
        );
        assert!(lkr_rtp::av1::is_keyframe(&parts[0]));
        let mut d = Av1Depacketizer::default();
        let mut got = None;
        for (i, p) in parts.iter().enumerate() {
            got = d.push(p, i == parts.len() - 1);
        }
        let got = got.expect("a temporal unit");
        let types: Vec<u8> = obus(&got).map(|o| o.obu_type).collect();
        assert_eq!(types, vec![OBU_TEMPORAL_DELIMITER, OBU_SEQUENCE_HEADER, 6]);
        assert_eq!(obus(&got).nth(2).unwrap().payload, frame.as_slice());
        assert_eq!(got, tu);
    }

    #[test]
    fn loss_drops_the_unit() {
        let tu = obu(6, &vec![7u8; 2500]);
        let parts = Av1Packetizer.packetize(&tu, 1000);
        let mut d = Av1Depacketizer::default();
        assert!(d.push(&parts[0], false).is_none());
        d.reset();
        assert!(d.push(&parts[2], true).is_none());
        // The next whole unit comes through.
        let parts = Av1Packetizer.packetize(&tu, 1000);
        let mut got = None;
        for (i, p) in parts.iter().enumerate() {
            got = d.push(p, i == parts.len() - 1);
        }
        assert!(got.is_some());
    }
}
