//! The CLI's IVF reader on arbitrary files: header, frames, keyframe detection per codec,
//! seeking back to the last keyframe and rewinding, as the looping publisher does.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use lkr_cli::media::ivf::IvfReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = IvfReader::new(Cursor::new(data)) else {
        return;
    };
    let header = reader.header();
    let _ = (reader.codec(), header.codec(), header.pts_micros(u64::MAX));
    let mut frames = 0usize;
    while let Ok(Some(frame)) = reader.next_frame() {
        let _ = header.pts_micros(frame.pts);
        frames += 1;
        assert!(
            frames <= data.len() / 12,
            "each frame takes a 12-byte header"
        );
    }
    if reader.seek_to_last_keyframe().unwrap_or(false) {
        let _ = reader.next_frame();
    }
    if reader.rewind().is_ok() {
        let _ = reader.next_frame();
    }
});
