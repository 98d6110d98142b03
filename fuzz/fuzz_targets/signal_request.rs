//! `SignalRequest` as the WebSocket session decodes it: binary frames with prost, text
//! frames with serde (protobuf JSON). What decodes is encoded again both ways, as the
//! server does when it relays parts of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkr_proto::pb;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let request = if mode & 1 == 0 {
        pb::SignalRequest::decode(body).ok()
    } else {
        std::str::from_utf8(body)
            .ok()
            .and_then(|t| serde_json::from_str::<pb::SignalRequest>(t).ok())
    };
    let Some(request) = request else { return };
    let bytes = request.encode_to_vec();
    let again = pb::SignalRequest::decode(bytes.as_slice()).expect("our own encoding decodes");
    assert_eq!(again.encoded_len(), bytes.len());
    let _ = serde_json::to_string(&request);
});
