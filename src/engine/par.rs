//! Parallel helpers. Work is split into fixed-size chunks of independent outputs, so results
//! never depend on the number of threads: no reduction is ever split across threads.

use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use super::element::Element;
use crate::error::{Error, Result};

/// Below this many elements, loops stay on one thread.
pub(crate) const PAR_MIN: usize = 1 << 15;
/// Chunk length of parallel pointwise loops.
pub(crate) const CHUNK: usize = 1 << 12;

/// `f` applied to every element of a standard-layout array.
/// `vec![E::zero(); len]`, with the zeros written by the rayon pool when `len` is large.
/// Output buffers of the big ops are allocated this way: the allocator hands back recycled
/// memory (see `engine::alloc`), which `vec!` would clear on the calling thread alone,
/// a serial section of about a millisecond per 12 MB buffer.
pub(crate) fn zeros<E: Element>(len: usize) -> Vec<E> {
    if len < PAR_MIN {
        return vec![E::zero(); len];
    }
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()
        .par_chunks_mut(CHUNK * 4)
        .for_each(|c| c.fill(std::mem::MaybeUninit::new(E::zero())));
    // SAFETY: the first `len` elements were all initialised just above.
    unsafe { v.set_len(len) };
    v
}

/// A new vector of `len` elements, every one of which `write` must write (the kernels'
/// `*_uninit` entry points do): output buffers with no zero fill first.
pub(crate) fn written<E>(
    len: usize,
    write: impl FnOnce(&mut [std::mem::MaybeUninit<E>]),
) -> Vec<E> {
    let mut v: Vec<E> = Vec::with_capacity(len);
    write(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `write` wrote all `len` slots (the contract above).
    unsafe { v.set_len(len) };
    v
}

/// Copies `src` into `dst` (same length), initialising it.
pub(crate) fn write_slice<E: Copy>(dst: &mut [std::mem::MaybeUninit<E>], src: &[E]) {
    assert_eq!(dst.len(), src.len(), "write_slice: lengths");
    // SAFETY: both slices hold `src.len()` elements of the same layout and cannot overlap
    // (one is borrowed mutably).
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<E>(), src.len()) };
}

/// A new vector of `len` elements written chunk by chunk by `fill(start, chunk)`, which must
/// write every slot of the chunk of elements `start .. start + chunk.len()`; chunks run on
/// the rayon pool (large `len`) or on this thread. No zero fill first.
fn from_chunks<E: Element>(
    len: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<E>]) + Sync,
) -> Vec<E> {
    let mut out: Vec<E> = Vec::with_capacity(len);
    let slots = &mut out.spare_capacity_mut()[..len];
    if len >= PAR_MIN {
        slots
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, o)| fill(k * CHUNK, o));
    } else {
        fill(0, slots);
    }
    // SAFETY: `fill` wrote every one of the `len` slots (the callers below write each slot of
    // their chunk exactly once, zipping it with input slices of the same length).
    unsafe { out.set_len(len) };
    out
}

pub(crate) fn map<E: Element>(x: &ArrayD<E>, f: impl Fn(E) -> E + Sync) -> ArrayD<E> {
    let xs = x.as_slice().expect("standard layout");
    let out = from_chunks(xs.len(), |at, o| {
        let n = o.len();
        for (o, x) in o.iter_mut().zip(&xs[at..at + n]) {
            o.write(f(*x));
        }
    });
    ArrayD::from_shape_vec(x.raw_dim(), out).expect("same length")
}

/// `f` applied pointwise to two standard-layout arrays of the same shape.
pub(crate) fn map2<E: Element>(
    a: &ArrayD<E>,
    b: &ArrayD<E>,
    f: impl Fn(E, E) -> E + Sync,
) -> ArrayD<E> {
    let (xs, ys) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
    );
    assert_eq!(xs.len(), ys.len(), "map2: lengths");
    let out = from_chunks(xs.len(), |at, o| {
        let n = o.len();
        for ((o, x), y) in o.iter_mut().zip(&xs[at..at + n]).zip(&ys[at..at + n]) {
            o.write(f(*x, *y));
        }
    });
    ArrayD::from_shape_vec(a.raw_dim(), out).expect("same length")
}

/// `g[i] <- f(g[i], x[i])` in place, for a gradient `g` and a saved array `x` of one shape.
pub(crate) fn update<E: Element>(g: &mut ArrayD<E>, x: &ArrayD<E>, f: impl Fn(E, E) -> E + Sync) {
    debug_assert_eq!(g.shape(), x.shape());
    let xs = x.as_slice().expect("standard layout");
    let gs = g.as_slice_mut().expect("standard layout");
    if gs.len() >= PAR_MIN {
        gs.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(g, x)| g.iter_mut().zip(x).for_each(|(g, x)| *g = f(*g, *x)));
    } else {
        gs.iter_mut().zip(xs).for_each(|(g, x)| *g = f(*g, *x));
    }
}

/// The NumPy broadcast shape of `a` and `b`.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::Shape(format!(
                    "shapes {a:?} and {b:?} do not broadcast"
                )))
            }
        };
    }
    Ok(out)
}

/// Sums a broadcast gradient back to the shape of the operand it came from.
pub(crate) fn reduce_to<E: Element>(g: ArrayD<E>, shape: &[usize]) -> ArrayD<E> {
    if g.shape() == shape {
        return g;
    }
    let mut g = g;
    while g.ndim() > shape.len() {
        g = g.sum_axis(Axis(0));
    }
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && g.shape()[i] != 1 {
            g = g.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    super::tensor::standard(g.into_shape_with_order(IxDyn(shape)).expect("same size"))
}
