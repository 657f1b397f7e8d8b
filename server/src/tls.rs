//! A TLS client port (ZooKeeper's `secureClientPort`; feature `tls`), with
//! rustls: PEM files for the server's certificate and key and, for mutual
//! TLS, the CAs client certificates must chain to. The files are read again
//! for every connection, so rotated certificates are served without a
//! restart.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Whether clients must present a certificate (`ssl.clientAuth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No client certificate is asked for (`none`).
    None,
    /// One is asked for and checked when given, but not required (`want`).
    Want,
    /// One is required (`need`, ZooKeeper's default when a trust store is
    /// set).
    #[default]
    Need,
}

/// A TLS protocol version (`ssl.protocol`, `ssl.enabledProtocols`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// `TLSv1.2`.
    Tls12,
    /// `TLSv1.3`.
    Tls13,
}

impl TlsVersion {
    /// Parses a Java protocol name; `TLS` means every version.
    pub fn parse_java(name: &str) -> Option<Vec<TlsVersion>> {
        match name.trim() {
            "TLSv1.2" => Some(vec![TlsVersion::Tls12]),
            "TLSv1.3" => Some(vec![TlsVersion::Tls13]),
            "TLS" => Some(vec![TlsVersion::Tls12, TlsVersion::Tls13]),
            _ => None,
        }
    }
}

/// The TLS settings of a secure client port
/// ([`ServerBuilder::secure_listen`](crate::ServerBuilder::secure_listen)).
#[derive(Debug, Clone)]
pub struct ServerTls {
    cert_chain: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    client_auth: ClientAuth,
    versions: Vec<TlsVersion>,
}

impl ServerTls {
    /// The server's certificate chain and private key (PEM;
    /// `ssl.keyStore.location`). No client certificate is asked for until
    /// [`client_ca`](Self::client_ca) is set.
    pub fn new(cert_chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert_chain: cert_chain.into(),
            key: key.into(),
            client_ca: None,
            client_auth: ClientAuth::None,
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        }
    }

    /// The protocol versions offered (default TLS 1.2 and 1.3). A
    /// `zoo.cfg` without `ssl.protocol` / `ssl.enabledProtocols` gets
    /// ZooKeeper 3.8's default instead: TLS 1.2 only. An empty list keeps
    /// the default.
    #[must_use]
    pub fn versions(mut self, versions: &[TlsVersion]) -> Self {
        if !versions.is_empty() {
            self.versions = versions.to_vec();
        }
        self
    }

    /// The CAs client certificates must chain to (PEM;
    /// `ssl.trustStore.location`), and whether one is required.
    #[must_use]
    pub fn client_ca(mut self, ca: impl Into<PathBuf>, auth: ClientAuth) -> Self {
        self.client_ca = Some(ca.into());
        self.client_auth = auth;
        self
    }

    /// Builds the rustls configuration from the files, now.
    pub(crate) fn server_config(&self) -> io::Result<ServerConfig> {
        // ring rather than aws-lc-rs: no cmake or assembler toolchain to
        // build (rustls marks it deprecated for its lack of post-quantum key
        // exchange, which ZooKeeper's JVM clients do not offer either).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = self
            .versions
            .iter()
            .map(|v| match v {
                TlsVersion::Tls12 => &rustls::version::TLS12,
                TlsVersion::Tls13 => &rustls::version::TLS13,
            })
            .collect();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let builder = match (&self.client_ca, self.client_auth) {
            (Some(ca), auth) if auth != ClientAuth::None => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots.add(cert).map_err(|e| bad_file(ca, &e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Want {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| io::Error::other(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let certs = read_certs(&self.cert_chain)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad_file(&self.key, &e))?;
        builder
            .with_single_cert(certs, key)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }
}

fn bad_file(path: &Path, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad_file(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_file(path, &e))?;
    if certs.is_empty() {
        return Err(bad_file(path, &"no certificate in the file"));
    }
    Ok(certs)
}
