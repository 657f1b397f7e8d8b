//! SASL DIGEST-MD5 against real ZooKeeper 3.8 (a JAAS `Server` section with
//! `DigestLoginModule` users): authentication before anything else on every
//! connection, `sasl:` ACLs, a refused password ending the session, and
//! re-authentication after a reconnect.

mod common;

use std::time::Duration;

use zkit::{Acl, Client, CreateOptions, Error, Perms};
use zkit_testcontainers::{Ensemble, FaultProxy};

async fn sasl_zookeeper() -> Option<Ensemble> {
    if zkit_testcontainers::skip_without_real_zookeeper("SASL (the bundled server has no SASL yet)")
    {
        return None;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jaas = dir.join("jaas.conf");
    std::fs::write(
        &jaas,
        "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_bob=\"bob-secret\";\n};\n",
    )
    .unwrap();
    Some(
        Ensemble::builder()
            .size(1)
            .jvm_prop(
                "java.security.auth.login.config",
                jaas.display().to_string(),
            )
            .config(
                "authProvider.1",
                "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            )
            .start()
            .await
            .expect("a SASL ZooKeeper starts"),
    )
}

#[tokio::test]
async fn digest_md5_authenticates_every_connection() {
    let Some(zk) = sasl_zookeeper().await else {
        return;
    };
    let server = zk.client_addr(0);
    let proxy = FaultProxy::start(server).await.unwrap();
    let bob = Client::builder()
        .session_timeout(Duration::from_secs(10))
        .sasl_digest("bob", "bob-secret")
        .connect(&proxy.addr().to_string())
        .await
        .expect("authenticated");
    let ids = bob.who_am_i().await.unwrap();
    assert!(
        ids.iter()
            .any(|i| i.auth_scheme == "sasl" && i.user == "bob"),
        "{ids:?}"
    );
    let acl = vec![Acl::new(Perms::ALL, "sasl", "bob")];
    bob.create("/bobs", b"mine", &CreateOptions::default().acl(acl))
        .await
        .unwrap();
    // Someone else cannot read it.
    let anon = Client::connect(&zk.connect_string()).await.unwrap();
    assert_eq!(anon.get_data("/bobs").await.unwrap_err(), Error::NoAuth);
    // After a reconnect (same session), bob is authenticated again before
    // his next request goes out.
    let session = bob.session_id();
    proxy.cut();
    let (data, _) = common::past_connection_loss(Duration::from_secs(10), || bob.get_data("/bobs"))
        .await
        .expect("readable after the reconnect: authenticated again");
    assert_eq!(&data[..], b"mine");
    assert_eq!(bob.session_id(), session);
    bob.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_password_ends_the_session() {
    let Some(zk) = sasl_zookeeper().await else {
        return;
    };
    let r = Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .sasl_digest("bob", "wrong")
        .connect(&zk.connect_string())
        .await;
    assert_eq!(r.unwrap_err(), Error::AuthFailed);
    // A client whose server answers the SASL exchange with a null token
    // (no SASL configured there) is refused the same way, not hung.
    let plain = Ensemble::builder().size(1).start().await.unwrap();
    let r = Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .sasl_digest("bob", "bob-secret")
        .connect(&plain.connect_string())
        .await;
    assert_eq!(r.unwrap_err(), Error::AuthFailed);
}

/// The bundled server's SASL DIGEST-MD5 (a JAAS Server section, the `sasl`
/// ACL scheme registered): the same cases as against real ZooKeeper.
#[tokio::test]
async fn the_bundled_server_speaks_digest_md5() {
    let users = zkit_server::SaslUsers::from_jaas(
        "Server {\n org.apache.zookeeper.server.auth.DigestLoginModule required\n user_bob=\"bob-secret\";\n};\n",
    )
    .unwrap();
    let server = zkit_server::Server::builder()
        .sasl(users)
        .sasl_auth_provider(true)
        .start()
        .await
        .unwrap();
    let cs = server.connect_string();
    let bob = Client::builder()
        .sasl_digest("bob", "bob-secret")
        .connect(&cs)
        .await
        .expect("authenticated");
    let ids = bob.who_am_i().await.unwrap();
    assert!(
        ids.iter()
            .any(|i| i.auth_scheme == "sasl" && i.user == "bob"),
        "{ids:?}"
    );
    let acl = vec![Acl::new(Perms::ALL, "sasl", "bob")];
    bob.create("/bobs", b"mine", &CreateOptions::default().acl(acl))
        .await
        .unwrap();
    let anon = Client::connect(&cs).await.unwrap();
    assert_eq!(anon.get_data("/bobs").await.unwrap_err(), Error::NoAuth);
    assert_eq!(&bob.get_data("/bobs").await.unwrap().0[..], b"mine");
    let r = Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .sasl_digest("bob", "wrong")
        .connect(&cs)
        .await;
    assert_eq!(r.unwrap_err(), Error::AuthFailed);
    // Without a JAAS Server section: a null token, refused by the client.
    let plain = zkit_server::Server::builder().start().await.unwrap();
    let r = Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .sasl_digest("bob", "bob-secret")
        .connect(&plain.connect_string())
        .await;
    assert_eq!(r.unwrap_err(), Error::AuthFailed);
}
