//! TLS between the client and the bundled server's secure client port:
//! server-name and chain checks, the typed failures (unknown CA, name
//! mismatch, expired), mutual TLS, and certificate files read again for
//! each new connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};
use zkit::{Client, CreateOptions, Error, TlsConfig};
use zkit_server::{ClientAuth, RunningServer, Server, ServerTls};

/// A CA, or a certificate it signed, with its key.
struct Issued {
    cert: Certificate,
    key: KeyPair,
}

fn new_ca(name: &str) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Issued { cert, key }
}

fn issue(by: &Issued, names: &[&str], expired: bool) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, &by.cert, &by.key).unwrap();
    Issued { cert, key }
}

/// A fresh directory for this test's PEM files.
fn dir(tag: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `issued`'s certificate and key; returns their paths.
fn write(d: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let cert = d.join(format!("{name}.pem"));
    let key = d.join(format!("{name}.key"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.key.serialize_pem()).unwrap();
    (cert, key)
}

/// A ZooKeeper PEM key store: `issued`'s certificate and key in one file.
fn key_store(d: &Path, issued: &Issued) -> PathBuf {
    let store = d.join("server-keystore.pem");
    std::fs::write(
        &store,
        format!("{}{}", issued.cert.pem(), issued.key.serialize_pem()),
    )
    .unwrap();
    store
}

async fn tls_server(tls: ServerTls) -> RunningServer {
    Server::builder()
        .secure_listen("127.0.0.1:0".parse().unwrap(), tls)
        .start()
        .await
        .unwrap()
}

async fn connect(server: &RunningServer, host: &str, tls: TlsConfig) -> Result<Client, Error> {
    let port = server.secure_addr().unwrap().port();
    Client::builder()
        .connect_timeout(Duration::from_millis(1500))
        .tls(tls)
        .connect(&format!("{host}:{port}"))
        .await
}

/// The single cause of a `NoServerReachable`.
fn cause(r: Result<Client, Error>) -> String {
    match r {
        Err(Error::NoServerReachable { attempts, .. }) => {
            assert_eq!(attempts.len(), 1, "{attempts:?}");
            attempts[0].cause.clone()
        }
        Err(e) => panic!("expected NoServerReachable, got {e}"),
        Ok(_) => panic!("expected NoServerReachable, got a session"),
    }
}

#[tokio::test]
async fn a_session_over_tls_with_name_and_chain_checked() {
    let d = dir("basic");
    let ca = new_ca("zkit test CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let (cert, key) = write(
        &d,
        "server",
        &issue(&ca, &["localhost", "127.0.0.1"], false),
    );
    let server = tls_server(ServerTls::new(cert, key)).await;
    for host in ["localhost", "127.0.0.1"] {
        let zk = connect(&server, host, TlsConfig::new().ca_file(&ca_pem))
            .await
            .unwrap();
        let path = format!("/tls-{host}");
        zk.create(&path, b"secret", &CreateOptions::default())
            .await
            .unwrap();
        assert_eq!(&zk.get_data(&path).await.unwrap().0[..], b"secret");
        zk.close().await.unwrap();
    }
    // The plain port still works beside the secure one.
    let plain = Client::connect(&server.connect_string()).await.unwrap();
    assert!(plain.exists("/tls-localhost").await.unwrap().is_some());
}

#[tokio::test]
async fn handshake_failures_name_their_reason() {
    let d = dir("fail");
    let ca = new_ca("zkit test CA");
    let other = new_ca("another CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let (other_pem, _) = write(&d, "other", &other);
    // A certificate for another name only.
    let (cert, key) = write(&d, "named", &issue(&ca, &["zk.internal"], false));
    let server = tls_server(ServerTls::new(cert, key)).await;
    let unknown = cause(connect(&server, "127.0.0.1", TlsConfig::new().ca_file(&other_pem)).await);
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    let mismatch = cause(connect(&server, "127.0.0.1", TlsConfig::new().ca_file(&ca_pem)).await);
    assert!(mismatch.contains("not valid for name"), "{mismatch}");
    // For IP-only ensembles: check against the certificates' shared name,
    // or (as ssl.hostnameVerification=false) not at all.
    let zk = connect(
        &server,
        "127.0.0.1",
        TlsConfig::new().ca_file(&ca_pem).server_name("zk.internal"),
    )
    .await
    .unwrap();
    zk.close().await.unwrap();
    let zk = connect(
        &server,
        "127.0.0.1",
        TlsConfig::new().ca_file(&ca_pem).verify_hostname(false),
    )
    .await
    .unwrap();
    zk.close().await.unwrap();
    // The chain is checked even then.
    let still = cause(
        connect(
            &server,
            "127.0.0.1",
            TlsConfig::new().ca_file(&other_pem).verify_hostname(false),
        )
        .await,
    );
    assert!(still.contains("UnknownIssuer"), "{still}");

    let (cert, key) = write(&d, "expired", &issue(&ca, &["127.0.0.1"], true));
    let expired_server = tls_server(ServerTls::new(cert, key)).await;
    let expired = cause(
        connect(
            &expired_server,
            "127.0.0.1",
            TlsConfig::new().ca_file(&ca_pem),
        )
        .await,
    );
    assert!(expired.contains("certificate expired"), "{expired}");
}

#[tokio::test]
async fn mutual_tls_and_rotated_files() {
    let d = dir("mutual");
    let ca = new_ca("zkit test CA");
    let clients = new_ca("client CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let (clients_pem, _) = write(&d, "clients", &clients);
    let (cert, key) = write(&d, "server", &issue(&ca, &["127.0.0.1"], false));
    let (client_cert, client_key) = write(&d, "client", &issue(&clients, &["client-1"], false));
    let server =
        tls_server(ServerTls::new(cert, key).client_ca(&clients_pem, ClientAuth::Need)).await;
    // Without a client certificate: refused.
    assert!(
        connect(&server, "127.0.0.1", TlsConfig::new().ca_file(&ca_pem))
            .await
            .is_err()
    );
    let zk = connect(
        &server,
        "127.0.0.1",
        TlsConfig::new()
            .ca_file(&ca_pem)
            .client_cert(&client_cert, &client_key),
    )
    .await
    .unwrap();
    zk.close().await.unwrap();

    // The client's CA file is read again for each connection: a file that
    // held the wrong CA and now holds the right one needs no new client
    // settings.
    let rotating = d.join("rotating.pem");
    std::fs::copy(&clients_pem, &rotating).unwrap();
    let settings = TlsConfig::new()
        .ca_file(&rotating)
        .client_cert(&client_cert, &client_key);
    assert!(connect(&server, "127.0.0.1", settings.clone())
        .await
        .is_err());
    std::fs::copy(&ca_pem, &rotating).unwrap();
    let zk = connect(&server, "127.0.0.1", settings).await.unwrap();
    zk.close().await.unwrap();
}

/// A `zoo.cfg` written for ZooKeeper (PEM key store holding the chain and
/// the key in one file, a PEM trust store, `ssl.clientAuth=need`) gives the
/// bundled server the same secure port.
#[tokio::test]
async fn a_zookeeper_zoo_cfg_with_tls_keys_serves_tls() {
    let d = dir("zoocfg");
    let ca = new_ca("zkit test CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let server_cert = issue(&ca, &["127.0.0.1"], false);
    let store = key_store(&d, &server_cert);
    let (client_cert, client_key) = write(&d, "client", &issue(&ca, &["client-1"], false));
    let cfg = zkit_server::Config::parse(&format!(
        "tickTime=2000\nclientPortAddress=127.0.0.1\nclientPort=0\nsecureClientPort=0\n\
         serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
         ssl.keyStore.location={}\nssl.keyStore.type=PEM\nssl.trustStore.location={}\n\
         ssl.clientAuth=need\n",
        store.display(),
        ca_pem.display()
    ))
    .unwrap();
    let server = zkit_server::ServerBuilder::from_config(&cfg)
        .start()
        .await
        .unwrap();
    assert!(
        connect(&server, "127.0.0.1", TlsConfig::new().ca_file(&ca_pem))
            .await
            .is_err(),
        "a client certificate is needed"
    );
    let zk = connect(
        &server,
        "127.0.0.1",
        TlsConfig::new()
            .ca_file(&ca_pem)
            .client_cert(&client_cert, &client_key),
    )
    .await
    .unwrap();
    assert!(zk.exists("/").await.unwrap().is_some());
    zk.close().await.unwrap();
    // A secure port without a key store is refused at parse time.
    let e = zkit_server::Config::parse("secureClientPort=2281\n").unwrap_err();
    assert!(e.to_string().contains("ssl.keyStore.location"), "{e}");
    let e = zkit_server::Config::parse("ssl.keyStore.type=JKS\n").unwrap_err();
    assert!(e.to_string().contains("PEM"), "{e}");
}

/// Real ZooKeeper 3.8 with a secure client port (Netty, PEM key and trust
/// stores, `ssl.clientAuth=need`): the zkit client connects over TLS with
/// its certificate, and is refused without one or with a wrong CA.
#[tokio::test]
async fn real_zookeeper_over_tls() {
    if zkit_testcontainers::skip_without_real_zookeeper("ZooKeeper over TLS") {
        return;
    }
    let d = dir("real");
    let ca = new_ca("zkit test CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let server_cert = issue(&ca, &["localhost", "127.0.0.1"], false);
    let store = key_store(&d, &server_cert);
    let (client_cert, client_key) = write(&d, "client", &issue(&ca, &["client-1"], false));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let zk = zkit_testcontainers::Ensemble::builder()
        .size(1)
        .config("secureClientPortAddress", "127.0.0.1")
        .config("secureClientPort", port.to_string())
        .config(
            "serverCnxnFactory",
            "org.apache.zookeeper.server.NettyServerCnxnFactory",
        )
        .config("ssl.keyStore.location", store.display().to_string())
        .config("ssl.keyStore.type", "PEM")
        .config("ssl.trustStore.location", ca_pem.display().to_string())
        .config("ssl.trustStore.type", "PEM")
        .config("ssl.clientAuth", "need")
        .start()
        .await
        .expect("a TLS ZooKeeper starts");
    let hosts = format!("localhost:{port}");
    let builder = || Client::builder().connect_timeout(Duration::from_secs(3));
    let c = builder()
        .tls(
            TlsConfig::new()
                .ca_file(&ca_pem)
                .client_cert(&client_cert, &client_key),
        )
        .connect(&hosts)
        .await
        .expect("a session over TLS");
    c.create("/over-tls", b"x", &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(&c.get_data("/over-tls").await.unwrap().0[..], b"x");
    c.close().await.unwrap();
    // No client certificate, or the wrong CA: named failures, no session.
    let other = new_ca("another CA");
    let (other_pem, _) = write(&d, "other", &other);
    let r = builder()
        .tls(TlsConfig::new().ca_file(&other_pem))
        .connect(&hosts)
        .await;
    let unknown = cause(r);
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    let r = builder()
        .tls(TlsConfig::new().ca_file(&ca_pem))
        .connect(&hosts)
        .await;
    assert!(
        r.is_err(),
        "ssl.clientAuth=need refuses a client without a certificate"
    );
    drop(zk);
}

/// TLS and SASL together on real ZooKeeper 3.8: a session over TLS
/// (server-only) authenticated by SASL DIGEST-MD5; a `sasl:` ACL refuses
/// another identity over the same TLS port.
#[tokio::test]
async fn real_zookeeper_over_tls_with_sasl() {
    if zkit_testcontainers::skip_without_real_zookeeper("ZooKeeper over TLS with SASL") {
        return;
    }
    let d = dir("tlssasl");
    let ca = new_ca("zkit test CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let server_cert = issue(&ca, &["localhost", "127.0.0.1"], false);
    let store = key_store(&d, &server_cert);
    let jaas = d.join("jaas.conf");
    std::fs::write(
        &jaas,
        "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_bob=\"bob-secret\"\n  user_eve=\"eve-secret\";\n};\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let zk = zkit_testcontainers::Ensemble::builder()
        .size(1)
        .jvm_prop(
            "java.security.auth.login.config",
            jaas.display().to_string(),
        )
        .config(
            "authProvider.1",
            "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        )
        .config("secureClientPortAddress", "127.0.0.1")
        .config("secureClientPort", port.to_string())
        .config(
            "serverCnxnFactory",
            "org.apache.zookeeper.server.NettyServerCnxnFactory",
        )
        .config("ssl.keyStore.location", store.display().to_string())
        .config("ssl.keyStore.type", "PEM")
        .config("ssl.clientAuth", "none")
        .start()
        .await
        .expect("a TLS + SASL ZooKeeper starts");
    let hosts = format!("127.0.0.1:{port}");
    let as_user = |user: &str, pw: &str| {
        Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .tls(TlsConfig::new().ca_file(&ca_pem))
            .sasl_digest(user, pw)
            .connect(&hosts)
    };
    let bob = as_user("bob", "bob-secret")
        .await
        .expect("bob over TLS + SASL");
    let acl = vec![zkit::Acl::new(zkit::Perms::ALL, "sasl", "bob")];
    bob.create("/bob-tls", b"x", &CreateOptions::default().acl(acl))
        .await
        .unwrap();
    let eve = as_user("eve", "eve-secret")
        .await
        .expect("eve over TLS + SASL");
    assert_eq!(eve.get_data("/bob-tls").await.unwrap_err(), Error::NoAuth);
    assert_eq!(&bob.get_data("/bob-tls").await.unwrap().0[..], b"x");
    assert_eq!(
        as_user("bob", "wrong").await.unwrap_err(),
        Error::AuthFailed
    );
    bob.close().await.unwrap();
    eve.close().await.unwrap();
    drop(zk);
}

/// Bad input on the secured ports: a plain-text handshake on the TLS port, a
/// TLS ClientHello on the plain port, garbage, a handshake that stops half
/// way, a client certificate from an unknown CA. Each connection is closed
/// (promptly, or at the handshake timeout for the stalled one) and the
/// server keeps serving TLS and plain clients.
#[tokio::test]
async fn bad_input_on_the_secured_ports_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use zkit::proto::{encode_frame, ConnectRequest, Encode};

    let d = dir("bad");
    let ca = new_ca("zkit test CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let (cert, key) = write(
        &d,
        "server",
        &issue(&ca, &["localhost", "127.0.0.1"], false),
    );
    let (client_cert, client_key) = write(&d, "client", &issue(&ca, &["client"], false));
    let stranger_ca = new_ca("stranger CA");
    let (stranger_cert, stranger_key) =
        write(&d, "stranger", &issue(&stranger_ca, &["stranger"], false));
    let server = Server::builder()
        .handshake_timeout(Duration::from_millis(800))
        .secure_listen(
            "127.0.0.1:0".parse().unwrap(),
            ServerTls::new(cert, key).client_ca(&ca_pem, ClientAuth::Need),
        )
        .start()
        .await
        .unwrap();
    let secure = server.secure_addr().unwrap();
    let plain = server.local_addr();
    let good_tls = || {
        TlsConfig::new()
            .ca_file(&ca_pem)
            .client_cert(&client_cert, &client_key)
    };
    let keeper = connect(&server, "127.0.0.1", good_tls()).await.unwrap();
    keeper
        .create("/bad-input", b"kept", &CreateOptions::default())
        .await
        .unwrap();

    /// Sends `bytes`, then expects the server to close within `within`
    /// (EOF or reset), having sent nothing that parses as a reply.
    async fn closed_after(
        addr: std::net::SocketAddr,
        bytes: &[u8],
        within: Duration,
    ) -> Result<Vec<u8>, String> {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(within, async {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        match read {
            Ok(()) => Ok(got),
            Err(_) => Err(format!("still open after {within:?}")),
        }
    }

    let mut connect_frame = bytes::BytesMut::new();
    encode_frame(&mut connect_frame, |b| {
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: 30_000,
            session_id: 0,
            passwd: bytes::Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        }
        .encode(b)
    });
    // Plain text on the TLS port: not a TLS record; closed at once. (rustls
    // may answer with an alert record first, never a ZooKeeper reply.)
    let got = closed_after(secure, &connect_frame, Duration::from_secs(2))
        .await
        .expect("plain text on the TLS port is closed");
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only a TLS alert may come back: {got:?}"
    );
    // A TLS ClientHello on the plain port reads as a 369 MB frame: closed.
    let hello = [
        0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03,
    ];
    let got = closed_after(plain, &hello, Duration::from_secs(2))
        .await
        .expect("TLS on the plain port is closed");
    assert!(got.is_empty(), "no reply to a TLS hello: {got:?}");
    // Garbage on the TLS port.
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
    closed_after(secure, &garbage, Duration::from_secs(2))
        .await
        .expect("garbage on the TLS port is closed");
    // A handshake that stops half way: closed at the handshake timeout.
    let t0 = std::time::Instant::now();
    closed_after(secure, &hello[..7], Duration::from_secs(3))
        .await
        .expect("a stalled TLS handshake is closed");
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "closed at the handshake timeout, not before ({:?})",
        t0.elapsed()
    );
    // A client certificate from an unknown CA: no session.
    let stranger = connect(
        &server,
        "127.0.0.1",
        TlsConfig::new()
            .ca_file(&ca_pem)
            .client_cert(&stranger_cert, &stranger_key),
    )
    .await;
    assert!(
        stranger.is_err(),
        "a certificate from an unknown CA is refused"
    );
    // Everyone else is still served: the session from before, and new ones
    // on both ports.
    assert_eq!(&keeper.get_data("/bad-input").await.unwrap().0[..], b"kept");
    let again = connect(&server, "127.0.0.1", good_tls()).await.unwrap();
    assert_eq!(&again.get_data("/bad-input").await.unwrap().0[..], b"kept");
    let plain_client = Client::builder()
        .connect(&server.connect_string())
        .await
        .unwrap();
    assert_eq!(
        &plain_client.get_data("/bad-input").await.unwrap().0[..],
        b"kept"
    );
    for c in [keeper, again, plain_client] {
        c.close().await.unwrap();
    }
}

/// `ssl.protocol` / `ssl.enabledProtocols` as ZooKeeper 3.8 reads them: by
/// default only TLS 1.2 (a TLS 1.3-only client is refused, as real
/// ZooKeeper answers it with alert 70); `TLSv1.3` in the list admits it.
#[tokio::test]
async fn zoo_cfg_protocols_default_to_tls12_as_zookeeper() {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let d = dir("protocols");
    let ca = new_ca("zkit test CA");
    let (ca_pem, _) = write(&d, "ca", &ca);
    let server_cert = issue(&ca, &["127.0.0.1"], false);
    let store = key_store(&d, &server_cert);
    let handshake = |port: u16, versions: &'static [&'static rustls::SupportedProtocolVersion]| {
        let ca_pem = ca_pem.clone();
        async move {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&ca_pem).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            #[allow(deprecated)]
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                .await
                .map(|s| s.get_ref().1.protocol_version())
        }
    };
    let start = |extra: &str| {
        let cfg = zkit_server::Config::parse(&format!(
            "clientPortAddress=127.0.0.1\nclientPort=0\nsecureClientPort=0\n\
             ssl.keyStore.location={}\n{extra}",
            store.display()
        ))
        .unwrap();
        zkit_server::ServerBuilder::from_config(&cfg).start()
    };
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let tls13: &'static [&'static rustls::SupportedProtocolVersion] = &TLS13;
    let any = rustls::DEFAULT_VERSIONS;
    let default = start("").await.unwrap();
    let port = default.secure_addr().unwrap().port();
    assert!(
        handshake(port, tls13).await.is_err(),
        "TLS 1.3 only: refused"
    );
    assert_eq!(
        handshake(port, any).await.unwrap(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let both = start("ssl.enabledProtocols=TLSv1.2,TLSv1.3\n")
        .await
        .unwrap();
    let port = both.secure_addr().unwrap().port();
    assert_eq!(
        handshake(port, tls13).await.unwrap(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let e = zkit_server::Config::parse("ssl.protocol=SSLv3\n").unwrap_err();
    assert!(e.to_string().contains("TLSv1.2"), "{e}");
}
