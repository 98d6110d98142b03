//! VP9 payload descriptor (RFC 9628 §4.2, formerly draft-ietf-payload-vp9): keyframe
//! detection and the layer fields a forwarder needs to drop spatial layers.
//!
//! ```text
//!  I P L F B E V Z    required
//!  M PictureID        if I (7 or 15 bits)
//!  TID U SID D        if L
//!  TL0PICIDX          if L and not F
//!  P_DIFF N           if F and P, up to 3
//!  N_S Y G -          if V (the scalability structure; N_S + 1 spatial layers)
//! ```

/// Whether the payload starts a keyframe: P=0 (not inter-picture predicted), B=1 (start of
/// a frame) and, when layer indices are present, spatial layer 0.
pub fn is_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let inter_predicted = b0 & 0x40 != 0;
    let begins_frame = b0 & 0x08 != 0;
    if inter_predicted || !begins_frame {
        return false;
    }
    if b0 & 0x20 == 0 {
        return true;
    }
    let mut off = 1;
    if b0 & 0x80 != 0 {
        let Some(&p) = payload.get(1) else {
            return false;
        };
        off += if p & 0x80 != 0 { 2 } else { 1 };
    }
    payload.get(off).is_some_and(|&l| (l >> 1) & 0x07 == 0)
}

/// What one packet's descriptor says about its place in a scalable stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// Spatial layer id (0 without layer indices).
    pub sid: u8,
    /// Temporal layer id (0 without layer indices).
    pub tid: u8,
    /// B: the first packet of a layer frame.
    pub begins_frame: bool,
    /// E: the last packet of a layer frame.
    pub ends_frame: bool,
    /// P: the layer frame refers to an earlier picture.
    pub inter_predicted: bool,
    /// Spatial layers the scalability structure announces, when this packet carries one
    /// (the first packet of a keyframe, from libwebrtc).
    pub spatial_layers: Option<u8>,
    /// Bytes of the descriptor: the VP9 data starts after them.
    pub descriptor_len: usize,
}

/// The layer fields of a VP9 payload descriptor; `None` when it is cut short.
pub fn layer(payload: &[u8]) -> Option<Layer> {
    let &b0 = payload.first()?;
    let (i, p, l, f, v) = (
        b0 & 0x80 != 0,
        b0 & 0x40 != 0,
        b0 & 0x20 != 0,
        b0 & 0x10 != 0,
        b0 & 0x02 != 0,
    );
    let mut off = 1;
    if i {
        off += if payload.get(off)? & 0x80 != 0 { 2 } else { 1 };
    }
    let (mut sid, mut tid) = (0, 0);
    if l {
        let &b = payload.get(off)?;
        tid = b >> 5;
        sid = (b >> 1) & 0x07;
        off += if f { 1 } else { 2 };
    }
    if f && p {
        // Up to three reference differences, each byte saying whether another follows.
        for _ in 0..3 {
            let &d = payload.get(off)?;
            off += 1;
            if d & 0x01 == 0 {
                break;
            }
        }
    }
    let mut spatial_layers = None;
    if v {
        // N_S Y G, then (Y) each layer's width and height, (G) the picture group.
        let ss = *payload.get(off)?;
        off += 1;
        let n_s = (ss >> 5) + 1;
        spatial_layers = Some(n_s);
        if ss & 0x10 != 0 {
            off += 4 * usize::from(n_s);
        }
        if ss & 0x08 != 0 {
            let n_g = *payload.get(off)?;
            off += 1;
            for _ in 0..n_g {
                let g = *payload.get(off)?;
                off += 1 + usize::from((g >> 2) & 0x03);
            }
        }
    }
    if off > payload.len() {
        return None;
    }
    Some(Layer {
        sid,
        tid,
        begins_frame: b0 & 0x08 != 0,
        ends_frame: b0 & 0x04 != 0,
        inter_predicted: p,
        spatial_layers,
        descriptor_len: off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers() {
        // I (15-bit id), L (TID 1, SID 2), not F: TL0PICIDX follows; B and E.
        let l = layer(&[0xAC, 0x81, 0x23, 0x24, 0x07, 0xFF]).unwrap();
        assert_eq!(
            (l.sid, l.tid, l.begins_frame, l.ends_frame),
            (2, 1, true, true)
        );
        assert_eq!(l.descriptor_len, 5);
        assert!(!l.inter_predicted && l.spatial_layers.is_none());
        // A keyframe's first packet with the scalability structure: N_S = 2 (three layers).
        let l = layer(&[0xAA, 0x05, 0x00, 0x00, 0x40, 0x00]).unwrap();
        assert_eq!((l.sid, l.spatial_layers, l.descriptor_len), (0, Some(3), 5));
        // With each layer's size (Y) and a picture group of one picture with one reference
        // (G): 1 + 3 * 4 + 1 + 2 bytes of structure.
        let mut ss = vec![0xAA, 0x05, 0x00, 0x00, 0x58];
        ss.extend_from_slice(&[0; 12]);
        ss.extend_from_slice(&[0x01, 0x04, 0x01, 0xEE]);
        let l = layer(&ss).unwrap();
        assert_eq!(
            (l.spatial_layers, l.descriptor_len),
            (Some(3), ss.len() - 1)
        );
        assert!(
            layer(&ss[..ss.len() - 2]).is_none(),
            "a structure cut short"
        );
        // Flexible mode, inter-predicted, two reference differences then SID 1.
        let l = layer(&[0xF0, 0x05, 0x02, 0x03, 0x02]).unwrap();
        assert_eq!((l.sid, l.inter_predicted), (1, true));
        // No layer indices: layer 0.
        assert_eq!(layer(&[0x8C, 0x05]).map(|l| l.sid), Some(0));
        // Cut short.
        for bad in [
            &[][..],
            &[0xA0],
            &[0xA0, 0x81, 0x23],
            &[0x22, 0x00, 0x00],
            &[0xF0, 0x05, 0x02, 0x03],
        ] {
            assert!(layer(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn keyframes() {
        // B=1, P=0, no layer indices.
        assert!(is_keyframe(&[0x08, 0x00]));
        // P=1.
        assert!(!is_keyframe(&[0x48, 0x00]));
        // B=0.
        assert!(!is_keyframe(&[0x04, 0x00]));
        // I with 15-bit picture id, L with SID 0 / SID 1.
        assert!(is_keyframe(&[0xA8, 0x81, 0x23, 0x00, 0x00]));
        assert!(!is_keyframe(&[0xA8, 0x81, 0x23, 0x02, 0x00]));
        // I with 7-bit picture id, L with TID 2 SID 0.
        assert!(is_keyframe(&[0xAC, 0x05, 0x40]));
        // Truncated.
        assert!(!is_keyframe(&[]));
        assert!(!is_keyframe(&[0xA8]));
        assert!(!is_keyframe(&[0xA8, 0x81, 0x23]));
        assert!(!is_keyframe(&[0x28]));
    }
}
