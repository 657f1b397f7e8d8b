//! Output: human tables or JSON, and the formatting both share (times,
//! ages, sizes, session ids, data, ACLs, base64).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use zkit::{Acl, Stat};

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub(crate) json: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints a JSON document (pretty, one per command) on stdout.
    pub(crate) fn json(&self, value: &Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        println!("{text}");
    }

    /// Prints one JSON line (for streams).
    pub(crate) fn json_line(&self, value: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
        let _ = stdout.flush();
    }
}

/// A table printed with aligned columns (two spaces apart), headers in
/// capitals, no trailing spaces.
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.len() == 1
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub(crate) fn print(&self) {
        print!("{}", self.render());
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `2024-05-01T12:00:00.123Z` for epoch milliseconds.
pub(crate) fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `HH:MM:SS.mmm` (UTC) for epoch milliseconds.
pub(crate) fn format_clock(ms: i64) -> String {
    format_time(ms)[11..23].to_string()
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian),
/// by eras of 400 years (146,097 days), each starting on March 1st so that
/// the leap day ends the year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A short human age: `850ms`, `12s`, `5m3s`, `2h7m`, `3d4h`.
pub(crate) fn format_age(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}d{}h", s / 86_400, s / 3600 % 24)
    }
}

/// `512 B`, `1.5 KiB`, `3.0 MiB`.
pub(crate) fn format_size(bytes: i64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / KIB / KIB)
    }
}

/// A session id as ZooKeeper prints it (`0x1000a2b3c4d0000`).
pub(crate) fn session_hex(id: i64) -> String {
    format!("{id:#x}")
}

/// The ephemeral owner for JSON: its hex id, or `null` for a persistent node.
pub(crate) fn owner_json(owner: i64) -> Value {
    if owner == 0 {
        Value::Null
    } else {
        Value::String(session_hex(owner))
    }
}

/// A znode's stat as JSON (stable field names, ZooKeeper's in snake case;
/// session ids as hex strings, times as epoch milliseconds).
pub(crate) fn stat_json(s: &Stat) -> Value {
    json!({
        "czxid": s.czxid,
        "mzxid": s.mzxid,
        "pzxid": s.pzxid,
        "ctime": s.ctime,
        "mtime": s.mtime,
        "version": s.version,
        "cversion": s.cversion,
        "aversion": s.aversion,
        "ephemeral_owner": owner_json(s.ephemeral_owner),
        "data_length": s.data_length,
        "num_children": s.num_children,
    })
}

/// A znode's stat as a two-column table (zkCli's `stat`, with readable
/// times and sizes).
pub(crate) fn stat_table(path: &str, s: &Stat) -> Table {
    let mut t = Table::new(&["FIELD", "VALUE"]);
    let rows: Vec<(&str, String)> = vec![
        ("path", path.to_string()),
        ("czxid", format!("{:#x}", s.czxid)),
        ("ctime", format_time(s.ctime)),
        ("mzxid", format!("{:#x}", s.mzxid)),
        ("mtime", format_time(s.mtime)),
        ("pzxid", format!("{:#x}", s.pzxid)),
        ("version", s.version.to_string()),
        ("cversion", s.cversion.to_string()),
        ("aversion", s.aversion.to_string()),
        (
            "ephemeral_owner",
            if s.ephemeral_owner == 0 {
                "none".to_string()
            } else {
                session_hex(s.ephemeral_owner)
            },
        ),
        (
            "data_length",
            format!("{} ({})", s.data_length, format_size(s.data_length.into())),
        ),
        ("num_children", s.num_children.to_string()),
    ];
    for (k, v) in rows {
        t.row(vec![k.to_string(), v]);
    }
    t
}

/// Whether data reads well as text: valid UTF-8 without control
/// characters other than tab, newline and carriage return.
pub(crate) fn is_printable(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|s| {
        s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
    })
}

/// Data for JSON: `{"data": text, "encoding": "utf8"}` when printable, else
/// base64 with `"encoding": "base64"`.
pub(crate) fn data_json(data: &[u8]) -> (Value, Value) {
    if is_printable(data) {
        (
            Value::String(String::from_utf8_lossy(data).into_owned()),
            Value::String("utf8".into()),
        )
    } else {
        (
            Value::String(base64_encode(data)),
            Value::String("base64".into()),
        )
    }
}

/// A one-line preview of data for tables: text (truncated) or `0x…` hex.
pub(crate) fn data_preview(data: &[u8], max: usize) -> String {
    let full = if data.is_empty() {
        String::new()
    } else if is_printable(data) {
        String::from_utf8_lossy(data)
            .replace('\n', "\\n")
            .replace('\t', "\\t")
            .replace('\r', "\\r")
    } else {
        format!("0x{}", hex(data))
    };
    if full.chars().count() > max {
        let cut: String = full.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        full
    }
}

/// Lower-case hex without separators.
pub(crate) fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hex dump, 16 bytes a line: offset, hex bytes, printable ASCII.
pub(crate) fn hex_dump(data: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in data.chunks(16).enumerate() {
        let hexes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}  {:<47}  |{ascii}|\n",
            i * 16,
            hexes.join(" ")
        ));
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, no whitespace).
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("invalid base64 character {:?}", c as char)),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    if bits >= 6 {
        return Err("truncated base64".into());
    }
    Ok(out)
}

/// `cdrwa`-style permissions (in zkCli's order).
pub(crate) fn perms_string(perms: i32) -> String {
    [(4, 'c'), (8, 'd'), (1, 'r'), (2, 'w'), (16, 'a')]
        .iter()
        .filter(|(bit, _)| perms & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// Parses `cdrwa`-style permissions.
pub(crate) fn parse_perms(s: &str) -> Result<i32, String> {
    s.chars().try_fold(0, |acc, c| {
        Ok(acc
            | match c {
                'r' => 1,
                'w' => 2,
                'c' => 4,
                'd' => 8,
                'a' => 16,
                _ => return Err(format!("unknown permission {c:?} (use cdrwa)")),
            })
    })
}

/// Splits an ACL spec into entries: at each comma followed by
/// `<scheme>:`, a scheme being a name without `=` (x509 ids are DNs such as
/// `CN=client,OU=tests,O=zkit`, whose commas are followed by `<attr>=`).
fn acl_entries(spec: &str) -> Vec<&str> {
    let starts_entry = |rest: &str| {
        rest.split_once(':').is_some_and(|(scheme, _)| {
            let scheme = scheme.trim();
            !scheme.is_empty() && !scheme.contains(['=', ','])
        })
    };
    let mut entries = Vec::new();
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        if c == ',' && starts_entry(&spec[i + 1..]) {
            entries.push(&spec[start..i]);
            start = i + 1;
        }
    }
    entries.push(&spec[start..]);
    entries
}

/// Parses `scheme:id:perms[,scheme:id:perms...]` (the id may contain `:`,
/// as digest ids and IPv6 addresses do, and `,`, as x509 DNs do).
pub(crate) fn parse_acl(spec: &str) -> Result<Vec<Acl>, String> {
    acl_entries(spec)
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(|entry| {
            let entry = entry.trim();
            let (scheme, rest) = entry
                .split_once(':')
                .ok_or_else(|| format!("ACL entry {entry:?}: expected scheme:id:perms"))?;
            let (id, perms) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("ACL entry {entry:?}: expected scheme:id:perms"))?;
            let perms = parse_perms(perms).map_err(|e| format!("ACL entry {entry:?}: {e}"))?;
            Ok(Acl::new(zkit::Perms(perms), scheme, id))
        })
        .collect::<Result<Vec<_>, String>>()
        .and_then(|acl| {
            if acl.is_empty() {
                Err("empty ACL".into())
            } else {
                Ok(acl)
            }
        })
}

/// An ACL entry as JSON.
pub(crate) fn acl_json(acl: &[Acl]) -> Value {
    Value::Array(
        acl.iter()
            .map(|a| json!({"scheme": a.id.scheme, "id": a.id.id, "perms": perms_string(a.perms)}))
            .collect(),
    )
}

/// `path` joined with a child `name`.
pub(crate) fn join(path: &str, name: &str) -> String {
    if path == "/" {
        format!("/{name}")
    } else {
        format!("{}/{name}", path.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_time(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(format_clock(1_709_251_199_999), "23:59:59.999");
        assert_eq!(format_age(850), "850ms");
        assert_eq!(format_age(303_000), "5m3s");
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\x10zz"] {
            let text = base64_encode(data);
            assert_eq!(base64_decode(&text).unwrap(), data, "{text}");
        }
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm8*").is_err());
    }

    #[test]
    fn acls_parse_and_print() {
        let acl = parse_acl("world:anyone:r,digest:bob:a:b=:cdrwa,ip:::1:rw").unwrap();
        assert_eq!(acl[1].id.id, "bob:a:b=");
        assert_eq!(perms_string(acl[1].perms), "cdrwa");
        assert_eq!(acl[2].id.id, "::1");
        assert!(parse_acl("world:anyone:x").is_err());
        assert!(parse_acl("world:anyone:q,digest:bob:a:b=:cdrwa").is_err());
        assert!(parse_acl("").is_err());
        // x509 ids are DNs, with commas.
        let acl = parse_acl("x509:CN=client,OU=tests,O=zkit:cdrwa,world:anyone:r").unwrap();
        assert_eq!(acl.len(), 2);
        assert_eq!(
            (acl[0].id.scheme.as_str(), acl[0].id.id.as_str()),
            ("x509", "CN=client,OU=tests,O=zkit")
        );
        assert_eq!(perms_string(acl[1].perms), "r");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn data_is_shown_as_text_or_hex() {
        assert!(is_printable(b"hello\n"));
        assert!(!is_printable(b"\x00\x01"));
        assert_eq!(data_preview(b"\x00\x01", 10), "0x0001");
        assert_eq!(data_preview(b"abcdef", 4), "abc…");
    }
}
