//! SASL DIGEST-MD5 as ZooKeeper uses it (RFC 2831; ../shared/SECURITY.md
//! §3.4): realm `zk-sasl-md5`, digest-uri `zookeeper/zk-sasl-md5`, quality
//! of protection `auth`. The exchange is two rounds: the client's empty
//! initial token, the server's challenge, the client's response, the
//! server's `rspauth` (which the client checks). Pure: the session drives it.

use std::fmt::Write as _;

use crate::proto::sasl::{parse_directives, response_value, DIGEST_URI};

/// Where a DIGEST-MD5 exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DigestMd5 {
    /// The empty initial token is to be sent.
    Start { user: String, password: String },
    /// Waiting for the server's challenge.
    Challenged { user: String, password: String },
    /// Our response went out; the server's `rspauth` must equal this.
    Responded { rspauth: String },
    /// Authenticated.
    Done,
}

/// What to do after a server token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this token.
    Send(Vec<u8>),
    /// Authenticated: nothing more to send.
    Done,
}

impl DigestMd5 {
    pub(crate) fn new(user: &str, password: &str) -> Self {
        Self::Start {
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// The first token (empty: DIGEST-MD5 has no initial response).
    pub(crate) fn initial(&mut self) -> Vec<u8> {
        if let Self::Start { user, password } = self {
            *self = Self::Challenged {
                user: std::mem::take(user),
                password: std::mem::take(password),
            };
        }
        Vec::new()
    }

    /// Processes a server token. `cnonce` is the client nonce to use.
    pub(crate) fn step(&mut self, token: &[u8], cnonce: &str) -> Result<Step, String> {
        match std::mem::replace(self, Self::Done) {
            Self::Challenged { user, password } => {
                let text = std::str::from_utf8(token).map_err(|_| "challenge is not UTF-8")?;
                let fields = parse_directives(text)?;
                let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                let nonce = get("nonce").ok_or("challenge without a nonce")?;
                let realm = get("realm").unwrap_or("zk-sasl-md5");
                if let Some(qop) = get("qop") {
                    if !qop.split(',').any(|q| q.trim() == "auth") {
                        return Err(format!("server offers qop {qop:?}, not auth"));
                    }
                }
                let nc = "00000001";
                let response = response_value(
                    &user,
                    realm,
                    &password,
                    nonce,
                    cnonce,
                    nc,
                    Some(&user),
                    true,
                );
                let rspauth = response_value(
                    &user,
                    realm,
                    &password,
                    nonce,
                    cnonce,
                    nc,
                    Some(&user),
                    false,
                );
                let mut out = String::new();
                let _ = write!(
                    out,
                    "charset=utf-8,username=\"{}\",realm=\"{}\",nonce=\"{}\",nc={nc},cnonce=\"{}\",\
                     digest-uri=\"{DIGEST_URI}\",maxbuf=65536,response={response},qop=auth,authzid=\"{}\"",
                    quote(&user),
                    quote(realm),
                    quote(nonce),
                    quote(cnonce),
                    quote(&user)
                );
                *self = Self::Responded { rspauth };
                Ok(Step::Send(out.into_bytes()))
            }
            Self::Responded { rspauth } => {
                let text = std::str::from_utf8(token).map_err(|_| "final token is not UTF-8")?;
                let fields = parse_directives(text)?;
                match fields.iter().find(|(n, _)| n == "rspauth") {
                    Some((_, v)) if *v == rspauth => Ok(Step::Done),
                    Some(_) => {
                        Err("the server's rspauth does not match: not the server we know".into())
                    }
                    None => Err("no rspauth from the server".into()),
                }
            }
            other => {
                *self = other;
                Err("unexpected token".into())
            }
        }
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A SASL mechanism the session runs outside its sans-IO core (GSSAPI): the
/// driver calls it on a blocking thread, one step per server token.
pub(crate) trait ExternalMechanism: Send {
    /// One step: the server's token (`None` for the first step; empty for
    /// a null token). Returns the token to send, or `None` when the
    /// exchange is complete.
    fn step(&mut self, token: Option<&[u8]>) -> Result<Option<Vec<u8>>, String>;
}

/// Makes a fresh mechanism for a connection to a host (as dialled).
pub(crate) type MechanismFactory = std::sync::Arc<
    dyn Fn(&crate::session::HostAddr) -> Result<Box<dyn ExternalMechanism>, String> + Send + Sync,
>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_checks_rspauth() {
        let mut m = DigestMd5::new("bob", "bob-secret");
        assert!(m.initial().is_empty());
        let challenge = br#"realm="zk-sasl-md5",nonce="KlneqS4rE2mQH7D1rFY6Yekv2HScj0hOWQBpGJQU",charset=utf-8,algorithm=md5-sess"#;
        let Step::Send(resp) = m
            .step(challenge, "wnx7vU6GkHpmGC1ZZf7aCKJs9+ZOw5DhdovaBFFt")
            .unwrap()
        else {
            panic!("a response")
        };
        let resp = String::from_utf8(resp).unwrap();
        assert!(
            resp.contains("response=5040fd61da671f94f052caa34710cc6f"),
            "{resp}"
        );
        assert!(
            resp.contains(r#"digest-uri="zookeeper/zk-sasl-md5""#),
            "{resp}"
        );
        let mut forged = m.clone();
        assert!(forged
            .step(b"rspauth=00000000000000000000000000000000", "")
            .is_err());
        assert_eq!(
            m.step(b"rspauth=2f55a0938da5edc83ec1152726072d3e", "")
                .unwrap(),
            Step::Done
        );
    }
}
