//! Guided dreams (`--guide`): the guide objective's gradient against finite differences and a
//! reference matching written with plain loops, tiles, and the command line.

mod common;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use common::{dreamvid, fixture_weights, stderr};
use dreamvid::dream::{tiles, Rng};
use dreamvid::nn::{Guide, GuideTerm, Network, Objective};

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.unit() as f64).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `[C, positions]` of `[1, C, h, w]` activations, as rows of f64.
fn columns(a: &Tensor) -> Vec<Vec<f64>> {
    let (_, c, h, w) = a.dims4().unwrap();
    let flat: Vec<f64> = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    (0..h * w).map(|p| (0..c).map(|ch| flat[ch * h * w + p]).collect()).collect()
}

/// The objective from its definition, with the matching done here: per term, the chosen
/// channels' activations `A`, each position matched with the guide position of the largest
/// dot product, `weight * ((1 - g) ||A|| + g <A, G> / ||G||)`.
fn reference(net: &Network, x: &Tensor, objective: &Objective, guide_image: &Tensor) -> f64 {
    let g = objective.guide.as_ref().map_or(0.0, |t| t.weight as f64);
    let keep = |ch: usize| objective.channels.as_ref().is_none_or(|c| c.contains(&ch));
    objective
        .terms
        .iter()
        .map(|&(tap, weight)| {
            let chosen = |v: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
                v.into_iter()
                    .map(|p| p.iter().enumerate().map(|(i, a)| if keep(i) { *a } else { 0.0 }).collect())
                    .collect()
            };
            let a = chosen(columns(&net.activations(x, tap).unwrap()));
            let y = chosen(columns(&net.activations(guide_image, tap).unwrap()));
            let dot = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(a, b)| a * b).sum::<f64>();
            let (mut squares, mut guide_squares, mut guide_dot) = (0.0, 0.0, 0.0);
            for p in &a {
                let best = (0..y.len()).fold(0, |b, q| if dot(p, &y[q]) > dot(p, &y[b]) { q } else { b });
                squares += dot(p, p);
                guide_squares += dot(&y[best], &y[best]);
                guide_dot += dot(p, &y[best]);
            }
            weight as f64 * ((1.0 - g) * squares.sqrt() + g * guide_dot / guide_squares.sqrt())
        })
        .sum()
}

fn guided(terms: Vec<(usize, f32)>, channels: Option<Vec<usize>>, guide: &Arc<Guide>, weight: f32) -> Objective {
    Objective { terms, channels, guide: Some(GuideTerm { guide: guide.clone(), weight }) }
}

#[test]
fn guide_objective_matches_its_definition_and_finite_differences() {
    let net = common::fixture_vgg().to_dtype(DType::F64).unwrap();
    let tap = |name| net.find_tap(name).unwrap();
    let guide_image = random(&[1, 3, 40, 36], 7);
    let guide = Arc::new(Guide::new(guide_image.clone()));
    let shape = [1, 3, 37, 42];
    let x = random(&shape, 1);
    let objectives = [
        guided(vec![(tap("features.9"), 1.0)], None, &guide, 1.0),
        guided(vec![(tap("features.20"), 1.0)], None, &guide, 0.4),
        guided(vec![(tap("features.9"), 1.0), (tap("features.20"), 0.5)], Some(vec![0, 2, 5, 9]), &guide, 0.7),
    ];
    for (k, objective) in objectives.iter().enumerate() {
        let (value, grad) = net.objective_gradient(&x, objective).unwrap();
        let expected = reference(&net, &x, objective, &guide_image);
        assert!((value as f64 - expected).abs() < 1e-4 * expected.abs(), "objective {k}: {value} vs {expected}");
        let eps = 1e-6;
        let n: usize = shape.iter().product();
        let mut directions = vec![(random(&shape, 2) - 0.5).unwrap()];
        for pixel in [0, n / 3, n / 2 + 7, n - 1] {
            let mut e = vec![0f64; n];
            e[pixel] = 1.0;
            directions.push(Tensor::from_vec(e, &shape, &Device::Cpu).unwrap());
        }
        for (i, v) in directions.iter().enumerate() {
            let at = |x: Tensor| reference(&net, &x, objective, &guide_image);
            let numeric =
                (at((&x + (v * eps).unwrap()).unwrap()) - at((&x - (v * eps).unwrap()).unwrap())) / (2.0 * eps);
            let analytic = (&grad * v).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
            let scale = numeric.abs().max(analytic.abs()).max(1e-3);
            assert!(
                (numeric - analytic).abs() / scale < 1e-5,
                "objective {k}, direction {i}: finite difference {numeric} vs backward {analytic}"
            );
        }
        // The guide changes the gradient (it is not ignored).
        let plain = Objective { guide: None, ..objective.clone() };
        let other = net.objective_gradient(&x, &plain).unwrap().1;
        let differs = (&grad - other).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(differs > 1e-6, "objective {k}: the guide did not change the gradient");
    }
}

#[test]
fn tiled_guided_gradient_equals_the_whole_frame_gradient() {
    // As for the plain objective (tests/gradient.rs): features.9 sees less than the halo, so
    // tiles reproduce the whole frame; the guide's norm is measured over the whole frame first.
    let net = common::fixture_vgg();
    let guide = Arc::new(Guide::new(random(&[1, 3, 50, 40], 9).to_dtype(DType::F32).unwrap()));
    let x = random(&[1, 3, 300, 262], 31).to_dtype(DType::F32).unwrap();
    let objective = guided(vec![(net.find_tap("features.9").unwrap(), 1.0)], None, &guide, 0.6);
    let (value, expected) = net.objective_gradient(&x, &objective).unwrap();
    for seed in 0..2 {
        let (tiled_value, tiled) = tiles::objective_gradient(&net, &x, &objective, 128, &mut Rng::new(seed)).unwrap();
        assert!((tiled_value - value).abs() < 1e-4 * value.abs(), "{tiled_value} vs {value}");
        let max = |t: Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = max((&tiled - &expected).unwrap()) / max(expected.clone());
        assert!(diff < 1e-4, "seed {seed}: tiled guided gradient differs by {diff}");
    }
}

#[test]
fn guide_flag_changes_the_dream_deterministically_and_missing_guides_are_named() {
    let dir = common::scratch("guide-cli");
    let weights = fixture_weights(&dir);
    let input = dir.join("in.png");
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]))
        .save(&input)
        .unwrap();
    let guide = dir.join("guide.png");
    image::RgbImage::from_fn(90, 60, |x, y| image::Rgb([((x / 6 + y / 6) % 2 * 255) as u8, 40, (x * 2) as u8]))
        .save(&guide)
        .unwrap();
    let run = |out: &str, extra: &[&str]| {
        let out = dir.join(out);
        let mut args = vec!["image", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", "vgg19"];
        args.extend(["--weights", &weights, "--layer", "20", "--octaves", "2", "--iterations", "3"]);
        args.extend(extra);
        let o = dreamvid(&args);
        (o, out)
    };
    let read = |p: &std::path::Path| image::open(p).unwrap().to_rgb8().into_raw();
    let (o, plain) = run("plain.png", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = guide.to_str().unwrap();
    let (o, a) = run("a.png", &["--guide", g]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, b) = run("b.png", &["--guide", g]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&a), read(&b), "the same guide and seed gave different dreams");
    assert_ne!(read(&a), read(&plain), "the guide did not change the dream");
    // Weight 0 is the plain dream.
    let (o, off) = run("off.png", &["--guide", g, "--guide-weight", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&off), read(&plain));

    let missing = dir.join("no-such-guide.png");
    let (o, out) = run("missing.png", &["--guide", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no-such-guide.png") && stderr(&o).contains("guide"), "{}", stderr(&o));
    assert!(!out.exists());
    std::fs::write(dir.join("broken.png"), b"not a picture").unwrap();
    let (o, out) = run("broken-out.png", &["--guide", dir.join("broken.png").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("broken.png"), "{}", stderr(&o));
    assert!(!out.exists());
    let (o, _) = run("weight.png", &["--guide", g, "--guide-weight", "2"]);
    assert!(stderr(&o).contains("--guide-weight 2 is out of range"), "{}", stderr(&o));
}

#[test]
fn guides_steer_videos_and_zooms_too() {
    let dir = common::scratch("guide-video-zoom");
    let weights = fixture_weights(&dir);
    let guide = dir.join("guide.png");
    image::RgbImage::from_fn(80, 80, |x, y| image::Rgb([((x / 5 + y / 5) % 2 * 255) as u8, (y * 3) as u8, 90]))
        .save(&guide)
        .unwrap();
    let frames = dir.join("in");
    std::fs::create_dir_all(&frames).unwrap();
    let pattern = dreamvid::fixture::clip::moving_pattern(48, 32, 2, 1);
    for i in 0..3 {
        pattern(i).save(frames.join(format!("f{i}.png"))).unwrap();
    }
    std::fs::write(frames.join("fps.txt"), "10\n").unwrap();
    let seed = frames.join("f0.png");
    let quick = ["--model", "vgg19", "--weights", &weights, "--layer", "20", "--octaves", "1", "--iterations", "2"];
    let render = |args: &[&str], out: &str, guided: bool| {
        let output = dir.join(out);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", output.to_str().unwrap()]);
        all.extend(quick);
        if guided {
            all.extend(["--guide", guide.to_str().unwrap()]);
        }
        let o = dreamvid(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        (0..3).map(|i| image::open(output.join(format!("frame_{i:05}.png"))).unwrap().to_rgb8()).collect::<Vec<_>>()
    };
    let video = [frames.to_str().unwrap()];
    let (plain, guided) = (render(&video, "plain/", false), render(&video, "guided/", true));
    assert!(plain.iter().zip(&guided).all(|(a, b)| a != b), "the guide did not change every video frame");
    let zoom = ["zoom", seed.to_str().unwrap(), "--frames", "3", "--zoom", "1.05"];
    let (plain, guided) = (render(&zoom, "zplain/", false), render(&zoom, "zguided/", true));
    assert!(plain.iter().zip(&guided).all(|(a, b)| a != b), "the guide did not change every zoom frame");
}
