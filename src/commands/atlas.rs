//! `dreamvid atlas`: a labelled grid of quick dreams, one per layer or channel.

use std::path::{Path, PathBuf};

use dreamvid::atlas::{self, ChannelPick, Subject, PAGE};
use dreamvid::cancel::Cancel;
use dreamvid::image_io::{check_image_path, read_picture};
use dreamvid::output::{check_not_input, write_atomically};
use dreamvid::plan::{load_preset, Purpose};

use super::{bar, open_session};
use crate::cli::AtlasArgs;

/// `dreamvid atlas PICTURE -o ATLAS`.
pub fn atlas(args: AtlasArgs) -> anyhow::Result<()> {
    check_image_path(&args.output)?;
    check_not_input(&args.input, &args.output)?;
    if args.tile < 16 || args.octaves == 0 {
        anyhow::bail!("--tile must be at least 16 pixels and --octaves at least 1");
    }
    let (preset, kind) = load_preset(args.preset.as_deref(), Purpose::Image, args.model.model, &[])?;
    let session = open_session(&args.model, kind)?;
    let picture = atlas::shrink(&read_picture(&args.input, &session.device)?.rgb, args.tile)?;
    let subject = match &args.layer {
        None => Subject::Layers,
        Some(layer) => Subject::Channels { layer: layer.clone(), pick: args.channels },
    };
    let specs = atlas::tiles(&session, &picture, &preset.at(0, 25.0), &subject, (args.octaves, args.iterations))?;
    let bar = bar("tiles");
    bar.set_length(specs.len() as u64);
    let cancel = Cancel::new();
    let mut tiles = Vec::with_capacity(specs.len());
    for spec in &specs {
        bar.set_message(spec.label.clone());
        tiles.push((spec.label.clone(), atlas::dream_tile(&session, &picture, spec, &cancel)?));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let what = match (&subject, args.channels) {
        (Subject::Layers, _) => format!("{}: every layer", kind.name()),
        (Subject::Channels { layer, .. }, ChannelPick::Top(k)) => {
            format!("{}: {layer}, the {k} most active channels", kind.name())
        }
        (Subject::Channels { layer, .. }, _) => format!("{}: {layer}, channels", kind.name()),
    };
    let pages: Vec<_> = tiles.chunks(PAGE).collect();
    for (i, page) in pages.iter().enumerate() {
        let path = page_path(&args.output, i);
        let title = match pages.len() {
            1 => what.clone(),
            n => format!("{what} (page {} of {n})", i + 1),
        };
        let sheet = atlas::sheet(page, &title);
        write_atomically(&path, |tmp| Ok(sheet.save_with_format(tmp, image::ImageFormat::from_path(&path)?)?))?;
        eprintln!("wrote {} ({} tiles)", path.display(), page.len());
    }
    Ok(())
}

/// The file of page `i`: `atlas.png`, then `atlas-2.png`, ...
fn page_path(output: &Path, i: usize) -> PathBuf {
    if i == 0 {
        return output.to_path_buf();
    }
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    let ext = output.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    output.with_file_name(format!("{stem}-{}{ext}", i + 1))
}
