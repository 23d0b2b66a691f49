//! The tape and reverse-mode differentiation.
//!
//! A [`Graph`] records, for every op whose inputs need gradients, a `Backward` rule holding
//! exactly the values that rule needs (shared, not copied). Values themselves live in the
//! [`Tensor`] handles, so an intermediate no rule saved is freed as soon as its handles drop.
//! [`Graph::backward`] walks the tape in reverse, dropping each rule and each intermediate
//! gradient as soon as it has been used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};

use super::element::Element;
use super::tensor::{ParamId, ParamStore, Tensor};
use crate::error::{Error, Result};

/// The backward rule of one recorded op: maps the gradient of the op's output to gradients of
/// its inputs (`None` where `needs[i]` is false or the input gets no gradient).
pub(crate) trait Backward<E: Element>: Send {
    fn backward(self: Box<Self>, grad: ArrayD<E>, needs: &[bool]) -> Vec<Option<ArrayD<E>>>;

    /// The op's name in profiles: the rule's type name without path or generics.
    fn name(&self) -> &'static str {
        super::profile::short_name(std::any::type_name::<Self>())
    }
}

struct Record<E: Element> {
    out: usize,
    inputs: Vec<Option<usize>>,
    rule: Box<dyn Backward<E>>,
}

/// A tape of differentiable ops. Build one per forward pass, then call [`Graph::backward`].
pub struct Graph<E: Element> {
    records: Vec<Record<E>>,
    n_nodes: usize,
    params: HashMap<ParamId, Tensor<E>>,
    param_of_node: HashMap<usize, ParamId>,
    grad_enabled: bool,
    training: bool,
    /// When profiling: the time the previous op was recorded (see [`super::profile`]).
    clock: Option<Instant>,
}

impl<E: Element> Default for Graph<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Element> Graph<E> {
    /// A recording graph in training mode (dropout active).
    pub fn new() -> Self {
        Graph {
            records: Vec::new(),
            n_nodes: 0,
            params: HashMap::new(),
            param_of_node: HashMap::new(),
            grad_enabled: true,
            training: true,
            clock: super::profile::enabled().then(Instant::now),
        }
    }

    /// A graph that records nothing and runs in evaluation mode (dropout is the identity):
    /// for sampling. Parameters enter as constants; memory is only what the live handles hold.
    pub fn inference() -> Self {
        Graph {
            grad_enabled: false,
            training: false,
            ..Self::new()
        }
    }

    /// Switches dropout on (training) or off (evaluation).
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// True in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Number of recorded ops.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn new_node(&mut self) -> usize {
        self.n_nodes += 1;
        self.n_nodes - 1
    }

    /// A parameter as a leaf of this graph (shares the store's data). Asking twice for the
    /// same id returns the same leaf, so its gradient accumulates.
    pub fn param(&mut self, store: &ParamStore<E>, id: ParamId) -> Tensor<E> {
        if let Some(t) = self.params.get(&id) {
            return t.clone();
        }
        let node = self.grad_enabled.then(|| self.new_node());
        let t = Tensor {
            value: store.shared(id),
            node,
        };
        if let Some(n) = node {
            self.param_of_node.insert(n, id);
        }
        self.params.insert(id, t.clone());
        t
    }

    /// A leaf that is not a parameter but whose gradient is wanted (read it with
    /// [`Grads::wrt`]).
    pub fn leaf(&mut self, value: ArrayD<E>) -> Tensor<E> {
        let mut t = Tensor::constant(value);
        if self.grad_enabled {
            t.node = Some(self.new_node());
        }
        t
    }

    /// Records an op's output with its backward rule, or returns a constant when no input
    /// needs a gradient.
    pub(crate) fn record(
        &mut self,
        value: ArrayD<E>,
        inputs: &[&Tensor<E>],
        rule: Box<dyn Backward<E>>,
    ) -> Tensor<E> {
        self.record_shared(Arc::new(super::tensor::standard(value)), inputs, rule)
    }

    /// [`Graph::record`] for a value already shared (and in standard layout), e.g. one that
    /// the backward rule also saved.
    pub(crate) fn record_shared(
        &mut self,
        value: Arc<ArrayD<E>>,
        inputs: &[&Tensor<E>],
        rule: Box<dyn Backward<E>>,
    ) -> Tensor<E> {
        debug_assert!(value.is_standard_layout());
        if let Some(t0) = self.clock {
            super::profile::add(rule.name(), t0.elapsed().as_secs_f64());
            self.clock = Some(Instant::now());
        }
        let node = if !self.grad_enabled || inputs.iter().all(|t| t.node.is_none()) {
            None
        } else {
            let out = self.new_node();
            self.records.push(Record {
                out,
                inputs: inputs.iter().map(|t| t.node).collect(),
                rule,
            });
            Some(out)
        };
        Tensor { value, node }
    }

    /// Reverse-mode differentiation of a scalar (one-element) `loss`. Consumes the graph.
    pub fn backward(self, loss: &Tensor<E>) -> Result<Grads<E>> {
        if loss.len() != 1 {
            return Err(Error::Shape(format!(
                "backward needs a one-element loss, got shape {:?}",
                loss.shape()
            )));
        }
        let seed = ArrayD::from_elem(loss.value.raw_dim(), E::one());
        self.backward_with(loss, seed)
    }

    // ANCHOR: backward
    /// Reverse-mode differentiation with an explicit output gradient (a vector-Jacobian
    /// product `seed^T J`). Consumes the graph.
    pub fn backward_with(self, output: &Tensor<E>, seed: ArrayD<E>) -> Result<Grads<E>> {
        if seed.shape() != output.shape() {
            return Err(Error::Shape(format!(
                "seed gradient {:?} does not match output {:?}",
                seed.shape(),
                output.shape()
            )));
        }
        let mut grads: Vec<Option<ArrayD<E>>> = (0..self.n_nodes).map(|_| None).collect();
        if let Some(n) = output.node {
            // Rules read gradients as row-major slices.
            grads[n] = Some(super::tensor::standard(seed));
        }
        // Which nodes lead to something that needs a gradient: only leaves are wanted, and
        // every recorded node depends on some leaf, so every node with a node id does.
        for rec in self.records.into_iter().rev() {
            // Taking the gradient frees it once the rule has consumed it; dropping `rec` at the
            // end of the iteration frees the values the rule saved.
            let Some(g) = grads[rec.out].take() else {
                continue;
            };
            let needs: Vec<bool> = rec.inputs.iter().map(|i| i.is_some()).collect();
            let t0 = self.clock.map(|_| (Instant::now(), rec.rule.name()));
            let gins = rec.rule.backward(g, &needs);
            for (inp, gi) in rec.inputs.iter().zip(gins) {
                if let (Some(i), Some(gi)) = (inp, gi) {
                    accumulate(&mut grads[*i], gi);
                }
            }
            if let Some((t0, name)) = t0 {
                let secs = t0.elapsed().as_secs_f64();
                super::profile::add(&format!("{name} (backward)"), secs);
            }
        }
        let mut params = HashMap::new();
        for (node, id) in &self.param_of_node {
            if let Some(g) = grads[*node].take() {
                params.insert(*id, g);
            }
        }
        let leaves = grads
            .into_iter()
            .enumerate()
            .filter_map(|(i, g)| g.map(|g| (i, g)))
            .collect();
        Ok(Grads { params, leaves })
    }
    // ANCHOR_END: backward
}

fn accumulate<E: Element>(slot: &mut Option<ArrayD<E>>, g: ArrayD<E>) {
    match slot {
        None => *slot = Some(g),
        Some(acc) => {
            debug_assert_eq!(acc.shape(), g.shape());
            *acc += &g;
        }
    }
}

/// Gradients from [`Graph::backward`], keyed by parameter (and by leaf).
#[derive(Debug)]
pub struct Grads<E: Element> {
    params: HashMap<ParamId, ArrayD<E>>,
    leaves: HashMap<usize, ArrayD<E>>,
}

impl<E: Element> Grads<E> {
    /// The gradient of a parameter, if the loss depends on it.
    pub fn param(&self, id: ParamId) -> Option<&ArrayD<E>> {
        self.params.get(&id)
    }

    /// Removes and returns a parameter's gradient.
    pub fn take_param(&mut self, id: ParamId) -> Option<ArrayD<E>> {
        self.params.remove(&id)
    }

    /// The gradient of a leaf made with [`Graph::leaf`].
    pub fn wrt(&self, t: &Tensor<E>) -> Option<&ArrayD<E>> {
        t.node.and_then(|n| self.leaves.get(&n))
    }

    /// `(id, gradient)` of every parameter that received one, in id order.
    pub fn params(&self) -> Vec<(ParamId, &ArrayD<E>)> {
        let mut v: Vec<_> = self.params.iter().map(|(k, g)| (*k, g)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// The gradient of a parameter, or zeros of its shape when the loss does not depend on it.
    pub fn param_or_zeros(&self, store: &ParamStore<E>, id: ParamId) -> ArrayD<E> {
        self.params
            .get(&id)
            .cloned()
            .unwrap_or_else(|| ArrayD::zeros(IxDyn(store.get(id).shape())))
    }
}
