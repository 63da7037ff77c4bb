//! The per-tile work of [`super`]: the 1-D transforms in factored form, applied to
//! [`LANES`] tiles at once, and the loops that move tiles between planes and the transformed
//! matrices. Each kernel is compiled for AVX-512, AVX2+FMA and the baseline, and picks the best
//! the CPU supports at run time.

use super::{A, M};
use crate::nn::cpu::SharedMut;

/// Tiles transformed together: one 512-bit vector of `f32`.
pub const LANES: usize = 16;

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

/// `Bᵀ d`: the input transform of six values per lane.
#[inline(always)]
pub fn bt6(d: [&Lanes; A]) -> [Lanes; A] {
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

/// `Aᵀ m`: the output transform of six values per lane.
#[inline(always)]
pub fn at6(m: [&Lanes; A]) -> [Lanes; M] {
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

/// `G g`: the kernel transform of three values per lane.
#[inline(always)]
fn g6(g: [&Lanes; 3]) -> [Lanes; A] {
    let mut u = [[0f32; LANES]; A];
    for i in 0..LANES {
        let (g0, g1, g2) = (g[0][i], g[1][i], g[2][i]);
        let (even, odd) = ((g0 + g2) * (-1.0 / 6.0), g1 * (-1.0 / 6.0));
        let (even4, odd4) = (g0 * (1.0 / 24.0) + g2 * (1.0 / 6.0), g1 * (1.0 / 12.0));
        u[0][i] = g0 * 0.25;
        u[1][i] = even + odd;
        u[2][i] = even - odd;
        u[3][i] = even4 + odd4;
        u[4][i] = even4 - odd4;
        u[5][i] = g2;
    }
    u
}

/// The six rows `[&x[0][c], ..., &x[5][c]]` of column `c` of a 6-row array.
#[inline(always)]
fn column<const N: usize>(x: &[[Lanes; N]; A], c: usize) -> [&Lanes; A] {
    [&x[0][c], &x[1][c], &x[2][c], &x[3][c], &x[4][c], &x[5][c]]
}

/// Where tiles go in a transformed matrix set: element `ξ` of tile `t` lives at
/// `ξ * xi_stride + base + t`.
#[derive(Clone, Copy)]
pub struct Slots {
    /// Pointer to the matrices.
    pub ptr: SharedMut,
    /// Distance between the matrices of consecutive `ξ`.
    pub xi_stride: usize,
    /// Offset of this channel's row.
    pub base: usize,
}

impl Slots {
    /// The `n` slots of element `xi`, tiles `t..t + n`.
    ///
    /// # Safety
    /// The caller must own that row segment exclusively and keep it inside the allocation.
    #[inline(always)]
    unsafe fn at<'a>(self, xi: usize, t: usize, n: usize) -> &'a mut [f32] {
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.get().add(xi * self.xi_stride + self.base + t), n) }
    }
}

multiversion! {
    /// Winograd kernels `G g Gᵀ` of up to [`LANES`] 3x3 kernels, kernel `i` read from
    /// `weight[starts[i]..][..9]` (taps in reverse order when `flip`), written to tiles
    /// `t..t + starts.len()` of `u`.
    pub fn kernel_tiles(weight: &[f32], starts: &[usize], flip: bool, u: Slots, t: usize) {
        let n = starts.len();
        let mut g = [[0f32; LANES]; 9];
        for (i, &start) in starts.iter().enumerate() {
            for (tap, gt) in g.iter_mut().enumerate() {
                gt[i] = weight[start + if flip { 8 - tap } else { tap }];
            }
        }
        // rows[a] = G applied along the kernel row a; then G along the columns.
        let rows = [g6([&g[0], &g[1], &g[2]]), g6([&g[3], &g[4], &g[5]]), g6([&g[6], &g[7], &g[8]])];
        // `l` picks the same column out of each of the three rows.
        #[allow(clippy::needless_range_loop)]
        for l in 0..A {
            for (k, lanes) in g6([&rows[0][l], &rows[1][l], &rows[2][l]]).iter().enumerate() {
                // SAFETY: tiles t..t + n of every ξ, owned by the calling task.
                store(unsafe { u.at(k * A + l, t, n) }, lanes, n);
            }
        }
    }
}

multiversion! {
    /// One channel's phase planes: `p[s][y][j] = padded[y][j * M + s]` for `y < rows`,
    /// `j < cols`, where padded is the `h x w` plane `x` (zero where `mask` is zero) behind a
    /// border of zeros.
    pub fn split_phases(x: &[f32], mask: Option<&[u8]>, size: (usize, usize), p: &mut [f32], dims: (usize, usize)) {
        let (h, w) = size;
        let (rows, cols) = dims;
        p.fill(0.0);
        for y in 0..h {
            let src = &x[y * w..][..w];
            for s in 0..M {
                let dst = &mut p[(s * rows + y + 1) * cols..][..cols];
                // Padded column j * M + s is input column j * M + s - 1.
                for (j, d) in dst.iter_mut().enumerate().skip(usize::from(s == 0)) {
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

multiversion! {
    /// Input transform `Bᵀ d B` of `n <= LANES` tiles starting at tile column `j0`, whose
    /// rows start at row `y0` of one channel's (padded) phase planes `p` (`rows x cols`).
    pub fn input_tiles(p: &[f32], dims: (usize, usize), y0: usize, j0: usize, n: usize, v: Slots, t: usize) {
        let (rows, cols) = dims;
        let mut e = [[[0f32; LANES]; A]; A];
        for (r, er) in e.iter_mut().enumerate() {
            let mut d = [[0f32; LANES]; A];
            for (s, ds) in d.iter_mut().enumerate() {
                *ds = load(&p[((s % M) * rows + y0 + r) * cols + j0 + s / M..], n);
            }
            *er = bt6([&d[0], &d[1], &d[2], &d[3], &d[4], &d[5]]);
        }
        for l in 0..A {
            for (k, lanes) in bt6(column(&e, l)).iter().enumerate() {
                // SAFETY: this channel's row of V, owned by the calling task.
                store(unsafe { v.at(k * A + l, t, n) }, lanes, n);
            }
        }
    }
}

multiversion! {
    /// Output transform `Aᵀ m A` of `n <= LANES` tiles read from `m` (element `ξ` of tile `j`
    /// at `ξ * xi_stride + first + j`), plus `bias`, through the optional ReLU, written at row
    /// `y0`, column `x0` of the `h x w` output `plane`.
    pub fn output_tiles(
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
        let mut f = [[[0f32; LANES]; M]; A];
        for (k, fk) in f.iter_mut().enumerate() {
            let mut row = [[0f32; LANES]; A];
            for (l, lanes) in row.iter_mut().enumerate() {
                *lanes = load(&m[(k * A + l) * xi_stride + first..], n);
            }
            *fk = at6([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
        }
        let mut columns = [[[0f32; LANES]; M]; M];
        for (q, c) in columns.iter_mut().enumerate() {
            *c = at6(column(&f, q));
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

    /// Bᵀ, as in Lavin & Gray (rows: transformed index, columns: tile pixel).
    const BT: [[f32; A]; A] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];

    /// G.
    const G: [[f32; 3]; A] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];

    /// Aᵀ.
    const AT: [[f32; A]; M] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

    fn lanes(seed: usize) -> [Lanes; A] {
        std::array::from_fn(|r| std::array::from_fn(|i| ((r * 31 + i * 17 + seed * 7) % 23) as f32 / 7.0 - 1.5))
    }

    fn close(got: f32, expected: f32, what: &str) {
        assert!((got - expected).abs() < 1e-4, "{what}: {got} vs {expected}");
    }

    #[test]
    fn factored_transforms_apply_the_matrices() {
        let d: [Lanes; A] = lanes(1);
        let rows6 = [&d[0], &d[1], &d[2], &d[3], &d[4], &d[5]];
        let (bt, at, g) = (bt6(rows6), at6(rows6), g6([&d[0], &d[1], &d[2]]));
        for i in 0..LANES {
            for k in 0..A {
                close(g[k][i], (0..3).map(|s| G[k][s] * d[s][i]).sum(), "G");
            }
            for k in 0..A {
                close(bt[k][i], (0..A).map(|s| BT[k][s] * d[s][i]).sum(), "Bᵀ");
            }
            for p in 0..M {
                close(at[p][i], (0..A).map(|s| AT[p][s] * d[s][i]).sum(), "Aᵀ");
            }
        }
    }

    #[test]
    fn one_tile_reproduces_the_correlation() {
        // Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A equals the 3x3 correlation of a 6x6 input on its 4x4 interior.
        let d: [[f32; A]; A] = std::array::from_fn(|r| std::array::from_fn(|s| ((r * 5 + s * 3) % 7) as f32 - 3.0));
        let g = [0.5, -1.0, 0.25, 2.0, 0.0, -0.5, 1.0, 0.75, -2.0];
        let u = super::super::transform_weights(&g, 1, 1, false);
        let mul = |a: &[Vec<f32>], b: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let inner = |i: usize, j: usize| (0..b.len()).map(|k| a[i][k] * b[k][j]).sum();
            (0..a.len()).map(|i| (0..b[0].len()).map(|j| inner(i, j)).collect()).collect()
        };
        let t =
            |a: &[Vec<f32>]| -> Vec<Vec<f32>> { (0..a[0].len()).map(|j| a.iter().map(|r| r[j]).collect()).collect() };
        let rows = |m: &[[f32; A]]| m.iter().map(|r| r.to_vec()).collect::<Vec<_>>();
        let (bt, at) = (rows(&BT), rows(&AT));
        let v = mul(&mul(&bt, &rows(&d)), &t(&bt));
        let prod: Vec<Vec<f32>> = (0..A).map(|i| (0..A).map(|j| u[i * A + j] * v[i][j]).collect()).collect();
        let y = mul(&mul(&at, &prod), &t(&at));
        for p in 0..M {
            for q in 0..M {
                let direct: f32 = (0..9).map(|k| g[k] * d[p + k / 3][q + k % 3]).sum();
                close(y[p][q], direct, "tile");
            }
        }
    }
}
