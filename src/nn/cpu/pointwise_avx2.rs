//! The 1x1 convolution's GEMM for AVX2 + FMA CPUs (also the unfolded stems'): `out =
//! epilogue(W x)` over one band of pixels, 6 output channels by 16 pixels at a time in
//! registers, the bias, clamp and clamp mask applied to each tile before it is stored. The
//! gemm crate, which the kernels use elsewhere, repacks both operands for every band and leaves
//! the epilogue to a second pass; here the band's input is copied (masked, for a gradient) once
//! into panels of 16 pixels and each layer's weights are packed once, on first use
//! ([`PackedWeights`]), which pays for layers of few input channels (most of
//! EfficientNet-Lite0's).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Output channels per tile.
const ROWS: usize = 6;
/// Pixels per tile: two AVX registers.
pub(super) const COLS: usize = 16;

/// Whether [`band`] runs here: on CPUs with AVX2 and FMA but not AVX-512 (whose gemm crate
/// kernels are wider; `DREAMVID_AVX2_GEMM` set runs it there too, to compare the two on such
/// a CPU), unless `DREAMVID_GEMM_CRATE` is set (every GEMM then runs in the gemm crate, as on
/// other CPUs: for comparisons, and for the tests of that path).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("DREAMVID_GEMM_CRATE").is_none()
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && (std::env::var_os("DREAMVID_AVX2_GEMM").is_some() || !std::arch::is_x86_feature_detected!("avx512f"))
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// The weight as tiles of [`ROWS`] output channels, each `[depth][ROWS]` (the channels past
/// the last of a partial tile are zero): `lhs(o, i) = weight[o * row_stride + i * col_stride]`
/// for `o < rows`, `i < depth`.
pub(super) fn pack(weight: &[f32], rows: usize, depth: usize, (row_stride, col_stride): (usize, usize)) -> Vec<f32> {
    let mut packed = vec![0f32; rows.div_ceil(ROWS) * depth * ROWS];
    for (t, tile) in packed.chunks_exact_mut(depth * ROWS).enumerate() {
        let first = t * ROWS;
        for (i, lane) in tile.chunks_exact_mut(ROWS).enumerate() {
            for (r, v) in lane.iter_mut().enumerate().take(rows - first) {
                *v = weight[(first + r) * row_stride + i * col_stride];
            }
        }
    }
    packed
}

/// One layer's weight as [`band`] reads it ([`pack`]ed), made on first use (for the weight
/// the layer's ops are always given): for the forward, and transposed for the input gradient.
#[derive(Debug, Clone, Default)]
pub struct PackedWeights([OnceLock<Vec<f32>>; 2]);

impl PackedWeights {
    /// The weight of the forward, or with `gradient` of the input gradient, as `pack` packs
    /// it the first time it is asked for.
    pub(super) fn get(&self, gradient: bool, pack: impl FnOnce() -> Vec<f32>) -> &[f32] {
        self.0[usize::from(gradient)].get_or_init(pack)
    }
}

/// One band's product and epilogue.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Band<'a> {
    /// The weight as [`pack`] leaves it, for `rows` output channels of `depth` inputs each.
    pub packed: &'a [f32],
    /// Output channels.
    pub rows: usize,
    /// Input channels.
    pub depth: usize,
    /// The band's input: `depth` rows of `cols` values, `stride` apart, copied into [`panels`]
    /// by [`band`].
    pub x: &'a [f32],
    /// Distance between the input rows.
    pub stride: usize,
    /// Where the input is zero (laid out like it), for a gradient through an activation.
    pub keep: Option<&'a [u8]>,
    /// Pixels in the band.
    pub cols: usize,
    /// Per-output-channel bias.
    pub bias: Option<&'a [f32]>,
    /// Clamp to `[0, clamp]`.
    pub clamp: Option<f32>,
}

/// Values [`panels`] fills for `cols` pixels of `depth` channels.
#[cfg(target_arch = "x86_64")]
fn panels_len(cols: usize, depth: usize) -> usize {
    cols.div_ceil(COLS) * COLS * depth
}

multiversion! {
    #[cfg(target_arch = "x86_64")]
    /// `depth` rows of `cols` values, `stride` apart in `x`, as panels of [`COLS`] pixels,
    /// each `[depth][COLS]` (what [`band`] reads, in order), zero where `mask` (laid out like
    /// `x`) is; `dst` holds [`panels_len`] values, the last panel's values past `cols`
    /// unspecified.
    fn panels(dst: &mut [f32], x: &[f32], mask: Option<&[u8]>, depth: usize, stride: usize, cols: usize) {
        for i in 0..depth {
            let src = &x[i * stride..][..cols];
            let keep = mask.map(|m| &m[i * stride..][..cols]);
            let whole = cols / COLS * COLS;
            for (p, j0) in (0..whole).step_by(COLS).enumerate() {
                let dst: &mut [f32; COLS] = (&mut dst[(p * depth + i) * COLS..][..COLS]).try_into().expect("COLS values");
                let src: &[f32; COLS] = src[j0..j0 + COLS].try_into().expect("COLS values");
                match keep {
                    Some(k) => {
                        let k: &[u8; COLS] = k[j0..j0 + COLS].try_into().expect("COLS values");
                        for l in 0..COLS {
                            dst[l] = super::operands::masked(src[l], k[l]);
                        }
                    }
                    None => *dst = *src,
                }
            }
            if whole < cols {
                super::operands::copy_masked(
                    &mut dst[(whole / COLS * depth + i) * COLS..][..cols - whole],
                    &src[whole..],
                    keep.map(|k| &k[whole..]),
                );
            }
        }
    }
}

/// Writes `epilogue(W x)` of `band` to `out` (`rows` rows `out_stride` apart, `cols` values
/// each) and the clamp's mask to `mask` (same layout) where given (only with a clamp).
///
/// # Safety
/// [`available`] must be true; `out` and `mask` must be valid for writes of `cols` values at
/// `o * out_stride` for every `o < rows`, which no other thread accesses during the call, and
/// `band.packed` must hold `rows.div_ceil(ROWS) * depth * ROWS` values.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn band(band: &Band, out: *mut f32, mask: Option<*mut u8>, out_stride: usize) {
    let mut x = super::buffers::Scratch::new(panels_len(band.cols, band.depth));
    panels(&mut x, band.x, band.keep, band.depth, band.stride, band.cols);
    // SAFETY: the caller guarantees the CPU features and the output sizes; `x` holds the
    // band's panels.
    unsafe { band_avx2(band, &x, out, mask, out_stride) }
}

/// See [`band`]; never called where [`available`] is false.
///
/// # Safety
/// Never to be called.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn band(_: &Band, _: *mut f32, _: Option<*mut u8>, _: usize) {
    unreachable!("the AVX2 1x1 kernel runs on x86-64 only")
}

/// [`band`]'s product and epilogue over the band's [`panels`] `x`, compiled for AVX2 and FMA.
///
/// # Safety
/// As for [`band`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn band_avx2(b: &Band, x: &[f32], out: *mut f32, mask: Option<*mut u8>, out_stride: usize) {
    assert!(x.len() >= panels_len(b.cols, b.depth));
    assert!(b.packed.len() >= b.rows.div_ceil(ROWS) * b.depth * ROWS);
    debug_assert!(mask.is_none() || b.clamp.is_some(), "a mask is written with a clamp only");
    let (zero, upper) = (_mm256_setzero_ps(), _mm256_set1_ps(b.clamp.unwrap_or(f32::INFINITY)));
    for tile in 0..b.rows.div_ceil(ROWS) {
        let w = b.packed[tile * b.depth * ROWS..].as_ptr();
        let first = tile * ROWS;
        let valid = (b.rows - first).min(ROWS);
        for (p, j0) in (0..b.cols).step_by(COLS).enumerate() {
            let x = x[p * b.depth * COLS..].as_ptr();
            let mut acc = [zero; 2 * ROWS];
            for i in 0..b.depth {
                // SAFETY: the panel holds depth * COLS values (asserted), the packed tile
                // depth * ROWS weights.
                let (x0, x1, wi) = unsafe {
                    let row = x.add(i * COLS);
                    (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)), w.add(i * ROWS))
                };
                for r in 0..ROWS {
                    // SAFETY: r < ROWS weights of input i.
                    let wr = _mm256_broadcast_ss(unsafe { &*wi.add(r) });
                    acc[2 * r] = _mm256_fmadd_ps(wr, x0, acc[2 * r]);
                    acc[2 * r + 1] = _mm256_fmadd_ps(wr, x1, acc[2 * r + 1]);
                }
            }
            let n = (b.cols - j0).min(COLS);
            for r in 0..valid {
                let o = first + r;
                let bias = _mm256_set1_ps(b.bias.map_or(0.0, |bias| bias[o]));
                let (mut v0, mut v1) = (_mm256_add_ps(acc[2 * r], bias), _mm256_add_ps(acc[2 * r + 1], bias));
                if b.clamp.is_some() {
                    // Operands in this order keep a NaN a NaN, as `f32::clamp` does.
                    v0 = _mm256_min_ps(upper, _mm256_max_ps(zero, v0));
                    v1 = _mm256_min_ps(upper, _mm256_max_ps(zero, v1));
                }
                let mut sums = [0f32; COLS];
                // SAFETY: the caller guarantees cols values at o * out_stride, and j0 + n <=
                // cols.
                let dst = unsafe { out.add(o * out_stride + j0) };
                // SAFETY: dst has room for n values (above); sums holds COLS = 2 x 8 values.
                unsafe {
                    if n == COLS {
                        _mm256_storeu_ps(dst, v0);
                        _mm256_storeu_ps(dst.add(8), v1);
                    } else {
                        _mm256_storeu_ps(sums.as_mut_ptr(), v0);
                        _mm256_storeu_ps(sums.as_mut_ptr().add(8), v1);
                        std::ptr::copy_nonoverlapping(sums.as_ptr(), dst, n);
                    }
                }
                if let (Some(mask), Some(_)) = (mask, b.clamp) {
                    // 0 < v < clamp (`operands::active`) as 0 / -1 lanes, packed to bytes in
                    // order, then 0 / 1.
                    let in0 =
                        _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v0, zero), _mm256_cmp_ps::<_CMP_LT_OQ>(v0, upper));
                    let in1 =
                        _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v1, zero), _mm256_cmp_ps::<_CMP_LT_OQ>(v1, upper));
                    let words = _mm256_packs_epi32(_mm256_castps_si256(in0), _mm256_castps_si256(in1));
                    let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(words);
                    let bytes = _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256::<1>(words));
                    let bytes = _mm_and_si128(bytes, _mm_set1_epi8(1));
                    // SAFETY: as for `dst`, in the mask; `sums` has room for the 16 bytes.
                    unsafe {
                        let m = mask.add(o * out_stride + j0);
                        if n == COLS {
                            _mm_storeu_si128(m.cast(), bytes);
                        } else {
                            _mm_storeu_si128(sums.as_mut_ptr().cast(), bytes);
                            std::ptr::copy_nonoverlapping(sums.as_ptr().cast::<u8>(), m, n);
                        }
                    }
                }
            }
        }
    }
}
