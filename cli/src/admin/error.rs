//! What can go wrong in an administrative command.

use lkr_proto::token::TokenError;

/// Why a command failed. The text is what the user sees after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no API credentials: pass --api-key and --api-secret, set LIVEKIT_API_KEY and \
         LIVEKIT_API_SECRET, or use --dev"
    )]
    MissingCredentials,
    #[error("an API key was given but no API secret (--api-secret or LIVEKIT_API_SECRET)")]
    MissingSecret,
    #[error("an API secret was given but no API key (--api-key or LIVEKIT_API_KEY)")]
    MissingKey,
    #[error("--dev cannot be combined with --api-key or --api-secret")]
    DevWithExplicitKeys,
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "https not supported: this livekit-cli speaks plain HTTP only; use http:// or ws:// instead of {0}"
    )]
    HttpsUnsupported(String),
    /// A flag's value, or a combination of flags, that the command cannot use.
    #[error("{0}")]
    BadArgument(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "could not connect to the server at {url}: {reason} (is livekit-server running there?)"
    )]
    Connect { url: String, reason: String },
    #[error("no answer from the server at {url} within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("HTTP exchange with {url} failed: {reason}")]
    Transport { url: String, reason: String },
    /// A Twirp error answer: `code` and `msg` as the server sent them.
    #[error("{code}: {msg}")]
    Server {
        status: u16,
        code: String,
        msg: String,
    },
    #[error("could not decode the {method} response: {source}")]
    Decode {
        method: &'static str,
        source: prost::DecodeError,
    },
}
