"""Golden vectors from Hugging Face diffusers (DDPMScheduler, DDIMScheduler).

Run (see README.md):
    python diffusers_vectors.py > diffusers.json

dtypes: diffusers builds betas, alphas and alphas_cumprod as float32 tensors whatever the
input dtype (recorded as "schedule_dtype"). Samples, model outputs and noise are float64
tensors; torch's promotion rules then compute the scalar coefficients of a step in float32
(0-dim float32 tensors) and the tensor arithmetic in float64 ("step_dtype"). Every float32
value is written exactly (as the float64 it widens to).

Index convention: diffusers' timestep i (0-based) is the textbook step t = i + 1:
alphas_cumprod[i] = prod_{s <= i} (1 - betas[s]) = alpha_bar_{i+1}.
"""
import json
import sys

import numpy as np
import torch
import diffusers
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers import scheduling_ddpm

T = 1000
X = [[0.3, -1.2, 2.0], [-0.7, 0.05, 1.1]]        # x_t
EPS = [[0.5, 0.9, -1.4], [1.3, -0.2, 0.6]]      # model output (epsilon prediction)
NOISE = [[0.4, -0.9, 1.3], [-1.5, 0.2, 0.8]]    # z of the stochastic part


def t64(rows):
    return torch.tensor(rows, dtype=torch.float64)


def f32list(t):
    return [float(v) for v in t.to(torch.float64).tolist()]


def schedules():
    out = {}
    for name in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        s = DDPMScheduler(num_train_timesteps=T, beta_schedule=name)
        out[name] = {
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "betas": f32list(s.betas),
            "alphas_cumprod": f32list(s.alphas_cumprod),
        }
    return out


def ddpm_steps():
    recs = []
    noise = t64(NOISE)
    scheduling_ddpm.randn_tensor = lambda shape, **kw: noise.clone()
    for variance_type in ("fixed_small", "fixed_large"):
        for clip in (False, True):
            s = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear",
                              variance_type=variance_type, clip_sample=clip)
            for i in (999, 500, 10, 1, 0):
                out = s.step(t64(EPS), i, t64(X))
                recs.append({
                    "variance_type": variance_type,
                    "clip_sample": clip,
                    "timestep": i,
                    "prev_sample": out.prev_sample.tolist(),
                    "pred_original_sample": out.pred_original_sample.tolist(),
                })
    return recs


def ddim_timesteps():
    out = []
    for spacing in ("leading", "trailing", "linspace"):
        for n in (10, 50):
            s = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
            s.set_timesteps(n)
            out.append({"spacing": spacing, "num_inference_steps": n,
                        "timesteps": [int(v) for v in s.timesteps]})
    return out


def ddim_steps():
    recs = []
    for spacing, n in (("leading", 10), ("trailing", 10), ("linspace", 10), ("leading", 50)):
        for set_alpha_to_one in (True, False):
            for clip in (False, True):
                s = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear",
                                  timestep_spacing=spacing, clip_sample=clip,
                                  set_alpha_to_one=set_alpha_to_one)
                s.set_timesteps(n)
                ts = [int(v) for v in s.timesteps]
                for i in sorted({ts[0], ts[len(ts) // 2], ts[-1]}, reverse=True):
                    for eta in (0.0, 0.5, 1.0):
                        out = s.step(t64(EPS), i, t64(X), eta=eta, variance_noise=t64(NOISE))
                        recs.append({
                            "spacing": spacing,
                            "num_inference_steps": n,
                            "set_alpha_to_one": set_alpha_to_one,
                            "clip_sample": clip,
                            "timestep": i,
                            "peer_prev_timestep": i - T // n,
                            "eta": eta,
                            "prev_sample": out.prev_sample.tolist(),
                            "pred_original_sample": out.pred_original_sample.tolist(),
                        })
    return recs


def main():
    out = {
        "peer": "huggingface/diffusers",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "num_train_timesteps": T,
        "schedule_dtype": "float32",
        "step_dtype": "float64 tensors, float32 scalar coefficients",
        "x": X,
        "model_output": EPS,
        "noise": NOISE,
        "schedules": schedules(),
        "ddpm_steps": ddpm_steps(),
        "ddim_timesteps": ddim_timesteps(),
        "ddim_steps": ddim_steps(),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
