//! SASL GSSAPI (Kerberos v5) as ZooKeeper uses it (feature `gssapi`; needs
//! the system's MIT GSS-API library, `libgssapi-krb5-2`, and to build
//! `libkrb5-dev` and `libclang-dev`). See ../shared/SECURITY.md §3.6.
//!
//! The exchange, RFC 4752 over op 102: the client's initial context token
//! (AP-REQ; mutual authentication is asked for, so the server answers with
//! an AP-REP that completes the context, and the client then sends an empty
//! token); the server's wrapped security-layer offer; the client's wrapped
//! answer, "no security layer" plus the authorization id (its own
//! principal); the server's final null token.

use std::fmt;

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};

use crate::sasl::ExternalMechanism;
use crate::session::HostAddr;

/// Kerberos settings of a client ([`ClientBuilder::sasl_gssapi`](crate::ClientBuilder::sasl_gssapi)).
///
/// The client's own credentials come from the environment, as for every
/// MIT Kerberos program: a ticket cache (`KRB5CCNAME`, from `kinit`) or a
/// client keytab (`KRB5_CLIENT_KTNAME`), with `KRB5_CONFIG` naming the
/// `krb5.conf`. The server's principal is `<service>/<host>` (service
/// `zookeeper`, the host as written in the connect string, the realm from
/// `krb5.conf`), as the Java client without host-name canonicalisation;
/// [`server_principal`](Self::server_principal) overrides it.
///
/// ```
/// let gss = zkit::GssapiConfig::new().server_principal("zookeeper/zk1.example.com@EXAMPLE.COM");
/// let builder = zkit::Client::builder().sasl_gssapi(gss);
/// # let _ = builder;
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GssapiConfig {
    service: Option<String>,
    server_principal: Option<String>,
}

impl fmt::Debug for GssapiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GssapiConfig")
            .field("service", &self.service_name())
            .field("server_principal", &self.server_principal)
            .finish()
    }
}

impl GssapiConfig {
    /// Defaults: service `zookeeper`, principal `zookeeper/<host>`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The service part of the server principal (Java's
    /// `zookeeper.sasl.client.username`; default `zookeeper`).
    #[must_use]
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The whole server principal, for every host (Java's
    /// `zookeeper.server.principal`), e.g.
    /// `zookeeper/zk.example.com@EXAMPLE.COM`.
    #[must_use]
    pub fn server_principal(mut self, principal: impl Into<String>) -> Self {
        self.server_principal = Some(principal.into());
        self
    }

    fn service_name(&self) -> &str {
        self.service.as_deref().unwrap_or("zookeeper")
    }

    /// The server principal for a connection to `host`.
    pub(crate) fn principal_for(&self, host: &HostAddr) -> String {
        match &self.server_principal {
            Some(p) => p.clone(),
            None => format!("{}/{}", self.service_name(), host.host),
        }
    }
}

/// Where an exchange stands.
enum Phase {
    /// Establishing the security context.
    Context,
    /// Context established: the server's wrapped layer offer comes next.
    Layers,
    /// Our wrapped answer went out: the server's final null token comes.
    Final,
    Done,
}

pub(crate) struct Gssapi {
    ctx: ClientCtx,
    phase: Phase,
    target: String,
}

impl Gssapi {
    pub(crate) fn new(cfg: &GssapiConfig, host: &HostAddr) -> Result<Self, String> {
        let target = cfg.principal_for(host);
        let name = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
            .map_err(|e| format!("GSSAPI: bad server principal {target:?}: {e}"))?;
        let ctx = ClientCtx::new(None, name, CtxFlags::GSS_C_MUTUAL_FLAG, Some(GSS_MECH_KRB5));
        Ok(Self {
            ctx,
            phase: Phase::Context,
            target,
        })
    }
}

impl ExternalMechanism for Gssapi {
    fn step(&mut self, token: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
        let target = self.target.clone();
        let gss = |what: &str, e: libgssapi::error::Error| format!("GSSAPI {what} ({target}): {e}");
        match self.phase {
            Phase::Context => {
                let out = self.ctx.step(token, None).map_err(|e| gss("context", e))?;
                if self.ctx.is_complete() {
                    self.phase = Phase::Layers;
                }
                match out {
                    Some(t) => Ok(Some(t.to_vec())),
                    // Complete with nothing left to say (after the AP-REP):
                    // an empty response asks for the layer offer.
                    None if self.ctx.is_complete() => Ok(Some(Vec::new())),
                    None => Err(format!("GSSAPI ({target}): no token and no context")),
                }
            }
            Phase::Layers => {
                let offer = token.unwrap_or_default();
                let offer = self.ctx.unwrap(offer).map_err(|e| gss("unwrap", e))?;
                if offer.len() != 4 {
                    return Err(format!(
                        "GSSAPI ({target}): a security-layer offer of {} bytes, not 4",
                        offer.len()
                    ));
                }
                if offer[0] & 0x01 == 0 {
                    return Err(format!(
                        "GSSAPI ({target}): the server requires a security layer (offer {:#04x})",
                        offer[0]
                    ));
                }
                // No security layer, no maximum size, then the
                // authorization id: our own principal.
                let me = self
                    .ctx
                    .source_name()
                    .map_err(|e| gss("own name", e))?
                    .to_string();
                let mut answer = vec![0x01, 0, 0, 0];
                answer.extend_from_slice(me.as_bytes());
                let wrapped = self.ctx.wrap(false, &answer).map_err(|e| gss("wrap", e))?;
                self.phase = Phase::Final;
                Ok(Some(wrapped.to_vec()))
            }
            Phase::Final => match token {
                Some(t) if !t.is_empty() => Err(format!(
                    "GSSAPI ({target}): {} unexpected bytes after the exchange",
                    t.len()
                )),
                _ => {
                    self.phase = Phase::Done;
                    Ok(None)
                }
            },
            Phase::Done => Err(format!("GSSAPI ({target}): exchange already complete")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_principal_follows_the_dialled_host_unless_set() {
        let host = HostAddr {
            host: "zk1.example.com".into(),
            port: 2181,
        };
        assert_eq!(
            GssapiConfig::new().principal_for(&host),
            "zookeeper/zk1.example.com"
        );
        assert_eq!(
            GssapiConfig::new().service("zk").principal_for(&host),
            "zk/zk1.example.com"
        );
        assert_eq!(
            GssapiConfig::new()
                .server_principal("zookeeper/x@R")
                .principal_for(&host),
            "zookeeper/x@R"
        );
    }

    #[test]
    fn without_credentials_the_first_step_fails_with_a_reason() {
        let host = HostAddr {
            host: "localhost".into(),
            port: 2181,
        };
        let mut m = Gssapi::new(&GssapiConfig::new(), &host).unwrap();
        // No KDC knows this principal here: a clear error naming it.
        let err = m.step(None).unwrap_err();
        assert!(err.contains("zookeeper/localhost"), "{err}");
    }
}
