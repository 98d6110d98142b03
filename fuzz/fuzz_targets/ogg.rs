//! The CLI's Ogg/Opus reader on arbitrary files. With the first byte odd, every page's CRC is
//! recomputed first, so the input reaches the packet and OpusHead parsing behind the check.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use lkr_cli::media::ogg::{OggOpusReader, opus_packet_samples};

const OGG_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::Algorithm {
    width: 32,
    poly: 0x04c1_1db7,
    init: 0,
    refin: false,
    refout: false,
    xorout: 0,
    check: 0x89a1_897f,
    residue: 0,
});

/// Recomputes the CRC of every whole page, walking the page headers.
fn fix_crcs(file: &mut [u8]) {
    let mut at = 0;
    while at + 27 <= file.len() {
        let segments = usize::from(file[at + 26]);
        let Some(lacing) = file.get(at + 27..at + 27 + segments) else {
            return;
        };
        let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let end = at + 27 + segments + body;
        if end > file.len() {
            return;
        }
        file[at + 22..at + 26].fill(0);
        let crc = OGG_CRC.checksum(&file[at..end]);
        file[at + 22..at + 26].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = rest.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut file);
    }
    let _ = opus_packet_samples(rest);
    let Ok(mut reader) = OggOpusReader::new(Cursor::new(file)) else {
        return;
    };
    let _ = reader.head();
    // Every packet takes at least one lacing byte of the input: the loop ends.
    while let Ok(Some(packet)) = reader.next_packet() {
        assert!(packet.samples > 0);
    }
});
