//! The DDPM forward chain, its marginals and posteriors, the eps-parameterised reverse mean and
//! the terms of the variational bound (ledger A1.1-A1.12, D3-D4; 000 eqs. 1.1-1.12, 003 eqs. 3-4).
//!
//! Batches are rows: `x` has shape `n × d`. Every Gaussian here is isotropic, so a distribution
//! over a batch is a mean array and one variance ([`IsoGaussian`]).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Zip};

use crate::error::{Error, Result};
use crate::rng::NoiseSource;
use crate::schedule::beta::BetaSchedule;

/// An isotropic Gaussian per row: row `i` is `N(mean[i], var I)`.
#[derive(Clone, Debug, PartialEq)]
pub struct IsoGaussian {
    /// Means, one row per point.
    pub mean: Array2<f64>,
    /// The common variance of every coordinate.
    pub var: f64,
}

/// A one-dimensional linear-Gaussian conditional `y | x ~ N(scale * x + shift, var)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineGaussian {
    /// Coefficient of the conditioning variable.
    pub scale: f64,
    /// Constant offset.
    pub shift: f64,
    /// Conditional variance.
    pub var: f64,
}

/// A reverse model with linear means: `p_theta(x_{t-1} | x_t) = N(scale_t x_t + shift_t, var_t I)`,
/// entries indexed by `t - 1`. Used to evaluate the variational bound in closed form.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearReverse {
    /// `scale_t`, `t = 1..=T`.
    pub scale: Vec<f64>,
    /// `shift_t` (length `d` each), `t = 1..=T`.
    pub shift: Vec<Array1<f64>>,
    /// `var_t > 0`, `t = 1..=T`.
    pub var: Vec<f64>,
}

/// The terms of the decomposed bound (ledger A1.6): `L = L_T + sum_{t>1} L_{t-1} + L_0`.
#[derive(Clone, Debug, PartialEq)]
pub struct ElboTerms {
    /// `L_T = E KL(q(x_T|x_0) || N(0, I))`.
    pub prior: f64,
    /// `L_{t-1} = E KL(q(x_{t-1}|x_t,x_0) || p_theta(x_{t-1}|x_t))` for `t = 2..=T` (index `t - 2`).
    pub kl: Vec<f64>,
    /// `L_0 = E[-ln p_theta(x_0|x_1)]` (continuous Gaussian decoder).
    pub decoder: f64,
}

impl ElboTerms {
    /// `L_T + sum L_{t-1} + L_0`.
    pub fn total(&self) -> f64 {
        self.prior + self.kl.iter().sum::<f64>() + self.decoder
    }
}

/// The DDPM forward chain over a beta schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Ddpm {
    schedule: BetaSchedule,
}

fn same_shape(a: &ArrayView2<f64>, b: &ArrayView2<f64>, what: &str) -> Result<()> {
    if a.dim() == b.dim() {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{what}: {:?} vs {:?}",
            a.dim(),
            b.dim()
        )))
    }
}

fn positive(name: &'static str, x: f64) -> Result<f64> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(Error::param(name, format!("{x} must be finite and > 0")))
    }
}

/// `a * x + b * y`, elementwise.
fn lincomb(a: f64, x: &ArrayView2<f64>, b: f64, y: &ArrayView2<f64>) -> Array2<f64> {
    Zip::from(x).and(y).map_collect(|&x, &y| a * x + b * y)
}

impl Ddpm {
    /// The chain over `schedule`.
    pub fn new(schedule: BetaSchedule) -> Self {
        Self { schedule }
    }

    /// The schedule.
    pub fn schedule(&self) -> &BetaSchedule {
        &self.schedule
    }

    // ANCHOR: kernel
    /// One-step kernel `q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)` (ledger A1.3).
    pub fn kernel(&self, x_prev: ArrayView2<f64>, t: usize) -> Result<IsoGaussian> {
        let beta = self.schedule.beta(t)?;
        Ok(IsoGaussian {
            mean: x_prev.mapv(|x| (1.0 - beta).sqrt() * x),
            var: beta,
        })
    }
    // ANCHOR_END: kernel

    /// One draw from the kernel: `x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z`.
    pub fn forward_step(
        &self,
        x_prev: ArrayView2<f64>,
        t: usize,
        noise: &mut impl NoiseSource,
    ) -> Result<Array2<f64>> {
        let q = self.kernel(x_prev, t)?;
        let mut z = Array2::zeros(x_prev.dim());
        noise.fill_normal(z.as_slice_mut().expect("fresh arrays are contiguous"));
        Ok(q.mean + z * q.var.sqrt())
    }

    // ANCHOR: marginal
    /// Marginal `q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)` (ledger A1.5),
    /// `t = 0..=T`.
    pub fn marginal(&self, x0: ArrayView2<f64>, t: usize) -> Result<IsoGaussian> {
        let s = self.schedule.sqrt_alpha_bar(t)?;
        Ok(IsoGaussian {
            mean: x0.mapv(|x| s * x),
            var: self.schedule.one_minus_alpha_bar(t)?,
        })
    }

    /// `x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps` for given noise `eps`.
    pub fn marginal_sample(
        &self,
        x0: ArrayView2<f64>,
        t: usize,
        eps: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        same_shape(&x0, &eps, "x0 and eps")?;
        let s = self.schedule.sqrt_alpha_bar(t)?;
        let sd = self.schedule.sqrt_one_minus_alpha_bar(t)?;
        Ok(lincomb(s, &x0, sd, &eps))
    }
    // ANCHOR_END: marginal

    /// `ln q(x_t | x_0)` for each row, `t = 1..=T`.
    pub fn marginal_log_density(
        &self,
        x0: ArrayView2<f64>,
        xt: ArrayView2<f64>,
        t: usize,
    ) -> Result<Array1<f64>> {
        same_shape(&x0, &xt, "x0 and x_t")?;
        if t == 0 {
            return Err(Error::param(
                "t",
                "q(x_0 | x_0) is a point mass; use t >= 1",
            ));
        }
        let q = self.marginal(x0, t)?;
        let d = x0.ncols() as f64;
        let ln_norm = -0.5 * d * (2.0 * std::f64::consts::PI * q.var).ln();
        Ok(Zip::from(q.mean.rows()).and(xt.rows()).map_collect(|m, x| {
            let r2: f64 = m.iter().zip(x).map(|(m, x)| (x - m) * (x - m)).sum();
            ln_norm - 0.5 * r2 / q.var
        }))
    }

    // ANCHOR: marginal_score
    /// The kernel's score `grad_{x_t} ln q(x_t | x_0) = -(x_t - sqrt(alpha_bar_t) x_0) / (1 - alpha_bar_t)`,
    /// which equals `-eps / sqrt(1 - alpha_bar_t)` for `x_t` built from `eps`, `t = 1..=T`.
    pub fn marginal_score(
        &self,
        x0: ArrayView2<f64>,
        xt: ArrayView2<f64>,
        t: usize,
    ) -> Result<Array2<f64>> {
        same_shape(&x0, &xt, "x0 and x_t")?;
        if t == 0 {
            return Err(Error::param("t", "q(x_0 | x_0) has no score; use t >= 1"));
        }
        let s = self.schedule.sqrt_alpha_bar(t)?;
        let v = self.schedule.one_minus_alpha_bar(t)?;
        Ok(lincomb(-1.0 / v, &xt, s / v, &x0))
    }
    // ANCHOR_END: marginal_score

    // ANCHOR: posterior
    /// Posterior `q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)` with
    /// `mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t/(1-alpha_bar_t) x_0 + sqrt(alpha_t)(1-alpha_bar_{t-1})/(1-alpha_bar_t) x_t`
    /// (ledger A1.7), `t = 1..=T`.
    pub fn posterior(
        &self,
        x0: ArrayView2<f64>,
        xt: ArrayView2<f64>,
        t: usize,
    ) -> Result<IsoGaussian> {
        same_shape(&x0, &xt, "x0 and x_t")?;
        let c0 = self.schedule.posterior_mean_coef_x0(t)?;
        let ct = self.schedule.posterior_mean_coef_xt(t)?;
        Ok(IsoGaussian {
            mean: lincomb(c0, &x0, ct, &xt),
            var: self.schedule.posterior_variance(t)?,
        })
    }
    // ANCHOR_END: posterior

    // ANCHOR: eps_mean
    /// `x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`: the inverse of the
    /// reparameterisation (ledger A1.9).
    pub fn x0_from_eps(
        &self,
        xt: ArrayView2<f64>,
        eps: ArrayView2<f64>,
        t: usize,
    ) -> Result<Array2<f64>> {
        same_shape(&xt, &eps, "x_t and eps")?;
        let r = self.schedule.sqrt_recip_alpha_bar(t)?;
        let rm1 = self.schedule.sqrt_recip_alpha_bar_minus_one(t)?;
        Ok(lincomb(r, &xt, -rm1, &eps))
    }

    /// The eps-form of the reverse mean (ledger A1.10):
    /// `mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)`, `t = 1..=T`.
    pub fn reverse_mean_from_eps(
        &self,
        xt: ArrayView2<f64>,
        eps: ArrayView2<f64>,
        t: usize,
    ) -> Result<Array2<f64>> {
        same_shape(&xt, &eps, "x_t and eps")?;
        let beta = self.schedule.beta(t)?;
        let ra = 1.0 / (1.0 - beta).sqrt();
        let c = beta / self.schedule.sqrt_one_minus_alpha_bar(t)?;
        Ok(lincomb(ra, &xt, -ra * c, &eps))
    }

    /// The score form of the same mean, as 003 eq. 4 writes it (ledger D4):
    /// `(x_t + beta_t s(x_t, t)) / sqrt(1 - beta_t)`.
    pub fn reverse_mean_from_score(
        &self,
        xt: ArrayView2<f64>,
        score: ArrayView2<f64>,
        t: usize,
    ) -> Result<Array2<f64>> {
        same_shape(&xt, &score, "x_t and score")?;
        let beta = self.schedule.beta(t)?;
        let ra = 1.0 / (1.0 - beta).sqrt();
        Ok(lincomb(ra, &xt, ra * beta, &score))
    }
    // ANCHOR_END: eps_mean

    // ANCHOR: kl_eps
    /// `L_{t-1}` before the expectation (ledger A1.6, A1.8): per row,
    /// `KL(N(mu_tilde_t, beta_tilde_t I) || N(model_mean, sigma2 I))`, `t = 2..=T`
    /// (at `t = 1` the posterior is a point mass and the KL is infinite).
    pub fn kl_posterior(
        &self,
        x0: ArrayView2<f64>,
        xt: ArrayView2<f64>,
        t: usize,
        model_mean: ArrayView2<f64>,
        sigma2: f64,
    ) -> Result<Array1<f64>> {
        same_shape(&x0, &model_mean, "x0 and model mean")?;
        let c = self.kl_constant(t, sigma2, x0.ncols())?;
        let q = self.posterior(x0, xt, t)?;
        Ok(Zip::from(q.mean.rows())
            .and(model_mean.rows())
            .map_collect(|m, p| {
                let r2: f64 = m.iter().zip(p).map(|(m, p)| (m - p) * (m - p)).sum();
                c + 0.5 * r2 / sigma2
            }))
    }

    /// The constant `C` of ledger A1.8: the part of the KL that does not depend on the means,
    /// `d/2 (beta_tilde/sigma2 - 1 + ln(sigma2/beta_tilde))`, `t = 2..=T`.
    pub fn kl_constant(&self, t: usize, sigma2: f64, dim: usize) -> Result<f64> {
        positive("sigma2", sigma2)?;
        if t < 2 {
            return Err(Error::param("t", "L_{t-1} is defined for t >= 2"));
        }
        let bt = self.schedule.posterior_variance(t)?;
        let r = bt / sigma2;
        Ok(0.5 * dim as f64 * (r - 1.0 - r.ln()))
    }

    /// The weight of the eps-loss (ledger A1.11): `beta_t^2 / (2 sigma2 alpha_t (1 - alpha_bar_t))`.
    pub fn eps_loss_weight(&self, t: usize, sigma2: f64) -> Result<f64> {
        positive("sigma2", sigma2)?;
        let beta = self.schedule.beta(t)?;
        Ok(beta * beta / (2.0 * sigma2 * (1.0 - beta) * self.schedule.one_minus_alpha_bar(t)?))
    }
    // ANCHOR_END: kl_eps

    // ANCHOR: prior_kl
    /// The prior term before the expectation (ledger A1.6, `L_T`): per row,
    /// `KL(N(sqrt(ab) x_0, (1-ab) I) || N(0, I)) = 1/2 [d (-ab - ln(1-ab)) + ab |x_0|^2]`, `ab = alpha_bar_T`.
    pub fn prior_kl(&self, x0: ArrayView2<f64>) -> Result<Array1<f64>> {
        let t = self.schedule.steps();
        let ab = self.schedule.alpha_bar(t)?;
        let one_minus = self.schedule.one_minus_alpha_bar(t)?;
        let d = x0.ncols() as f64;
        let c = d * (-ab - one_minus.ln());
        Ok(x0
            .rows()
            .into_iter()
            .map(|r| 0.5 * (c + ab * r.dot(&r)))
            .collect())
    }
    // ANCHOR_END: prior_kl

    // ANCHOR: true_reverse
    /// The true reverse conditional `q(x_{t-1} | x_t)` of one coordinate when the data are
    /// `N(m, v)`: with `P = alpha_bar_{t-1} v + 1 - alpha_bar_{t-1}` the prior variance of `x_{t-1}`,
    /// Bayes' rule gives variance `P beta_t / (beta_t + alpha_t P)` and mean
    /// `(sqrt(alpha_t) P x_t + beta_t sqrt(alpha_bar_{t-1}) m) / (beta_t + alpha_t P)`.
    /// For `v = 1, m = 0` the variance is `beta_t`; for `v = 0` it is `beta_tilde_t`.
    pub fn true_reverse(&self, t: usize, m: f64, v: f64) -> Result<AffineGaussian> {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::param(
                "v",
                format!("data variance {v} must be finite and >= 0"),
            ));
        }
        crate::error::ensure_finite("m", m)?;
        let beta = self.schedule.beta(t)?;
        let alpha = 1.0 - beta;
        let ab = self.schedule.alpha_bar(t - 1)?;
        let p = ab * v + self.schedule.one_minus_alpha_bar(t - 1)?;
        let den = beta + alpha * p;
        Ok(AffineGaussian {
            scale: alpha.sqrt() * p / den,
            shift: beta * ab.sqrt() * m / den,
            var: p * beta / den,
        })
    }
    // ANCHOR_END: true_reverse

    // ANCHOR: elbo
    /// The decomposed bound (ledger A1.4, A1.6) in closed form for data `x_0 ~ N(mean, var I)`
    /// and a reverse model with linear means. Each KL is a function of the residual
    /// `mu_tilde_t - scale_t x_t - shift_t = A x_0 + B eps - shift_t` (with
    /// `x_t = sqrt(ab_t) x_0 + sqrt(1-ab_t) eps`), whose expected square is
    /// `|A mean - shift|^2 + d (A^2 var + B^2)`.
    pub fn elbo_gaussian_data(
        &self,
        mean: ArrayView1<f64>,
        var: f64,
        model: &LinearReverse,
    ) -> Result<ElboTerms> {
        let sch = &self.schedule;
        let big_t = sch.steps();
        let d = mean.len();
        if !(var.is_finite() && var >= 0.0) {
            return Err(Error::param(
                "var",
                format!("{var} must be finite and >= 0"),
            ));
        }
        if model.scale.len() != big_t || model.shift.len() != big_t || model.var.len() != big_t {
            return Err(Error::Shape(format!(
                "the reverse model needs {big_t} steps"
            )));
        }
        if model.shift.iter().any(|s| s.len() != d) {
            return Err(Error::Shape(format!("every shift needs length {d}")));
        }
        for &s2 in &model.var {
            positive("model variance", s2)?;
        }
        let df = d as f64;
        // E |A x0 + B eps - b|^2 for x0 ~ N(mean, var I), eps ~ N(0, I) independent.
        let expected_sq = |a: f64, b: f64, shift: &Array1<f64>| -> f64 {
            let bias: f64 = mean
                .iter()
                .zip(shift)
                .map(|(m, s)| (a * m - s).powi(2))
                .sum();
            bias + df * (a * a * var + b * b)
        };
        // L_T: E over x0 of the prior KL.
        let ab_t = sch.alpha_bar(big_t)?;
        let prior = 0.5
            * (df * (-ab_t - sch.one_minus_alpha_bar(big_t)?.ln())
                + ab_t * (mean.dot(&mean) + df * var));
        // L_{t-1}, t = 2..=T.
        let mut kl = Vec::with_capacity(big_t.saturating_sub(1));
        for t in 2..=big_t {
            let (sc, s2) = (model.scale[t - 1], model.var[t - 1]);
            let c0 = sch.posterior_mean_coef_x0(t)?;
            let ct = sch.posterior_mean_coef_xt(t)?;
            let a = c0 + (ct - sc) * sch.sqrt_alpha_bar(t)?;
            let b = (ct - sc) * sch.sqrt_one_minus_alpha_bar(t)?;
            let c = self.kl_constant(t, s2, d)?;
            kl.push(c + 0.5 * expected_sq(a, b, &model.shift[t - 1]) / s2);
        }
        // L_0 = E[-ln N(x0; scale_1 x1 + shift_1, var_1 I)].
        let (sc, s2) = (model.scale[0], model.var[0]);
        let a = 1.0 - sc * sch.sqrt_alpha_bar(1)?;
        let b = -sc * sch.sqrt_one_minus_alpha_bar(1)?;
        let decoder = 0.5 * df * (2.0 * std::f64::consts::PI * s2).ln()
            + 0.5 * expected_sq(a, b, &model.shift[0]) / s2;
        Ok(ElboTerms { prior, kl, decoder })
    }
    // ANCHOR_END: elbo
}

/// `ln Phi(z)` for the standard normal CDF, accurate in the far lower tail.
///
/// Private stand-in until `crate::gaussian::log_std_normal_cdf` lands: `Phi(z) = erfc(-z/sqrt 2)/2`
/// is accurate to a few ulps relative down to `z ~ -37`; below that the asymptotic series
/// `ln phi(z) - ln(-z) + ln(1 - 1/z^2 + 3/z^4 - 15/z^6)` has relative error below `105/z^8 < 1e-10`.
fn log_std_normal_cdf(z: f64) -> f64 {
    if z > -37.0 {
        (0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)).ln()
    } else {
        let z2 = z * z;
        let series = 1.0 - 1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2);
        -0.5 * z2 - 0.5 * (2.0 * std::f64::consts::PI).ln() - (-z).ln() + series.ln()
    }
}

/// `ln (Phi(u) - Phi(l))` for `l < u`, without cancellation: an interval in the upper tail is
/// reflected to the lower tail, and the difference is taken as `ln Phi(u) + ln(1 - Phi(l)/Phi(u))`.
pub(crate) fn log_normal_interval(l: f64, u: f64) -> f64 {
    if l > 0.0 {
        return log_normal_interval(-u, -l);
    }
    let lu = log_std_normal_cdf(u);
    if l == f64::NEG_INFINITY {
        return lu;
    }
    let ll = log_std_normal_cdf(l);
    lu + (-(ll - lu).exp()).ln_1p()
}

// ANCHOR: decoder
/// Half the bin width of 8-bit data scaled to `[-1, 1]`: pixel `k` sits at `2k/255 - 1`.
pub const HALF_BIN: f64 = 1.0 / 255.0;

/// `ln P(pixel = k)` under the discretised decoder of ledger A1.12 for one coordinate:
/// the mass of `N(mean, sigma^2)` on `[x - 1/255, x + 1/255]`, `x = 2k/255 - 1`, with the
/// outer edges of the first and last bins moved to `-inf` and `+inf`.
pub fn decoder_bin_log_prob(k: u8, mean: f64, sigma: f64) -> Result<f64> {
    positive("sigma", sigma)?;
    crate::error::ensure_finite("mean", mean)?;
    let x = 2.0 * k as f64 / 255.0 - 1.0;
    let lo = if k == 0 {
        f64::NEG_INFINITY
    } else {
        (x - HALF_BIN - mean) / sigma
    };
    let hi = if k == 255 {
        f64::INFINITY
    } else {
        (x + HALF_BIN - mean) / sigma
    };
    Ok(log_normal_interval(lo, hi))
}
// ANCHOR_END: decoder

/// The pixel index of a value on the 8-bit grid `2k/255 - 1`, or an error if it is off the grid.
pub fn pixel_index(x: f64) -> Result<u8> {
    let k = ((x + 1.0) * 127.5).round();
    if !(0.0..=255.0).contains(&k) || ((2.0 * k / 255.0 - 1.0) - x).abs() > 1e-9 {
        return Err(Error::param(
            "x0",
            format!("{x} is not on the 8-bit grid 2k/255 - 1"),
        ));
    }
    Ok(k as u8)
}

/// `ln p_theta(x_0 | x_1)` of ledger A1.12 for each row: the sum over coordinates of
/// [`decoder_bin_log_prob`]. `x0` must lie on the 8-bit grid; `mean` is `mu_theta(x_1, 1)`.
pub fn decoder_log_likelihood(
    x0: ArrayView2<f64>,
    mean: ArrayView2<f64>,
    sigma: f64,
) -> Result<Array1<f64>> {
    same_shape(&x0, &mean, "x0 and decoder mean")?;
    let mut out = Array1::zeros(x0.nrows());
    for (o, (xr, mr)) in out.iter_mut().zip(x0.rows().into_iter().zip(mean.rows())) {
        let mut acc = 0.0;
        for (&x, &m) in xr.iter().zip(mr) {
            acc += decoder_bin_log_prob(pixel_index(x)?, m, sigma)?;
        }
        *o = acc;
    }
    Ok(out)
}
