//! Where `serve` listens, and the URL clients reach it at.

use std::net::SocketAddr;

use clap::Args;

use super::ConfigError;

#[derive(Debug, Args)]
pub struct ListenerArgs {
    /// Address to listen on.
    #[arg(long, env = "TASKFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The URL clients reach this server at, for the absolute URLs of
    /// `/.well-known/oauth-authorization-server` (e.g.
    /// https://tasks.example.com) [default: http:// and the listen address].
    #[arg(long, env = "TASKFLOW_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl ListenerArgs {
    /// The URL clients reach this server at, without a trailing slash:
    /// `--public-url`, or `http://` and `listening` (the address `serve`
    /// is bound to). Only an absolute `http` or `https` URL, without a
    /// query, is taken.
    pub fn public_url(&self, listening: SocketAddr) -> Result<String, ConfigError> {
        let Some(url) = &self.public_url else {
            return Ok(format!("http://{listening}"));
        };
        let invalid = || {
            ConfigError::Invalid(format!(
                "public URL {url:?} is not an absolute http or https URL without a query"
            ))
        };
        let uri: axum::http::Uri = url.parse().map_err(|_| invalid())?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.authority().is_none() || uri.query().is_some() || url.contains('#') {
            return Err(invalid());
        }
        Ok(url.trim_end_matches('/').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_defaults_to_the_listen_address() {
        let mut listener = ListenerArgs {
            listen: "127.0.0.1:8080".parse().unwrap(),
            public_url: None,
        };
        let listening: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(
            listener.public_url(listening).unwrap(),
            "http://127.0.0.1:4321"
        );
        listener.public_url = Some("https://tasks.example.com/api/".into());
        assert_eq!(
            listener.public_url(listening).unwrap(),
            "https://tasks.example.com/api"
        );
        for bad in [
            "tasks.example.com",
            "ftp://tasks.example.com",
            "https://tasks.example.com/?a=b",
            "https://tasks.example.com/#x",
            "/relative",
        ] {
            listener.public_url = Some(bad.into());
            assert!(listener.public_url(listening).is_err(), "{bad}");
        }
    }
}
