//! Tensors (immutable values with an optional place on a tape) and the parameter store.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use super::element::Element;
use crate::error::{Error, Result};

/// An engine tensor: a shared, immutable, contiguous row-major array and, when it takes part in
/// differentiation, the id of its node on a [`crate::engine::Graph`]'s tape.
///
/// Cloning is cheap (the data is shared through an [`Arc`]). The value lives as long as some
/// handle or some backward rule that saved it is alive, so dropping handles frees memory.
#[derive(Clone, Debug)]
pub struct Tensor<E: Element> {
    pub(crate) value: Arc<ArrayD<E>>,
    pub(crate) node: Option<usize>,
}

/// Converts to standard (C-contiguous) layout, copying only when needed.
pub(crate) fn standard<E: Element>(a: ArrayD<E>) -> ArrayD<E> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

impl<E: Element> Tensor<E> {
    /// A constant (no gradient flows into it).
    pub fn constant(a: ArrayD<E>) -> Self {
        Tensor {
            value: Arc::new(standard(a)),
            node: None,
        }
    }

    /// A constant from a shape and row-major data.
    pub fn from_vec(shape: &[usize], data: Vec<E>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape(format!(
                "shape {shape:?} needs {n} elements, got {}",
                data.len()
            )));
        }
        Ok(Self::constant(
            ArrayD::from_shape_vec(IxDyn(shape), data).expect("length checked"),
        ))
    }

    /// A 0-dimensional constant.
    pub fn scalar(x: E) -> Self {
        Self::constant(ArrayD::from_elem(IxDyn(&[]), x))
    }

    /// A constant of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::constant(ArrayD::zeros(IxDyn(shape)))
    }

    /// The value.
    pub fn value(&self) -> &ArrayD<E> {
        &self.value
    }

    /// The value as a row-major slice.
    pub fn as_slice(&self) -> &[E] {
        self.value
            .as_slice()
            .expect("tensor values are kept in standard layout")
    }

    /// A copy of the value.
    pub fn to_array(&self) -> ArrayD<E> {
        (*self.value).clone()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.value.ndim()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The first element (the value of a scalar).
    pub fn item(&self) -> E {
        self.as_slice()[0]
    }

    /// True when gradients flow into this tensor.
    pub fn requires_grad(&self) -> bool {
        self.node.is_some()
    }

    /// The same value, cut off from the tape.
    pub fn detach(&self) -> Self {
        Tensor {
            value: Arc::clone(&self.value),
            node: None,
        }
    }
}

/// The handle of a parameter in a [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

/// Named parameters, kept outside any graph. A graph borrows them as leaves (sharing the
/// data, no copy); [`crate::engine::Grads`] returns their gradients keyed by [`ParamId`].
#[derive(Clone, Debug, Default)]
pub struct ParamStore<E: Element> {
    names: Vec<String>,
    values: Vec<Arc<ArrayD<E>>>,
    index: HashMap<String, ParamId>,
}

impl<E: Element> ParamStore<E> {
    /// An empty store.
    pub fn new() -> Self {
        ParamStore {
            names: Vec::new(),
            values: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds a parameter; names must be unique.
    pub fn add(&mut self, name: impl Into<String>, value: ArrayD<E>) -> Result<ParamId> {
        let name = name.into();
        if self.index.contains_key(&name) {
            return Err(Error::param("name", format!("parameter `{name}` exists")));
        }
        let id = ParamId(self.values.len());
        self.index.insert(name.clone(), id);
        self.names.push(name);
        self.values.push(Arc::new(standard(value)));
        Ok(id)
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.values.iter().map(|v| v.len()).sum()
    }

    /// The id of a named parameter.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.index.get(name).copied()
    }

    /// All ids, in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.values.len()).map(ParamId)
    }

    /// The name of a parameter.
    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    /// The value of a parameter.
    pub fn get(&self, id: ParamId) -> &ArrayD<E> {
        &self.values[id.0]
    }

    /// Mutable access for optimisers (copies only if a live graph still shares the value).
    pub fn get_mut(&mut self, id: ParamId) -> &mut ArrayD<E> {
        Arc::make_mut(&mut self.values[id.0])
    }

    /// Replaces a parameter's value; the shape must not change.
    pub fn set(&mut self, id: ParamId, value: ArrayD<E>) -> Result<()> {
        if value.shape() != self.values[id.0].shape() {
            return Err(Error::Shape(format!(
                "parameter `{}` has shape {:?}, got {:?}",
                self.names[id.0],
                self.values[id.0].shape(),
                value.shape()
            )));
        }
        self.values[id.0] = Arc::new(standard(value));
        Ok(())
    }

    /// `(id, name, value)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &str, &ArrayD<E>)> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (ParamId(i), self.names[i].as_str(), &**v))
    }

    /// Mutable access to every parameter whose id `pick` accepts, in id order (copying only
    /// those a live graph still shares).
    pub(crate) fn values_mut_where(
        &mut self,
        pick: impl Fn(ParamId) -> bool,
    ) -> impl Iterator<Item = (ParamId, &mut ArrayD<E>)> {
        self.values
            .iter_mut()
            .enumerate()
            .filter(move |(i, _)| pick(ParamId(*i)))
            .map(|(i, v)| (ParamId(i), Arc::make_mut(v)))
    }

    pub(crate) fn shared(&self, id: ParamId) -> Arc<ArrayD<E>> {
        Arc::clone(&self.values[id.0])
    }
}
