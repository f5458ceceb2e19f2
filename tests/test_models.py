"""Heads, backbones and SpliceMix-CL against hand computations."""
import math

import numpy as np
import pytest
import torch

from mlic_pipe.losses import SpliceMixCL
from mlic_pipe.mix.cells import splice_cell_logits
from mlic_pipe.mix import SpliceMix
from mlic_pipe.models import (CSRA, CSRA_TEMPERATURES, GraphReweight, MLDecoder, PoolHead, build_model,
                              cooccurrence_adjacency)
from mlic_pipe.models import backbone as backbone_module

# --------------------------------------------------------------------------------------------- CSRA


def test_csra_one_head_infinite_temperature_is_mean_plus_lambda_max_by_hand():
    torch.manual_seed(0)
    head = CSRA(6, 4, lam=0.3, temperatures=(math.inf,))
    features = torch.randn(3, 6, 5, 7)
    weight = head.classifiers[0].weight.detach()[:, :, 0, 0]  # (C, D)
    expected = torch.zeros(3, 4)
    for b in range(3):
        for c in range(4):
            unit = weight[c] / weight[c].norm()
            score = [float(unit @ features[b, :, y, x]) for y in range(5) for x in range(7)]
            expected[b, c] = sum(score) / len(score) + 0.3 * max(score)
    torch.testing.assert_close(head(features), expected, rtol=1e-5, atol=1e-5)


def test_csra_finite_temperature_is_a_softmax_weighted_sum_and_heads_add_up():
    torch.manual_seed(1)
    head = CSRA(6, 3, num_heads=2, lam=0.1)
    assert head.temperatures == (1.0, math.inf)
    features = torch.randn(2, 6, 3, 3)
    expected = 0
    for classifier, t in zip(head.classifiers, head.temperatures):
        w = classifier.weight.detach()[:, :, 0, 0]
        score = torch.einsum("cd,bdn->bcn", w / w.norm(dim=1, keepdim=True), features.flatten(2))
        attention = score.amax(2) if math.isinf(t) else (torch.exp(t * score) / torch.exp(t * score).sum(2, keepdim=True) * score).sum(2)
        expected = expected + score.mean(2) + 0.1 * attention
    torch.testing.assert_close(head(features), expected, rtol=1e-5, atol=1e-5)


def test_csra_temperature_sets_are_the_papers():
    inf = math.inf
    assert CSRA_TEMPERATURES == {1: (1,), 2: (1, inf), 4: (1, 2, 4, inf), 6: (1, 2, 3, 4, 5, inf),
                                 8: (1, 2, 3, 4, 5, 6, 7, inf)}
    for heads, temps in CSRA_TEMPERATURES.items():
        assert CSRA(8, 3, num_heads=heads).temperatures == temps
    with pytest.raises(ValueError, match="num_heads must be one of"):
        CSRA(8, 3, num_heads=3)


# --------------------------------------------------------------------------------------- ML-Decoder

@pytest.mark.parametrize("num_classes, num_queries, per_query", [(80, None, 1), (500, None, 5), (500, 64, 8)])
def test_ml_decoder_shape_and_group_mapping(num_classes, num_queries, per_query):
    torch.manual_seed(0)
    head = MLDecoder(32, num_classes, num_queries=num_queries, embed_dim=64, num_heads=4, dim_feedforward=128).eval()
    assert head.classes_per_query == per_query
    features = torch.randn(2, 32, 4, 4)
    before = head(features)
    assert before.shape == (2, num_classes)
    # perturb query q's group weights: exactly its classes c with c // per_query == q change
    q = head.num_queries // 2
    with torch.no_grad():
        head.group_weight[q] += 1.0
    changed = (head(features) - before).abs().amax(0) > 0
    expected = torch.tensor([head.query_of_class(c) == q for c in range(num_classes)])
    assert torch.equal(changed, expected)
    assert expected.sum() == min(per_query, num_classes - q * per_query)


def test_ml_decoder_queries_fixed_by_default_and_learnable_on_request():
    assert not MLDecoder(8, 5, embed_dim=16, num_heads=2).queries.requires_grad
    assert MLDecoder(8, 5, embed_dim=16, num_heads=2, learn_queries=True).queries.requires_grad


def test_cosine_heads_output_cosines():
    features = torch.randn(4, 16, 3, 3) * 10
    for head in (PoolHead(16, 7, cosine=True), MLDecoder(16, 7, embed_dim=16, num_heads=2, cosine=True)):
        out = head(features)
        assert out.abs().max() <= 1 + 1e-5


# ----------------------------------------------------------------------------------- graph re-weighting

def test_cooccurrence_adjacency_is_deep_object_reids_gen_a_on_a_hand_made_example():
    # classes: 0 fork, 1 knife, 2 cat, 3 never seen
    targets = np.array([[1, 1, 0, 0],
                        [1, 1, 0, 0],
                        [1, 0, 0, 0],
                        [0, 1, 1, 0],
                        [0, 0, 1, 0]])
    # P(j|i): fork->knife 2/3, knife->fork 2/3, knife->cat 1/3, cat->knife 1/2, others 0.
    # >= 0.4 keeps fork->knife, knife->fork, cat->knife; column sums: fork 1, knife 2, cat 0, unseen 0;
    # each column scaled to 0.25 (A * 0.25 / (sum + 1e-6)), then + I
    a, b = 0.25 / (1 + 1e-6), 0.25 / (2 + 1e-6)
    expected = np.array([[1.0, b, 0.0, 0.0],
                         [a, 1.0, 0.0, 0.0],
                         [0.0, b, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(cooccurrence_adjacency(targets).numpy(), expected, rtol=1e-6)
    loose = cooccurrence_adjacency(targets, threshold=0.3).numpy()  # adds knife->cat: cat's column gets 0.25
    assert loose[1, 2] == pytest.approx(0.25 / (1 + 1e-6))


def test_propagation_is_d_a_transposed_d_on_a_hand_built_three_class_graph():
    from mlic_pipe.models.graph import propagation_matrix

    adjacency = torch.tensor([[1.0, 0.5, 0.0],
                              [0.0, 1.0, 0.25],
                              [0.5, 0.0, 1.0]])
    rows = [1.5, 1.25, 1.5]  # row sums: D = diag(rows)^-1/2
    expected = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            expected[i, j] = adjacency[j, i].item() / np.sqrt(rows[i] * rows[j])  # (D A^T D)_ij
    np.testing.assert_allclose(propagation_matrix(adjacency).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("layer", ["gcn", "gat"])
def test_graph_gate_is_the_sigmoid_of_the_max_over_labels_of_the_published_layers(layer):
    torch.manual_seed(0)
    eye = np.eye(5, dtype=np.uint8)
    adjacency = cooccurrence_adjacency(eye[[0, 1, 2, 3, 4, 0, 1]] | eye[[1, 0, 2, 3, 4, 1, 0]])  # 0-1 co-occur
    head = GraphReweight(12, 5, adjacency, embed_dim=8, hidden_dim=16, layer=layer).eval()  # GAT drops in training
    adj = head.propagation.double()
    x = head.embeddings.detach().double()
    for graph_layer in head.layers:  # the published forward, written out in float64
        if layer == "gcn":
            x = adj @ (x @ graph_layer.weight.detach().double())
        else:
            wh = x @ graph_layer.weight.detach().double()
            att, out = graph_layer.attend.detach().double(), wh.shape[1]
            e = torch.nn.functional.leaky_relu(wh @ att[:out] + (wh @ att[out:]).T, 0.2)
            e = torch.where(adj > 0, e, torch.full_like(e, -9e15))
            x = torch.nn.functional.elu(torch.softmax(e, dim=1) @ wh)
        x = torch.nn.functional.leaky_relu(x, 0.2)
    expected = torch.sigmoid(x.max(0).values)
    torch.testing.assert_close(head.channel_gate().double(), expected, rtol=1e-5, atol=1e-6)
    features = torch.randn(3, 12, 4, 4)
    torch.testing.assert_close(head(features), head.head(features * head.channel_gate()[None, :, None, None]))


def test_graph_reweight_caches_in_eval_until_weights_change():
    torch.manual_seed(0)
    adjacency = cooccurrence_adjacency(np.eye(5, dtype=np.uint8)[[0, 1, 2, 3, 4, 0, 1]])
    head = GraphReweight(12, 5, adjacency, embed_dim=8, hidden_dim=16)
    head.eval()
    with torch.no_grad():
        first = head.channel_gate()
        assert head.channel_gate() is first  # cached at inference
        head.layers[1].weight.mul_(2.0)  # e.g. an EMA update in place
        assert not torch.equal(head.channel_gate(), first)
    assert head.channel_gate().requires_grad  # eval mode with grad (e.g. frozen-BN fine-tuning): not cached
    with pytest.raises(ValueError, match="adjacency must be"):
        GraphReweight(12, 4, adjacency)


def test_graph_reweight_with_fixed_word_vectors_trains_only_the_graph_layers():
    vectors = torch.randn(5, 10)
    head = GraphReweight(12, 5, torch.eye(5), word_vectors=vectors, hidden_dim=16)
    assert "embeddings" not in dict(head.named_parameters())
    head(torch.randn(2, 12, 2, 2)).sum().backward()
    assert head.layers[0].weight.grad is not None


# ---------------------------------------------------------------------------------------- backbones

@pytest.mark.parametrize("name, size, grid", [("resnet18", 64, (2, 2)), ("vit_tiny_patch16_224", 64, (4, 4))])
def test_build_model_gives_a_feature_map_and_a_separate_head(name, size, grid):
    model = build_model(name, "csra", 7, image_size=size, num_heads=2).eval()
    images = torch.randn(2, 3, size, size)
    features = model.features(images)
    assert features.shape[0] == 2 and tuple(features.shape[-2:]) == grid
    assert features.shape[1] == model.backbone.num_features
    torch.testing.assert_close(model(images), model.head(features))


def test_vit_tokens_are_laid_back_on_their_grid_without_the_class_token():
    model = build_model("vit_tiny_patch16_224", "avg", 3, image_size=32).eval()
    images = torch.randn(1, 3, 32, 32)
    tokens = model.backbone.model.forward_features(images)  # (1, 1 + 4, D)
    features = model.features(images)
    torch.testing.assert_close(features[0, :, 0, 1], tokens[0, 2])  # patch 1 (row 0, col 1) is token 1 + 1


def test_pretrained_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(backbone_module, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(RuntimeError, match="pretrained weights for 'resnet18'.*HF_HUB_OFFLINE"):
        build_model("resnet18", "avg", 3, pretrained=True)


def test_pretrained_download_errors_become_a_clear_message(monkeypatch):
    import timm

    monkeypatch.setattr(backbone_module, "_hub_reachable", lambda timeout=3.0: True)

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="pretrained=False"):
        build_model("resnet18", "avg", 3, pretrained=True)


def test_unknown_backbone_and_head_are_clear():
    with pytest.raises(ValueError, match="backbone: timm has no model 'resnet1800'"):
        build_model("resnet1800", "avg", 3)
    with pytest.raises(ValueError, match="head must be one of"):
        build_model("resnet18", "gap", 3)
    with pytest.raises(ValueError, match="needs adjacency"):
        build_model("resnet18", "graph", 3)


# -------------------------------------------------------------------------------------- SpliceMix-CL

def hand_span(i, parts, size):
    return int(np.floor(i * size / parts)), int(np.floor((i + 1) * size / parts))


def spliced_plan(batch=12, seed=0):
    return SpliceMix(["2x3-2", "1x2", "2x2-1"], counts=[1, 1, 1]).plan(batch, 64, np.random.default_rng(seed))


def test_cell_logits_equal_the_head_on_hand_sliced_cells():
    torch.manual_seed(0)
    plan = spliced_plan()
    head = PoolHead(8, 5)
    features = torch.randn(plan.num_outputs, 8, 7, 7)  # 7 splits unevenly into 2 and 3
    logits, sources, positions = splice_cell_logits(head, features, plan, form="exact", with_positions=True)
    expected = {}
    for n in range(plan.num_regular, plan.num_outputs):
        rows, cols = plan.grid[n].tolist()
        for k in range(rows * cols):
            source = int(plan.cells[n, k])
            if source < 0:
                continue
            y0, y1 = hand_span(k // cols, rows, 7)
            x0, x1 = hand_span(k % cols, cols, 7)
            cell = features[n, :, y0:y1, x0:x1]
            expected[(n, k)] = (source, head.fc(cell.mean((1, 2))))
    assert len(expected) == len(sources) == len(logits)
    for (n, k), source, row in zip(positions.tolist(), sources.tolist(), logits):
        want_source, want = expected[(n, k)]
        assert source == want_source
        torch.testing.assert_close(row, want, rtol=1e-5, atol=1e-6)


def test_consistency_loss_is_zero_when_cells_agree_and_counts_only_kept_cells():
    torch.manual_seed(0)
    plan = spliced_plan()
    head = PoolHead(8, 5)
    # constant maps: a regular image's map is its own vector; each mixed cell shows its source's vector
    vectors = torch.randn(plan.num_regular, 8)
    features = torch.randn(plan.num_outputs, 8, 7, 7) * 100  # garbage, also in the dropped cells
    features[:plan.num_regular] = vectors[:, :, None, None]
    for n in range(plan.num_regular, plan.num_outputs):
        rows, cols = plan.grid[n].tolist()
        for k in range(rows * cols):
            source = int(plan.cells[n, k])
            if source >= 0:
                y0, y1 = hand_span(k // cols, rows, 7)
                x0, x1 = hand_span(k % cols, cols, 7)
                features[n, :, y0:y1, x0:x1] = vectors[source][:, None, None]
    assert (plan.cells[plan.num_regular:] == -1).any()  # some cell really is dropped
    logits = head(features)
    loss_fn = SpliceMixCL(form="exact")
    assert float(loss_fn(head, features, plan, logits).detach()) == pytest.approx(0.0, abs=1e-6)
    # one disagreeing cell: the loss is its Bernoulli KL over (kept cells x classes)
    cell_logits, sources = splice_cell_logits(head, features, plan, form="exact")
    shifted = cell_logits.clone()
    shifted[0] += 2.0
    p = torch.sigmoid(logits[sources[0]].detach().double())
    q = torch.sigmoid(shifted[0].detach().double())
    kl = (p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))).sum()
    expected = float(kl) / (len(sources) * 5)
    assert float(loss_fn.from_cells(shifted, sources, logits).detach()) == pytest.approx(expected, rel=1e-4)


def test_consistency_gradient_reaches_the_cells_not_the_teacher():
    plan = spliced_plan()
    head = PoolHead(8, 5)
    features = torch.randn(plan.num_outputs, 8, 7, 7, requires_grad=True)
    logits = head(features)
    SpliceMixCL(form="exact")(head, features, plan, logits).backward()
    grad = features.grad.abs().sum((1, 2, 3))
    assert (grad[:plan.num_regular] == 0).all() and (grad[plan.num_regular:] > 0).all()


def test_model_forward_with_a_splice_plan_returns_the_cells_too():
    plan = spliced_plan(seed=3)
    model = build_model("resnet18", "avg", 5).eval()
    images = torch.randn(plan.num_outputs, 3, 224, 224)
    logits, cell_logits, sources = model(images, splice_plan=plan, cell_form="exact")
    want_logits, want_sources = splice_cell_logits(model.head, model.features(images), plan, form="exact")
    torch.testing.assert_close(cell_logits, want_logits)
    assert torch.equal(sources, want_sources) and logits.shape == (plan.num_outputs, 5)


def test_a_grid_larger_than_the_feature_map_is_a_clear_error():
    plan = spliced_plan()
    with pytest.raises(ValueError, match="does not fit a 1x1 feature map"):
        splice_cell_logits(PoolHead(8, 5), torch.randn(plan.num_outputs, 8, 1, 1), plan)


def published_cl(head, features, plan, logits, detach=True):
    """zuiran/SpliceMix's SpliceMix_CL written out: resize, even split, -1e3 on dropped cells, BCE mean."""
    h, w = features.shape[-2:]
    preds_m, preds_m_r = [], []
    for n in range(plan.num_regular, plan.num_outputs):
        rows, cols = plan.grid[n].tolist()
        fea = features[n:n + 1]
        if h % rows + w % cols != 0:
            fea = torch.nn.functional.interpolate(fea, (h // rows * rows, w // cols * cols), mode="bilinear",
                                                  align_corners=True)
        ch, cw = fea.shape[-2] // rows, fea.shape[-1] // cols
        for k in range(rows * cols):
            r, c = divmod(k, cols)
            source = int(plan.cells[n, k])
            pred = head(fea[:, :, r * ch:(r + 1) * ch, c * cw:(c + 1) * cw])[0]
            teacher = logits[max(source, 0)]
            if source < 0:
                pred, teacher = torch.full_like(pred, -1e3), torch.full_like(teacher, -1e3)
            preds_m.append(pred)
            preds_m_r.append(teacher)
    target = torch.sigmoid(torch.stack(preds_m_r))
    return torch.nn.functional.binary_cross_entropy_with_logits(torch.stack(preds_m),
                                                               target.detach() if detach else target)


@pytest.mark.parametrize("detach", [True, False])
def test_published_consistency_equals_the_published_code_in_value_and_gradient(detach):
    torch.manual_seed(1)
    plan = spliced_plan(seed=2)
    assert (plan.cells[plan.num_regular:] == -1).any()
    head = PoolHead(8, 5, pool="max")
    features = torch.randn(plan.num_outputs, 8, 7, 7, dtype=torch.float64, requires_grad=True)
    head = head.double()
    logits = head(features)
    ours = SpliceMixCL(detach_teacher=detach)(head, features, plan, logits)
    (grad,) = torch.autograd.grad(ours, features, retain_graph=True)
    reference = published_cl(head, features, plan, logits, detach)
    (want,) = torch.autograd.grad(reference, features)
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-8)
    regular_grad = grad[:plan.num_regular].abs().sum()
    assert (regular_grad > 0) == (not detach)  # the VOC variant trains the teacher too


def test_published_consistency_summed_keeps_the_published_balance_beside_a_summed_base_loss():
    plan = spliced_plan(seed=2)
    head = PoolHead(8, 5)
    features = torch.randn(plan.num_outputs, 8, 7, 7)
    logits = head(features)
    mean = SpliceMixCL()(head, features, plan, logits)
    summed = SpliceMixCL(reduction="sum")(head, features, plan, logits)
    # with means on both sides a CL entry weighs N_out / K_all base entries; with a summed base loss
    # (weight 1 per entry) the summed CL must weigh each entry N_out / K_all: mean x K_all x C x N_out / K_all
    assert float(summed.detach()) == pytest.approx(float(mean.detach()) * plan.num_outputs * 5, rel=1e-6)


def test_cosine_ml_decoder_is_deep_object_reids_leaky_projection_normalized_fc_and_bias():
    torch.manual_seed(0)
    head = MLDecoder(16, 6, num_queries=3, embed_dim=8, num_heads=2, dim_feedforward=16, dropout=0.0,
                     cosine=True).eval()
    torch.nn.init.normal_(head.group_bias)
    features = torch.randn(2, 16, 3, 3)
    with torch.no_grad():  # the published forward, written out
        memory = torch.nn.functional.leaky_relu(head.input_projection(features.flatten(2).transpose(1, 2)), 0.2)
        queries = head.queries.unsqueeze(0).expand(2, -1, -1)
        for layer in head.layers:
            queries = layer(queries, memory)
        q = queries / queries.norm(dim=2, keepdim=True)
        w = head.group_weight / head.group_weight.norm(dim=1, keepdim=True)
        expected = torch.einsum("bqe,qek->bqk", q, w).flatten(1)[:, :6] + head.group_bias
        torch.testing.assert_close(head(features), expected, rtol=1e-5, atol=1e-6)
        cosines = head(features) - head.group_bias
    assert (cosines.abs() <= 1 + 1e-6).all()


def test_gat_attention_dropout_is_the_published_0_1_in_training_only():
    """deep-object-reid's GraphAttentionLayer (dropout=0.1 by default, kept by Image_GCNN), written out: the
    dropout falls on the softmax of the masked scores, in training only; under one seed both draw alike."""
    from mlic_pipe.models.graph import GraphAttentionLayer

    torch.manual_seed(0)
    layer = GraphAttentionLayer(6, 5)
    assert layer.dropout == 0.1
    nodes, adjacency = torch.randn(4, 6), (torch.rand(4, 4) > 0.4).float() + torch.eye(4)

    def published(h, adj, training):
        wh = h @ layer.weight
        e = torch.nn.functional.leaky_relu(wh @ layer.attend[:5] + (wh @ layer.attend[5:]).T, 0.2)
        attention = torch.softmax(torch.where(adj > 0, e, -9e15 * torch.ones_like(e)), dim=1)
        attention = torch.nn.functional.dropout(attention, 0.1, training=training)
        return torch.nn.functional.elu(attention @ wh)

    torch.manual_seed(3)
    expected = published(nodes, adjacency, True)
    torch.manual_seed(3)
    torch.testing.assert_close(layer.train()(nodes, adjacency), expected)
    assert not torch.allclose(expected, published(nodes, adjacency, False))  # the dropout did drop something
    torch.testing.assert_close(layer.eval()(nodes, adjacency), published(nodes, adjacency, False))


def test_ml_decoder_at_open_images_scale_runs_forward_and_backward_on_the_cpu():
    """9,605 classes through 100 group queries (the paper's Open Images setting): a logit is its query's output
    times its column of the group weights, and the loss reaches every query's weights."""
    torch.manual_seed(0)
    head = MLDecoder(512, 9605, num_queries=100)  # paper sizes: embed 768, 8 heads, feed-forward 2048
    assert head.classes_per_query == 97
    captured = {}
    head.layers[-1].register_forward_hook(lambda module, args, out: captured.update(queries=out))
    features = torch.randn(2, 512, 7, 7)
    logits = head(features)
    assert logits.shape == (2, 9605)
    for c in (0, 96, 97, 5000, 9604):
        q, k = divmod(c, 97)
        expected = captured["queries"][:, q] @ head.group_weight[q, :, k] + head.group_bias[c]
        torch.testing.assert_close(logits[:, c], expected, rtol=1e-4, atol=1e-4)
    targets = torch.zeros(2, 9605)
    targets[0, [3, 4000]] = targets[1, 9604] = 1
    torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
    grad = head.group_weight.grad
    assert torch.isfinite(grad).all() and (grad.abs().flatten(1).amax(1) > 0).all()  # every query learns
    assert head.input_projection.weight.grad.abs().sum() > 0
