//! TLS to the ensemble (feature `tls`, on by default), with rustls: no
//! OpenSSL. Set it with [`ClientBuilder::tls`](crate::ClientBuilder::tls);
//! every host of the connect string is then reached over TLS (ZooKeeper's
//! `secureClientPort`), and failover, chroot and session resume work as over
//! plain TCP.
//!
//! - The server's certificate must chain to a CA of the PEM bundle given
//!   with [`TlsConfig::ca_file`] (the system store is not used).
//! - Its name is checked against the host of the connect string (a DNS name
//!   or an IP address SAN), or against [`TlsConfig::server_name`] for
//!   ensembles whose certificates carry one shared name;
//!   [`TlsConfig::verify_hostname(false)`](TlsConfig::verify_hostname)
//!   turns the name check off (as ZooKeeper's `ssl.hostnameVerification=false`),
//!   never the chain check.
//! - [`TlsConfig::client_cert`] presents a certificate for mutual TLS (and
//!   ZooKeeper's x509 authentication).
//! - The PEM files are read again for every new connection, so rotated
//!   certificates are picked up without a restart.
//! - A failed handshake is an error naming the host and the reason (unknown
//!   CA, name mismatch, expired, ...). It counts as a failed dial: the client
//!   moves on to the next host, and [`Error::NoServerReachable`](crate::Error::NoServerReachable)
//!   lists it.
//!
//! ```no_run
//! # async fn demo() -> zkit::Result<()> {
//! use zkit::TlsConfig;
//! let zk = zkit::Client::builder()
//!     .tls(
//!         TlsConfig::new()
//!             .ca_file("/etc/zookeeper/ca.pem")
//!             .client_cert("/etc/zkit/client.pem", "/etc/zkit/client.key"),
//!     )
//!     .connect("zk1.example:2281,zk2.example:2281")
//!     .await?;
//! # drop(zk);
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::session::HostAddr;
use crate::transport::{BoxedIo, Connect, ConnectFuture, TcpConnector};

/// TLS settings for a client ([`ClientBuilder::tls`](crate::ClientBuilder::tls)).
/// See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
    skip_hostname: bool,
}

impl TlsConfig {
    /// Settings with nothing set yet: a CA bundle is required
    /// ([`ca_file`](Self::ca_file)).
    pub fn new() -> Self {
        Self::default()
    }

    /// The PEM bundle of CA certificates the servers' certificates must
    /// chain to (ZooKeeper's `ssl.trustStore.location`). Read again for
    /// each new connection.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// A client certificate chain and its private key (PEM; PKCS#8, PKCS#1
    /// or SEC1 key) for mutual TLS (ZooKeeper's `ssl.keyStore.location`).
    /// Read again for each new connection.
    #[must_use]
    pub fn client_cert(mut self, cert_chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert_chain.into(), key.into()));
        self
    }

    /// Check every server's certificate against this name instead of the
    /// host of the connect string: for ensembles reached by IP address
    /// whose certificates carry one shared DNS name.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether to check the certificate's name at all (default true).
    /// `false` matches ZooKeeper's `ssl.hostnameVerification=false`: any
    /// certificate of the trusted CAs is accepted, whatever its name. The
    /// chain, validity dates and signatures are always checked.
    #[must_use]
    pub fn verify_hostname(mut self, on: bool) -> Self {
        self.skip_hostname = !on;
        self
    }

    /// Builds a rustls client configuration from the files, now.
    fn client_config(&self) -> io::Result<ClientConfig> {
        let ca = self.ca_file.as_deref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS needs a CA bundle (TlsConfig::ca_file)",
            )
        })?;
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert).map_err(|e| bad_file(ca, &e))?;
        }
        // ring rather than aws-lc-rs: no cmake or assembler toolchain to
        // build. (Its lack of post-quantum key exchange is why rustls marks
        // it deprecated; ZooKeeper 3.8's JVM offers none either.)
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let builder = if self.skip_hostname {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| io::Error::other(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName { inner }))
        } else {
            builder.with_root_certificates(roots)
        };
        match &self.client_cert {
            Some((chain, key)) => {
                let certs = read_certs(chain)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad_file(key, &e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            }
            None => Ok(builder.with_no_client_auth()),
        }
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

/// The chain check of webpki, without the name check.
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The [`Connect`] of a TLS client: TCP ([`TcpConnector`]), then the TLS
/// handshake, with the files read again for each connection.
#[derive(Debug, Clone)]
pub(crate) struct TlsConnector {
    config: TlsConfig,
}

impl TlsConnector {
    pub(crate) fn new(config: TlsConfig) -> Self {
        Self { config }
    }
}

impl Connect for TlsConnector {
    fn connect(&self, host: &HostAddr) -> ConnectFuture {
        let config = self.config.clone();
        let host = host.clone();
        let tcp = TcpConnector.connect(&host);
        Box::pin(async move {
            let tls = config.client_config()?;
            let name = config.server_name.as_deref().unwrap_or(&host.host);
            let name = ServerName::try_from(name.to_string()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} is not a TLS server name: {e}"),
                )
            })?;
            let stream = tcp.await?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
                .connect(name, stream)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}
