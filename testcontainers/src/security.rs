//! Secured fixtures: a TLS client port per member with certificates made at
//! test time (nothing on disk outlives the fixture, nothing expires in the
//! repository), and SASL DIGEST-MD5 users from a generated JAAS file. The
//! same settings drive real ZooKeeper (Netty, PEM stores, JAAS system
//! property) and the bundled zkit-server (the same `zoo.cfg` keys,
//! `--jaas`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::FixtureError;

/// Whether a TLS fixture asks clients for a certificate (`ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// A certificate is asked for and checked when given (`want`).
    Want,
    /// A certificate is required (`need`, ZooKeeper's default).
    #[default]
    Need,
}

impl ClientAuth {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Want => "want",
            ClientAuth::Need => "need",
        }
    }
}

/// The PEM files of a TLS fixture, made when it starts: a CA, the servers'
/// key store (certificate for `DNS:localhost` and `IP:127.0.0.1`, chain and
/// PKCS#8 key in one file, ZooKeeper's PEM key store) and a client
/// certificate with subject `CN=client,OU=tests,O=zkit` (its `x509` id).
/// More client certificates from the same CA: [`issue_client`](Self::issue_client).
#[derive(Clone)]
pub struct TlsFiles {
    dir: PathBuf,
    ca: Arc<(rcgen::Certificate, KeyPair)>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles").field("dir", &self.dir).finish()
    }
}

/// The subject DN of the fixture's default client certificate, as
/// ZooKeeper's x509 provider names it.
pub const CLIENT_DN: &str = "CN=client,OU=tests,O=zkit";

impl TlsFiles {
    /// Makes the CA, the server key store and the default client
    /// certificate in `dir`.
    pub(crate) fn generate(dir: &Path) -> Result<Self, FixtureError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| FixtureError::io(format!("create {}", dir.display()), e))?;
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "zkit fixture CA");
        let cert = params.self_signed(&key).map_err(cert_err)?;
        let files = TlsFiles {
            dir: dir.to_path_buf(),
            ca: Arc::new((cert, key)),
        };
        write(&files.ca_file(), &files.ca.0.pem())?;
        let (server_cert, server_key) = files.sign(
            &["localhost", "127.0.0.1"],
            &[("CN", "localhost"), ("O", "zkit")],
        )?;
        write(
            &files.server_key_store(),
            &format!("{server_cert}{server_key}"),
        )?;
        files.issue_client(
            "client",
            &[("O", "zkit"), ("OU", "tests"), ("CN", "client")],
        )?;
        Ok(files)
    }

    /// The CA certificate (PEM): the trust store of servers and clients.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The servers' key store: certificate and private key in one PEM file.
    pub fn server_key_store(&self) -> PathBuf {
        self.dir.join("server-keystore.pem")
    }

    /// The default client certificate (subject [`CLIENT_DN`]).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The default client certificate's private key (PKCS#8 PEM).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// Issues another client certificate from the fixture's CA with the
    /// given subject, written as `<name>.pem` and `<name>.key`; the subject
    /// is listed most general first (`[("O","zkit"),("CN","alice")]` is the
    /// DN `CN=alice,O=zkit`). Keys: `CN`, `O`, `OU`, `C`, `ST`, `L`.
    ///
    /// # Errors
    /// An unknown key, or the files cannot be written.
    pub fn issue_client(
        &self,
        name: &str,
        subject: &[(&str, &str)],
    ) -> Result<(PathBuf, PathBuf), FixtureError> {
        let (cert, key) = self.sign(&[], subject)?;
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        write(&cert_path, &cert)?;
        write(&key_path, &key)?;
        Ok((cert_path, key_path))
    }

    /// A certificate (PEM) and key (PEM) signed by the CA.
    fn sign(
        &self,
        names: &[&str],
        subject: &[(&str, &str)],
    ) -> Result<(String, String), FixtureError> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())
                .map_err(cert_err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (k, v) in subject {
            let ty = match *k {
                "CN" => DnType::CommonName,
                "O" => DnType::OrganizationName,
                "OU" => DnType::OrganizationalUnitName,
                "C" => DnType::CountryName,
                "ST" => DnType::StateOrProvinceName,
                "L" => DnType::LocalityName,
                other => {
                    return Err(FixtureError::InvalidConfig(format!(
                        "unknown subject attribute {other:?}"
                    )))
                }
            };
            params.distinguished_name.push(ty, *v);
        }
        let cert = params
            .signed_by(&key, &self.ca.0, &self.ca.1)
            .map_err(cert_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn cert_err(e: rcgen::Error) -> FixtureError {
    FixtureError::io("generate a test certificate", std::io::Error::other(e))
}

fn write(path: &Path, contents: &str) -> Result<(), FixtureError> {
    std::fs::write(path, contents)
        .map_err(|e| FixtureError::io(format!("write {}", path.display()), e))
}

/// A JAAS file with a `Server` section of DIGEST-MD5 users, as ZooKeeper's
/// `DigestLoginModule` reads it (and `zkit-server --jaas`).
pub(crate) fn jaas_server_section(users: &[(String, String)]) -> String {
    let mut s =
        String::from("Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required");
    for (user, password) in users {
        s.push_str(&format!("\n  user_{user}=\"{password}\""));
    }
    s.push_str(";\n};\n");
    s
}
