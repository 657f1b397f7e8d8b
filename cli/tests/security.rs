//! The security options of `zkit` against secured servers: TLS
//! (`--tls-ca`, `--tls-cert`/`--tls-key`, `--tls-server-name`), SASL
//! DIGEST-MD5 (`--sasl-user`/`--sasl-password`, `ZKIT_SASL_PASSWORD`) and
//! digest credentials (`--auth`, `ZKIT_AUTH`) against ACL-protected nodes.
//!
//! The TLS and SASL servers come from zkit-testcontainers' secured
//! fixtures (certificates made at start, JAAS users): the bundled
//! `zkit-server` (run as a process by the fixture) by default, real
//! ZooKeeper 3.8 with `ZKIT_TEST_BACKEND=zookeeper`. Every case here exists
//! on both backends, so none is skipped (SASL GSSAPI, which only real
//! ZooKeeper has, has no `zkit` option). The digest tests use the suite's
//! shared server (`common`), which follows the same variable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{client, fresh_root, run, zkit, zkit_bare, zkit_cmd, Run};
use zkit::{Acl, CreateOptions, Perms};
use zkit_testcontainers::{Backend, ClientAuth, Ensemble, TestBackend, CLIENT_DN};

/// How long a connection that cannot succeed is retried: failures exit 3
/// after this.
const FAIL_TIMEOUT: &str = "8s";

/// The fixture backend of this run.
fn backend() -> Backend {
    if TestBackend::from_env() == TestBackend::ZooKeeper {
        Backend::ZooKeeper
    } else {
        Backend::Bundled
    }
}

/// A TLS fixture asking clients for a certificate as `auth` says.
async fn tls_server(auth: ClientAuth) -> Ensemble {
    let backend = backend();
    Ensemble::builder()
        .backend(backend)
        .tls(auth)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: a TLS fixture starts: {e}"))
}

/// `zkit --server <secure port> --tls-ca <ca> [extra...] args...`.
fn tls_cmd(zk: &Ensemble, ca: &Path, timeout: &str) -> Command {
    let mut c = zkit_bare();
    c.arg("--server")
        .arg(zk.secure_connect_string())
        .arg("--tls-ca")
        .arg(ca)
        .args(["--timeout", timeout]);
    c
}

/// A CA the fixture's certificates do not chain to.
fn foreign_ca(dir: &Path) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "not the fixture's CA");
    let path = dir.join("foreign-ca.pem");
    std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
    path
}

/// Asserts a connection failure: exit 3, and stderr naming the connect
/// string, then the host tried with `cause`.
#[track_caller]
fn assert_refused(r: &Run, host: &str, cause: &str) {
    assert_eq!(r.code, 3, "{r:#?}");
    assert!(
        r.stderr
            .starts_with(&format!("zkit: cannot connect to {host}: "))
            && r.stderr.contains(&format!(" {host}: {cause}"))
            && r.stderr.trim_end().ends_with("(NoServerReachable)"),
        "expected the host {host} and {cause:?} in: {}",
        r.stderr
    );
}

#[tokio::test]
async fn tls_with_the_right_ca_works_and_a_wrong_ca_or_name_is_refused() {
    let zk = tls_server(ClientAuth::None).await;
    let files = zk.tls_files().expect("a TLS fixture");
    let ca = files.ca_file();
    let host = zk.secure_connect_string();

    let mut c = tls_cmd(&zk, &ca, "10s");
    c.args(["create", "/over-tls", "sealed"]);
    assert_eq!(run(c).await.ok(), "/over-tls\n");
    let mut c = tls_cmd(&zk, &ca, "10s");
    c.args(["ls", "/"]);
    let listed = run(c).await.ok();
    assert!(
        listed.lines().any(|l| l == "over-tls"),
        "ls / over TLS: {listed}"
    );
    let mut c = tls_cmd(&zk, &ca, "10s");
    c.args(["get", "/over-tls"]);
    assert_eq!(run(c).await.ok(), "sealed\n");

    // A CA the server's certificate does not chain to.
    let other = foreign_ca(files.ca_file().parent().unwrap());
    let mut c = tls_cmd(&zk, &other, FAIL_TIMEOUT);
    c.args(["ls", "/"]);
    assert_refused(
        &run(c).await,
        &host,
        "TLS handshake failed: invalid peer certificate: UnknownIssuer",
    );

    // The certificate names localhost and 127.0.0.1, not this name.
    let mut c = tls_cmd(&zk, &ca, FAIL_TIMEOUT);
    c.args(["--tls-server-name", "zk.elsewhere.example", "ls", "/"]);
    assert_refused(
        &run(c).await,
        &host,
        "TLS handshake failed: invalid peer certificate: \
         certificate not valid for name \"zk.elsewhere.example\"",
    );
    // With the right name given explicitly, it works.
    let mut c = tls_cmd(&zk, &ca, "10s");
    c.args(["--tls-server-name", "localhost", "get", "/over-tls"]);
    assert_eq!(run(c).await.ok(), "sealed\n");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let zk = tls_server(ClientAuth::Need).await;
    let files = zk.tls_files().expect("a TLS fixture");
    let ca = files.ca_file();
    let host = zk.secure_connect_string();
    let with_cert = |c: &mut Command| {
        c.arg("--tls-cert")
            .arg(files.client_cert())
            .arg("--tls-key")
            .arg(files.client_key());
    };

    // The certificate is the session's x509 identity: a node only it may
    // read.
    let acl = format!("x509:{CLIENT_DN}:cdrwa");
    let mut c = tls_cmd(&zk, &ca, "10s");
    with_cert(&mut c);
    c.args(["create", "/mine", "cert-only", "--acl", &acl]);
    assert_eq!(run(c).await.ok(), "/mine\n");
    let mut c = tls_cmd(&zk, &ca, "10s");
    with_cert(&mut c);
    c.args(["ls", "/"]);
    assert!(run(c).await.ok().lines().any(|l| l == "mine"));
    let mut c = tls_cmd(&zk, &ca, "10s");
    with_cert(&mut c);
    c.args(["get", "/mine"]);
    assert_eq!(run(c).await.ok(), "cert-only\n");
    let mut c = tls_cmd(&zk, &ca, "10s");
    with_cert(&mut c);
    c.args(["acl", "get", "/mine", "--json"]);
    assert_eq!(
        run(c).await.json()["acl"],
        serde_json::json!([{"scheme": "x509", "id": CLIENT_DN, "perms": "cdrwa"}])
    );

    // No client certificate: the server ends the handshake with an alert
    // (the bundled server sends `certificate_required`, as RFC 8446 §4.4.2.4
    // asks; Java's TLS stack sends `bad_certificate`).
    let mut c = tls_cmd(&zk, &ca, FAIL_TIMEOUT);
    c.args(["ls", "/"]);
    let refused = run(c).await;
    assert_refused(
        &refused,
        &host,
        "TLS handshake failed: received fatal alert: ",
    );
    assert!(
        ["CertificateRequired", "BadCertificate"]
            .iter()
            .any(|alert| refused.stderr.contains(alert)),
        "the alert of a refused handshake: {}",
        refused.stderr
    );

    // The client certificate does not help with the wrong CA.
    let other = foreign_ca(files.ca_file().parent().unwrap());
    let mut c = tls_cmd(&zk, &other, FAIL_TIMEOUT);
    with_cert(&mut c);
    c.args(["ls", "/"]);
    assert_refused(
        &run(c).await,
        &host,
        "TLS handshake failed: invalid peer certificate: UnknownIssuer",
    );

    // A certificate without its key is a usage error (clap: exit 2).
    let mut c = tls_cmd(&zk, &ca, FAIL_TIMEOUT);
    c.arg("--tls-cert")
        .arg(files.client_cert())
        .args(["ls", "/"]);
    assert_eq!(run(c).await.code, 2);
}

/// `zkit --server <plain port> [--sasl-user bob] args...`.
fn sasl_cmd(zk: &Ensemble, user: Option<&str>, timeout: &str) -> Command {
    let mut c = zkit_bare();
    c.arg("--server")
        .arg(zk.connect_string())
        .args(["--timeout", timeout]);
    if let Some(user) = user {
        c.args(["--sasl-user", user]);
    }
    c
}

#[tokio::test]
async fn sasl_digest_md5_reads_a_sasl_protected_node() {
    let backend = backend();
    let zk = Ensemble::builder()
        .backend(backend)
        .sasl_digest_user("bob", "bob-secret")
        .start()
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: a SASL fixture starts: {e}"));
    let host = zk.connect_string();

    let mut c = sasl_cmd(&zk, Some("bob"), "10s");
    c.args(["--sasl-password", "bob-secret"]).args([
        "create",
        "/bobs",
        "mine",
        "--acl",
        "sasl:bob:cdrwa",
    ]);
    assert_eq!(run(c).await.ok(), "/bobs\n");
    let mut c = sasl_cmd(&zk, Some("bob"), "10s");
    c.args(["--sasl-password", "bob-secret", "get", "/bobs"]);
    assert_eq!(run(c).await.ok(), "mine\n");

    // Without SASL the session is anonymous: the ACL refuses the read.
    let mut c = sasl_cmd(&zk, None, "10s");
    c.args(["get", "/bobs"]);
    let anonymous = run(c).await;
    assert_eq!(anonymous.code, 1, "{anonymous:#?}");
    assert!(
        anonymous
            .stderr
            .contains("zkit: get /bobs: not authorised (NoAuth) [server 127.0.0.1:"),
        "{}",
        anonymous.stderr
    );

    // A wrong password: the server refuses the SASL exchange.
    let mut c = sasl_cmd(&zk, Some("bob"), FAIL_TIMEOUT);
    c.args(["--sasl-password", "not-bobs", "get", "/bobs"]);
    let refused = run(c).await;
    assert_eq!(refused.code, 3, "{refused:#?}");
    assert!(
        refused.stderr.contains(&format!(
            "zkit: cannot connect to {host}: authentication failed (AuthFailed)"
        )),
        "{}",
        refused.stderr
    );

    // ZKIT_SASL_PASSWORD stands for --sasl-password.
    let mut c = sasl_cmd(&zk, Some("bob"), "10s");
    c.env("ZKIT_SASL_PASSWORD", "bob-secret")
        .args(["get", "/bobs"]);
    assert_eq!(run(c).await.ok(), "mine\n");
    let mut c = sasl_cmd(&zk, Some("bob"), FAIL_TIMEOUT);
    c.env("ZKIT_SASL_PASSWORD", "not-bobs")
        .args(["get", "/bobs"]);
    assert_eq!(run(c).await.code, 3);
    // --sasl-user needs a password (flag or variable): a usage error.
    let mut c = sasl_cmd(&zk, Some("bob"), FAIL_TIMEOUT);
    c.args(["get", "/bobs"]);
    assert_eq!(run(c).await.code, 2);
}

#[tokio::test]
async fn digest_auth_reads_a_digest_protected_node() {
    let root = fresh_root("digest").await;
    let r = root.as_str();
    let zk = client(r).await;
    zk.create(
        "/private",
        b"hidden",
        &CreateOptions::default().acl(vec![Acl::digest(Perms::ALL, "alice", "secret")]),
    )
    .await
    .unwrap();

    let denied = zkit(r, &["get", "/private"]).await;
    assert_eq!(denied.code, 1, "{denied:#?}");
    assert!(
        denied
            .stderr
            .contains("zkit: get /private: not authorised (NoAuth) [server 127.0.0.1:"),
        "{}",
        denied.stderr
    );
    assert_eq!(
        zkit(r, &["--auth", "alice:secret", "get", "/private"])
            .await
            .ok(),
        "hidden\n"
    );
    // Digest credentials are never refused, they just match no ACL.
    let wrong = zkit(r, &["--auth", "alice:guess", "get", "/private"]).await;
    assert_eq!(wrong.code, 1, "{wrong:#?}");
    assert!(wrong.stderr.contains("(NoAuth)"), "{}", wrong.stderr);
    // Repeated: every identity is added.
    assert_eq!(
        zkit(
            r,
            &[
                "--auth",
                "bob:x",
                "--auth",
                "alice:secret",
                "get",
                "/private"
            ]
        )
        .await
        .ok(),
        "hidden\n"
    );
    // ZKIT_AUTH stands for --auth.
    let mut c = zkit_cmd(r);
    c.env("ZKIT_AUTH", "alice:secret").args(["get", "/private"]);
    assert_eq!(run(c).await.ok(), "hidden\n");
    let mut c = zkit_cmd(r);
    c.env("ZKIT_AUTH", "alice:guess").args(["get", "/private"]);
    assert_eq!(run(c).await.code, 1);
    // Malformed credentials: a usage error.
    let malformed = zkit(r, &["--auth", "alice", "get", "/private"]).await;
    assert_eq!(malformed.code, 2, "{malformed:#?}");
    assert!(
        malformed.stderr.contains("expected user:password"),
        "{}",
        malformed.stderr
    );

    // `auth::cdrwa` gives the node to the creating session's identity.
    assert_eq!(
        zkit(
            r,
            &[
                "--auth",
                "carol:pw",
                "create",
                "/carols",
                "c",
                "--acl",
                "auth::cdrwa"
            ]
        )
        .await
        .ok(),
        "/carols\n"
    );
    assert_eq!(
        zkit(r, &["--auth", "carol:pw", "get", "/carols"])
            .await
            .ok(),
        "c\n"
    );
    assert_eq!(zkit(r, &["get", "/carols"]).await.code, 1);
    zk.close().await.unwrap();
}
