//! Connecting to a secured ensemble: TLS with mutual authentication, and
//! SASL DIGEST-MD5.
//!
//! ```text
//! cargo run --example secure
//! cargo run --example secure -- --connect HOST:PORT --ca ca.pem \
//!     [--cert client.pem --key client.key] [--sasl USER:PASSWORD]
//! ```
//!
//! Without `--connect` it makes a throw-away CA, server and client
//! certificates, starts the bundled server with a TLS port that requires a
//! client certificate (as `ssl.clientAuth=need`), connects over mutual TLS,
//! and shows a client without a certificate refused. With `--connect` it
//! connects to your secured ensemble with the files you give (and SASL
//! DIGEST-MD5 with `--sasl`).

use std::path::PathBuf;
use std::time::Duration;

use zkit::{Client, CreateOptions, TlsConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(hosts) = arg(&args, "--connect") {
        let mut tls = TlsConfig::new().ca_file(arg(&args, "--ca").ok_or("--ca CA.pem is needed")?);
        if let (Some(cert), Some(key)) = (arg(&args, "--cert"), arg(&args, "--key")) {
            tls = tls.client_cert(cert, key);
        }
        let mut builder = Client::builder().tls(tls);
        if let Some(cred) = arg(&args, "--sasl") {
            let (user, password) = cred.split_once(':').ok_or("--sasl USER:PASSWORD")?;
            builder = builder.sasl_digest(user, password);
        }
        let zk = builder.connect(&hosts).await?;
        println!("connected over TLS, session {}", zk.session_id());
        for id in zk.who_am_i().await? {
            println!("  authenticated as {}: {}", id.auth_scheme, id.user);
        }
        zk.close().await?;
        return Ok(());
    }

    // A throw-away PKI: a CA, a server certificate for 127.0.0.1, a client one.
    let dir = std::env::temp_dir().join(format!("zkit-secure-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, text: String| -> std::io::Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let server_key = rcgen::KeyPair::generate()?;
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(
        &server_key,
        &ca,
        &ca_key,
    )?;
    let client_key = rcgen::KeyPair::generate()?;
    let client_cert = rcgen::CertificateParams::new(vec!["client-1".to_string()])?.signed_by(
        &client_key,
        &ca,
        &ca_key,
    )?;
    let ca_pem = write("ca.pem", ca.pem())?;
    let server_pem = write("server.pem", server_cert.pem())?;
    let server_key_pem = write("server.key", server_key.serialize_pem())?;
    let client_pem = write("client.pem", client_cert.pem())?;
    let client_key_pem = write("client.key", client_key.serialize_pem())?;

    let server = zkit_server::Server::builder()
        .secure_listen(
            "127.0.0.1:0".parse()?,
            zkit_server::ServerTls::new(&server_pem, &server_key_pem)
                .client_ca(&ca_pem, zkit_server::ClientAuth::Need),
        )
        .start()
        .await?;
    let hosts = server.secure_addr().ok_or("no TLS port")?.to_string();
    println!("bundled server with a TLS port at {hosts} (client certificates required)");

    let zk = Client::builder()
        .tls(
            TlsConfig::new()
                .ca_file(&ca_pem)
                .client_cert(&client_pem, &client_key_pem),
        )
        .connect(&hosts)
        .await?;
    zk.create("/secret", b"over TLS", &CreateOptions::default())
        .await?;
    let (data, _) = zk.get_data("/secret").await?;
    println!(
        "mutual TLS: session {}, read {:?}",
        zk.session_id(),
        String::from_utf8_lossy(&data)
    );
    zk.close().await?;

    let refused = Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .tls(TlsConfig::new().ca_file(&ca_pem))
        .connect(&hosts)
        .await;
    match refused {
        Err(e) => println!("without a client certificate: {e}"),
        Ok(_) => return Err("a client without a certificate got in".into()),
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
