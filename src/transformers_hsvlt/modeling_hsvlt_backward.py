"""The hand-written autograd Functions of an HSVLT block (remote code, imported by `modeling_hsvlt_encoder.py`): the
label side (IVLA, the residual and the label gate) and the ConvNeXt block, each one autograd node whose backward saves
and computes less than autograd's composition of the same operations, with the same values and gradients."""

import torch
import torch.nn.functional as F


class HSVLTLabelUpdate(torch.autograd.Function):
    r"""
    The label side of one block with one IVLA head, with a hand-written backward: IVLA (folded or straightforward
    form), the residual `t + m` and the label gate (if any) as one autograd node (the straightforward composition of
    [`HSVLTVisualLinguisticAttention`], the residual and [`HSVLTLabelResidualGate`] gives the same values and
    gradients to float rounding).

    It saves only what the backward reads (the inputs, the scaled queries, the attention map, the keys and values or
    folded queries, and the activations of the per-label maps; not the logits before the softmax or the intermediate
    products autograd would keep), and its backward gets the gradients of the block's `C x C` label-side weights from
    one batched product: each of them is `A^T B` for two `(B*K, C)` matrices (`A`: the gradient of the map's output,
    `B`: its input), so they are stacked and multiplied at once, and the three biases are row sums of the same stack
    (in the straightforward form the key and value projections read the `B*H*W` tokens and get their own products).

    Inputs: label features `(B*K, C)`, visual tokens `(B, H*W, C)` (contiguous), the attention scale, the block's
    [`HSVLTTransposedWeights`] views (the forward reads the weights through them), whether to fold, then the weights
    `query`, `key`, `value`, `proj` (weight, bias), `vis_project` (weight, bias), `project_mm` (weight, bias) and the
    gate's `hidden`, `output` (both `None` for a block without gate). Outputs: the updated label features and the
    multi-modal features, both `(B*K, C)`.
    """

    @staticmethod
    def forward(ctx, *inputs):
        updated, multimodal_features, saved = HSVLTLabelUpdate.compute(*inputs)
        ctx.scale, ctx.fold, ctx.has_gate = inputs[2], inputs[4], inputs[-1] is not None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*saved)
        return updated, multimodal_features

    @staticmethod
    def compute(
        label_features,
        visual_tokens,
        scale,
        transposed,
        fold,
        query,
        key,
        value,
        proj_weight,
        proj_bias,
        vis_weight,
        vis_bias,
        mm_weight,
        mm_bias,
        gate_hidden,
        gate_output,
    ):
        """The forward without autograd: returns the two outputs and the tensors the backward reads."""
        batch_size, _, dim = visual_tokens.shape
        # scaled queries, `scale * t W_q^T` (beta=0: the first argument only gives the shape and is not read)
        queries = torch.addmm(label_features, label_features, transposed["query"], beta=0, alpha=scale)
        if fold:
            folded_queries = torch.mm(queries, key).view(batch_size, -1, dim)
            keys_transposed = visual_tokens.transpose(1, 2)
            attention_probs = torch.softmax(torch.bmm(folded_queries, keys_transposed), dim=-1)
            attended_tokens = torch.bmm(attention_probs, visual_tokens).view(-1, dim)
            context = torch.mm(attended_tokens, transposed["value"])
            attention_tensors = (visual_tokens, keys_transposed, folded_queries, attended_tokens)
        else:
            token_rows = visual_tokens.view(-1, dim)
            keys = torch.mm(token_rows, transposed["key"]).view(batch_size, -1, dim)
            keys_transposed = keys.transpose(1, 2)
            values = torch.mm(token_rows, transposed["value"]).view(batch_size, -1, dim)
            attention_probs = torch.softmax(torch.bmm(queries.view(batch_size, -1, dim), keys_transposed), dim=-1)
            context = torch.bmm(attention_probs, values).view(-1, dim)
            attention_tensors = (keys, keys_transposed, values, token_rows)
        output = torch.addmm(proj_bias, context, transposed["proj"])
        vis_input = torch.addmm(vis_bias, label_features, transposed["vis_project"])
        vis_features = F.gelu(vis_input)
        multimodal_input = vis_features * output
        multimodal_logits = torch.addmm(mm_bias, multimodal_input, transposed["project_mm"])
        multimodal_features = F.gelu(multimodal_logits)
        updated = label_features + multimodal_features
        gate_tensors = ()
        if gate_hidden is not None:
            gate_activation = torch.relu(torch.mm(updated, transposed["gate_hidden"]))
            gate = torch.tanh(torch.mm(gate_activation, transposed["gate_output"]))
            gate_tensors = (updated, gate_activation, gate, gate_hidden, gate_output)
            updated = torch.addcmul(updated, gate, updated)
        saved = (
            label_features,
            *attention_tensors,
            queries,
            attention_probs,
            context,
            output,
            vis_input,
            vis_features,
            multimodal_input,
            multimodal_logits,
            query,
            key,
            value,
            proj_weight,
            vis_weight,
            mm_weight,
            transposed["key"],
            *gate_tensors,
        )
        return updated, multimodal_features, saved

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_updated, grad_multimodal):
        (
            label_features,
            tokens_or_keys,
            keys_transposed,
            folded_or_values,
            attended_or_token_rows,
            queries,
            attention_probs,
            context,
            output,
            vis_input,
            vis_features,
            multimodal_input,
            multimodal_logits,
            query,
            key,
            value,
            proj_weight,
            vis_weight,
            mm_weight,
            key_transposed,
            *gate_tensors,
        ) = ctx.saved_tensors
        batch_size, dim = attention_probs.shape[0], label_features.shape[-1]
        if grad_updated is None:  # only the label features of the model's last block may reach no output
            grad_updated = torch.zeros_like(label_features)
        pairs = {}  # weight name -> (A, B) of its gradient A^T B
        if ctx.has_gate:
            residual, gate_activation, gate, gate_hidden, gate_output = gate_tensors
            grad_gate = torch.ops.aten.tanh_backward(grad_updated * residual, gate)
            grad_activation = torch.ops.aten.threshold_backward(torch.mm(grad_gate, gate_output), gate_activation, 0)
            grad_updated = torch.addmm(torch.addcmul(grad_updated, grad_updated, gate), grad_activation, gate_hidden)
            pairs.update(gate_hidden=(grad_activation, residual), gate_output=(grad_gate, gate_activation))
        grad_multimodal = grad_updated if grad_multimodal is None else grad_updated + grad_multimodal
        grad_multimodal_logits = torch.ops.aten.gelu_backward(grad_multimodal, multimodal_logits)
        grad_multimodal_input = torch.mm(grad_multimodal_logits, mm_weight)
        grad_vis_input = torch.ops.aten.gelu_backward(grad_multimodal_input * output, vis_input)
        grad_output = grad_multimodal_input * vis_features
        grad_context = torch.mm(grad_output, proj_weight)
        pairs.update(
            proj=(grad_output, context),
            vis_project=(grad_vis_input, label_features),
            project_mm=(grad_multimodal_logits, multimodal_input),
        )
        if ctx.fold:
            visual_tokens, folded_queries, attended_tokens = tokens_or_keys, folded_or_values, attended_or_token_rows
            grad_attended = torch.mm(grad_context, value).view(batch_size, -1, dim)
            grad_logits = torch._softmax_backward_data(
                torch.bmm(grad_attended, keys_transposed), attention_probs, -1, attention_probs.dtype
            )
            grad_folded = torch.bmm(grad_logits, visual_tokens).view(-1, dim)
            grad_tokens = torch.baddbmm(
                torch.bmm(attention_probs.transpose(1, 2), grad_attended), grad_logits.transpose(1, 2), folded_queries
            )
            # the gradient of `t W_q^T`: that of the scaled queries times the scale (beta=0: first argument not read)
            grad_queries = torch.addmm(grad_folded, grad_folded, key_transposed, beta=0, alpha=ctx.scale)
            pairs.update(key=(queries, grad_folded), value=(grad_context, attended_tokens))
            weight_grads = {}
        else:
            keys, values, token_rows = tokens_or_keys, folded_or_values, attended_or_token_rows
            grad_context = grad_context.view(batch_size, -1, dim)
            grad_values = torch.bmm(attention_probs.transpose(1, 2), grad_context).view(-1, dim)
            grad_logits = torch._softmax_backward_data(
                torch.bmm(grad_context, values.transpose(1, 2)), attention_probs, -1, attention_probs.dtype
            )
            grad_queries = torch.baddbmm(grad_context, grad_logits, keys, beta=0, alpha=ctx.scale).view(-1, dim)
            grad_keys = torch.bmm(grad_logits.transpose(1, 2), queries.view(batch_size, -1, dim)).view(-1, dim)
            grad_tokens = torch.addmm(torch.mm(grad_keys, key), grad_values, value).view(batch_size, -1, dim)
            weight_grads = {
                "key": torch.mm(grad_keys.t(), token_rows),
                "value": torch.mm(grad_values.t(), token_rows),
            }
        grad_labels = torch.addmm(torch.addmm(grad_updated, grad_queries, query), grad_vis_input, vis_weight)
        pairs.update(query=(grad_queries, label_features))
        outer_grads = torch.stack([outer for outer, _ in pairs.values()])
        inputs = torch.stack([inner for _, inner in pairs.values()])
        weight_grads.update(zip(pairs, torch.bmm(outer_grads.transpose(1, 2), inputs).unbind(0)))
        bias_grads = dict(zip(pairs, outer_grads.sum(1).unbind(0)))
        return (
            grad_labels,
            grad_tokens,
            None,
            None,
            None,
            weight_grads["query"],
            weight_grads["key"],
            weight_grads["value"],
            weight_grads["proj"],
            bias_grads["proj"],
            weight_grads["vis_project"],
            bias_grads["vis_project"],
            weight_grads["project_mm"],
            bias_grads["project_mm"],
            weight_grads.get("gate_hidden"),
            weight_grads.get("gate_output"),
        )


class HSVLTVisualUpdate(torch.autograd.Function):
    r"""
    The ConvNeXt block of an HSVLT block on the `(B, H, W, C)` map (dwconv 7x7, LayerNorm, Linear 4x, GELU, Linear,
    layer scale, residual), with a hand-written backward: the same operations as `ConvNextLayer.forward` (so the same
    values, bit for bit) as one autograd node, whose backward calls the LayerNorm's and the convolution's own backward
    operations and computes each weight gradient with one product.

    Inputs: the map, the LayerNorm epsilon, the block's [`HSVLTTransposedWeights`] views, then `dwconv` (weight, bias),
    `layernorm` (weight, bias), `pwconv1` (weight, bias), `pwconv2` (weight, bias) and the layer scale.
    """

    @staticmethod
    def forward(ctx, *inputs):
        output, saved = HSVLTVisualUpdate.compute(*inputs)
        ctx.eps = inputs[1]
        ctx.save_for_backward(*saved)
        return output

    @staticmethod
    def compute(
        hidden_states,
        eps,
        transposed,
        dwconv_weight,
        dwconv_bias,
        norm_weight,
        norm_bias,
        pwconv1_weight,
        pwconv1_bias,
        pwconv2_weight,
        pwconv2_bias,
        layer_scale,
    ):
        """The forward without autograd: returns the new map and the tensors the backward reads."""
        dim = hidden_states.shape[-1]
        channels_first = hidden_states.permute(0, 3, 1, 2)
        convolved = F.conv2d(channels_first, dwconv_weight, dwconv_bias, padding=3, groups=dim).permute(0, 2, 3, 1)
        normalized, mean, rstd = torch.native_layer_norm(convolved, (dim,), norm_weight, norm_bias, eps)
        normalized = normalized.view(-1, dim)
        expanded = torch.addmm(pwconv1_bias, normalized, transposed["pwconv1"])
        activated = F.gelu(expanded)
        features = torch.addmm(pwconv2_bias, activated, transposed["pwconv2"])
        output = hidden_states + layer_scale * features.view(hidden_states.shape)
        saved = (channels_first, convolved, mean, rstd, normalized, expanded, activated, features)
        return output, saved + (dwconv_weight, norm_weight, norm_bias, pwconv1_weight, pwconv2_weight, layer_scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (
            channels_first,
            convolved,
            mean,
            rstd,
            normalized,
            expanded,
            activated,
            features,
            dwconv_weight,
            norm_weight,
            norm_bias,
            pwconv1_weight,
            pwconv2_weight,
            layer_scale,
        ) = ctx.saved_tensors
        dim = convolved.shape[-1]
        grad_rows = grad_output.reshape(-1, dim)
        grad_features = grad_rows * layer_scale
        grad_layer_scale = (grad_rows * features).sum(0)
        grad_expanded = torch.ops.aten.gelu_backward(torch.mm(grad_features, pwconv2_weight), expanded)
        grad_pwconv2 = torch.mm(grad_features.t(), activated)
        grad_pwconv1 = torch.mm(grad_expanded.t(), normalized)
        grad_normalized = torch.mm(grad_expanded, pwconv1_weight).view(convolved.shape)
        grad_convolved, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
            grad_normalized, convolved, (dim,), mean, rstd, norm_weight, norm_bias, [True, True, True]
        )
        grad_input, grad_dwconv_weight, grad_dwconv_bias = torch.ops.aten.convolution_backward(
            grad_convolved.permute(0, 3, 1, 2),
            channels_first,
            dwconv_weight,
            [dim],
            [1, 1],
            [3, 3],
            [1, 1],
            False,
            [0, 0],
            dim,
            [True, True, True],
        )
        return (
            grad_output + grad_input.permute(0, 2, 3, 1),
            None,
            None,
            grad_dwconv_weight,
            grad_dwconv_bias,
            grad_norm_weight,
            grad_norm_bias,
            grad_pwconv1,
            grad_expanded.sum(0),
            grad_pwconv2,
            grad_features.sum(0),
            grad_layer_scale,
        )
