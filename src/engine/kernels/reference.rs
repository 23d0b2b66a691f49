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
    let (ho, wo) = (g.h_out(), g.w_out());
    for n in 0..g.n {
        for o in 0..g.c_out {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = bias.map_or(E::zero(), |b| b[o]);
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
