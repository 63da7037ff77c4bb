//! `dreamvid zoom`: an infinite-zoom animation.

use anyhow::bail;

use dreamvid::animation::{write_frames, Format, Target};
use dreamvid::image_io::load_image;
use dreamvid::output::check_not_input;
use dreamvid::pipeline::peak_rss_bytes;
use dreamvid::plan::Purpose;
use dreamvid::resample::resize;
use dreamvid::video::EncodeSettings;
use dreamvid::zoom::{generated_frames, noise_image, stream_zoom, ZoomJob};

use super::{bar, Setup};
use crate::cli::ZoomArgs;

/// `dreamvid zoom [SEED_IMAGE | --noise] -o OUTPUT`.
pub fn zoom(args: ZoomArgs) -> anyhow::Result<()> {
    let target = Target::for_path(&args.output)?;
    if let Some(seed) = &args.seed_image {
        check_not_input(seed, &args.output)?;
    }
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.fps == 0 || args.fps > 100 {
        bail!("--fps must be between 1 and 100 (got {})", args.fps);
    }
    let s = Setup::new(&args.model, &args.dream, Purpose::Zoom)?;
    let (plan, mask) = s.plan(true)?;
    let seed_image = match (&args.seed_image, args.noise) {
        (Some(path), _) => {
            let img = load_image(path, &s.session.device)?;
            match args.size {
                Some((w, h)) => resize(&img, h, w)?,
                None => img,
            }
        }
        (None, true) => {
            let (w, h) = args.size.unwrap_or((256, 256));
            noise_image(h, w, s.preset.base.seed, &s.session.device)?
        }
        (None, false) => bail!("give a seed image, or --noise to start from noise"),
    };
    let fps = f64::from(args.fps);
    let frame_settings = |i: usize| plan.frame(i, fps);
    let job = ZoomJob {
        net: &s.session.net,
        seed_image,
        frames: args.frames,
        looped: args.looped,
        frame_settings: &frame_settings,
        mask: mask.as_ref(),
    };
    let bar = bar("frames");
    bar.set_length(generated_frames(args.frames, args.looped) as u64);
    let format = Format { fps: args.fps, gif_quality: args.gif_quality, codec: EncodeSettings::from(&s.preset.base) };
    let written =
        write_frames(&target, &format, |sink| stream_zoom(&job, sink, &mut |done| bar.set_position(done as u64)))?;
    bar.finish();
    eprintln!(
        "wrote {} ({written} frames at {} fps{}{})",
        args.output.display(),
        args.fps,
        if args.looped { ", looping" } else { "" },
        peak_rss_bytes().map_or(String::new(), |b| format!(", peak memory {} MiB", b >> 20)),
    );
    Ok(())
}
