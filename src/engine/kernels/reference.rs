//! Slow, obviously correct kernels: direct loops over the definition. The fast kernels are
//! tested against these.

use super::Conv2dGeom;
use crate::engine::element::Element;

/// Input coordinate read by output coordinate `o` and kernel tap `k`, if inside the image.
fn src(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    let i = (o * stride + k) as isize - pad as isize;
    (i >= 0 && (i as usize) < size).then_some(i as usize)
}

/// `y[n,o,i,j] = bias[o] + sum_{c,a,b} w[o,c,a,b] x[n,c,i*s+a-p,j*s+b-p]`; overwrites `y`.
/// `bias` is per channel (`c_out`) or per image and channel (`n·c_out`): [`super::bias_at`].
pub fn conv2d_forward<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    w: &[E],
    bias: Option<&[E]>,
    y: &mut [E],
) {
    assert_eq!(x.len(), g.x_len());
    assert_eq!(w.len(), g.w_len());
    assert_eq!(y.len(), g.y_len());
    if let Some(b) = bias {
        super::check_bias_len(b.len(), g.n, g.c_out);
    }
    let (ho, wo) = (g.h_out(), g.w_out());
    for n in 0..g.n {
        for o in 0..g.c_out {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = bias.map_or(E::zero(), |b| super::bias_at(b, g.c_out, n, o));
                    for c in 0..g.c_in {
                        for a in 0..g.kh {
                            let Some(r) = src(i, a, g.stride, g.pad, g.h) else {
                                continue;
                            };
                            for b in 0..g.kw {
                                let Some(s) = src(j, b, g.stride, g.pad, g.w) else {
                                    continue;
                                };
                                acc += w[((o * g.c_in + c) * g.kh + a) * g.kw + b]
                                    * x[((n * g.c_in + c) * g.h + r) * g.w + s];
                            }
                        }
                    }
                    y[((n * g.c_out + o) * ho + i) * wo + j] = acc;
                }
            }
        }
    }
}

/// Gradient with respect to the input: `dx = d(sum dy * y)/dx`; overwrites `dx`.
pub fn conv2d_backward_input<E: Element>(g: &Conv2dGeom, dy: &[E], w: &[E], dx: &mut [E]) {
    assert_eq!(dy.len(), g.y_len());
    assert_eq!(w.len(), g.w_len());
    assert_eq!(dx.len(), g.x_len());
    dx.iter_mut().for_each(|v| *v = E::zero());
    let (ho, wo) = (g.h_out(), g.w_out());
    for n in 0..g.n {
        for o in 0..g.c_out {
            for i in 0..ho {
                for j in 0..wo {
                    let d = dy[((n * g.c_out + o) * ho + i) * wo + j];
                    for c in 0..g.c_in {
                        for a in 0..g.kh {
                            let Some(r) = src(i, a, g.stride, g.pad, g.h) else {
                                continue;
                            };
                            for b in 0..g.kw {
                                let Some(s) = src(j, b, g.stride, g.pad, g.w) else {
                                    continue;
                                };
                                dx[((n * g.c_in + c) * g.h + r) * g.w + s] +=
                                    w[((o * g.c_in + c) * g.kh + a) * g.kw + b] * d;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Gradients with respect to the weight and (optionally) the bias; overwrites both.
pub fn conv2d_backward_weight<E: Element>(
    g: &Conv2dGeom,
    x: &[E],
    dy: &[E],
    dw: &mut [E],
    dbias: Option<&mut [E]>,
) {
    assert_eq!(x.len(), g.x_len());
    assert_eq!(dy.len(), g.y_len());
    assert_eq!(dw.len(), g.w_len());
    dw.iter_mut().for_each(|v| *v = E::zero());
    let (ho, wo) = (g.h_out(), g.w_out());
    for n in 0..g.n {
        for o in 0..g.c_out {
            for i in 0..ho {
                for j in 0..wo {
                    let d = dy[((n * g.c_out + o) * ho + i) * wo + j];
                    for c in 0..g.c_in {
                        for a in 0..g.kh {
                            let Some(r) = src(i, a, g.stride, g.pad, g.h) else {
                                continue;
                            };
                            for b in 0..g.kw {
                                let Some(s) = src(j, b, g.stride, g.pad, g.w) else {
                                    continue;
                                };
                                dw[((o * g.c_in + c) * g.kh + a) * g.kw + b] +=
                                    x[((n * g.c_in + c) * g.h + r) * g.w + s] * d;
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(db) = dbias {
        assert_eq!(db.len(), g.c_out);
        for (o, v) in db.iter_mut().enumerate() {
            let mut acc = E::zero();
            for n in 0..g.n {
                let base = (n * g.c_out + o) * ho * wo;
                for k in 0..ho * wo {
                    acc += dy[base + k];
                }
            }
            *v = acc;
        }
    }
}

/// `db[c] = Σ_{n,k} dy[(n·C + c)·HW + k]`; overwrites `db`.
pub fn bias_grad<E: Element>(dy: &[E], n: usize, c: usize, hw: usize, db: &mut [E]) {
    assert_eq!(dy.len(), n * c * hw);
    assert_eq!(db.len(), c);
    for (ch, out) in db.iter_mut().enumerate() {
        let mut acc = E::zero();
        for img in 0..n {
            for k in 0..hw {
                acc += dy[(img * c + ch) * hw + k];
            }
        }
        *out = acc;
    }
}

/// `y[p, r, s] = x[p, r/2, s/2]` (integer division); `y` is `planes × 2h × 2w`.
pub fn upsample_nearest2x_forward<E: Element>(
    x: &[E],
    planes: usize,
    h: usize,
    w: usize,
    y: &mut [E],
) {
    assert_eq!(x.len(), planes * h * w);
    assert_eq!(y.len(), 4 * planes * h * w);
    for p in 0..planes {
        for r in 0..2 * h {
            for s in 0..2 * w {
                y[(p * 2 * h + r) * 2 * w + s] = x[(p * h + r / 2) * w + s / 2];
            }
        }
    }
}

/// The adjoint of [`upsample_nearest2x_forward`]: `dx[p, r/2, s/2] += dy[p, r, s]`.
pub fn upsample_nearest2x_backward<E: Element>(
    dy: &[E],
    planes: usize,
    h: usize,
    w: usize,
    dx: &mut [E],
) {
    assert_eq!(dx.len(), planes * h * w);
    assert_eq!(dy.len(), 4 * planes * h * w);
    dx.iter_mut().for_each(|v| *v = E::zero());
    for p in 0..planes {
        for r in 0..2 * h {
            for s in 0..2 * w {
                dx[(p * h + r / 2) * w + s / 2] += dy[(p * 2 * h + r) * 2 * w + s];
            }
        }
    }
}

/// `silu(z) = z / (1 + e^{-z})` and its derivative by the quotient rule,
/// `(1 + e^{-z} + z e^{-z}) / (1 + e^{-z})²`.
fn silu_and_derivative<E: Element>(z: E) -> (E, E) {
    let e = (-z).exp();
    let d = E::one() + e;
    (z / d, (d + z * e) / (d * d))
}

/// Group normalisation with an optional SiLU, straight from the definition: for each image
/// and group, the mean and biased variance over the group's `(c/G)·hw` elements, then
/// `y = act(γ_c (x-μ)/√(σ²+ε) + β_c)`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_forward<E: Element>(
    n: usize,
    c: usize,
    hw: usize,
    groups: usize,
    silu: bool,
    eps: E,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    y: &mut [E],
) {
    let cg = c / groups;
    let l = E::from_usize(cg * hw).unwrap();
    for img in 0..n {
        for g in 0..groups {
            let idx = |ch: usize, k: usize| (img * c + g * cg + ch) * hw + k;
            let mut mean = E::zero();
            for ch in 0..cg {
                for k in 0..hw {
                    mean += x[idx(ch, k)];
                }
            }
            mean /= l;
            let mut var = E::zero();
            for ch in 0..cg {
                for k in 0..hw {
                    var += (x[idx(ch, k)] - mean).powi(2);
                }
            }
            var /= l;
            for ch in 0..cg {
                for k in 0..hw {
                    let z = gamma[g * cg + ch] * (x[idx(ch, k)] - mean) / (var + eps).sqrt()
                        + beta[g * cg + ch];
                    y[idx(ch, k)] = if silu { silu_and_derivative(z).0 } else { z };
                }
            }
        }
    }
}

/// Backward pass of [`group_norm_forward`] through the full Jacobian of the normalisation,
/// `∂x̂_j/∂x_i = r (δ_ij - 1/L - x̂_i x̂_j / L)` (O(L²) per group, an independent route from
/// the fast kernel's collapsed form); overwrites `dx`, `dgamma`, `dbeta`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward<E: Element>(
    n: usize,
    c: usize,
    hw: usize,
    groups: usize,
    silu: bool,
    eps: E,
    x: &[E],
    gamma: &[E],
    beta: &[E],
    dy: &[E],
    dx: &mut [E],
    dgamma: &mut [E],
    dbeta: &mut [E],
) {
    let cg = c / groups;
    let len = cg * hw;
    let l = E::from_usize(len).unwrap();
    dgamma.iter_mut().for_each(|v| *v = E::zero());
    dbeta.iter_mut().for_each(|v| *v = E::zero());
    for img in 0..n {
        for g in 0..groups {
            let base = (img * c + g * cg) * hw;
            let xs = &x[base..base + len];
            let mean = xs.iter().copied().sum::<E>() / l;
            let var = xs.iter().map(|&v| (v - mean).powi(2)).sum::<E>() / l;
            let r = E::one() / (var + eps).sqrt();
            let xhat: Vec<E> = xs.iter().map(|&v| (v - mean) * r).collect();
            // dL/dxhat_j = dy_j act'(z_j) gamma_j
            let mut dxhat = vec![E::zero(); len];
            for j in 0..len {
                let ch = g * cg + j / hw;
                let z = gamma[ch] * xhat[j] + beta[ch];
                let dz = dy[base + j]
                    * if silu {
                        silu_and_derivative(z).1
                    } else {
                        E::one()
                    };
                dgamma[ch] += dz * xhat[j];
                dbeta[ch] += dz;
                dxhat[j] = dz * gamma[ch];
            }
            for i in 0..len {
                let mut acc = E::zero();
                for j in 0..len {
                    let delta = if i == j { E::one() } else { E::zero() };
                    acc += dxhat[j] * r * (delta - E::one() / l - xhat[i] * xhat[j] / l);
                }
                dx[base + i] = acc;
            }
        }
    }
}

/// Forward half of a fused linear layer: `out[r, j] = act(z[r, j] + bias[j])` for a row-major
/// `z` with `cols` columns; `bias` absent means zero.
pub fn linear_act_forward<E: Element>(
    z: &[E],
    cols: usize,
    bias: Option<&[E]>,
    act: super::Activation,
) -> Vec<E> {
    let mut out = Vec::with_capacity(z.len());
    for (i, &v) in z.iter().enumerate() {
        let s = match bias {
            Some(b) => v + b[i % cols],
            None => v,
        };
        out.push(match act {
            super::Activation::Identity => s,
            super::Activation::Silu => s / (E::one() + (-s).exp()),
        });
    }
    out
}

/// Backward half of a fused linear layer: `dz[r, j] = dy[r, j] act'(z[r, j])` with
/// `silu'(z) = σ(z)(1 + z(1 − σ(z)))`, and `db[j] = Σ_r dz[r, j]` (rows in order).
pub fn linear_act_backward<E: Element>(
    z: &[E],
    dy: &[E],
    cols: usize,
    act: super::Activation,
) -> (Vec<E>, Vec<E>) {
    assert_eq!(z.len(), dy.len());
    let mut dz = Vec::with_capacity(z.len());
    for (&v, &d) in z.iter().zip(dy) {
        dz.push(match act {
            super::Activation::Identity => d,
            super::Activation::Silu => {
                let s = E::one() / (E::one() + (-v).exp());
                d * (s * (E::one() + v * (E::one() - s)))
            }
        });
    }
    let mut db = vec![E::zero(); cols];
    for (i, &v) in dz.iter().enumerate() {
        db[i % cols] += v;
    }
    (dz, db)
}
