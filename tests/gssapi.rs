//! SASL GSSAPI (Kerberos v5) against real ZooKeeper 3.8 with a private MIT
//! KDC (fixtures `Kdc` and `EnsembleBuilder::kerberos`): authentication on
//! every connection (again after a reconnect), `sasl:` ACLs for the
//! Kerberos principal, an unknown server principal ending the session as
//! AuthFailed. Feature `gssapi`; needs `krb5-kdc`, `krb5-admin-server`.
//!
//! Kerberos reads its configuration and credentials from the environment
//! (`KRB5_CONFIG`, `KRB5_CLIENT_KTNAME`, `KRB5CCNAME`), which a test must
//! not change under other threads: the outer test starts the KDC and
//! ZooKeeper, then runs the inner test in a child process of this binary
//! with that environment.
#![cfg(feature = "gssapi")]

mod common;

use std::time::Duration;

use zkit::{Acl, Client, CreateOptions, Error, GssapiConfig, Perms};
use zkit_testcontainers::{Ensemble, FaultProxy, Kdc, TEST_REALM};

const INNER_ENV: &str = "ZKIT_GSSAPI_SERVER";

#[tokio::test]
async fn gssapi_against_real_zookeeper() {
    if zkit_testcontainers::skip_without_real_zookeeper("SASL GSSAPI") {
        return;
    }
    assert!(
        Kdc::is_installed(),
        "an MIT KDC is needed: run scripts/install-zookeeper.sh (krb5-kdc, krb5-admin-server)"
    );
    let kdc = Kdc::start().expect("a KDC starts");
    let server_keytab = kdc.add_principal("zookeeper/localhost").unwrap();
    let client_keytab = kdc.add_principal("client").unwrap();
    let zk = Ensemble::builder()
        .kerberos(kdc.krb5_conf(), &server_keytab)
        .start()
        .await
        .expect("a Kerberos ZooKeeper starts");
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inner_gssapi_session",
            "--include-ignored",
            "--nocapture",
        ])
        .env(INNER_ENV, zk.client_addr(0).to_string())
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .env("KRB5_CLIENT_KTNAME", &client_keytab)
        .env(
            "KRB5CCNAME",
            format!("FILE:{}", kdc.dir().join("client.cc").display()),
        )
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the inner test failed:\n{text}");
    assert!(
        text.contains("test inner_gssapi_session ... ok"),
        "the inner test did not run:\n{text}"
    );
    drop(zk);
}

/// Runs only as the child of [`gssapi_against_real_zookeeper`].
#[tokio::test]
#[ignore = "run by gssapi_against_real_zookeeper with a Kerberos environment"]
async fn inner_gssapi_session() {
    let Ok(server) = std::env::var(INNER_ENV) else {
        return;
    };
    let server: std::net::SocketAddr = server.parse().unwrap();
    let principal = format!("client@{TEST_REALM}");
    // Through a proxy, dialled as `localhost` (the service principal is
    // zookeeper/localhost), so the connection can be cut.
    let proxy = FaultProxy::start(server).await.unwrap();
    let hosts = format!("localhost:{}", proxy.addr().port());
    let c = Client::builder()
        .session_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .sasl_gssapi(GssapiConfig::new())
        .connect(&hosts)
        .await
        .expect("a session authenticated by Kerberos");
    let ids = c.who_am_i().await.unwrap();
    eprintln!("whoami over GSSAPI: {ids:?}");
    assert!(
        ids.iter()
            .any(|i| i.auth_scheme == "sasl" && i.user == principal),
        "{ids:?}"
    );
    let acl = vec![Acl::new(Perms::ALL, "sasl", &principal)];
    c.create("/kerberos", b"k", &CreateOptions::default().acl(acl))
        .await
        .unwrap();
    let anon = Client::connect(&server.to_string()).await.unwrap();
    assert_eq!(anon.get_data("/kerberos").await.unwrap_err(), Error::NoAuth);
    // A reconnect authenticates again before the next request.
    let session = c.session_id();
    proxy.cut();
    let (data, _) =
        common::past_connection_loss(Duration::from_secs(10), || c.get_data("/kerberos"))
            .await
            .expect("readable after the reconnect: authenticated again");
    assert_eq!(&data[..], b"k");
    assert_eq!(c.session_id(), session);
    c.close().await.unwrap();
    // A server principal the KDC does not know: AuthFailed, no session.
    let r = Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .sasl_gssapi(
            GssapiConfig::new().server_principal(format!("zookeeper/nosuchhost@{TEST_REALM}")),
        )
        .connect(&server.to_string())
        .await;
    assert_eq!(r.unwrap_err(), Error::AuthFailed);
    anon.close().await.unwrap();
}
