//! A private MIT Kerberos KDC for tests (Debian `krb5-kdc`,
//! `krb5-admin-server`): its own realm, database, `krb5.conf` and port on
//! 127.0.0.1, principals with keytabs, the `krb5kdc` process tracked by its
//! handle and killed on drop. Nothing reads or changes `/etc/krb5.conf`.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tempdir::TempDir;
use crate::FixtureError;

/// Where Debian installs the KDC tools.
const KRB5KDC: &str = "/usr/sbin/krb5kdc";
const KDB5_UTIL: &str = "/usr/sbin/kdb5_util";
const KADMIN_LOCAL: &str = "/usr/sbin/kadmin.local";

/// The realm of every test KDC.
pub const TEST_REALM: &str = "ZKIT.TEST";

/// A running test KDC ([`Kdc::start`]).
#[derive(Debug)]
pub struct Kdc {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Kdc {
    /// Whether the KDC tools are installed.
    pub fn is_installed() -> bool {
        [KRB5KDC, KDB5_UTIL, KADMIN_LOCAL]
            .iter()
            .all(|p| Path::new(p).is_file())
    }

    /// Creates realm [`TEST_REALM`] in a fresh directory and starts
    /// `krb5kdc` on a free 127.0.0.1 port (UDP and TCP).
    ///
    /// # Errors
    /// [`FixtureError::NotInstalled`] without the Debian packages; I/O or a
    /// failing tool otherwise.
    pub fn start() -> Result<Kdc, FixtureError> {
        if !Self::is_installed() {
            return Err(FixtureError::NotInstalled(
                "an MIT Kerberos KDC (Debian: krb5-kdc krb5-admin-server)".into(),
            ));
        }
        let dir = TempDir::new().map_err(|e| FixtureError::io("create KDC directory", e))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| FixtureError::io("pick a KDC port", e))?
            .port();
        let d = dir.path();
        let write = |name: &str, text: String| {
            fs::write(d.join(name), text).map_err(|e| FixtureError::io(format!("write {name}"), e))
        };
        write(
            "krb5.conf",
            format!(
                "[libdefaults]\n  default_realm = {TEST_REALM}\n  dns_lookup_realm = false\n  \
                 dns_lookup_kdc = false\n  rdns = false\n  udp_preference_limit = 1\n\
                 [realms]\n  {TEST_REALM} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n\
                 [domain_realm]\n  localhost = {TEST_REALM}\n"
            ),
        )?;
        write(
            "kdc.conf",
            format!(
                "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n\
                 [realms]\n  {TEST_REALM} = {{\n    database_name = {db}\n    key_stash_file = {stash}\n    \
                 acl_file = {acl}\n    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n  }}\n\
                 [logging]\n  kdc = FILE:{log}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display(),
                acl = d.join("kadm5.acl").display(),
                log = d.join("kdc.log").display(),
            ),
        )?;
        write("kadm5.acl", String::new())?;
        let kdc = |tool: &str| {
            let mut c = Command::new(tool);
            c.env("KRB5_CONFIG", d.join("krb5.conf"))
                .env("KRB5_KDC_PROFILE", d.join("kdc.conf"))
                .stdin(Stdio::null());
            c
        };
        run(kdc(KDB5_UTIL).args(["create", "-s", "-r", TEST_REALM, "-P", "kdc-master-pw"]))?;
        let out = fs::File::create(d.join("krb5kdc.out"))
            .map_err(|e| FixtureError::io("create krb5kdc.out", e))?;
        let err = out
            .try_clone()
            .map_err(|e| FixtureError::io("duplicate krb5kdc.out", e))?;
        let child = kdc(KRB5KDC)
            .args(["-n", "-r", TEST_REALM])
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| FixtureError::io("spawn krb5kdc", e))?;
        let mut me = Kdc { child, port, dir };
        // Serving once its TCP port accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if Instant::now() > deadline || me.child.try_wait().ok().flatten().is_some() {
                let log = fs::read_to_string(me.dir.path().join("krb5kdc.out")).unwrap_or_default();
                return Err(FixtureError::io(
                    "start krb5kdc",
                    io::Error::other(format!("not listening on port {port} within 10 s: {log}")),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(me)
    }

    /// The KDC's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `krb5.conf` clients and servers must use (`KRB5_CONFIG`,
    /// `-Djava.security.krb5.conf`).
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    /// The directory of the KDC's files (database, logs, keytabs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds `principal` (`client`, `zookeeper/localhost`; the realm is
    /// added) with a random key, and writes its keytab; returns the keytab.
    ///
    /// # Errors
    /// A failing `kadmin.local`.
    pub fn add_principal(&self, principal: &str) -> Result<PathBuf, FixtureError> {
        let d = self.dir.path();
        let keytab = d.join(format!("{}.keytab", principal.replace('/', "_")));
        let full = format!("{principal}@{TEST_REALM}");
        for query in [
            format!("addprinc -randkey {full}"),
            format!("ktadd -k {} {full}", keytab.display()),
        ] {
            run(Command::new(KADMIN_LOCAL)
                .env("KRB5_CONFIG", d.join("krb5.conf"))
                .env("KRB5_KDC_PROFILE", d.join("kdc.conf"))
                .stdin(Stdio::null())
                .args(["-q", &query]))?;
        }
        Ok(keytab)
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> Result<(), FixtureError> {
    let desc = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| FixtureError::io(format!("run {desc}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FixtureError::io(
            format!("run {desc}"),
            io::Error::other(format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        ))
    }
}
