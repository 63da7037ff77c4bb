//! `dreamvid studio`: the web app, served until Ctrl-C.

use dreamvid::models::ModelKind;
use dreamvid::session::Session;
use dreamvid::studio::{self, Config};

use super::weights_file;
use crate::cli::StudioArgs;

/// `dreamvid studio`.
pub fn studio(args: StudioArgs) -> anyhow::Result<()> {
    let token = studio::new_token()?;
    let model = args.model.model.unwrap_or(ModelKind::EfficientNetLite0);
    let config = Config { dir: args.dir.clone(), host: args.host, port: args.port, token: token.clone(), model };
    let model_args = args.model;
    // Each model's weights are found (or downloaded) when the page first asks for it.
    let open = Box::new(move |kind| -> anyhow::Result<Session> {
        let given = model_args.weights.as_deref().filter(|_| model_args.model == Some(kind));
        let weights = weights_file(given, kind, model_args.offline)?;
        Session::open(kind, &weights, model_args.device.open()?, model_args.precision)
    });
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (addr, serve) = studio::start(config, open).await?;
        let url = format!("http://{addr}/?token={token}");
        if !args.host.is_loopback() {
            eprintln!(
                "warning: listening on {} reaches this machine from other machines: anyone with the URL's token can use \
                 the studio, its CPU and its folder",
                args.host
            );
        }
        println!("dreamvid studio: {url}");
        eprintln!("working folder: {} (Ctrl-C stops the studio)", args.dir.display());
        if args.open {
            open_browser(&url);
        }
        tokio::select! {
            served = serve => served?,
            _ = tokio::signal::ctrl_c() => eprintln!("stopped"),
        }
        Ok(())
    })
}

/// Opens `url` in the desktop's browser, if there is one.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("note: could not run {opener} ({e}); open the URL yourself");
    }
}
