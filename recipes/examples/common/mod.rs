// Shared by the recipe examples: the bundled server in-process by default,
// or `--connect HOST:PORT` for a real ensemble.

/// The connect string to use, and the bundled server when we started one
/// (keep it alive until the end of `main`).
pub(crate) async fn server(
) -> Result<(String, Option<zkit_server::RunningServer>), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--connect") {
        let cs = args.get(i + 1).ok_or("--connect needs HOST:PORT")?.clone();
        println!("using the ensemble at {cs}");
        return Ok((cs, None));
    }
    let server = zkit_server::Server::builder().start().await?;
    println!(
        "started the bundled zkit-server at {} (use --connect HOST:PORT for your own)",
        server.local_addr()
    );
    Ok((server.connect_string(), Some(server)))
}
