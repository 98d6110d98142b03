//! Where the server is and which API key signs for us.
//!
//! Resolution follows `lk` (livekit-cli 2.x): flags first, then `LIVEKIT_URL`,
//! `LIVEKIT_API_KEY` and `LIVEKIT_API_SECRET` (with `LK_API_KEY`/`LK_API_SECRET` as a
//! fallback), and `--dev` for the development pair `devkey`/`secret`. `--dev` together with
//! an explicit `--api-key` or `--api-secret` flag is refused, as `lk` refuses it; keys that
//! only sit in the environment give way to `--dev`, which the user typed on purpose.

use super::Error;
use super::command::GlobalArgs;

/// API key of `livekit-server --dev`.
pub const DEV_API_KEY: &str = "devkey";
/// API secret of `livekit-server --dev`.
pub const DEV_API_SECRET: &str = "secret";

/// Environment variables holding the API key, in order of preference.
pub const API_KEY_VARS: [&str; 2] = ["LIVEKIT_API_KEY", "LK_API_KEY"];
/// Environment variables holding the API secret, in order of preference.
pub const API_SECRET_VARS: [&str; 2] = ["LIVEKIT_API_SECRET", "LK_API_SECRET"];

/// An API key and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub api_key: String,
    pub api_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// Credentials from the global flags and the process environment.
    pub fn from_environment(global: &GlobalArgs) -> Result<Self, Error> {
        Self::resolve(global, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }

    /// Credentials from the global flags and the variables that `env` looks up.
    pub fn resolve(
        global: &GlobalArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        if global.dev {
            if global.api_key.is_some() || global.api_secret.is_some() {
                return Err(Error::DevWithExplicitKeys);
            }
            return Ok(Self {
                api_key: DEV_API_KEY.into(),
                api_secret: DEV_API_SECRET.into(),
            });
        }
        let first = |vars: &[&str]| vars.iter().find_map(|v| env(v));
        let key = global.api_key.clone().or_else(|| first(&API_KEY_VARS));
        let secret = global
            .api_secret
            .clone()
            .or_else(|| first(&API_SECRET_VARS));
        match (key, secret) {
            (Some(api_key), Some(api_secret)) => Ok(Self {
                api_key,
                api_secret,
            }),
            (Some(_), None) => Err(Error::MissingSecret),
            (None, Some(_)) => Err(Error::MissingKey),
            (None, None) => Err(Error::MissingCredentials),
        }
    }
}

/// The server's URL as the user gave it, and its HTTP form for Twirp.
///
/// LiveKit URLs are usually written `ws://` or `wss://` (what clients connect to); the same
/// host and port serve Twirp over `http://` and `https://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    given: String,
    /// `http://host:port[/prefix]`, without a trailing slash.
    http_base: String,
    secure: bool,
}

impl ServerUrl {
    /// Parses `url`; `ws` maps to `http` and `wss` to `https`. A URL without a scheme is taken
    /// as `http://`.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = url.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let (scheme, secure) = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http" | "ws") => ("http", false),
            Some("https" | "wss") => ("https", true),
            Some(other) => {
                return Err(bad(&format!(
                    "unsupported scheme {other:?} (use http, https, ws or wss)"
                )));
            }
            None => return Err(bad("missing scheme")),
        };
        let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
        if authority.host().is_empty() {
            return Err(bad("missing host"));
        }
        let path = uri.path().trim_end_matches('/');
        Ok(Self {
            given: trimmed.to_owned(),
            http_base: format!("{scheme}://{authority}{path}"),
            secure,
        })
    }

    /// The URL as given on the command line or in `LIVEKIT_URL`.
    pub fn given(&self) -> &str {
        &self.given
    }

    /// Whether the URL asks for TLS (`https` or `wss`).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The plain-HTTP base for Twirp calls; TLS is not supported.
    pub fn http_base(&self) -> Result<&str, Error> {
        if self.secure {
            return Err(Error::HttpsUnsupported(self.given.clone()));
        }
        Ok(&self.http_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn global(dev: bool, key: Option<&str>, secret: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            url: "http://localhost:7880".into(),
            api_key: key.map(Into::into),
            api_secret: secret.map(Into::into),
            dev,
            json: false,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn url_schemes_map_to_http() {
        let u = ServerUrl::parse("ws://127.0.0.1:7880").unwrap();
        assert_eq!(u.http_base().unwrap(), "http://127.0.0.1:7880");
        assert_eq!(u.given(), "ws://127.0.0.1:7880");
        let u = ServerUrl::parse("http://example.com:7880/lk/").unwrap();
        assert_eq!(u.http_base().unwrap(), "http://example.com:7880/lk");
        let u = ServerUrl::parse("localhost:7880").unwrap();
        assert_eq!(u.http_base().unwrap(), "http://localhost:7880");
        for secure in ["wss://x.livekit.cloud", "https://x:443"] {
            let u = ServerUrl::parse(secure).unwrap();
            assert!(u.is_secure());
            assert!(matches!(u.http_base(), Err(Error::HttpsUnsupported(_))));
        }
        assert!(matches!(
            ServerUrl::parse("ftp://x"),
            Err(Error::BadUrl { .. })
        ));
    }

    #[test]
    fn flags_beat_environment_and_lk_vars_are_a_fallback() {
        let e = env(&[("LIVEKIT_API_KEY", "envkey"), ("LK_API_SECRET", "lksecret")]);
        let c = Credentials::resolve(&global(false, None, None), &e).unwrap();
        assert_eq!(
            (c.api_key.as_str(), c.api_secret.as_str()),
            ("envkey", "lksecret")
        );
        let c = Credentials::resolve(&global(false, Some("k"), None), &e).unwrap();
        assert_eq!(c.api_key, "k");
        let e = env(&[
            ("LK_API_KEY", "a"),
            ("LIVEKIT_API_KEY", "b"),
            ("LK_API_SECRET", "s"),
        ]);
        assert_eq!(
            Credentials::resolve(&global(false, None, None), e)
                .unwrap()
                .api_key,
            "b"
        );
    }

    #[test]
    fn dev_and_missing_keys() {
        let none = env(&[]);
        let c = Credentials::resolve(&global(true, None, None), &none).unwrap();
        assert_eq!(
            (c.api_key.as_str(), c.api_secret.as_str()),
            ("devkey", "secret")
        );
        assert!(matches!(
            Credentials::resolve(&global(true, Some("k"), None), &none),
            Err(Error::DevWithExplicitKeys)
        ));
        assert!(matches!(
            Credentials::resolve(&global(false, None, None), &none),
            Err(Error::MissingCredentials)
        ));
        assert!(matches!(
            Credentials::resolve(&global(false, Some("k"), None), &none),
            Err(Error::MissingSecret)
        ));
        let with_env = env(&[("LIVEKIT_API_KEY", "k"), ("LIVEKIT_API_SECRET", "s")]);
        let c = Credentials::resolve(&global(true, None, None), &with_env).unwrap();
        assert_eq!(c.api_key, "devkey");
    }
}
