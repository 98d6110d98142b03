//! Finding and checking the access token of an HTTP request.
//!
//! As LiveKit's middleware: the `Authorization` header, which must then be `Bearer <jwt>`,
//! or else the `access_token` query parameter (browsers cannot set WebSocket headers).

use http::HeaderMap;
use lkr_proto::token::{self, Claims, KeyProvider, TokenError};

/// Why a request's credentials were refused; the text is what the client sees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("invalid authorization header: must start with \"Bearer \"")]
    NotBearer,
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The token of a request, if it carries one.
pub fn request_token(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<String>, AuthError> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| AuthError::NotBearer)?;
        let t = v.strip_prefix("Bearer ").ok_or(AuthError::NotBearer)?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    }))
}

/// Verifies the request's token, if any, and returns its claims.
pub fn authenticate(
    headers: &HeaderMap,
    query: Option<&str>,
    keys: &impl KeyProvider,
) -> Result<Option<Claims>, AuthError> {
    match request_token(headers, query)? {
        Some(t) => Ok(Some(token::verify(&t, keys)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wins_and_must_be_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(
            request_token(&h, Some("a=1&access_token=q"))
                .unwrap()
                .as_deref(),
            Some("q")
        );
        assert_eq!(request_token(&h, Some("&&a=1")).unwrap(), None);
        h.insert("authorization", "Bearer hdr".parse().unwrap());
        assert_eq!(
            request_token(&h, Some("access_token=q"))
                .unwrap()
                .as_deref(),
            Some("hdr")
        );
        h.insert("authorization", "Basic x".parse().unwrap());
        assert_eq!(request_token(&h, None), Err(AuthError::NotBearer));
    }
}
