//! The per-tile work of [`super`]: the 1-D transforms in factored form, applied to
//! [`LANES`] tiles at once, and the loops that move tiles between planes and the transformed
//! matrices. Each kernel is compiled for AVX-512, AVX2+FMA and the baseline, and picks the best
//! the CPU supports at run time.

use std::mem::MaybeUninit;

use crate::nn::cpu::buffers::SharedMut;
use crate::nn::cpu::operands::masked;

/// Tiles transformed together: one 512-bit vector of `f32`.
pub const LANES: usize = 16;

/// Output tile side.
pub const M: usize = 4;
/// Input tile side.
pub const A: usize = M + 2;

/// Lanes of one value across [`LANES`] tiles.
type Lanes = [f32; LANES];

/// `src[..LANES]`.
#[inline(always)]
fn load(src: &[f32]) -> Lanes {
    src[..LANES].try_into().expect("LANES elements")
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
    pub ptr: SharedMut<f32>,
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
    /// `weight[starts[i]..][..9]`, written to tiles `t..t + starts.len()` of `u`.
    pub fn kernel_tiles(weight: &[f32], starts: &[usize], u: Slots, t: usize) {
        let n = starts.len();
        let mut g = [[0f32; LANES]; 9];
        for (i, &start) in starts.iter().enumerate() {
            for (tap, gt) in g.iter_mut().enumerate() {
                gt[i] = weight[start + tap];
            }
        }
        // rows[a] = G applied along the kernel row a; then G along the columns.
        let rows = [g6([&g[0], &g[1], &g[2]]), g6([&g[3], &g[4], &g[5]]), g6([&g[6], &g[7], &g[8]])];
        // `l` picks the same column out of each of the three rows.
        #[allow(clippy::needless_range_loop)]
        for l in 0..A {
            for (k, lanes) in g6([&rows[0][l], &rows[1][l], &rows[2][l]]).iter().enumerate() {
                // SAFETY: tiles t..t + n of every ξ, owned by the calling task.
                unsafe { u.at(k * A + l, t, n) }.copy_from_slice(&lanes[..n]);
            }
        }
    }
}

multiversion! {
    /// Rows `y0..y0 + rows` of one channel's phase planes: `p[s][r][j] = padded[y0 + r][j * M + s]`
    /// for `r < rows`, `j < cols`, where padded is the `h x w` plane `x` (zero where `mask` is
    /// zero) behind a border of zeros. With `pooled`, `x` is the `h/2 x w/2` gradient of a 2x2
    /// max-pool's output instead, routed back: element `(y, x)` is `x[y / 2][x / 2]` (odd
    /// trailing rows and columns zero), kept where the pool's `mask` is non-zero.
    pub fn split_phases(
        x: &[f32],
        mask: Option<&[u8]>,
        size: (usize, usize),
        pooled: bool,
        y0: usize,
        p: &mut [f32],
        dims: (usize, usize),
    ) {
        let (h, w) = size;
        let (rows, cols) = dims;
        // Rows and columns with values, and the shift from a coordinate to its place in `x`.
        let (shift, hs, ws) = if pooled { (1, h / 2 * 2, w / 2 * 2) } else { (0, h, w) };
        p.fill(0.0);
        for r in 0..rows {
            // Padded row y0 + r is input row y0 + r - 1.
            let Some(y) = (y0 + r).checked_sub(1).filter(|&y| y < hs) else { continue };
            let src = &x[(y >> shift) * (ws >> shift)..][..ws >> shift];
            let keep = mask.map(|m| &m[y * w..][..w]);
            let value = |col: usize| match keep {
                Some(k) => masked(src[col >> shift], k[col]),
                None => src[col >> shift],
            };
            let [p0, p1, p2, p3] = [0, 1, 2, 3].map(|s| (s * rows + r) * cols);
            // Padded column j * M + s is input column j * M + s - 1: phases 1..3 of column 0
            // hold input columns 0..2, then each group of four input columns fills one column
            // of every phase, LANES groups at a time while they last.
            for col in 0..ws.min(M - 1) {
                p[(col + 1) * rows * cols + r * cols] = value(col);
            }
            let mut j = 1;
            let mut col = M - 1;
            while col + M * LANES <= ws {
                let mut values: [f32; M * LANES] = if pooled {
                    std::array::from_fn(|i| src[(col + i) >> 1])
                } else {
                    src[col..][..M * LANES].try_into().expect("M * LANES elements")
                };
                if let Some(k) = keep {
                    let k: &[u8; M * LANES] = k[col..][..M * LANES].try_into().expect("M * LANES elements");
                    values = std::array::from_fn(|i| masked(values[i], k[i]));
                }
                for (s, at) in [p0, p1, p2, p3].into_iter().enumerate() {
                    let lanes: Lanes = std::array::from_fn(|i| values[i * M + s]);
                    p[at + j..][..LANES].copy_from_slice(&lanes);
                }
                j += LANES;
                col += M * LANES;
            }
            while col + M <= ws {
                p[p0 + j] = value(col);
                p[p1 + j] = value(col + 1);
                p[p2 + j] = value(col + 2);
                p[p3 + j] = value(col + 3);
                j += 1;
                col += M;
            }
            for (s, at) in (col..ws).zip([p0, p1, p2]) {
                p[at + j] = value(s);
            }
        }
    }
}

/// `Bᵀ` applied along padded row `y` of [`LANES`] tiles from tile column `j0` of phase planes
/// `p` (each tile's row reversed where `reverse`).
#[inline(always)]
fn input_row(p: &[f32], (rows, cols): (usize, usize), y: usize, j0: usize, reverse: bool) -> [Lanes; A] {
    let at = |s: usize| load(&p[((s % M) * rows + y) * cols + j0 + s / M..]);
    let d =
        if reverse { [at(5), at(4), at(3), at(2), at(1), at(0)] } else { [at(0), at(1), at(2), at(3), at(4), at(5)] };
    bt6([&d[0], &d[1], &d[2], &d[3], &d[4], &d[5]])
}

/// `Aᵀ` applied to the six elements of [`LANES`] tiles that start at `m[first]`, `xi_stride`
/// apart.
#[inline(always)]
fn output_row(m: &[f32], first: usize, xi_stride: usize) -> [Lanes; M] {
    let at = |l: usize| load(&m[first + l * xi_stride..]);
    let e = [at(0), at(1), at(2), at(3), at(4), at(5)];
    at6([&e[0], &e[1], &e[2], &e[3], &e[4], &e[5]])
}

multiversion! {
    /// Input transform `Bᵀ d B` of the [`LANES`] tiles from tile column `j0` whose rows start
    /// at row `y0` of one channel's (padded) phase planes `p` (`rows x cols`, read up to
    /// `LANES` elements past the end), each tile reversed (rows and columns) first where
    /// `reverse`; written to slots `t..t + LANES` of `v`. Tiles past the row's last are
    /// garbage: the caller keeps `LANES` spare slots after its tiles and transforms them in
    /// increasing order, so the real tiles overwrite them.
    pub fn input_tiles(p: &[f32], dims: (usize, usize), at: (usize, usize), reverse: bool, v: Slots, t: usize) {
        let (y0, j0) = at;
        // `Bᵀ` along each of the six rows, built as literals: no zeroed arrays to overwrite.
        let row = |r| input_row(p, dims, y0 + r, j0, reverse);
        let e = if reverse {
            [row(5), row(4), row(3), row(2), row(1), row(0)]
        } else {
            [row(0), row(1), row(2), row(3), row(4), row(5)]
        };
        for l in 0..A {
            for (k, lanes) in bt6(column(&e, l)).iter().enumerate() {
                // SAFETY: this channel's row of V, owned by the calling task.
                unsafe { v.at(k * A + l, t, LANES) }.copy_from_slice(lanes);
            }
        }
    }
}

multiversion! {
    /// Output transform `Aᵀ m A` of `n <= LANES` tiles read from `m` (element `ξ` of tile `j`
    /// at `ξ * xi_stride + first + j`, read for `LANES` tiles), each tile reversed (rows and
    /// columns) where `reverse`, plus `bias`, through the optional ReLU, written at row `y0`,
    /// column `x0` of the `h x w` output `plane` (which may start uninitialised).
    pub fn output_tiles(
        m: &[f32],
        src: (usize, usize),
        n: usize,
        epilogue: (f32, bool, bool),
        plane: &mut [MaybeUninit<f32>],
        at: (usize, usize, usize, usize),
    ) {
        let (first, xi_stride) = src;
        let (bias, relu, reverse) = epilogue;
        let (h, w, y0, x0) = at;
        let row = |k| output_row(m, first + k * A * xi_stride, xi_stride);
        let f = [row(0), row(1), row(2), row(3), row(4), row(5)];
        let columns = [at6(column(&f, 0)), at6(column(&f, 1)), at6(column(&f, 2)), at6(column(&f, 3))];
        let len = (n * M).min(w - x0);
        for p in 0..M.min(h - y0) {
            let mut interleaved = [0f32; LANES * M];
            for (i, quad) in interleaved.chunks_exact_mut(M).enumerate() {
                for (q, v) in quad.iter_mut().enumerate() {
                    let y = if reverse { columns[M - 1 - q][M - 1 - p][i] } else { columns[q][p][i] } + bias;
                    *v = if relu { y.max(0.0) } else { y };
                }
            }
            let row = &mut plane[(y0 + p) * w + x0..][..len];
            if len == LANES * M {
                row.iter_mut().zip(&interleaved).for_each(|(d, &v)| _ = d.write(v));
            } else {
                row.iter_mut().zip(&interleaved[..len]).for_each(|(d, &v)| _ = d.write(v));
            }
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
        let u = super::super::transform_weights(&g, 1, 1);
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
