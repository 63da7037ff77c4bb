//! Winograd F(4x4, 3x3) convolution (Lavin & Gray 2015): each 4x4 block of output is computed
//! from a 6x6 block of input with 36 multiplications per channel pair instead of 144.
//!
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for every tile. The transformed kernels `U = G g Gᵀ` are
//! computed once per layer. Per band of tile rows: the input tiles are transformed into
//! `V[ξ][c][t]` (36 matrices, tiles contiguous), the 36 products `M[ξ] = U[ξ] V[ξ]` run as
//! independent GEMMs, and the output transform writes each tile back with bias and ReLU.
//!
//! Every transform runs over vectors of tiles: the padded input is first split by column
//! phase (`x mod 4`), so the pixel at column offset `s` of every tile in a tile row is one
//! contiguous run, and the inner loops vectorise.

use gemm::Parallelism;
use rayon::prelude::*;

use super::SharedMut;

/// Output tile side.
const M: usize = 4;
/// Input tile side.
const A: usize = M + 2;
/// Transformed tile elements.
const XI: usize = A * A;

/// Bᵀ: input transform (rows: transformed index, columns: tile pixel); [`bt6`] applies it.
#[cfg(test)]
const BT: [[f32; A]; A] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// G: kernel transform.
const G: [[f32; 3]; A] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Aᵀ: output transform; [`at6`] applies it.
#[cfg(test)]
const AT: [[f32; A]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Bytes of transformed input and output a band of tile rows may span.
const BAND_BYTES: usize = 2 << 20;

/// Transformed kernels `U[ξ][o][i]` of a `[cout, cin, 3, 3]` weight: for the convolution
/// itself (`o` = output channel), or, with `transpose`, for its input gradient (the flipped
/// kernel with channels swapped: `o` = input channel).
pub fn transform_weights(weight: &[f32], cout: usize, cin: usize, transpose: bool) -> Vec<f32> {
    let (outs, ins) = if transpose { (cin, cout) } else { (cout, cin) };
    let mut u = vec![0f32; XI * cout * cin];
    u.par_chunks_mut(outs * ins).enumerate().for_each(|(xi, plane)| {
        let (k, l) = (xi / A, xi % A);
        let mut taps = [0f32; 9];
        for (t, v) in taps.iter_mut().enumerate() {
            let (a, b) = if transpose { (2 - t / 3, 2 - t % 3) } else { (t / 3, t % 3) };
            *v = G[k][a] * G[l][b];
        }
        for co in 0..cout {
            for ci in 0..cin {
                let g = &weight[(co * cin + ci) * 9..][..9];
                let v: f32 = g.iter().zip(&taps).map(|(w, t)| w * t).sum();
                let (o, i) = if transpose { (ci, co) } else { (co, ci) };
                plane[o * ins + i] = v;
            }
        }
    });
    u
}

/// What one convolution call works on.
pub struct Job<'a> {
    /// `[n, c, h, w]` input.
    pub x: &'a [f32],
    /// Optional `u8` mask of the input (zero: the pixel counts as 0).
    pub mask: Option<&'a [u8]>,
    /// Input dimensions.
    pub dims: (usize, usize, usize, usize),
    /// Transformed kernels from [`transform_weights`].
    pub u: &'a [f32],
    /// Output channels.
    pub cout: usize,
    /// Per-output-channel bias.
    pub bias: Option<&'a [f32]>,
    /// Apply `max(0, ·)` to the output.
    pub relu: bool,
}

/// The 3x3 "same" convolution of `job.x`, `[n, cout, h, w]`.
pub fn convolve(job: &Job) -> Vec<f32> {
    let (n, c, h, w) = job.dims;
    let cout = job.cout;
    let (th, tw) = (h.div_ceil(M), w.div_ceil(M));
    // Phase planes: phases[c][s][y][j] = padded[c][y][j * M + s] (padded = input shifted by
    // one pixel and zero-filled), for y < th * M + 2 and j < tw + 1.
    let (rows, cols) = (th * M + 2, tw + 1);
    let plane = M * rows * cols;
    let band_rows = (BAND_BYTES / (4 * XI * (c + cout) * tw)).clamp(1, th);
    let (band_tiles, bands) = (band_rows * tw, th.div_ceil(band_rows));
    let mut out = vec![0f32; n * cout * h * w];
    let mut phases = vec![0f32; c * plane];
    for b in 0..n {
        let image = b * c * h * w;
        phases.par_chunks_mut(plane).enumerate().for_each(|(ci, p)| {
            let at = image + ci * h * w;
            split_phases(&job.x[at..at + h * w], job.mask.map(|m| &m[at..at + h * w]), (h, w), p, (rows, cols));
        });
        let out_b = SharedMut(out[b * cout * h * w..].as_mut_ptr());
        let band = |(v, m): &mut (Vec<f32>, Vec<f32>), k: usize, split: usize| {
            let (t0, t1) = (k * band_rows, ((k + 1) * band_rows).min(th));
            let tiles = (t1 - t0) * tw;
            input_transform(&phases, v, (c, rows, cols, tw), (t0, t1), band_tiles, split);
            let (vp, mp) = (SharedMut(v.as_mut_ptr()), SharedMut(m.as_mut_ptr()));
            (0..XI).into_par_iter().with_min_len(split).for_each(|xi| {
                // SAFETY: task xi reads U[xi] (cout x c), V[xi] (c x tiles, row stride
                // band_tiles) and writes only M[xi] (cout x tiles, row stride band_tiles).
                unsafe {
                    gemm::gemm(
                        cout,
                        tiles,
                        c,
                        mp.get().add(xi * cout * band_tiles),
                        1,
                        band_tiles as isize,
                        false,
                        job.u.as_ptr().add(xi * cout * c),
                        1,
                        c as isize,
                        vp.get().add(xi * c * band_tiles),
                        1,
                        band_tiles as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            });
            output_transform(job, m, out_b, (h, w, tw), (t0, t1), band_tiles, split);
        };
        // Many bands: one per worker at a time, each working alone in its cache; few: all
        // workers share each band's channels and products.
        let buffers = || (vec![0f32; XI * c * band_tiles], vec![0f32; XI * cout * band_tiles]);
        if bands >= 2 * rayon::current_num_threads() {
            (0..bands).into_par_iter().for_each_init(buffers, |bufs, k| band(bufs, k, usize::MAX));
        } else {
            let mut bufs = buffers();
            for k in 0..bands {
                band(&mut bufs, k, 1);
            }
        }
    }
    out
}

/// Tiles transformed together: one 512-bit vector of `f32`.
const LANES: usize = 16;

/// Compiles `$name` three times (AVX-512, AVX2+FMA, baseline) and picks the best the CPU
/// running it supports; the kernels below are plain loops over fixed-size arrays that the
/// compiler vectorises to the width it is allowed.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512($($arg: $ty),*) {
                generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `avx2`.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// `V[ξ][c][t]` for the tiles of tile rows `t0..t1`, channels in parallel (in runs of at
/// least `split`).
fn input_transform(
    phases: &[f32],
    v: &mut [f32],
    (c, rows, cols, tw): (usize, usize, usize, usize),
    (t0, t1): (usize, usize),
    band_tiles: usize,
    split: usize,
) {
    let plane = M * rows * cols;
    let vp = SharedMut(v.as_mut_ptr());
    (0..c).into_par_iter().with_min_len(split).for_each(|ci| {
        for ti in t0..t1 {
            for j0 in (0..tw).step_by(LANES) {
                let at = ((ti - t0) * tw + j0, ci * band_tiles, c * band_tiles);
                input_tiles(&phases[ci * plane..][..plane], (rows, cols), ti * M, j0, (tw - j0).min(LANES), vp, at);
            }
        }
    });
}

multiversion! {
    /// One channel's phase planes: `p[s][y][j] = padded[y][j * M + s]`, where padded is the
    /// `h x w` plane `x` (masked by `mask`) with a border of zeros.
    fn split_phases(x: &[f32], mask: Option<&[u8]>, size: (usize, usize), p: &mut [f32], dims: (usize, usize)) {
        let (h, w) = size;
        let (rows, cols) = dims;
        p.fill(0.0);
        for y in 0..h {
            let src = &x[y * w..][..w];
            for s in 0..M {
                let dst = &mut p[(s * rows + y + 1) * cols..][..cols];
                // Padded column j * M + s is input column j * M + s - 1.
                let first = usize::from(s == 0);
                for (j, d) in dst.iter_mut().enumerate().skip(first) {
                    let col = j * M + s - 1;
                    if col >= w {
                        break;
                    }
                    *d = match mask {
                        Some(m) if m[y * w + col] == 0 => 0.0,
                        _ => src[col],
                    };
                }
            }
        }
    }
}

/// Lanes of one value across [`LANES`] tiles.
type Lanes = [f32; LANES];

/// `src[..n]`, zero-filled to [`LANES`] (a fixed-size copy in the common full case).
#[inline(always)]
fn load(src: &[f32], n: usize) -> Lanes {
    if n == LANES {
        src[..LANES].try_into().expect("LANES elements")
    } else {
        let mut lanes = [0f32; LANES];
        lanes[..n].copy_from_slice(&src[..n]);
        lanes
    }
}

/// Writes `lanes[..n]` to `dst` (a fixed-size copy in the common full case).
#[inline(always)]
fn store(dst: &mut [f32], lanes: &Lanes, n: usize) {
    if n == LANES {
        dst[..LANES].copy_from_slice(lanes);
    } else {
        dst[..n].copy_from_slice(&lanes[..n]);
    }
}

/// `Bᵀ d` for six values per lane (the rows of [`BT`], with shared sub-expressions).
#[inline(always)]
fn bt6(d: [&Lanes; A]) -> [Lanes; A] {
    let mut v = [[0f32; LANES]; A];
    for i in 0..LANES {
        let (d0, d1, d2, d3, d4, d5) = (d[0][i], d[1][i], d[2][i], d[3][i], d[4][i], d[5][i]);
        let (a, b) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
        let (c, e) = (d4 - d2, 2.0 * (d3 - d1));
        v[0][i] = 4.0 * d0 - 5.0 * d2 + d4;
        v[1][i] = a + b;
        v[2][i] = a - b;
        v[3][i] = c + e;
        v[4][i] = c - e;
        v[5][i] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    v
}

/// `Aᵀ m` for six values per lane (the rows of [`AT`], with shared sub-expressions).
#[inline(always)]
fn at6(m: [&Lanes; A]) -> [Lanes; M] {
    let mut y = [[0f32; LANES]; M];
    for i in 0..LANES {
        let (m0, m1, m2, m3, m4, m5) = (m[0][i], m[1][i], m[2][i], m[3][i], m[4][i], m[5][i]);
        let (a, b, c, d) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        y[0][i] = m0 + a + c;
        y[1][i] = b + 2.0 * d;
        y[2][i] = a + 4.0 * c;
        y[3][i] = b + 8.0 * d + m5;
    }
    y
}

multiversion! {
    /// Transforms up to [`LANES`] tiles starting at tile column `j0`, whose input rows start
    /// at padded row `y0`, of one channel's phase planes; writes `V[ξ]` at `ξ * xi_stride +
    /// base + t`.
    fn input_tiles(
        p: &[f32],
        dims: (usize, usize),
        y0: usize,
        j0: usize,
        n: usize,
        v: SharedMut,
        at: (usize, usize, usize),
    ) {
        let (rows, cols) = dims;
        let (t, base, xi_stride) = at;
        // e[r] = Bᵀ applied along the columns of input row r of every tile.
        let mut e = [[[0f32; LANES]; A]; A];
        for (r, er) in e.iter_mut().enumerate() {
            let mut d = [[0f32; LANES]; A];
            for (s, ds) in d.iter_mut().enumerate() {
                *ds = load(&p[((s % M) * rows + y0 + r) * cols + j0 + s / M..], n);
            }
            *er = bt6([&d[0], &d[1], &d[2], &d[3], &d[4], &d[5]]);
        }
        // `l` picks the same column out of every row of `e`.
        #[allow(clippy::needless_range_loop)]
        for l in 0..A {
            let column = bt6([&e[0][l], &e[1][l], &e[2][l], &e[3][l], &e[4][l], &e[5][l]]);
            for (k, lanes) in column.iter().enumerate() {
                // SAFETY: row (ξ, channel) of V at columns t..t + n, written by this
                // channel's task alone.
                let dst = unsafe { std::slice::from_raw_parts_mut(v.get().add((k * A + l) * xi_stride + base + t), n) };
                store(dst, lanes, n);
            }
        }
    }
}

/// Writes the output tiles of tile rows `t0..t1` from `M`, output channels in parallel (in
/// runs of at least `split`).
fn output_transform(
    job: &Job,
    m: &[f32],
    out: SharedMut,
    (h, w, tw): (usize, usize, usize),
    (t0, t1): (usize, usize),
    band_tiles: usize,
    split: usize,
) {
    let cout = job.cout;
    (0..cout).into_par_iter().with_min_len(split).for_each(|co| {
        let bias = job.bias.map_or(0.0, |b| b[co]);
        for ti in t0..t1 {
            for j0 in (0..tw).step_by(LANES) {
                let src = (co * band_tiles + (ti - t0) * tw + j0, cout * band_tiles);
                // SAFETY: output plane co belongs to this task alone.
                let plane = unsafe { std::slice::from_raw_parts_mut(out.get().add(co * h * w), h * w) };
                output_tiles(m, src, (tw - j0).min(LANES), (bias, job.relu), plane, (h, w, ti * M, j0 * M));
            }
        }
    });
}

multiversion! {
    /// Inverse-transforms up to [`LANES`] tiles read from `M[ξ]` at `ξ * xi_stride + first`
    /// and writes them, with bias and optional ReLU, at row `y0`, column `x0` of `plane`.
    fn output_tiles(
        m: &[f32],
        src: (usize, usize),
        n: usize,
        epilogue: (f32, bool),
        plane: &mut [f32],
        at: (usize, usize, usize, usize),
    ) {
        let (first, xi_stride) = src;
        let (bias, relu) = epilogue;
        let (h, w, y0, x0) = at;
        // f[k] = Aᵀ applied along the columns of transformed row k of every tile.
        let mut f = [[[0f32; LANES]; M]; A];
        for (k, fk) in f.iter_mut().enumerate() {
            let mut row = [[0f32; LANES]; A];
            for (l, lanes) in row.iter_mut().enumerate() {
                *lanes = load(&m[(k * A + l) * xi_stride + first..], n);
            }
            *fk = at6([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
        }
        let mut columns = [[[0f32; LANES]; M]; M];
        for (q, column) in columns.iter_mut().enumerate() {
            *column = at6([&f[0][q], &f[1][q], &f[2][q], &f[3][q], &f[4][q], &f[5][q]]);
        }
        let len = (n * M).min(w - x0);
        for p in 0..M.min(h - y0) {
            let mut interleaved = [0f32; LANES * M];
            for (i, quad) in interleaved.chunks_exact_mut(M).enumerate() {
                for (q, v) in quad.iter_mut().enumerate() {
                    let y = columns[q][p][i] + bias;
                    *v = if relu { y.max(0.0) } else { y };
                }
            }
            plane[(y0 + p) * w + x0..][..len].copy_from_slice(&interleaved[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(seed: usize) -> [Lanes; A] {
        std::array::from_fn(|r| std::array::from_fn(|i| ((r * 31 + i * 17 + seed * 7) % 23) as f32 / 7.0 - 1.5))
    }

    #[test]
    fn factored_transforms_apply_the_matrices() {
        let d = lanes(1);
        let v = bt6([&d[0], &d[1], &d[2], &d[3], &d[4], &d[5]]);
        let y = at6([&d[0], &d[1], &d[2], &d[3], &d[4], &d[5]]);
        for i in 0..LANES {
            for (k, row) in BT.iter().enumerate() {
                let expected: f32 = row.iter().zip(&d).map(|(b, x)| b * x[i]).sum();
                assert!((v[k][i] - expected).abs() < 1e-5, "Bᵀ row {k}");
            }
            for (p, row) in AT.iter().enumerate() {
                let expected: f32 = row.iter().zip(&d).map(|(a, x)| a * x[i]).sum();
                assert!((y[p][i] - expected).abs() < 1e-5, "Aᵀ row {p}");
            }
        }
    }

    #[test]
    fn one_tile_reproduces_the_correlation() {
        // Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A equals the 3x3 correlation of a 6x6 input on its 4x4 interior.
        let d: [[f32; A]; A] = std::array::from_fn(|r| std::array::from_fn(|s| ((r * 5 + s * 3) % 7) as f32 - 3.0));
        let g: [[f32; 3]; 3] = [[0.5, -1.0, 0.25], [2.0, 0.0, -0.5], [1.0, 0.75, -2.0]];
        let mul = |a: &[Vec<f32>], b: &[Vec<f32>]| -> Vec<Vec<f32>> {
            (0..a.len())
                .map(|i| (0..b[0].len()).map(|j| (0..b.len()).map(|k| a[i][k] * b[k][j]).sum()).collect())
                .collect()
        };
        let t =
            |a: &[Vec<f32>]| -> Vec<Vec<f32>> { (0..a[0].len()).map(|j| a.iter().map(|r| r[j]).collect()).collect() };
        let rows = |m: &[[f32; A]]| m.iter().map(|r| r.to_vec()).collect::<Vec<_>>();
        let (bt, at) = (rows(&BT), rows(&AT));
        let gm: Vec<Vec<f32>> = G.iter().map(|r| r.to_vec()).collect();
        let gv: Vec<Vec<f32>> = g.iter().map(|r| r.to_vec()).collect();
        let u = mul(&mul(&gm, &gv), &t(&gm));
        let v = mul(&mul(&bt, &rows(&d)), &t(&bt));
        let prod: Vec<Vec<f32>> = (0..A).map(|i| (0..A).map(|j| u[i][j] * v[i][j]).collect()).collect();
        let y = mul(&mul(&at, &prod), &t(&at));
        for p in 0..M {
            for q in 0..M {
                let direct: f32 =
                    (0..3).flat_map(|a| (0..3).map(move |b| (a, b))).map(|(a, b)| g[a][b] * d[p + a][q + b]).sum();
                assert!((y[p][q] - direct).abs() < 1e-3, "({p}, {q}): {} vs {direct}", y[p][q]);
            }
        }
    }
}
