"""A functional reference of MSRN written from the equations of the authors' code (chehao2628/MSRN: `models.py`
`MSGDN`, `ResNet.py`, `LabelEmbedding.py`, `util.py` `gen_A`/`gen_adj`), over a state dict with the authors' key names
(`resnet_101.*`, `label_embed.layers.{0,1}.{W,a}`, `group_embed.layers.0.{embed,assign_mat}.{W,a}`,
`ProjectM.{0,1,2}`, `fc_label`, `fc1`, `fc2`, `W`, `B`). Plain torch functions, no module of the package; the graph
attention builds the `(N, N, 2 * out)` concatenation as the authors do, the adjacency is computed in NumPy float64.
Also the test helpers that make tiny MSRN configurations and random authors' state dicts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transformers_hsvlt import MSRNConfig


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Run a test module's tiny models on one thread (import it into the module): with tensors this small, thread
    synchronisation costs more than it saves, many times over on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_RESNET = dict(embedding_size=8, hidden_sizes=[16, 32, 64, 128], depths=[1, 2, 1, 1])


def tiny_msrn_config(num_labels: int = 5, num_groups: int = 2, **overrides) -> MSRNConfig:
    """A tiny MSRN (ResNet widths 16-128, semantic width 24, head 32) that runs in milliseconds."""
    values = dict(
        backbone_config={"model_type": "resnet", **TINY_RESNET},
        id2label={index: f"label{index}" for index in range(num_labels)},
        num_groups=num_groups,
        label_embedding_size=12,
        label_projection_size=10,
        graph_hidden_size=14,
        semantic_size=24,
        head_hidden_size=32,
        image_size=64,
    )
    values.update(overrides)
    return MSRNConfig(**values)


def random_cooccurrence(num_labels: int, num_images: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`nums` and `adj` of random multi-hot labels (some labels frequent together, so that the graph has edges)."""
    rng = np.random.default_rng(seed)
    targets = rng.random((num_images, num_labels)) < rng.uniform(0.1, 0.7, num_labels)
    targets[: num_images // 2, 1:] |= targets[: num_images // 2, :1]
    counts = targets.sum(0).astype(np.float64)
    pair_counts = (targets.T.astype(np.float64) @ targets).astype(np.float64)
    np.fill_diagonal(pair_counts, 0)
    return counts, pair_counts


def random_authors_state_dict(config: MSRNConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with the keys and shapes of the authors' `MSGDN` for `config` (BatchNorm statistics
    included, the unused `conv_buffer0`, `W` and `B` too)."""
    generator = torch.Generator().manual_seed(seed)
    backbone = config.backbone_config
    shapes = {"resnet_101.conv1.weight": (backbone.embedding_size, 3, 7, 7)}
    shapes.update(_batch_norm_shapes("resnet_101.bn1", backbone.embedding_size))
    in_channels = backbone.embedding_size
    for stage, (width, depth) in enumerate(zip(backbone.hidden_sizes, backbone.depths), start=1):
        middle = width // 4
        for block in range(depth):
            prefix = f"resnet_101.layer{stage}.{block}"
            block_in = in_channels if block == 0 else width
            for index, shape in enumerate(((middle, block_in, 1, 1), (middle, middle, 3, 3), (width, middle, 1, 1)), 1):
                shapes[f"{prefix}.conv{index}.weight"] = shape
                shapes.update(_batch_norm_shapes(f"{prefix}.bn{index}", shape[0]))
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (width, block_in, 1, 1)
                shapes.update(_batch_norm_shapes(f"{prefix}.downsample.1", width))
        in_channels = width
    for index, width in enumerate(backbone.hidden_sizes[:3]):
        shapes[f"resnet_101.conv_buffer{index}.weight"] = (width, width, 1, 1)
        shapes[f"resnet_101.conv_buffer{index}.bias"] = (width,)
    semantic, num_labels, num_groups = config.semantic_size, config.num_labels, config.num_groups
    graph_sizes = (config.label_projection_size, config.graph_hidden_size, semantic)
    for index, (size_in, size_out) in enumerate(zip(graph_sizes, graph_sizes[1:])):
        shapes[f"label_embed.layers.{index}.W"] = (size_in, size_out)
        shapes[f"label_embed.layers.{index}.a"] = (2 * size_out, 1)
    for name, size_out in (("embed", semantic), ("assign_mat", num_groups)):
        shapes[f"group_embed.layers.0.{name}.W"] = (semantic, size_out)
        shapes[f"group_embed.layers.0.{name}.a"] = (2 * size_out, 1)
    for index, width in enumerate(backbone.hidden_sizes[1:]):
        shapes[f"ProjectM.{index}.weight"] = (semantic, width, 1, 1)
        shapes[f"ProjectM.{index}.bias"] = (semantic,)
    shapes["fc_label.weight"] = (config.label_projection_size, config.label_embedding_size)
    shapes["fc_label.bias"] = (config.label_projection_size,)
    shapes["fc1.weight"] = (config.head_hidden_size, 3 * semantic * (num_labels + num_groups))
    shapes["fc1.bias"] = (config.head_hidden_size,)
    shapes["fc2.weight"] = (num_labels, config.head_hidden_size)
    shapes["fc2.bias"] = (num_labels,)
    shapes["W"] = (num_labels, 6 * semantic)
    shapes["B"] = (num_labels,)
    state_dict = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state_dict[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state_dict[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 4
            state_dict[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state_dict


def _batch_norm_shapes(prefix: str, width: int) -> dict:
    return {f"{prefix}.{name}": (width,) for name in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def reference_adjacency(nums: np.ndarray, adj: np.ndarray, t: float = 0.4, p: float = 0.25) -> torch.Tensor:
    """`gen_A` then `gen_adj`, in NumPy float64 as the authors."""
    conditional = adj / nums[:, np.newaxis]
    binary = np.where(conditional >= t, 1.0, 0.0)
    reweighted = binary * p / (binary.sum(0, keepdims=True) + 1e-6) + np.identity(len(nums))
    degree = np.diag(np.power(reweighted.sum(1), -0.5))
    return torch.from_numpy((reweighted @ degree).T @ degree).float()


def reference_graph_attention(x, adjacency, weight, attention, slope=0.2):
    """The authors' `GraphAttentionLayer.forward` (dropout 0)."""
    h = x @ weight
    n = h.shape[0]
    pairs = torch.cat([h.repeat(1, n).view(n * n, -1), h.repeat(n, 1)], dim=1).view(n, -1, 2 * h.shape[1])
    e = F.leaky_relu((pairs @ attention).squeeze(2), slope)
    e = torch.where(adjacency > 0, e, -1e12 * torch.ones_like(e))
    return F.elu(torch.softmax(e, dim=1) @ h + h)


def _batch_norm(x, state, prefix):
    return F.batch_norm(
        x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"], state[f"{prefix}.weight"],
        state[f"{prefix}.bias"], training=False, eps=1e-5,
    )  # fmt: skip


def reference_resnet_stages(state, x, depths, prefix="resnet_101"):
    """torchvision's ResNet (Bottleneck v1.5: the stride in `conv2`) on a torchvision-layout state dict: the
    outputs of layer1..layer4."""
    x = F.relu(_batch_norm(F.conv2d(x, state[f"{prefix}.conv1.weight"], stride=2, padding=3), state, f"{prefix}.bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    outputs = []
    for stage, depth in enumerate(depths, start=1):
        for block in range(depth):
            name = f"{prefix}.layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            out = F.relu(_batch_norm(F.conv2d(x, state[f"{name}.conv1.weight"]), state, f"{name}.bn1"))
            out = F.conv2d(out, state[f"{name}.conv2.weight"], stride=stride, padding=1)
            out = F.relu(_batch_norm(out, state, f"{name}.bn2"))
            out = _batch_norm(F.conv2d(out, state[f"{name}.conv3.weight"]), state, f"{name}.bn3")
            if f"{name}.downsample.0.weight" in state:
                x = _batch_norm(
                    F.conv2d(x, state[f"{name}.downsample.0.weight"], stride=stride), state, f"{name}.downsample.1"
                )
            x = F.relu(out + x)
        outputs.append(x)
    return outputs


def reference_msrn(state, pixel_values, word_vectors, nums, adj, depths, t=0.4, p=0.25):
    """The authors' `MSGDN.forward`: returns `(logits, group_loss, label_embed, group_embed, assign_mat)`."""
    adjacency = reference_adjacency(nums, adj, t, p)
    _, layer2, layer3, layer4 = reference_resnet_stages(state, pixel_values, depths)
    f1 = F.max_pool2d(
        F.conv2d(layer2, state["resnet_101.conv_buffer1.weight"], state["resnet_101.conv_buffer1.bias"]), 2
    )
    f2 = F.max_pool2d(
        F.conv2d(layer3, state["resnet_101.conv_buffer2.weight"], state["resnet_101.conv_buffer2.bias"]), 2
    )
    f3 = F.max_pool2d(layer4, 2)

    x = F.linear(word_vectors, state["fc_label.weight"], state["fc_label.bias"])
    for index in range(2):
        x = reference_graph_attention(
            x, adjacency, state[f"label_embed.layers.{index}.W"], state[f"label_embed.layers.{index}.a"]
        )
    label_embed = x
    pooled_input = F.relu(label_embed)
    z = reference_graph_attention(
        pooled_input, adjacency, state["group_embed.layers.0.embed.W"], state["group_embed.layers.0.embed.a"]
    )
    assign_mat = torch.softmax(
        reference_graph_attention(
            pooled_input,
            adjacency,
            state["group_embed.layers.0.assign_mat.W"],
            state["group_embed.layers.0.assign_mat.a"],
        ),
        dim=-1,
    )
    group_embed = assign_mat.T @ z
    group_loss = 1e-4 * sum(torch.dist(label_embed[i], group_embed[assign_mat.argmax(1)[i]]) for i in range(len(nums)))

    num_classes, label_dim = label_embed.shape
    num_node = group_embed.shape[0]
    label_dr, group_dr = [], []
    for s, feat in enumerate((f1, f2, f3)):
        batch_size, _, w, h = feat.shape
        feat = F.conv2d(feat, state[f"ProjectM.{s}.weight"], state[f"ProjectM.{s}.bias"])
        p_feat = feat.transpose(1, 2).transpose(2, 3).unsqueeze(3)  # (B, w, h, 1, dim)
        sl = (p_feat * label_embed.view(1, 1, 1, num_classes, label_dim)).reshape(
            batch_size, w * h, num_classes, label_dim
        )
        sg = (p_feat * group_embed.view(1, 1, 1, num_node, label_dim)).reshape(batch_size, w * h, num_node, label_dim)
        p_feat = p_feat.reshape(batch_size, w * h, 1, label_dim)
        label_dr.append((torch.softmax(sl, dim=1) * p_feat).sum(1))
        group_dr.append((torch.softmax(sg, dim=1) * p_feat).sum(1))
    connected = torch.tanh(torch.cat((torch.cat(label_dr, -1), torch.cat(group_dr, -1)), 1)).reshape(batch_size, -1)
    hidden = F.leaky_relu(F.linear(connected, state["fc1.weight"], state["fc1.bias"]))
    logits = F.linear(hidden, state["fc2.weight"], state["fc2.bias"])
    return logits, group_loss, label_embed, group_embed, assign_mat
