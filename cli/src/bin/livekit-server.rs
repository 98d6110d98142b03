//! `livekit-server`: a LiveKit-compatible media server.

fn main() -> std::process::ExitCode {
    lkr_api::server_main()
}
