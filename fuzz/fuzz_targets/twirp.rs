//! Twirp `livekit.RoomService` request bodies, through the decoder the server uses
//! (`lkr_api::twirp::Format::decode`), in both formats and for every method's request type;
//! a CreateRoom request also goes through its conversion to the room's settings.
//!
//! First byte: bit 0 picks protobuf or JSON, the rest picks the method.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkr_api::twirp::Format;
use lkr_proto::pb;
use prost::Message;
use serde::{Serialize, de::DeserializeOwned};

fn decode<T: Message + Default + DeserializeOwned + Serialize>(
    format: Format,
    body: &[u8],
) -> Option<T> {
    let msg = format.decode::<T>(body).ok()?;
    let _ = format.encode(&msg);
    Some(msg)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let format = if sel & 1 == 0 {
        Format::Protobuf
    } else {
        Format::Json
    };
    match (sel >> 1) % 10 {
        0 => {
            if let Some(r) = decode::<pb::CreateRoomRequest>(format, body) {
                let _ = lkr_room::CreateRoom::from(&r);
            }
        }
        1 => drop(decode::<pb::ListRoomsRequest>(format, body)),
        2 => drop(decode::<pb::DeleteRoomRequest>(format, body)),
        3 => drop(decode::<pb::ListParticipantsRequest>(format, body)),
        4 => drop(decode::<pb::RoomParticipantIdentity>(format, body)),
        5 => drop(decode::<pb::MuteRoomTrackRequest>(format, body)),
        6 => drop(decode::<pb::UpdateParticipantRequest>(format, body)),
        7 => drop(decode::<pb::UpdateSubscriptionsRequest>(format, body)),
        8 => drop(decode::<pb::SendDataRequest>(format, body)),
        _ => drop(decode::<pb::UpdateRoomMetadataRequest>(format, body)),
    }
    let _ = Format::from_content_type(&String::from_utf8_lossy(body));
});
