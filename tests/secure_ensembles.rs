//! Secured fixtures on both backends: the same script of `x509` and `sasl`
//! identities and ACL operations runs against the bundled server and (with
//! `ZKIT_TEST_BACKEND=zookeeper`) real ZooKeeper 3.8, and both must produce
//! the transcript recorded from real ZooKeeper; authentication enforcement
//! (`enforce.auth.*`, `sessionRequireClientSASLAuth`); failover across a TLS
//! ensemble.

use std::time::Duration;

use zkit::{Acl, Client, CreateOptions, Error, Perms, TlsConfig, Version};
use zkit_testcontainers::{Backend, ClientAuth, Ensemble, TestBackend, CLIENT_DN};

/// The backends to compare: the bundled server always, real ZooKeeper when
/// asked for.
fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Bundled];
    if TestBackend::wants_real_zookeeper() {
        b.push(Backend::ZooKeeper);
    }
    b
}

const ADMIN_DN: &str = "CN=admin,O=zkit";
const ALICE_DN: &str = "CN=alice,O=zkit";

async fn secured(backend: Backend) -> Ensemble {
    Ensemble::builder()
        .backend(backend)
        .tls(ClientAuth::Want)
        .sasl_digest_user("bob", "bob-secret")
        .sasl_digest_user("root", "root-secret")
        .jvm_prop("zookeeper.X509AuthenticationProvider.superUser", ADMIN_DN)
        .jvm_prop("zookeeper.superUser", "root")
        .start()
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: a secured fixture starts: {e}"))
}

/// Who a test client is: over TLS (with which certificate) or plain, with
/// or without SASL.
struct Who<'a> {
    cert: Option<&'a str>,
    tls: bool,
    sasl: Option<(&'a str, &'a str)>,
}

async fn connect(zk: &Ensemble, who: &Who<'_>) -> Result<Client, Error> {
    let files = zk.tls_files().unwrap();
    let mut b = Client::builder().connect_timeout(Duration::from_secs(5));
    let hosts = if who.tls {
        let mut tls = TlsConfig::new().ca_file(files.ca_file());
        if let Some(name) = who.cert {
            let dir = files.ca_file().parent().unwrap().to_path_buf();
            tls = tls.client_cert(
                dir.join(format!("{name}.pem")),
                dir.join(format!("{name}.key")),
            );
        }
        b = b.tls(tls);
        zk.secure_connect_string()
    } else {
        zk.connect_string()
    };
    if let Some((u, p)) = who.sasl {
        b = b.sasl_digest(u, p);
    }
    b.connect(&hosts).await
}

fn show<T>(r: &Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e:?}"),
    }
}

fn show_acl(acl: &[Acl]) -> String {
    acl.iter()
        .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the script on one backend; returns its transcript.
async fn transcript(backend: Backend) -> Vec<String> {
    let zk = secured(backend).await;
    let files = zk.tls_files().unwrap();
    files
        .issue_client("admin", &[("O", "zkit"), ("CN", "admin")])
        .unwrap();
    files
        .issue_client("alice", &[("O", "zkit"), ("CN", "alice")])
        .unwrap();
    // RFC 2253 escaping, as Java writes it.
    files
        .issue_client("odd", &[("O", " z#k "), ("CN", "a,b+c=d;<e>\"f\\")])
        .unwrap();
    let clients = [
        (
            "client",
            Who {
                cert: Some("client"),
                tls: true,
                sasl: None,
            },
        ),
        (
            "alice",
            Who {
                cert: Some("alice"),
                tls: true,
                sasl: None,
            },
        ),
        (
            "admin",
            Who {
                cert: Some("admin"),
                tls: true,
                sasl: None,
            },
        ),
        (
            "odd",
            Who {
                cert: Some("odd"),
                tls: true,
                sasl: None,
            },
        ),
        (
            "nocert",
            Who {
                cert: None,
                tls: true,
                sasl: None,
            },
        ),
        (
            "bob",
            Who {
                cert: None,
                tls: false,
                sasl: Some(("bob", "bob-secret")),
            },
        ),
        (
            "root",
            Who {
                cert: None,
                tls: false,
                sasl: Some(("root", "root-secret")),
            },
        ),
        (
            "client+bob",
            Who {
                cert: Some("client"),
                tls: true,
                sasl: Some(("bob", "bob-secret")),
            },
        ),
        (
            "plain",
            Who {
                cert: None,
                tls: false,
                sasl: None,
            },
        ),
    ];
    let mut c = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (name, who) in &clients {
        let client = connect(&zk, who)
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {name} connects: {e}"));
        let ids = client.who_am_i().await.unwrap();
        let ids: Vec<String> = ids
            .iter()
            .map(|i| format!("{}:{}", i.auth_scheme, i.user))
            .collect();
        out.push(format!("whoami {name}: {}", ids.join(" ")));
        c.insert(*name, client);
    }
    let all = |scheme: &str, id: &str| vec![Acl::new(Perms::ALL, scheme, id)];
    let create = |who: &str, path: &str, acl: Vec<Acl>| {
        let f = c[who].create(path, b"v", &CreateOptions::default().acl(acl));
        let (who, path) = (who.to_string(), path.to_string());
        async move { format!("create {path} by {who}: {}", show(&f.await)) }
    };
    out.push(create("client", "/x", all("x509", CLIENT_DN)).await);
    out.push(create("bob", "/s", all("sasl", "bob")).await);
    out.push(create("client+bob", "/a", all("auth", "")).await);
    out.push(create("nocert", "/n", all("auth", "")).await);
    out.push(create("plain", "/bad-x509", all("x509", "alice")).await);
    out.push(create("plain", "/ok-x509", all("x509", ALICE_DN)).await);
    out.push(create("plain", "/bad-sasl", all("sasl", "a@b@c")).await);
    out.push(create("plain", "/ok-sasl", all("sasl", "svc/host@REALM")).await);
    for path in ["/x", "/s", "/a", "/ok-x509"] {
        for (name, _) in &clients {
            let r = c[name].get_data(path).await;
            out.push(format!("get {path} by {name}: {}", show(&r)));
        }
        let acl = c["root"].get_acl(path).await.map(|(a, _)| show_acl(&a));
        out.push(format!(
            "getAcl {path}: {}",
            acl.unwrap_or_else(|e| format!("{e:?}"))
        ));
    }
    for name in ["alice", "admin", "root"] {
        let r = c[name]
            .set_acl("/x", &all("x509", ALICE_DN), Version::Any)
            .await;
        out.push(format!("setAcl /x to alice by {name}: {}", show(&r)));
    }
    let r = c["alice"].get_data("/x").await;
    out.push(format!("get /x by alice after: {}", show(&r)));
    for (_, client) in c {
        client.close().await.unwrap();
    }
    out
}

/// What real ZooKeeper 3.8 answered to the script (recorded with
/// `ZKIT_TEST_BACKEND=zookeeper`; the test checks every backend against it).
const EXPECTED: &[&str] = &[
    "whoami client: ip:127.0.0.1 x509:CN=client,OU=tests,O=zkit",
    "whoami alice: x509:CN=alice,O=zkit ip:127.0.0.1",
    "whoami admin: super: ip:127.0.0.1 x509:CN=admin,O=zkit",
    "whoami odd: x509:CN=a\\,b\\+c\\=d\\;\\<e\\>\\\"f\\\\,O=\\ z\\#k\\  ip:127.0.0.1",
    "whoami nocert: ip:127.0.0.1",
    "whoami bob: sasl:bob ip:127.0.0.1",
    "whoami root: sasl:root super: ip:127.0.0.1",
    "whoami client+bob: sasl:bob ip:127.0.0.1 x509:CN=client,OU=tests,O=zkit",
    "whoami plain: ip:127.0.0.1",
    "create /x by client: ok",
    "create /s by bob: ok",
    "create /a by client+bob: ok",
    "create /n by nocert: InvalidAcl",
    "create /bad-x509 by plain: InvalidAcl",
    "create /ok-x509 by plain: ok",
    "create /bad-sasl by plain: InvalidAcl",
    "create /ok-sasl by plain: ok",
    "get /x by client: ok",
    "get /x by alice: NoAuth",
    "get /x by admin: ok",
    "get /x by odd: NoAuth",
    "get /x by nocert: NoAuth",
    "get /x by bob: NoAuth",
    "get /x by root: ok",
    "get /x by client+bob: ok",
    "get /x by plain: NoAuth",
    "getAcl /x: x509:CN=client,OU=tests,O=zkit:31",
    "get /s by client: NoAuth",
    "get /s by alice: NoAuth",
    "get /s by admin: ok",
    "get /s by odd: NoAuth",
    "get /s by nocert: NoAuth",
    "get /s by bob: ok",
    "get /s by root: ok",
    "get /s by client+bob: ok",
    "get /s by plain: NoAuth",
    "getAcl /s: sasl:bob:31",
    "get /a by client: ok",
    "get /a by alice: NoAuth",
    "get /a by admin: ok",
    "get /a by odd: NoAuth",
    "get /a by nocert: NoAuth",
    "get /a by bob: ok",
    "get /a by root: ok",
    "get /a by client+bob: ok",
    "get /a by plain: NoAuth",
    "getAcl /a: sasl:bob:31 x509:CN=client,OU=tests,O=zkit:31",
    "get /ok-x509 by client: NoAuth",
    "get /ok-x509 by alice: ok",
    "get /ok-x509 by admin: ok",
    "get /ok-x509 by odd: NoAuth",
    "get /ok-x509 by nocert: NoAuth",
    "get /ok-x509 by bob: NoAuth",
    "get /ok-x509 by root: ok",
    "get /ok-x509 by client+bob: NoAuth",
    "get /ok-x509 by plain: NoAuth",
    "getAcl /ok-x509: x509:CN=alice,O=zkit:31",
    "setAcl /x to alice by alice: NoAuth",
    "setAcl /x to alice by admin: ok",
    "setAcl /x to alice by root: ok",
    "get /x by alice after: ok",
];

#[tokio::test]
async fn x509_and_sasl_acls_as_real_zookeeper() {
    for backend in backends() {
        let got = transcript(backend).await;
        let want: Vec<String> = EXPECTED.iter().map(|s| (*s).to_string()).collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{backend:?}: line {i} differs from real ZooKeeper's");
        }
        assert_eq!(got.len(), want.len(), "{backend:?}: transcript length");
    }
}

/// `sessionRequireClientSASLAuth=true`: a client without SASL gets -124 on
/// its first request and its session ends as AuthFailed; a wrong password
/// is -124 too (not -115); the right one works. Same on both backends.
#[tokio::test]
async fn a_server_requiring_sasl_refuses_unauthenticated_sessions() {
    for backend in backends() {
        let zk = Ensemble::builder()
            .backend(backend)
            .sasl_digest_user("bob", "bob-secret")
            .config("sessionRequireClientSASLAuth", "true")
            .start()
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let builder = || Client::builder().connect_timeout(Duration::from_secs(5));
        let anon = builder().connect(&zk.connect_string()).await.unwrap();
        let mut states = anon.state_stream();
        assert_eq!(
            anon.get_data("/").await.unwrap_err(),
            Error::SessionClosedRequireSaslAuth,
            "{backend:?}"
        );
        let terminal = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(s) = futures::StreamExt::next(&mut states).await {
                if s.is_terminal() {
                    return s;
                }
            }
            panic!("state stream ended");
        })
        .await
        .expect("a terminal state");
        assert_eq!(terminal, zkit::SessionState::AuthFailed, "{backend:?}");
        assert_eq!(
            anon.exists("/").await.unwrap_err(),
            Error::SessionClosedRequireSaslAuth,
            "{backend:?}: later calls fail the same way"
        );
        let wrong = builder()
            .sasl_digest("bob", "wrong")
            .connect(&zk.connect_string())
            .await;
        assert_eq!(
            wrong.unwrap_err(),
            Error::SessionClosedRequireSaslAuth,
            "{backend:?}: a refused SASL on a server requiring it"
        );
        let bob = builder()
            .sasl_digest("bob", "bob-secret")
            .connect(&zk.connect_string())
            .await
            .unwrap();
        bob.create("/required", b"x", &CreateOptions::default())
            .await
            .unwrap();
        assert_eq!(&bob.get_data("/required").await.unwrap().0[..], b"x");
        bob.close().await.unwrap();
    }
}

/// `enforce.auth.enabled=true` + `enforce.auth.schemes=x509`: only clients
/// with a certificate get in; SASL does not help on the plain port.
#[tokio::test]
async fn enforced_x509_admits_certificate_holders_only() {
    for backend in backends() {
        let zk = Ensemble::builder()
            .backend(backend)
            .tls(ClientAuth::Want)
            .sasl_digest_user("bob", "bob-secret")
            .config("enforce.auth.enabled", "true")
            .config("enforce.auth.schemes", "x509")
            .start()
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let files = zk.tls_files().unwrap();
        let builder = || Client::builder().connect_timeout(Duration::from_secs(5));
        let sasl_only = builder()
            .sasl_digest("bob", "bob-secret")
            .connect(&zk.connect_string())
            .await
            .unwrap();
        assert_eq!(
            sasl_only.get_data("/").await.unwrap_err(),
            Error::SessionClosedRequireSaslAuth,
            "{backend:?}"
        );
        let no_cert = builder()
            .tls(TlsConfig::new().ca_file(files.ca_file()))
            .connect(&zk.secure_connect_string())
            .await
            .unwrap();
        assert_eq!(
            no_cert.get_data("/").await.unwrap_err(),
            Error::SessionClosedRequireSaslAuth,
            "{backend:?}"
        );
        let holder = builder()
            .tls(
                TlsConfig::new()
                    .ca_file(files.ca_file())
                    .client_cert(files.client_cert(), files.client_key()),
            )
            .connect(&zk.secure_connect_string())
            .await
            .unwrap();
        holder.get_data("/").await.unwrap();
        holder.close().await.unwrap();
    }
}

/// Failover across a 3-member real ZooKeeper ensemble over mutual TLS: the
/// member the client is connected to is killed; the session, its ephemeral
/// node, its x509 identity and its watch move to another member over TLS.
#[tokio::test]
async fn failover_across_a_tls_ensemble_keeps_session_and_watches() {
    if zkit_testcontainers::skip_without_real_zookeeper("TLS ensemble failover") {
        return;
    }
    let zk = Ensemble::builder()
        .size(3)
        .tls(ClientAuth::Need)
        .start()
        .await
        .expect("a TLS ensemble starts");
    let files = zk.tls_files().unwrap();
    let tls = TlsConfig::new()
        .ca_file(files.ca_file())
        .client_cert(files.client_cert(), files.client_key());
    let c = Client::builder()
        .session_timeout(Duration::from_secs(6))
        .connect_timeout(Duration::from_secs(3))
        .tls(tls.clone())
        .connect(&zk.secure_connect_string())
        .await
        .unwrap();
    let sid = c.session_id();
    let mine = vec![Acl::new(Perms::ALL, "x509", CLIENT_DN)];
    c.create(
        "/tls-failover",
        b"1",
        &CreateOptions::new(zkit::CreateMode::Ephemeral).acl(mine),
    )
    .await
    .unwrap();
    let (_, _, watch) = c.get_data_and_watch("/tls-failover").await.unwrap();
    let port = c.connected_server().expect("connected").port;
    let victim = zk.member_of_port(port).expect("a member's TLS port");
    assert_eq!(zk.secure_addr(victim).unwrap().port(), port);
    zk.kill(victim).await.unwrap();
    // The next call succeeds on another member, in the same session.
    let (data, stat) = tokio::time::timeout(Duration::from_secs(10), c.get_data("/tls-failover"))
        .await
        .expect("served again within 10 s")
        .unwrap();
    assert_eq!(&data[..], b"1");
    assert_eq!(stat.ephemeral_owner, sid.0);
    assert_eq!(c.session_id(), sid);
    let now = c.connected_server().expect("connected").port;
    assert_ne!(now, port, "moved to another member");
    assert!(zk.member_of_port(now).is_some_and(|m| m != victim));
    // The watch was set again on the new member: a change fires it.
    c.set_data("/tls-failover", b"2", Version::Any)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the watch fires after failover")
        .unwrap();
    assert_eq!(ev.path, "/tls-failover");
    c.close().await.unwrap();
}

/// Enforcing a scheme the server has no provider for stops the start, as
/// ZooKeeper's AuthenticationHelper does (`sasl` needs its auth provider,
/// `x509` a secure port or its provider).
#[tokio::test]
async fn enforcing_an_unavailable_scheme_refuses_to_start() {
    for schemes in [&["sasl"][..], &["x509"], &["digest", "nosuch"]] {
        let e = zkit_server::Server::builder()
            .enforce_auth(schemes.iter().copied())
            .start()
            .await
            .err()
            .unwrap_or_else(|| panic!("{schemes:?}: started"));
        assert!(e.to_string().contains("not available"), "{e}");
    }
    let ok = zkit_server::Server::builder()
        .sasl_auth_provider(true)
        .x509_auth_provider(true)
        .enforce_auth(["sasl", "x509", "digest", "ip"])
        .start()
        .await
        .expect("registered schemes start");
    ok.shutdown().await;
}
