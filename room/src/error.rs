//! What a room operation can fail with, whose fault it is, and its wire forms.
//!
//! Every front door maps a [`RoomError`] through the functions here and nowhere else: Twirp
//! code (with its HTTP status), the HTTP status of a refused join, and the
//! `request_response` reason of a signal request.

use lkr_proto::pb;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller sent something invalid (bad SDP, bad name, too large).
    Invalid,
    /// The caller may not do this (grant, permission).
    NotPermitted,
    /// What the caller named does not exist.
    NotFound,
    /// A limit of the room or server was reached.
    Limit,
    /// What the caller named is not in a state that allows this (an egress that ended).
    Precondition,
    /// Ours: the server failed to do what it should have.
    Internal,
    /// Nobody's: the server is going away (draining); try another node.
    Unavailable,
}

/// What a room operation can fail with. The text is what API and signal clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("requested room does not exist")]
    RoomNotFound,
    #[error("participant does not exist")]
    ParticipantNotFound,
    #[error("track is not found")]
    TrackNotFound,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("room has reached its maximum of {0} participants")]
    RoomFull(u32),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Internal(String),
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("egress does not exist")]
    EgressNotFound,
    #[error("egress with status {0} cannot be stopped")]
    EgressNotStoppable(String),
    /// `MutePublishedTrack` asked to unmute while `room.enable_remote_unmute` is off.
    #[error("remote unmute not enabled")]
    RemoteUnmuteDisabled,
}

impl RoomError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            RoomError::RoomNotFound
            | RoomError::ParticipantNotFound
            | RoomError::TrackNotFound
            | RoomError::EgressNotFound => Fault::NotFound,
            RoomError::EgressNotStoppable(_) | RoomError::RemoteUnmuteDisabled => {
                Fault::Precondition
            }
            RoomError::InvalidArgument(_) => Fault::Invalid,
            RoomError::RoomFull(_) | RoomError::LimitExceeded(_) => Fault::Limit,
            RoomError::NotAllowed(_) => Fault::NotPermitted,
            RoomError::Internal(_) => Fault::Internal,
            RoomError::ShuttingDown => Fault::Unavailable,
        }
    }

    /// The Twirp error code LiveKit answers with.
    pub fn twirp_code(&self) -> &'static str {
        match self.fault() {
            Fault::NotFound => "not_found",
            Fault::Invalid => "invalid_argument",
            Fault::Limit => "resource_exhausted",
            Fault::NotPermitted => "permission_denied",
            Fault::Internal => "internal",
            Fault::Unavailable => "unavailable",
            Fault::Precondition => "failed_precondition",
        }
    }

    /// The HTTP status of a join refused for this reason (the `/rtc` and `/validate` body
    /// is the error's text).
    pub fn join_status(&self) -> u16 {
        match self {
            RoomError::RoomFull(_) | RoomError::NotAllowed(_) => 403,
            RoomError::RoomNotFound
            | RoomError::ParticipantNotFound
            | RoomError::TrackNotFound
            | RoomError::EgressNotFound => 404,
            RoomError::EgressNotStoppable(_) | RoomError::RemoteUnmuteDisabled => 412,
            RoomError::LimitExceeded(_) => 429,
            RoomError::Internal(_) => 500,
            RoomError::ShuttingDown => 503,
            RoomError::InvalidArgument(_) => 400,
        }
    }

    /// The `request_response` reason of a signal request refused for this reason.
    pub fn request_reason(&self) -> pb::request_response::Reason {
        use pb::request_response::Reason;
        match self.fault() {
            Fault::NotFound => Reason::NotFound,
            Fault::NotPermitted => Reason::NotAllowed,
            Fault::Limit => Reason::LimitExceeded,
            Fault::Invalid | Fault::Precondition => Reason::InvalidRequest,
            Fault::Internal | Fault::Unavailable => Reason::UnclassifiedError,
        }
    }
}
