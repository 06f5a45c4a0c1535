"""Test-only functional reference of HSVLT, written from the equations in `docs/hsvlt.md` (the paper and the authors'
`models/hsvlt.py`) over a state dict with the authors' key names (`downsample_layers`, `stages.{s}.{b}.attn.*`,
`langs`, `text_head2`, ...).

It shares no code with the package: plain torch ops, the authors' Conv1d weights used as Conv1d, heads split by hand.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def write_authors_checkpoint(directory: Path) -> Path:
    """A random checkpoint of a tiny HSVLT (3 labels) in the layout of the authors' code, `best_model.pth` with its
    label files (`authors-labels.txt`, `authors-bert.npy`) beside it in `directory`; returns its path."""
    names = ["cat", "dog", "bird"]
    (directory / "authors-labels.txt").write_text("\n".join(names) + "\n")
    np.save(directory / "authors-bert.npy", np.random.default_rng(0).standard_normal((3, 12)).astype(np.float32))
    state = random_authors_state_dict([1, 1, 2, 1], [8, 16, 24, 32], 12, len(names))
    torch.save({"state_dict": state}, directory / "best_model.pth")
    return directory / "best_model.pth"


def random_authors_state_dict(depths, dims, label_size, num_labels, seed=0, with_unused=True):
    """An authors'-format HSVLT state dict with random values (layer scale large enough that every path matters)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=generator) * scale

    state = {
        "downsample_layers.0.0.weight": rand(dims[0], 3, 4, 4),
        "downsample_layers.0.0.bias": rand(dims[0]),
        "downsample_layers.0.1.weight": 1 + rand(dims[0]),
        "downsample_layers.0.1.bias": rand(dims[0]),
    }
    for stage in range(1, len(dims)):
        state[f"downsample_layers.{stage}.0.weight"] = 1 + rand(dims[stage - 1])
        state[f"downsample_layers.{stage}.0.bias"] = rand(dims[stage - 1])
        state[f"downsample_layers.{stage}.1.weight"] = rand(dims[stage], dims[stage - 1], 2, 2)
        state[f"downsample_layers.{stage}.1.bias"] = rand(dims[stage])
    label_sizes = [label_size] + list(dims[:-1])
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        state[f"langs.{stage}.weight"] = rand(dim, label_sizes[stage])
        state[f"langs.{stage}.bias"] = rand(dim)
        for block in range(depth):
            prefix = f"stages.{stage}.{block}."
            state[prefix + "dwconv.weight"] = rand(dim, 1, 7, 7)
            state[prefix + "dwconv.bias"] = rand(dim)
            state[prefix + "norm.weight"] = 1 + rand(dim)
            state[prefix + "norm.bias"] = rand(dim)
            state[prefix + "pwconv1.weight"] = rand(4 * dim, dim)
            state[prefix + "pwconv1.bias"] = rand(4 * dim)
            state[prefix + "pwconv2.weight"] = rand(dim, 4 * dim)
            state[prefix + "pwconv2.bias"] = rand(dim)
            state[prefix + "gamma"] = rand(dim, scale=0.5)
            for name in ("query", "key", "value"):
                state[prefix + f"attn.{name}.weight"] = rand(dim, dim)
            state[prefix + "attn.proj.weight"] = rand(dim, dim)
            state[prefix + "attn.proj.bias"] = rand(dim)
            for name in ("vis_project", "project_mm"):
                state[prefix + f"attn.{name}.0.weight"] = rand(dim, dim, 1)
                state[prefix + f"attn.{name}.0.bias"] = rand(dim)
            state[prefix + "res_gate.0.weight"] = rand(dim, dim)
            state[prefix + "res_gate.2.weight"] = rand(dim, dim)
            if with_unused:
                state[prefix + "mlp.fc1.weight"] = rand(dim, dim)
                state[prefix + "norm2.weight"] = rand(dim)
    state["text_head2.weight"] = rand(num_labels, sum(dims))
    state["text_head2.bias"] = rand(num_labels)
    if with_unused:
        state["norm.weight"] = rand(dims[-1])
        state["head.weight"] = rand(1000, dims[-1])
        state["fuse.linear.weight"] = rand(dims[-1], dims[-1])
        state["attn.query.weight"] = rand(dims[-1], dims[-1])
    return state


def _layer_norm_channels_first(x, weight, bias, eps):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps).permute(0, 3, 1, 2)


def _ivla(state, prefix, x, t, num_heads):
    """IVLA of one block: returns the multi-modal feature m (B, K, C)."""
    batch, channels = x.shape[:2]
    num_labels = t.shape[1]
    head_dim = channels // num_heads
    tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
    q = F.linear(t, state[prefix + "attn.query.weight"])
    k = F.linear(tokens, state[prefix + "attn.key.weight"])
    v = F.linear(tokens, state[prefix + "attn.value.weight"])
    q = q.reshape(batch, num_labels, num_heads, head_dim).permute(0, 2, 1, 3)
    k = k.reshape(batch, -1, num_heads, head_dim).permute(0, 2, 1, 3)
    v = v.reshape(batch, -1, num_heads, head_dim).permute(0, 2, 1, 3)
    a = torch.softmax(q @ k.transpose(-1, -2) * head_dim**-0.5, dim=-1)
    o = (a @ v).permute(0, 2, 1, 3).reshape(batch, num_labels, channels)
    o = F.linear(o, state[prefix + "attn.proj.weight"], state[prefix + "attn.proj.bias"])
    g = F.gelu(
        F.conv1d(
            t.transpose(1, 2), state[prefix + "attn.vis_project.0.weight"], state[prefix + "attn.vis_project.0.bias"]
        )
    )
    m = F.conv1d(
        (g * o.transpose(1, 2)), state[prefix + "attn.project_mm.0.weight"], state[prefix + "attn.project_mm.0.bias"]
    )
    return F.gelu(m).transpose(1, 2)


def reference_logits(state, pixel_values, label_embeddings, num_heads=1, eps=1e-6):
    """HSVLT logits (B, K) from an authors'-format state dict, straight from the equations."""
    num_stages = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("stages."))
    depths = [len({key.split(".")[2] for key in state if key.startswith(f"stages.{s}.")}) for s in range(num_stages)]
    patch = state["downsample_layers.0.0.weight"].shape[-1]
    x = F.conv2d(pixel_values, state["downsample_layers.0.0.weight"], state["downsample_layers.0.0.bias"], stride=patch)
    x = _layer_norm_channels_first(x, state["downsample_layers.0.1.weight"], state["downsample_layers.0.1.bias"], eps)
    t = label_embeddings.unsqueeze(0).expand(pixel_values.shape[0], -1, -1)
    stage_features = []
    for stage, depth in enumerate(depths):
        if stage > 0:
            x = _layer_norm_channels_first(
                x, state[f"downsample_layers.{stage}.0.weight"], state[f"downsample_layers.{stage}.0.bias"], eps
            )
            x = F.conv2d(
                x, state[f"downsample_layers.{stage}.1.weight"], state[f"downsample_layers.{stage}.1.bias"], stride=2
            )
        t = F.linear(t, state[f"langs.{stage}.weight"], state[f"langs.{stage}.bias"])
        for block in range(depth):
            prefix = f"stages.{stage}.{block}."
            channels = x.shape[1]
            y = F.conv2d(x, state[prefix + "dwconv.weight"], state[prefix + "dwconv.bias"], padding=3, groups=channels)
            y = y.permute(0, 2, 3, 1)
            y = F.layer_norm(y, (channels,), state[prefix + "norm.weight"], state[prefix + "norm.bias"], eps)
            y = F.linear(
                F.gelu(F.linear(y, state[prefix + "pwconv1.weight"], state[prefix + "pwconv1.bias"])),
                state[prefix + "pwconv2.weight"],
                state[prefix + "pwconv2.bias"],
            )
            x = x + (state[prefix + "gamma"] * y).permute(0, 3, 1, 2)
            m = _ivla(state, prefix, x, t, num_heads)
            t = t + m
            gate = torch.tanh(
                F.linear(F.relu(F.linear(t, state[prefix + "res_gate.0.weight"])), state[prefix + "res_gate.2.weight"])
            )
            t = t + gate * t
        stage_features.append(m)
    features = torch.cat(stage_features, dim=-1)
    return (features * state["text_head2.weight"]).sum(-1) + state["text_head2.bias"]
