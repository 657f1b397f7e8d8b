//! SASL DIGEST-MD5 computations as ZooKeeper uses them (RFC 2831): the
//! `response` and `rspauth` values, the directive syntax, and MD5 itself.
//! Shared by the client (which proves a password) and the bundled server
//! (which checks it).

use std::fmt::Write as _;

/// The digest-uri ZooKeeper's servers expect, whatever host was dialled.
pub const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";

/// The realm of ZooKeeper's DIGEST-MD5 server.
pub const REALM: &str = "zk-sasl-md5";

/// `name=value` or `name="quoted value"`, comma separated (RFC 2831
/// §7.1), names lower-cased.
///
/// # Errors
/// A directive without `=`, or an unterminated quoted string.
pub fn parse_directives(text: &str) -> Result<Vec<(String, String)>, String> {
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
pub fn response_value(
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

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// MD5 (RFC 1321), for DIGEST-MD5 only.
pub fn md5(input: &[u8]) -> [u8; 16] {
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
    fn digest_md5_matches_the_observed_exchanges() {
        // ../shared/SECURITY.md §3.4's vectors (Java with authzid, kazoo without).
        let (user, pw, realm) = ("bob", "bob-secret", REALM);
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
        assert!(parse_directives("a=\"unterminated").is_err());
    }
}
