//! Connecting with the global options, and the context every command runs in.

use zkit::Client;

use crate::args::Global;
use crate::error::CliError;
use crate::output::Out;

/// What a command runs with: the session, the connect string (for error
/// messages) and the output format.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) zk: Client,
    pub(crate) server: String,
    pub(crate) out: Out,
}

impl Ctx {
    /// The server in use now (else the connect string), for error messages.
    pub(crate) fn host(&self) -> String {
        self.zk
            .connected_server()
            .map_or_else(|| self.server.clone(), |h| h.to_string())
    }

    /// Maps a client error of `what` (e.g. `get /a`) to the tool's error.
    pub(crate) fn err<'a>(
        &'a self,
        what: impl std::fmt::Display + 'a,
    ) -> impl Fn(zkit::Error) -> CliError + 'a {
        move |e| CliError::from_zk(&what.to_string(), &e, &self.host())
    }
}

/// Opens a session as the global options say (TLS, SASL, digest auth).
///
/// # Errors
/// A connection-class error naming the hosts tried and why each failed; a
/// usage error for malformed credentials.
pub(crate) async fn connect(g: &Global) -> Result<Client, CliError> {
    let mut builder = Client::builder()
        .connect_timeout(g.timeout)
        .request_timeout(g.timeout);
    for auth in &g.auth {
        let (user, password) = auth
            .split_once(':')
            .ok_or_else(|| CliError::usage(format!("--auth {auth:?}: expected user:password")))?;
        builder = builder.digest_auth(user, password);
    }
    if let Some(user) = &g.sasl_user {
        let password = g.sasl_password.as_deref().unwrap_or_default();
        builder = builder.sasl_digest(user, password);
    }
    if g.tls_ca.is_some() || g.tls_cert.is_some() {
        let mut tls = zkit::TlsConfig::new();
        if let Some(ca) = &g.tls_ca {
            tls = tls.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&g.tls_cert, &g.tls_key) {
            tls = tls.client_cert(cert, key);
        }
        if let Some(name) = &g.tls_server_name {
            tls = tls.server_name(name.clone());
        }
        builder = builder.tls(tls);
    }
    builder
        .connect(&g.server)
        .await
        .map_err(|e| CliError::connect(&g.server, &e))
}
