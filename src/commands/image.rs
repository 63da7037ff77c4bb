//! `dreamvid image`: dream one picture.

use anyhow::Context;

use dreamvid::dream;
use dreamvid::dream::mask;
use dreamvid::image_io::{check_image_path, read_picture, write_picture};
use dreamvid::output::check_not_input;
use dreamvid::plan::Purpose;

use super::{bar, Setup};
use crate::cli::ImageArgs;

/// `dreamvid image INPUT -o OUTPUT`.
pub fn image(args: ImageArgs) -> anyhow::Result<()> {
    check_image_path(&args.output)?;
    check_not_input(&args.input, &args.output)?;
    let s = Setup::new(&args.model, &args.dream, Purpose::Image)?;
    let params = s.plan(false).still()?;
    let picture = read_picture(&args.input, &s.device)?;
    let (_, _, h, w) = picture.rgb.dims4()?;
    let bar = bar("steps");
    bar.set_length(dream::total_steps(h, w, &params) as u64);
    bar.set_prefix(format!("{w}x{h}"));
    let mask = s.mask.as_ref().map(|m| m.frame(0, h, w)).transpose()?;
    let strength = mask::strength(mask.as_ref(), (h, w), s.preset.at(0, 25.0).mask_weight, &s.device)?;
    let dreamed = match &strength {
        Some(m) if mask::is_zero(m)? => picture.rgb.clone(),
        _ => dream::dream_weighted(&s.net, &picture.rgb, &params, strength.as_ref(), &mut |st| {
            bar.set_message(format!("octave {}/{} objective {:.1}", st.octave + 1, st.octaves, st.objective));
            bar.inc(1);
        })
        .context("dream failed")?,
    };
    let dreamed = match &strength {
        Some(m) => mask::composite(&dreamed, &picture.rgb, m)?,
        None => dreamed,
    };
    bar.finish();
    if let Some(note) = write_picture(&dreamed, &picture, &args.output)? {
        eprintln!("note: {note}");
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
