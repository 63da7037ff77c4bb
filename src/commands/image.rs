//! `dreamvid image`: dream one picture.

use dreamvid::cancel::Cancel;
use dreamvid::dream;
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
    let look = s.session.look(&s.preset.at(0, 25.0))?;
    let picture = read_picture(&args.input, &s.session.device)?;
    let (_, _, h, w) = picture.rgb.dims4()?;
    let bar = bar("steps");
    bar.set_length(dream::total_steps(h, w, &look.params) as u64);
    bar.set_prefix(format!("{w}x{h}"));
    let dreamed = s.session.dream_image(&picture.rgb, &look, &Cancel::new(), &mut |st| {
        bar.set_message(format!("octave {}/{} objective {:.1}", st.octave + 1, st.octaves, st.objective));
        bar.inc(1);
    })?;
    bar.finish();
    if let Some(note) = write_picture(&dreamed, &picture, &args.output)? {
        eprintln!("note: {note}");
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
