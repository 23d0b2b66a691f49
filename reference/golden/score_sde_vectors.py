"""Golden vectors from yang-song/score_sde_pytorch (sde_lib.py, sampling.py).

Run (see README.md):
    PEER=/tmp/score_sde python score_sde_vectors.py > score_sde.json
where $PEER holds sde_lib.py, sampling.py and models/utils.py checked out from the peer's
repository. Nothing of the peer is copied here: this script imports it.

Everything runs in float64 (torch.set_default_dtype before the peer builds its tables).
The score is the exact score of Gaussian data N(0, v I) under the forward SDE:
    grad log p_t(x) = -x / (s(t)^2 v + sigma(t)^2)
with s, sigma the exact kernel of each SDE written out below (NOT the peer's marginal_prob,
which for VE uses sigma(t) instead of sqrt(sigma(t)^2 - sigma_min^2)).
The noise z of each update is fixed: torch.randn_like is replaced by a queue of tensors.
"""
import json
import math
import os
import sys
import types

import torch

torch.set_default_dtype(torch.float64)
PEER = os.environ.get("PEER", "/tmp/score_sde")
sys.path.insert(0, PEER)
# sampling.py imports scipy.integrate only for its black-box ODE sampler, which is not used.
if "scipy" not in sys.modules:
    try:
        import scipy.integrate  # noqa: F401
    except ImportError:
        scipy = types.ModuleType("scipy")
        scipy.integrate = types.ModuleType("scipy.integrate")
        sys.modules["scipy"] = scipy
        sys.modules["scipy.integrate"] = scipy.integrate

import sde_lib  # noqa: E402
import sampling  # noqa: E402

V = 0.5          # data variance of N(0, V I)
D = 3            # dimension of one point
X = [[0.3, -1.2, 2.0], [-0.7, 0.05, 1.1]]
TIMES = [1.0, 0.5, 0.123, 0.7, 0.001]
# t*(N-1) for N = 1000: 999, 499.5, 122.877, 699.3, 0.999: truncation and rounding
# disagree at 0.5, 0.123 and 0.001.
NOISE = [
    [[0.4, -0.9, 1.3], [-1.5, 0.2, 0.8]],
    [[-0.25, 1.1, -0.6], [0.9, -0.35, -1.7]],
]
SNR = 0.16
N_STEPS = 2


def as4(rows):
    """Rows (B, D) as the peer's image layout (B, 1, 1, D)."""
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 1, 1, -1)


def rows(t4):
    return t4.reshape(t4.shape[0], -1).tolist()


def exact_kernel(name, sde, t):
    """(s(t), sigma(t)) of the exact perturbation kernel, as Python floats."""
    if name == "ve":
        r = math.log(sde.sigma_max / sde.sigma_min)
        return 1.0, sde.sigma_min * math.sqrt(math.expm1(2.0 * t * r))
    b = sde.beta_0 * t + 0.5 * (sde.beta_1 - sde.beta_0) * t * t
    s = math.exp(-0.5 * b)
    if name == "vp":
        return s, math.sqrt(-math.expm1(-b))
    return s, -math.expm1(-b)  # sub-VP: variance (1 - e^{-B})^2


def make_score_fn(name, sde):
    def score_fn(x, t):
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            s, sig = exact_kernel(name, sde, float(t[i]))
            out[i] = -x[i] / (s * s * V + sig * sig)
        return out
    return score_fn


class FixedNoise:
    def __init__(self):
        self.queue = []

    def __call__(self, x):
        z = self.queue.pop(0)
        assert z.shape == x.shape
        return z.clone()


def sde_vectors(name, sde):
    x = as4(X)
    out = {"times": [], "x": X}
    for t in TIMES:
        tt = torch.full((len(X),), t)
        drift, diffusion = sde.sde(x, tt)
        mean, std = sde.marginal_prob(x, tt)
        f, G = sde.discretize(x, tt)
        rec = {
            "t": t,
            "drift": rows(drift),
            "diffusion": float(diffusion[0]),
            "marginal_mean": rows(mean),
            "marginal_std": float(std[0]),
            "discretize_f": rows(f),
            "discretize_g": float(torch.as_tensor(G).reshape(-1)[0]),
        }
        if name in ("vp", "ve"):
            rec["peer_index"] = int((tt * (sde.N - 1) / sde.T).long()[0])
        out["times"].append(rec)
    out["prior_logp"] = sde.prior_logp(x).tolist()
    return out


def update_vectors(name, sde, fixed):
    score_fn = make_score_fn(name, sde)
    x = as4(X)
    res = {"x": X, "noise": NOISE, "snr": SNR, "n_steps": N_STEPS, "times": []}
    predictors = {
        "euler_maruyama": sampling.EulerMaruyamaPredictor,
        "reverse_diffusion": sampling.ReverseDiffusionPredictor,
    }
    if name in ("vp", "ve"):
        predictors["ancestral_sampling"] = sampling.AncestralSamplingPredictor
    correctors = {}
    if name in ("vp", "ve"):
        # sub-VP has no `alphas` table: both peer correctors raise AttributeError for it.
        correctors["langevin"] = sampling.LangevinCorrector
        correctors["ald"] = sampling.AnnealedLangevinDynamics
    for t in TIMES:
        tt = torch.full((len(X),), t)
        rec = {"t": t, "score": rows(score_fn(x, tt))}
        for key, cls in predictors.items():
            fixed.queue = [as4(NOISE[0])]
            xn, xm = cls(sde, score_fn, probability_flow=False).update_fn(x, tt)
            rec[key] = {"x": rows(xn), "x_mean": rows(xm)}
        for key, cls in correctors.items():
            fixed.queue = [as4(z) for z in NOISE[:N_STEPS]]
            xn, xm = cls(sde, score_fn, SNR, N_STEPS).update_fn(x, tt)
            rec[key] = {"x": rows(xn), "x_mean": rows(xm)}
        res["times"].append(rec)
    if name == "subvp":
        res["corrector_errors"] = {}
        for key, cls in (("langevin", sampling.LangevinCorrector),
                         ("ald", sampling.AnnealedLangevinDynamics)):
            try:
                fixed.queue = [as4(NOISE[0])]
                cls(sde, score_fn, SNR, 1).update_fn(x, torch.full((2,), 0.5))
                res["corrector_errors"][key] = None
            except Exception as e:  # record the peer's failure
                res["corrector_errors"][key] = type(e).__name__ + ": " + str(e)
    return res


def main():
    fixed = FixedNoise()
    torch.randn_like = fixed
    sdes = {
        "vp": sde_lib.VPSDE(beta_min=0.1, beta_max=20.0, N=1000),
        "subvp": sde_lib.subVPSDE(beta_min=0.1, beta_max=20.0, N=1000),
        "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0, N=1000),
    }
    params = {
        "vp": {"beta_min": 0.1, "beta_max": 20.0, "N": 1000},
        "subvp": {"beta_min": 0.1, "beta_max": 20.0, "N": 1000},
        "ve": {"sigma_min": 0.01, "sigma_max": 50.0, "N": 1000},
    }
    out = {
        "peer": "yang-song/score_sde_pytorch",
        "dtype": "float64",
        "torch": torch.__version__,
        "data_variance": V,
        "sdes": {},
    }
    for name, sde in sdes.items():
        out["sdes"][name] = {
            "params": params[name],
            "sde": sde_vectors(name, sde),
            "updates": update_vectors(name, sde, fixed),
        }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
