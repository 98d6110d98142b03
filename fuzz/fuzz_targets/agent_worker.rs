//! An agent worker's `/agent` frames as the server reads them (binary with prost, text with
//! serde as protobuf JSON), fed to the LiveKit Agents dispatcher with a room that starts,
//! people who join and time that passes; every answer is encoded as it would be sent.
//! Nothing a worker sends may panic the dispatcher.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lkr_agent::{Dispatcher, Limits, Output, Timing};
use lkr_proto::pb;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut d = Dispatcher::new(
        Limits {
            max_workers: 4,
            max_jobs: 32,
            max_dispatches_per_room: 4,
            max_metadata_size: 256,
        },
        Timing::default(),
        pb::ServerInfo::default(),
        t0,
        0,
    );
    let Ok(a) = d.handle_worker_connect(t0, "k", "s") else {
        return;
    };
    let b = d.handle_worker_connect(t0, "k", "s").ok();
    let room = pb::Room {
        name: "r".into(),
        ..Default::default()
    };
    let mut now = t0;
    // Frames: [control byte][len][body]; the control byte picks the worker, the decoding and
    // the room event that follows.
    let mut rest = data;
    while let [ctl, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(u64::from(*ctl & 0x0f) * 700);
        let conn = if ctl & 0x10 == 0 { a } else { b.unwrap_or(a) };
        let msg = if ctl & 0x20 == 0 {
            pb::WorkerMessage::decode(body).ok()
        } else {
            std::str::from_utf8(body)
                .ok()
                .and_then(|t| serde_json::from_str::<pb::WorkerMessage>(t).ok())
        };
        if let Some(m) = msg {
            let _ = d.handle_worker_message(now, conn, m);
        }
        match ctl >> 6 {
            0 => d.handle_timeout(now),
            1 => d.handle_room_started(now, &room, &[]),
            2 => d.handle_participant_joined(
                now,
                &room,
                &pb::ParticipantInfo {
                    identity: format!("p{}", ctl & 3),
                    ..Default::default()
                },
            ),
            _ => d.handle_room_finished(now, "r"),
        }
        while let Some(o) = d.poll_output() {
            if let Output::Send { message, .. } = o {
                let _ = message.encode_to_vec();
                let _ = serde_json::to_string(&message);
            }
        }
    }
    let _ = d.list_dispatch("r", "");
});
