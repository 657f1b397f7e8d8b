//! Third-party clients against the bundled server's secured ports, next to
//! real ZooKeeper 3.8 configured the same way (fixtures with
//! `EnsembleBuilder::tls` and `sasl_digest_user`): zkCli.sh over TLS (Netty,
//! PEM stores, a client certificate) and with SASL DIGEST-MD5 (a JAAS
//! `Client` section), kazoo with `use_ssl=True` and with SASL
//! (`python3-pure-sasl`), each doing real reads and writes under x509 or
//! sasl ACLs. The normalised outputs must match real ZooKeeper's when it is
//! run too (`ZKIT_TEST_BACKEND=zookeeper`).
//!
//! Needs the peers (`ZKIT_TEST_PEERS=1`): zkCli.sh (Debian `zookeeper`, its
//! Netty jars), `python3-kazoo`, `python3-pure-sasl`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use zkit_testcontainers::{Backend, ClientAuth, Ensemble, TestBackend, CLIENT_DN};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
const PYTHON: &str = "/usr/bin/python3";
const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";
/// zkCli.sh's own classpath lacks the Netty codec and resolver its TLS
/// socket needs (SECURITY.md §4.0); a `-cp` in `CLIENT_JVMFLAGS` wins.
const ZKCLI_CP: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/netty-codec.jar:\
/usr/share/java/netty-resolver.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar";

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Bundled];
    if TestBackend::wants_real_zookeeper() {
        b.push(Backend::ZooKeeper);
    }
    b
}

async fn secured(backend: Backend) -> Ensemble {
    Ensemble::builder()
        .backend(backend)
        .tls(ClientAuth::Want)
        .sasl_digest_user("bob", "bob-secret")
        .start()
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: a secured fixture starts: {e}"))
}

async fn run(cmd: Command, stdin: Option<&Path>) -> String {
    common::run_client(cmd, stdin, CLIENT_TIMEOUT).await
}

/// zkCli's output without what differs between runs: log lines, the racy
/// connection events, zxids, times, session ids, ports.
fn normalise_zkcli(raw: &str) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        let line = line.trim_end();
        if line.is_empty()
            || line.starts_with("SLF4J:")
            || line.starts_with("log4j:")
            || line == "WATCHER::"
            || line.starts_with("WatchedEvent state:")
            || line.starts_with("Connecting to ")
            || line.starts_with("Welcome to ZooKeeper")
            || line.starts_with("JLine support")
            || line.contains(" INFO ")
            || line.contains(" WARN ")
        {
            continue;
        }
        let line = match line.split_once(" = ") {
            Some(("cZxid" | "mZxid" | "pZxid", _)) => "<zxid>".to_string(),
            Some(("ctime" | "mtime", _)) => "<time>".to_string(),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

async fn zkcli(connect: &str, jvm_flags: &str, script: &Path) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {ZKCLI} -server {connect} 2>&1"))
        .env("CLIENT_JVMFLAGS", jvm_flags);
    normalise_zkcli(&run(cmd, Some(script)).await)
}

fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("thirdparty-secure-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compares the outputs of one client against every backend run.
fn assert_same(client: &str, outputs: &[(Backend, String)]) {
    let (first_backend, first) = &outputs[0];
    for (backend, out) in &outputs[1..] {
        assert_eq!(
            first, out,
            "{client}: {first_backend:?} and {backend:?} differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkcli_over_tls_and_sasl() {
    if !common::require_peer(Path::new(ZKCLI).exists(), "zkCli.sh (Debian zookeeper)") {
        return;
    }
    let mut tls_runs = Vec::new();
    let mut sasl_runs = Vec::new();
    for backend in backends() {
        let zk = secured(backend).await;
        let files = zk.tls_files().unwrap();
        let d = scratch(&format!("zkcli-{backend:?}"));
        // The Java client's PEM key store: certificate and key in one file.
        let keystore = d.join("client-keystore.pem");
        std::fs::write(
            &keystore,
            format!(
                "{}{}",
                std::fs::read_to_string(files.client_cert()).unwrap(),
                std::fs::read_to_string(files.client_key()).unwrap()
            ),
        )
        .unwrap();
        let tls_flags = format!(
            "-cp {ZKCLI_CP} -Dzookeeper.client.secure=true \
             -Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty \
             -Dzookeeper.ssl.keyStore.location={} -Dzookeeper.ssl.keyStore.type=PEM \
             -Dzookeeper.ssl.trustStore.location={} -Dzookeeper.ssl.trustStore.type=PEM",
            keystore.display(),
            files.ca_file().display()
        );
        let script = d.join("tls.txt");
        std::fs::write(
            &script,
            "create /cli-tls tls-data\nget /cli-tls\nset /cli-tls changed\nget -s /cli-tls\n\
             setAcl /cli-tls auth::cdrwa\ngetAcl /cli-tls\nwhoami\ndelete /cli-tls\nls /\nquit\n",
        )
        .unwrap();
        let out = zkcli(&zk.secure_connect_string(), &tls_flags, &script).await;
        assert!(
            out.contains("Created /cli-tls") && out.contains("changed"),
            "{backend:?}: zkCli over TLS:\n{out}"
        );
        assert!(
            // zkCli URL-encodes the id's commas.
            out.contains(&format!("'x509,'{}", CLIENT_DN.replace(',', "%2C"))),
            "{backend:?}: the x509 ACL from auth::cdrwa:\n{out}"
        );
        tls_runs.push((backend, out));

        let jaas = d.join("jaas-client.conf");
        std::fs::write(
            &jaas,
            "Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
             username=\"bob\"\n  password=\"bob-secret\";\n};\n",
        )
        .unwrap();
        let sasl_flags = format!("-Djava.security.auth.login.config={}", jaas.display());
        let script = d.join("sasl.txt");
        std::fs::write(
            &script,
            "create /cli-sasl sasl-data\nsetAcl /cli-sasl sasl:bob:cdrwa\ngetAcl /cli-sasl\n\
             get /cli-sasl\nwhoami\ndelete /cli-sasl\nquit\n",
        )
        .unwrap();
        let out = zkcli(&zk.connect_string(), &sasl_flags, &script).await;
        assert!(
            out.contains("sasl-data") && out.contains("'sasl,'bob"),
            "{backend:?}: zkCli with SASL:\n{out}"
        );
        sasl_runs.push((backend, out));
    }
    assert_same("zkCli.sh over TLS", &tls_runs);
    assert_same("zkCli.sh with SASL", &sasl_runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_over_tls_and_sasl() {
    let have = std::process::Command::new(PYTHON)
        .args(["-c", "import kazoo, puresasl"])
        .status()
        .is_ok_and(|s| s.success());
    if !common::require_peer(have, "python3-kazoo and python3-pure-sasl") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/kazoo_secure.py");
    let mut tls_runs = Vec::new();
    let mut sasl_runs = Vec::new();
    for backend in backends() {
        let zk = secured(backend).await;
        let files = zk.tls_files().unwrap();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .arg("tls")
            .arg(zk.secure_connect_string())
            .arg(files.ca_file())
            .arg(files.client_cert())
            .arg(files.client_key())
            .arg(CLIENT_DN);
        let out = run(cmd, None).await;
        assert_eq!(
            out,
            format!(
                "create /kz-tls\nget secret\nget after set changed\nacl x509:{CLIENT_DN}:31\n\
                 anonymous get: NoAuth\nexists after delete None\n"
            ),
            "{backend:?}: kazoo over TLS"
        );
        tls_runs.push((backend, out));
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .arg("sasl")
            .arg(zk.connect_string())
            .args(["bob", "bob-secret"]);
        let out = run(cmd, None).await;
        assert_eq!(
            out,
            "create /kz-sasl\nget secret\nget after set changed\nacl sasl:bob:31\n\
             anonymous get: NoAuth\nexists after delete None\n",
            "{backend:?}: kazoo with SASL"
        );
        sasl_runs.push((backend, out));
    }
    assert_same("kazoo over TLS", &tls_runs);
    assert_same("kazoo with SASL", &sasl_runs);
}
