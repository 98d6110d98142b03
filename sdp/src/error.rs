//! The one error type of this crate.

use thiserror::Error;

use crate::Limit;

/// Why a session description, a candidate or a fingerprint could not be read.
///
/// `line` numbers count from 1 over the lines of the input as given (empty lines included).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// The input holds no SDP line at all.
    #[error("empty session description")]
    Empty,
    /// A line is not of the form `<letter>=<value>`.
    #[error("line {line}: not of the form <letter>=<value>")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
    },
    /// The first line is not `v=0` (RFC 8866 §5.1).
    #[error("line {line}: expected v=0 first")]
    BadVersion {
        /// 1-based line number.
        line: usize,
    },
    /// A line that belongs only at session level appears inside a media section, or a
    /// session line appears twice.
    #[error("line {line}: {letter}= is not allowed here")]
    MisplacedLine {
        /// 1-based line number.
        line: usize,
        /// The line's type letter.
        letter: char,
    },
    /// A required session line is absent.
    #[error("missing {0}= line")]
    MissingLine(char),
    /// A line or attribute that this crate models has a value it cannot read.
    #[error("line {line}: invalid {field}")]
    InvalidField {
        /// 1-based line number.
        line: usize,
        /// What was being read, e.g. `"rtpmap"` or `"m= port"`.
        field: &'static str,
    },
    /// A fingerprint value is not colon-separated pairs of hex digits.
    #[error("invalid fingerprint value")]
    InvalidFingerprint,
    /// An ICE candidate (RFC 8839 §5.1) could not be read; the text says which part.
    #[error("invalid candidate: {0}")]
    InvalidCandidate(&'static str),
    /// A list that grows with the input would pass its cap (a [`Limit`]); the whole
    /// description is refused. `line` is the line that would have passed it.
    #[error("line {line}: {limit}")]
    OverLimit {
        /// 1-based line number.
        line: usize,
        /// Which cap.
        limit: Limit,
    },
}
