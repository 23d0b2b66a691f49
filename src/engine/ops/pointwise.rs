//! Pointwise ops: a table of unary functions with their derivatives, and broadcasting binary
//! arithmetic with its partial derivatives. Forward and backward rules sit side by side.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn, Zip};
use rayon::prelude::*;

use crate::engine::element::Element;
use crate::engine::graph::{Backward, Graph};
use crate::engine::kernels;
use crate::engine::kernels::reduce::slice_sum;
use crate::engine::par::{broadcast_shape, map, map2, reduce_to, update};
use crate::engine::tensor::Tensor;
use crate::error::Result;

/// A unary pointwise function.
#[derive(Clone, Copy, Debug)]
pub enum Unary<E> {
    /// `-x`
    Neg,
    /// `x + c`
    Shift(E),
    /// `c x`
    Scale(E),
    /// `e^x`
    Exp,
    /// `ln x`
    Log,
    /// `sqrt x`
    Sqrt,
    /// `x^p`
    Pow(E),
    /// `1 / (1 + e^{-x})`
    Sigmoid,
    /// `tanh x`
    Tanh,
    /// `x sigmoid(x)`
    Silu,
    /// `max(x, 0)`
    Relu,
}

fn sigmoid<E: Element>(x: E) -> E {
    // Evaluated so that exp never overflows: for x < 0 use e^x / (1 + e^x).
    if x >= E::zero() {
        E::one() / (E::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (E::one() + e)
    }
}

// ANCHOR: unary_table
impl<E: Element> Unary<E> {
    /// Forward: `y = f(x)`.
    pub fn f(self, x: E) -> E {
        match self {
            Unary::Neg => -x,
            Unary::Shift(c) => x + c,
            Unary::Scale(c) => c * x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Pow(p) => x.powf(p),
            Unary::Sigmoid => sigmoid(x),
            Unary::Tanh => x.tanh(),
            Unary::Silu => x * sigmoid(x),
            Unary::Relu => x.max(E::zero()),
        }
    }

    /// Backward: `f'(x)`, from the input `x` or the output `y` (whichever is cheaper).
    pub fn df(self, x: E, y: E) -> E {
        let one = E::one();
        match self {
            Unary::Neg => -one,
            Unary::Shift(_) => one,
            Unary::Scale(c) => c,
            Unary::Exp => y,
            Unary::Log => one / x,
            Unary::Sqrt => <E as Element>::from_f64(0.5) / y,
            Unary::Pow(p) => p * x.powf(p - one),
            Unary::Sigmoid => y * (one - y),
            Unary::Tanh => one - y * y,
            Unary::Silu => {
                let s = sigmoid(x);
                s * (one + x * (one - s))
            }
            Unary::Relu => {
                if x > E::zero() {
                    one
                } else {
                    E::zero()
                }
            }
        }
    }

    /// Which of `(x, y)` the derivative reads: only those are kept for backward.
    fn saves(self) -> (bool, bool) {
        match self {
            Unary::Neg | Unary::Shift(_) | Unary::Scale(_) => (false, false),
            Unary::Exp | Unary::Sqrt | Unary::Sigmoid | Unary::Tanh => (false, true),
            Unary::Log | Unary::Pow(_) | Unary::Silu | Unary::Relu => (true, false),
        }
    }
}

struct UnaryBack<E: Element> {
    op: Unary<E>,
    x: Option<Arc<ArrayD<E>>>,
    y: Option<Arc<ArrayD<E>>>,
}

impl<E: Element> Backward<E> for UnaryBack<E> {
    fn backward(self: Box<Self>, mut g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let op = self.op;
        match (&self.x, &self.y) {
            (Some(x), _) => update(&mut g, x, |g, x| g * op.df(x, E::zero())),
            (None, Some(y)) => update(&mut g, y, |g, y| g * op.df(E::zero(), y)),
            (None, None) => {
                let d = op.df(E::zero(), E::zero());
                g.mapv_inplace(|g| g * d)
            }
        }
        vec![Some(g)]
    }

    fn name(&self) -> &'static str {
        match self.op {
            Unary::Neg => "Neg",
            Unary::Shift(_) => "Shift",
            Unary::Scale(_) => "Scale",
            Unary::Exp => "Exp",
            Unary::Log => "Log",
            Unary::Sqrt => "Sqrt",
            Unary::Pow(_) => "Pow",
            Unary::Sigmoid => "Sigmoid",
            Unary::Tanh => "Tanh",
            Unary::Silu => "Silu",
            Unary::Relu => "Relu",
        }
    }
}
// ANCHOR_END: unary_table

/// Backward of [`Graph::silu`]: `dx = dy σ(x) (1 + x (1 - σ(x)))`.
struct SiluBack<E: Element> {
    x: Arc<ArrayD<E>>,
}

impl<E: Element> Backward<E> for SiluBack<E> {
    fn backward(self: Box<Self>, g: ArrayD<E>, _: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let mut dx = crate::engine::par::zeros(g.len());
        kernels::silu_backward(self.x.as_slice().unwrap(), g.as_slice().unwrap(), &mut dx);
        vec![Some(ArrayD::from_shape_vec(g.raw_dim(), dx).unwrap())]
    }

    fn name(&self) -> &'static str {
        "Silu"
    }
}

/// When `b` broadcasts against `a` as one contiguous block of axes — `b`'s shape, padded
/// with leading ones, is 1 on the first and last axes of `a` and equal to `a` on those in
/// between, as a bias `[C]` against `[N, C]` or a time embedding `[B, C, 1, 1]` against
/// `[B, C, H, W]` — returns `(outer, mid, inner)`: element `i` of `a` meets element
/// `(i / inner) % mid` of `b`.
fn block_broadcast(a: &[usize], b: &[usize]) -> Option<(usize, usize, usize)> {
    if b.len() > a.len() || a == b {
        return None;
    }
    let pad = a.len() - b.len();
    let bp: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(b.iter().copied())
        .collect();
    let first = bp.iter().position(|&d| d != 1).unwrap_or(a.len());
    let last = bp.iter().rposition(|&d| d != 1).map_or(first, |l| l + 1);
    if (first..last).any(|i| bp[i] != a[i]) {
        return None;
    }
    Some((
        a[..first].iter().product(),
        a[first..last].iter().product(),
        a[last..].iter().product(),
    ))
}

/// `y[i] = f(a[i], b[(i / inner) % mid])` for the layout of [`block_broadcast`].
fn map_block<E: Element>(
    a: &[E],
    b: &[E],
    mid: usize,
    inner: usize,
    f: impl Fn(E, E) -> E + Sync,
) -> Vec<E> {
    let mut y = crate::engine::par::zeros(a.len());
    let row = |(o, (yo, ao)): (usize, (&mut [E], &[E]))| {
        let bv = b[o % mid];
        for (v, &x) in yo.iter_mut().zip(ao) {
            *v = f(x, bv);
        }
    };
    if inner == 0 {
        return y;
    }
    if a.len() >= crate::engine::par::PAR_MIN {
        y.par_chunks_mut(inner)
            .zip(a.par_chunks(inner))
            .enumerate()
            .for_each(row);
    } else {
        y.chunks_mut(inner)
            .zip(a.chunks(inner))
            .enumerate()
            .for_each(row);
    }
    y
}

/// `db[k] = Σ_o Σ_j g[(o·mid + k)·inner + j]`, the gradient of the broadcast operand of
/// [`block_broadcast`]: for each `k`, blocks in order of `o`, each run summed with
/// [`slice_sum`] — a fixed order, whatever the thread count.
fn reduce_block<E: Element>(g: &[E], outer: usize, mid: usize, inner: usize) -> Vec<E> {
    let mut db = crate::engine::par::zeros(mid);
    if inner == 0 {
        return db;
    }
    if outer == 1 && g.len() >= crate::engine::par::PAR_MIN {
        db.par_iter_mut()
            .zip(g.par_chunks(inner))
            .for_each(|(d, run)| *d = slice_sum(run));
    } else {
        for blk in g.chunks(mid * inner) {
            for (d, run) in db.iter_mut().zip(blk.chunks(inner)) {
                *d += slice_sum(run);
            }
        }
    }
    db
}

/// A binary pointwise function (with NumPy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a b`
    Mul,
    /// `a / b`
    Div,
}

impl Binary {
    fn f<E: Element>(self, a: E, b: E) -> E {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
        }
    }
    /// `(df/da, df/db)`.
    fn df<E: Element>(self, a: E, b: E) -> (E, E) {
        match self {
            Binary::Add => (E::one(), E::one()),
            Binary::Sub => (E::one(), -E::one()),
            Binary::Mul => (b, a),
            Binary::Div => (E::one() / b, -a / (b * b)),
        }
    }
}

/// Backward of a binary op. Addition and subtraction keep only the operand shapes (their
/// partial derivatives are constants), so they do not keep their operands alive.
struct BinaryBack<E: Element> {
    op: Binary,
    shapes: [Vec<usize>; 2],
    values: Option<[Arc<ArrayD<E>>; 2]>,
}

impl<E: Element> Backward<E> for BinaryBack<E> {
    fn backward(self: Box<Self>, g: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>> {
        let [sa, sb] = self.shapes;
        let op = self.op;
        if let (None, Some((outer, mid, inner))) = (&self.values, block_broadcast(&sa, &sb)) {
            // Addition or subtraction of a block-broadcast operand.
            let gb = needs[1].then(|| {
                let mut db = reduce_block(g.as_slice().unwrap(), outer, mid, inner);
                if op == Binary::Sub {
                    db.iter_mut().for_each(|v| *v = -*v);
                }
                ArrayD::from_shape_vec(IxDyn(&sb), db).unwrap()
            });
            return vec![needs[0].then_some(g), gb];
        }
        let Some([a, b]) = self.values else {
            let gb = needs[1].then(|| {
                let gb = reduce_to(g.clone(), &sb);
                if op == Binary::Sub {
                    gb.mapv(|v| -v)
                } else {
                    gb
                }
            });
            let ga = needs[0].then(|| reduce_to(g, &sa));
            return vec![ga, gb];
        };
        let full = IxDyn(g.shape());
        let av = a.broadcast(full.clone()).expect("broadcast in forward");
        let bv = b.broadcast(full).expect("broadcast in forward");
        let ga = needs[0].then(|| {
            let d = Zip::from(&g)
                .and(&av)
                .and(&bv)
                .map_collect(|&g, &a, &b| g * op.df(a, b).0);
            reduce_to(d, &sa)
        });
        let gb = needs[1].then(|| {
            let d = Zip::from(&g)
                .and(&av)
                .and(&bv)
                .map_collect(|&g, &a, &b| g * op.df(a, b).1);
            reduce_to(d, &sb)
        });
        vec![ga, gb]
    }

    fn name(&self) -> &'static str {
        match self.op {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
        }
    }
}

impl<E: Element> Graph<E> {
    /// Applies a unary pointwise function.
    pub fn unary(&mut self, x: &Tensor<E>, op: Unary<E>) -> Tensor<E> {
        let y = map(&x.value, |v| op.f(v));
        if !x.requires_grad() {
            return Tensor::constant(y);
        }
        let (sx, sy) = op.saves();
        let y = Arc::new(y);
        let rule = UnaryBack {
            op,
            x: sx.then(|| Arc::clone(&x.value)),
            y: sy.then(|| Arc::clone(&y)),
        };
        self.record_shared(y, &[x], Box::new(rule))
    }

    /// Applies a broadcasting binary pointwise function.
    pub fn binary(&mut self, a: &Tensor<E>, b: &Tensor<E>, op: Binary) -> Result<Tensor<E>> {
        let y = if a.shape() == b.shape() {
            map2(&a.value, &b.value, |x, y| op.f(x, y))
        } else if let Some((_, mid, inner)) = block_broadcast(a.shape(), b.shape()) {
            let y = map_block(a.as_slice(), b.as_slice(), mid, inner, |x, y| op.f(x, y));
            ArrayD::from_shape_vec(a.value.raw_dim(), y).expect("same length")
        } else {
            let shape = IxDyn(&broadcast_shape(a.shape(), b.shape())?);
            let av = a.value.broadcast(shape.clone()).expect("checked");
            let bv = b.value.broadcast(shape).expect("checked");
            Zip::from(&av).and(&bv).map_collect(|&x, &y| op.f(x, y))
        };
        let rule = BinaryBack {
            op,
            shapes: [a.shape().to_vec(), b.shape().to_vec()],
            values: matches!(op, Binary::Mul | Binary::Div)
                .then(|| [Arc::clone(&a.value), Arc::clone(&b.value)]),
        };
        Ok(self.record(y, &[a, b], Box::new(rule)))
    }

    /// `a + b` (broadcasting).
    pub fn add(&mut self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        self.binary(a, b, Binary::Add)
    }
    /// `a - b` (broadcasting).
    pub fn sub(&mut self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        self.binary(a, b, Binary::Sub)
    }
    /// `a * b` elementwise (broadcasting).
    pub fn mul(&mut self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        self.binary(a, b, Binary::Mul)
    }
    /// `a / b` elementwise (broadcasting).
    pub fn div(&mut self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        self.binary(a, b, Binary::Div)
    }
    /// `-x`.
    pub fn neg(&mut self, x: &Tensor<E>) -> Tensor<E> {
        self.unary(x, Unary::Neg)
    }
    /// `x + c`.
    pub fn add_scalar(&mut self, x: &Tensor<E>, c: f64) -> Tensor<E> {
        self.unary(x, Unary::Shift(<E as Element>::from_f64(c)))
    }
    /// `c x`.
    pub fn mul_scalar(&mut self, x: &Tensor<E>, c: f64) -> Tensor<E> {
        self.unary(x, Unary::Scale(<E as Element>::from_f64(c)))
    }
    /// `e^x`.
    pub fn exp(&mut self, x: &Tensor<E>) -> Tensor<E> {
        self.unary(x, Unary::Exp)
    }
    /// `ln x`.
    pub fn log(&mut self, x: &Tensor<E>) -> Tensor<E> {
        self.unary(x, Unary::Log)
    }
    /// `sqrt x`.
    pub fn sqrt(&mut self, x: &Tensor<E>) -> Tensor<E> {
        self.unary(x, Unary::Sqrt)
    }
    /// `x^p` for a scalar exponent.
    pub fn powf(&mut self, x: &Tensor<E>, p: f64) -> Tensor<E> {
        self.unary(x, Unary::Pow(<E as Element>::from_f64(p)))
    }
    /// `sigmoid x`.
    pub fn sigmoid(&mut self, x: &Tensor<E>) -> Tensor<E> {
        self.unary(x, Unary::Sigmoid)
    }
    /// `tanh x`.
    pub fn tanh(&mut self, x: &Tensor<E>) -> Tensor<E> {
        self.unary(x, Unary::Tanh)
    }
    /// `silu x = x sigmoid(x)`, on the vectorised kernels of
    /// [`crate::engine::kernels::activation`] (the same function as [`Unary::Silu`], with the
    /// branch-free `exp`).
    pub fn silu(&mut self, x: &Tensor<E>) -> Tensor<E> {
        let mut y = crate::engine::par::zeros(x.len());
        kernels::silu_forward(x.as_slice(), &mut y);
        let y = ArrayD::from_shape_vec(x.value.raw_dim(), y).expect("same length");
        if !x.requires_grad() {
            return Tensor::constant(y);
        }
        let rule = SiluBack {
            x: Arc::clone(&x.value),
        };
        self.record(y, &[x], Box::new(rule))
    }
    /// `relu x = max(x, 0)`.
    pub fn relu(&mut self, x: &Tensor<E>) -> Tensor<E> {
        self.unary(x, Unary::Relu)
    }
}
