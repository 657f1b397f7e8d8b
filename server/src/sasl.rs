//! SASL DIGEST-MD5, server side, as ZooKeeper's `ZooKeeperSaslServer` with
//! a JAAS `Server` section of `DigestLoginModule` users
//! (../shared/SECURITY.md §3): realm `zk-sasl-md5`, a challenge, the
//! client's response checked against the user's password, `rspauth` back,
//! and the connection authenticated as `sasl:<user>`.

use std::collections::HashMap;
use std::path::Path;

use zkit_proto::sasl::{parse_directives, response_value, DIGEST_URI, REALM};

/// The users of a JAAS `Server` section (`user_<name>="<password>"`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SaslUsers {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for SaslUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords are never printed.
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        f.debug_struct("SaslUsers").field("users", &names).finish()
    }
}

impl SaslUsers {
    /// Users from `(name, password)` pairs.
    pub fn new<I, U, P>(users: I) -> Self
    where
        I: IntoIterator<Item = (U, P)>,
        U: Into<String>,
        P: Into<String>,
    {
        Self {
            users: users
                .into_iter()
                .map(|(u, p)| (u.into(), p.into()))
                .collect(),
        }
    }

    /// The users of the `Server` section of a JAAS file (what ZooKeeper
    /// reads from `-Djava.security.auth.login.config`).
    ///
    /// # Errors
    /// The file cannot be read, has no `Server` section, or the section has
    /// no `user_` option.
    pub fn from_jaas_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)?;
        Self::from_jaas(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// As [`from_jaas_file`](Self::from_jaas_file), from the file's text.
    ///
    /// # Errors
    /// No `Server` section, or no `user_` option in it.
    pub fn from_jaas(text: &str) -> Result<Self, String> {
        let start = text
            .find("Server")
            .and_then(|i| text[i..].find('{').map(|j| i + j + 1))
            .ok_or("no Server section")?;
        let end = text[start..]
            .find("};")
            .map(|j| start + j)
            .ok_or("the Server section is not closed with };")?;
        let section = &text[start..end];
        let mut users = HashMap::new();
        let mut rest = section;
        while let Some(i) = rest.find("user_") {
            rest = &rest[i + 5..];
            let eq = rest.find('=').ok_or("user_ option without =")?;
            let name = rest[..eq].trim().to_string();
            let after = rest[eq + 1..].trim_start();
            let value = after
                .strip_prefix('"')
                .and_then(|v| v.find('"').map(|q| v[..q].to_string()))
                .ok_or("a user_ password must be quoted")?;
            users.insert(name, value);
        }
        if users.is_empty() {
            return Err("no user_<name>=\"<password>\" in the Server section".into());
        }
        Ok(Self { users })
    }
}

/// One connection's DIGEST-MD5 exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SaslServer {
    /// Waiting for the client's first (empty) token.
    Start,
    /// Challenge sent with this nonce; waiting for the response.
    Challenged { nonce: String },
    /// Authenticated as this user.
    Done,
}

/// What a SASL token leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Send this token back.
    Reply(Vec<u8>),
    /// Authenticated as the user: send this last token (`rspauth`).
    Authenticated { user: String, token: Vec<u8> },
    /// Refused, for this reason.
    Failed(String),
}

impl SaslServer {
    /// Processes a client token; `nonce` is a fresh nonce for a challenge.
    pub(crate) fn step(&mut self, users: &SaslUsers, token: &[u8], nonce: &str) -> Outcome {
        match std::mem::replace(self, Self::Done) {
            Self::Start => {
                *self = Self::Challenged {
                    nonce: nonce.to_string(),
                };
                Outcome::Reply(
                    format!("realm=\"{REALM}\",nonce=\"{nonce}\",charset=utf-8,algorithm=md5-sess")
                        .into_bytes(),
                )
            }
            Self::Challenged { nonce } => match check(users, token, &nonce) {
                Ok((user, rspauth)) => Outcome::Authenticated {
                    user,
                    token: format!("rspauth={rspauth}").into_bytes(),
                },
                Err(why) => Outcome::Failed(why),
            },
            Self::Done => Outcome::Failed("authentication is already complete".into()),
        }
    }
}

/// Checks the client's response; the user and our `rspauth` when it
/// proves the password.
fn check(users: &SaslUsers, token: &[u8], nonce: &str) -> Result<(String, String), String> {
    let text = std::str::from_utf8(token).map_err(|_| "response is not UTF-8")?;
    let fields = parse_directives(text)?;
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = get("username").ok_or("no username")?;
    let password = users
        .users
        .get(user)
        .ok_or_else(|| format!("unknown user {user:?}"))?;
    if get("nonce") != Some(nonce) {
        return Err("wrong nonce".into());
    }
    if get("digest-uri") != Some(DIGEST_URI) {
        return Err(format!("digest-uri must be {DIGEST_URI}"));
    }
    if get("qop").is_some_and(|q| q != "auth") {
        return Err("only qop=auth is supported".into());
    }
    let realm = get("realm").unwrap_or(REALM);
    let cnonce = get("cnonce").ok_or("no cnonce")?;
    let nc = get("nc").ok_or("no nc")?;
    let authzid = get("authzid");
    let expected = response_value(user, realm, password, nonce, cnonce, nc, authzid, true);
    if get("response") != Some(expected.as_str()) {
        return Err(format!("wrong password for {user:?}"));
    }
    let rspauth = response_value(user, realm, password, nonce, cnonce, nc, authzid, false);
    Ok((user.to_string(), rspauth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_users_are_read_from_the_server_section() {
        let u = SaslUsers::from_jaas(
            "Client { x required username=\"c\" password=\"d\"; };\n\
             Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
             user_bob=\"bob-secret\"\n  user_super=\"s3\";\n};\n",
        )
        .unwrap();
        assert_eq!(u.users.get("bob").map(String::as_str), Some("bob-secret"));
        assert_eq!(u.users.get("super").map(String::as_str), Some("s3"));
        assert!(
            !format!("{u:?}").contains("secret"),
            "passwords stay out of logs"
        );
        assert!(SaslUsers::from_jaas("Client { };").is_err());
        assert!(SaslUsers::from_jaas("Server { no users; };").is_err());
    }

    #[test]
    fn a_java_response_is_accepted_and_a_wrong_password_refused() {
        // ../shared/SECURITY.md §3.4's observed exchange.
        let users = SaslUsers::new([("bob", "bob-secret")]);
        let nonce = "KlneqS4rE2mQH7D1rFY6Yekv2HScj0hOWQBpGJQU";
        let mut s = SaslServer::Start;
        assert!(matches!(s.step(&users, b"", nonce), Outcome::Reply(_)));
        let response = br#"charset=utf-8,username="bob",realm="zk-sasl-md5",nonce="KlneqS4rE2mQH7D1rFY6Yekv2HScj0hOWQBpGJQU",nc=00000001,cnonce="wnx7vU6GkHpmGC1ZZf7aCKJs9+ZOw5DhdovaBFFt",digest-uri="zookeeper/zk-sasl-md5",maxbuf=65536,response=5040fd61da671f94f052caa34710cc6f,qop=auth,authzid="bob""#;
        let mut wrong = s.clone();
        assert_eq!(
            s.step(&users, response, nonce),
            Outcome::Authenticated {
                user: "bob".into(),
                token: b"rspauth=2f55a0938da5edc83ec1152726072d3e".to_vec()
            }
        );
        let other = SaslUsers::new([("bob", "other")]);
        assert!(matches!(
            wrong.step(&other, response, nonce),
            Outcome::Failed(_)
        ));
    }
}
