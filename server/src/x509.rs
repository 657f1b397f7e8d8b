//! The `x509` auth id of a client certificate: its subject distinguished
//! name as Java's `X500Principal.getName()` writes it (RFC 2253), which is
//! what ZooKeeper's `X509AuthenticationProvider` puts in the id.
//!
//! A small DER reader of our own, enough for `tbsCertificate.subject`: the
//! server never needs anything else from a certificate (rustls has verified
//! it already).

/// One DER element: tag, content, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and the rest.
fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags do not occur in a certificate's names
    }
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*input.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &input[header..end],
            whole: &input[..end],
        },
        &input[end..],
    ))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject DN of a DER certificate in RFC 2253 form (most specific RDN
/// first), as `X500Principal.getName()`; `None` if the certificate cannot
/// be read.
pub(crate) fn subject_dn(cert: &[u8]) -> Option<String> {
    let (certificate, _) = read(cert)?;
    if certificate.tag != SEQUENCE {
        return None;
    }
    let (tbs, _) = read(certificate.content)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs.content;
    if read(rest)?.0.tag == 0xa0 {
        rest = read(rest)?.1; // [0] EXPLICIT version
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        rest = read(rest)?.1;
    }
    let (subject, _) = read(rest)?;
    if subject.tag != SEQUENCE {
        return None;
    }
    name_rfc2253(subject.content)
}

/// `Name ::= SEQUENCE OF RelativeDistinguishedName` (the sequence's
/// content) in RFC 2253 form.
fn name_rfc2253(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (rdn, rest) = read(rdns)?;
        rdns = rest;
        if rdn.tag != SET {
            return None;
        }
        let mut avas = Vec::new();
        let mut content = rdn.content;
        while !content.is_empty() {
            let (ava, rest) = read(content)?;
            content = rest;
            if ava.tag != SEQUENCE {
                return None;
            }
            let (oid, rest) = read(ava.content)?;
            let (value, _) = read(rest)?;
            if oid.tag != OID {
                return None;
            }
            avas.push(ava_rfc2253(oid.content, &value)?);
        }
        parts.push(avas.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// One `type=value`: RFC 2253's keywords for its nine attribute types,
/// otherwise the dotted OID with the value's DER encoding in hex.
fn ava_rfc2253(oid: &[u8], value: &Tlv<'_>) -> Option<String> {
    let dotted = oid_string(oid)?;
    let keyword = match dotted.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.9" => Some("STREET"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    match (keyword, directory_string(value)) {
        (Some(k), Some(text)) => Some(format!("{k}={}", escape(&text))),
        (k, _) => {
            let mut s = format!("{}=#", k.map_or(dotted, str::to_string));
            for b in value.whole {
                s.push_str(&format!("{b:02x}"));
            }
            Some(s)
        }
    }
}

/// The text of a string-typed value.
fn directory_string(value: &Tlv<'_>) -> Option<String> {
    let c = value.content;
    match value.tag {
        // UTF8String, PrintableString, IA5String, VisibleString
        0x0c | 0x13 | 0x16 | 0x1a => String::from_utf8(c.to_vec()).ok(),
        // TeletexString (T61): as Java, one byte per character.
        0x14 => Some(c.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e => {
            if !c.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = c
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1c => {
            if !c.len().is_multiple_of(4) {
                return None;
            }
            c.chunks(4)
                .map(|p| char::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 2253 §2.4 escaping, as Java writes it: `,=+<>#;"\` get a backslash,
/// and so do a leading or trailing space.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i + 1 == chars.len());
        if ",=+<>#;\"\\".contains(c) || edge_space {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A BER-encoded OBJECT IDENTIFIER's content as dotted decimal.
fn oid_string(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in content {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    if acc != 0 || arcs.is_empty() {
        return None;
    }
    let first = arcs[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut s = format!("{a}.{b}");
    for arc in &arcs[1..] {
        s.push_str(&format!(".{arc}"));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn most_specific_first_with_keywords() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "zkit");
        dn.push(rcgen::DnType::OrganizationalUnitName, "tests");
        dn.push(rcgen::DnType::CommonName, "alice");
        // SECURITY.md §2: /O=zkit/OU=tests/CN=alice → CN=alice,OU=tests,O=zkit
        assert_eq!(
            subject_dn(&cert(dn)).as_deref(),
            Some("CN=alice,OU=tests,O=zkit")
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, " a,b+c\"d\\e ");
        assert_eq!(
            subject_dn(&cert(dn)).as_deref(),
            Some("CN=\\ a\\,b\\+c\\\"d\\\\e\\ ")
        );
    }

    #[test]
    fn unknown_attributes_are_oid_and_hex() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            rcgen::DnValue::Ia5String("a@b".try_into().unwrap()),
        );
        dn.push(rcgen::DnType::CommonName, "x");
        assert_eq!(
            subject_dn(&cert(dn)).as_deref(),
            Some("CN=x,1.2.840.113549.1.9.1=#1603614062")
        );
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject_dn(&[]), None);
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_dn(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
        let good = {
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(rcgen::DnType::CommonName, "x");
            cert(dn)
        };
        for cut in 0..good.len() {
            let _ = subject_dn(&good[..cut]); // never panics
        }
    }
}
