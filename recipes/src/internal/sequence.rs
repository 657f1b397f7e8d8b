//! Sequence numbers of sequential znodes: parsing foreign and own names,
//! and a wrap-safe order.
//!
//! ZooKeeper appends `%010d` of the parent's cversion, a **signed** 32-bit
//! counter: after 2^31 creations the suffix reads `-2147483648` (11
//! characters). Curator, kazoo and kz compare the suffixes as strings and
//! misorder across the wrap (RECIPES.md §6.5). Here suffixes are parsed as
//! `i32` and compared with serial-number arithmetic (RFC 1982): `a` precedes
//! `b` when `b - a` (wrapping) is positive, which is right whenever the live
//! contenders span less than 2^31 creations.

use std::cmp::Ordering;

/// Name patterns that mark a lock contender, whoever wrote it: Curator
/// (`-lock-`, `__WRIT__`, `__READ__`), kazoo (`__lock__`, `__rlock__`), the
/// Curator latch (`-latch-`), Curator semaphore leases (`-lease-`).
pub const CONTENDER_MARKERS: &[&str] = &[
    "-lock-",
    "__lock__",
    "__WRIT__",
    "__READ__",
    "__rlock__",
    "-latch-",
    "-lease-",
];

/// The sequence suffix of a sequential node's name, as Java's `%010d`
/// writes it: 10 digits (0 to 2147483647), `-` and 9 digits (-999999999 to
/// -1), or `-` and 10 digits (-2147483648 to -1000000000, 11 characters).
/// A `-` before 10 digits is a sign only when a separator (`-` or `_`)
/// precedes it (`…-lock--2147483648`, `…__lock__-2147483648`); in
/// `…-lock-2147483647` it belongs to the prefix. `None` when the name does
/// not end in a sequence.
pub(crate) fn parse_sequence(name: &str) -> Option<i32> {
    let b = name.as_bytes();
    if b.len() < 10 || !name.is_char_boundary(b.len() - 10) {
        return None;
    }
    let d10 = &b[b.len() - 10..];
    if d10.iter().all(u8::is_ascii_digit) {
        let digits = &name[name.len() - 10..];
        let signed =
            b.len() >= 12 && b[b.len() - 11] == b'-' && matches!(b[b.len() - 12], b'-' | b'_');
        if signed {
            let v: i64 = digits.parse().ok()?;
            return i32::try_from(-v).ok().filter(|n| *n <= -1_000_000_000);
        }
        return digits.parse::<i32>().ok();
    }
    if d10[0] == b'-' && d10[1..].iter().all(u8::is_ascii_digit) {
        return name[name.len() - 10..].parse::<i32>().ok();
    }
    None
}

/// Wrap-safe order of two sequence numbers (serial-number arithmetic).
pub(crate) fn compare(a: i32, b: i32) -> Ordering {
    let d = b.wrapping_sub(a);
    match d {
        0 => Ordering::Equal,
        d if d > 0 => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// A contender: a child name and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Contender {
    pub(crate) name: String,
    pub(crate) seq: i32,
}

/// The contenders among `children`: names containing one of `markers` and
/// ending in a sequence number, in wrap-safe sequence order (duplicates
/// kept, ties by name). Other names are skipped with a debug log, never an
/// error (one odd node must not break a lock).
pub(crate) fn contenders(children: &[String], markers: &[String]) -> Vec<Contender> {
    let mut out: Vec<Contender> = Vec::with_capacity(children.len());
    for name in children {
        if !markers.iter().any(|m| name.contains(m.as_str())) {
            continue;
        }
        match parse_sequence(name) {
            Some(seq) => out.push(Contender {
                name: name.clone(),
                seq,
            }),
            None => tracing::debug!(name, "skipping a child without a sequence suffix"),
        }
    }
    // Sort relative to the smallest-by-serial-order element: pick an anchor
    // (the element that no other precedes), then order by distance from it,
    // which is a total order when the spread is below 2^31.
    if let Some(anchor) = out.iter().map(|c| c.seq).reduce(|a, b| {
        if compare(b, a) == Ordering::Less {
            b
        } else {
            a
        }
    }) {
        out.sort_by(|x, y| {
            let dx = x.seq.wrapping_sub(anchor) as u32;
            let dy = y.seq.wrapping_sub(anchor) as u32;
            dx.cmp(&dy).then_with(|| x.name.cmp(&y.name))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers() -> Vec<String> {
        CONTENDER_MARKERS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_curator_kazoo_and_negative_suffixes() {
        assert_eq!(
            parse_sequence("_c_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-lock-0000000042"),
            Some(42)
        );
        assert_eq!(parse_sequence("3f2a__lock__0000000007"), Some(7));
        assert_eq!(parse_sequence("x-lock--2147483648"), Some(i32::MIN));
        assert_eq!(parse_sequence("x-lock--1000000000"), Some(-1_000_000_000));
        assert_eq!(parse_sequence("x-lock--000000001"), Some(-1));
        assert_eq!(parse_sequence("x-lock--999999999"), Some(-999_999_999));
        assert_eq!(parse_sequence("k__lock__-2147483647"), Some(-2_147_483_647));
        assert_eq!(parse_sequence("x-lock-2147483647"), Some(i32::MAX));
        assert_eq!(parse_sequence("x-lock-1000000000"), Some(1_000_000_000));
        assert_eq!(parse_sequence("x-4242-0000000001"), Some(1));
        assert_eq!(parse_sequence("x-lock-9999999999"), None);
        assert_eq!(parse_sequence("readme"), None);
        assert_eq!(parse_sequence("x-lock-00000001a2"), None);
    }

    #[test]
    fn order_survives_the_wrap() {
        assert_eq!(compare(1, 2), Ordering::Less);
        assert_eq!(compare(i32::MAX, i32::MIN), Ordering::Less);
        assert_eq!(compare(i32::MIN, i32::MAX), Ordering::Greater);
        assert_eq!(compare(-5, -5), Ordering::Equal);
        let names: Vec<String> = [
            "a-lock--2147483647",
            "b-lock-2147483646",
            "c-lock--2147483648",
            "d-lock-2147483647",
            "junk",
            "e__lock__0000000003x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let order: Vec<String> = contenders(&names, &markers())
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            order,
            vec![
                "b-lock-2147483646",
                "d-lock-2147483647",
                "c-lock--2147483648",
                "a-lock--2147483647"
            ]
        );
    }

    #[test]
    fn duplicates_and_foreign_contenders_are_kept() {
        let names: Vec<String> = [
            "_c_1-__WRIT__0000000004",
            "_c_2-__READ__0000000004",
            "k__lock__0000000002",
            "member-0000000001",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = contenders(&names, &markers());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name, "k__lock__0000000002");
        assert_eq!(got[1].seq, 4);
        assert_eq!(got[2].seq, 4);
    }
}
