//! SASL DIGEST-MD5 as ZooKeeper uses it (RFC 2831; ../shared/SECURITY.md
//! §3.4): realm `zk-sasl-md5`, digest-uri `zookeeper/zk-sasl-md5`, quality
//! of protection `auth`. The exchange is two rounds: the client's empty
//! initial token, the server's challenge, the client's response, the
//! server's `rspauth` (which the client checks). Pure: the session drives it.

use std::fmt::Write as _;

/// The digest-uri ZooKeeper's servers expect, whatever host was dialled.
const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";

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

/// `name=value` or `name="quoted value"`, comma separated (RFC 2831 §7.1).
fn parse_directives(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("malformed directive {name:?}"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated quoted string".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// RFC 2831 §2.1.2.1: the `response` value (`client` true) or the server's
/// `rspauth` (false), for qop=auth.
#[allow(clippy::too_many_arguments)]
fn response_value(
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
    nc: &str,
    authzid: Option<&str>,
    client: bool,
) -> String {
    let mut a1 = md5(format!("{user}:{realm}:{password}").as_bytes()).to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    if let Some(z) = authzid {
        a1.extend_from_slice(format!(":{z}").as_bytes());
    }
    let a2 = if client {
        format!("AUTHENTICATE:{DIGEST_URI}")
    } else {
        format!(":{DIGEST_URI}")
    };
    let ha1 = hex(&md5(&a1));
    let ha2 = hex(&md5(a2.as_bytes()));
    hex(&md5(
        format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// MD5 (RFC 1321), for DIGEST-MD5 only.
pub(crate) fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32)
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = input.to_vec();
    let bits = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (h[0], h[1], h[2], h[3]);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(hex(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(&md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(&md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn digest_md5_matches_the_observed_java_exchange() {
        // ../shared/SECURITY.md §3.4's test vectors.
        let (user, pw, realm) = ("bob", "bob-secret", "zk-sasl-md5");
        let (nonce, cnonce) = (
            "KlneqS4rE2mQH7D1rFY6Yekv2HScj0hOWQBpGJQU",
            "wnx7vU6GkHpmGC1ZZf7aCKJs9+ZOw5DhdovaBFFt",
        );
        let nc = "00000001";
        assert_eq!(
            response_value(user, realm, pw, nonce, cnonce, nc, Some("bob"), true),
            "5040fd61da671f94f052caa34710cc6f"
        );
        assert_eq!(
            response_value(user, realm, pw, nonce, cnonce, nc, Some("bob"), false),
            "2f55a0938da5edc83ec1152726072d3e"
        );
        let (nonce, cnonce) = (
            "Ms2LpSEQQiyt+Y2NeX9UvQc1E1ISJ0w/tQIXHXyU",
            "04101865240658065",
        );
        assert_eq!(
            response_value(user, realm, pw, nonce, cnonce, nc, None, true),
            "2cf768ffa19782a2b1817671e5bff5d2"
        );
        assert_eq!(
            response_value(user, realm, pw, nonce, cnonce, nc, None, false),
            "5dfdfa59678966cde21b30d2e7554aaf"
        );
    }

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
        assert!(parse_directives("a=\"unterminated").is_err());
    }
}
