#!/usr/bin/env python3
"""Export a zoo of framework models in the fixture layout of export_fixtures.py.

Each zoo entry is a model family or exporter pitfall the compiler must handle: torchvision
ResNet-18 / MobileNetV3 / ViT, timm ConvNeXt, a UNet with ConvTranspose and Resize upsampling,
HuggingFace GPT-2 / BERT / RoBERTa under both exporters, GroupNorm and InstanceNorm, reflect
padding, Einsum attention, TopK routing, EmbeddingBag, recurrent layers, higher opsets.
Every folder gets model.onnx (+ model.onnx.data for dynamo exports), reference.npz
(`input:<name>`, `labels`, `loss`, `logits`, `grad:<initializer>`) and meta.json, written by
export_fixtures.make_fixture (same seeds policy, same reference computation).

    /work/torch-venv/bin/python models/export_zoo.py                 # the committed fixtures
    /work/torch-venv/bin/python models/export_zoo.py --out DIR all   # the whole zoo into DIR
    /work/torch-venv/bin/python models/export_zoo.py --out DIR unet_ts roberta_dynamo

Needs torch, onnx, onnxscript, numpy, transformers, torchvision and timm. Weights are random
initialisations from configs; nothing is downloaded. Dropout probabilities are 0 (gradients
deterministic) except in `dropout_*`, whose reference gradients therefore do not apply to any
one mask: those entries are for compile-and-run checks only (meta.json `deterministic`).
"""
import argparse
import contextlib
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import export_fixtures as ef
from export_fixtures import IGNORE_INDEX, randomize_bn, seed

# Fixtures committed under models/ (small, and each covers something the others do not).
COMMITTED = ("unet_ts", "roberta_dynamo", "gn_reflect_ts")


@contextlib.contextmanager
def export_into(out_dir, opset):
    """make_fixture writes into `out_dir` and both exporters use `opset`."""
    real_export, here = torch.onnx.export, ef.HERE

    def export_at_opset(*args, **kwargs):
        kwargs["opset_version"] = opset
        return real_export(*args, **kwargs)

    ef.HERE = out_dir
    torch.onnx.export = export_at_opset
    try:
        yield
    finally:
        torch.onnx.export, ef.HERE = real_export, here


class Entry:
    """One zoo model: how to build it and its reference batch (called under its seed)."""

    def __init__(self, build, exporter, opset, offset, loss="cross-entropy", notes=(),
                 deterministic=True):
        self.build, self.exporter, self.opset, self.offset = build, exporter, opset, offset
        self.loss, self.notes, self.deterministic = loss, list(notes), deterministic


def image_batch(classes, size=32, channels=3, exp=2, ref=4):
    x_exp = torch.randn(exp, channels, size, size)
    x = torch.randn(ref, channels, size, size)
    return [x_exp], [x], ["input"], torch.randint(0, classes, (ref,))


# ----- vision ----------------------------------------------------------------------------------

def tv_resnet18():
    import torchvision
    model = torchvision.models.resnet18(num_classes=10)
    randomize_bn(model)
    return model, *image_batch(10)


def tv_mobilenet_v3_small():
    import torchvision
    model = torchvision.models.mobilenet_v3_small(num_classes=10, dropout=0.0)
    randomize_bn(model)
    return model, *image_batch(10)


def tv_vit():
    from torchvision.models.vision_transformer import VisionTransformer
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                              hidden_dim=32, mlp_dim=64, num_classes=10)
    with torch.no_grad():  # torchvision zero-initialises the head
        model.heads.head.weight.normal_(0, 0.2)
    return model, *image_batch(10)


def timm_convnext():
    import timm
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=10,
                              drop_path_rate=0.0, dims=(16, 24, 32, 48), depths=(1, 1, 2, 1))
    return model, *image_batch(10)


class UNet(nn.Module):
    """Two-level UNet: BN conv blocks, max-pool down, ConvTranspose and bilinear Resize up,
    skip concatenations, nearest Resize of a coarse side output, per-pixel logits returned as
    [N, H, W, classes] so cross-entropy over the last axis is per-pixel cross-entropy."""

    def __init__(self, classes=4, w=8):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU())

        self.enc1, self.enc2, self.mid = block(3, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = block(4 * w, 2 * w)
        self.reduce1 = nn.Conv2d(2 * w, w, 1)
        self.dec1 = block(2 * w, w)
        self.side = nn.Conv2d(4 * w, classes, 1)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        u1 = F.interpolate(self.reduce1(d2), scale_factor=2, mode="bilinear",
                           align_corners=False)
        d1 = self.dec1(torch.cat([u1, e1], 1))
        side = F.interpolate(self.side(m), scale_factor=4, mode="nearest")
        return (self.head(d1) + side).permute(0, 2, 3, 1)


def unet():
    model = UNet()
    randomize_bn(model)
    x_exp, x = torch.randn(2, 3, 16, 16), torch.randn(3, 3, 16, 16)
    y = torch.randint(0, 4, (3, 16, 16))
    y[0, :3, :5] = IGNORE_INDEX  # an unlabelled region
    return model, [x_exp], [x], ["input"], y


class GnReflect(nn.Module):
    """GroupNorm / InstanceNorm (affine) blocks with reflection and replication padding."""

    def __init__(self, classes=5):
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.gn = nn.GroupNorm(4, 8)
        self.pad2 = nn.ReplicationPad2d((1, 2, 0, 1))
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2)
        self.inorm = nn.InstanceNorm2d(12, affine=True)
        self.fc = nn.Linear(12, classes)
        with torch.no_grad():
            for m in (self.gn, self.inorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        x = F.silu(self.gn(self.conv1(self.pad1(x))))
        x = F.relu(self.inorm(self.conv2(self.pad2(x))))
        return self.fc(x.mean((2, 3)))


def gn_reflect():
    return GnReflect(), *image_batch(5, size=12)


# ----- language --------------------------------------------------------------------------------

def quiet_transformers():
    import transformers
    transformers.logging.set_verbosity_error()


def gpt2_lm(attn_implementation=None, ignore_one_label=True):
    """A 2-layer GPT-2 language model on 8 tokens; labels are the inputs shifted by one."""
    from transformers import GPT2Config, GPT2LMHeadModel
    quiet_transformers()

    class GPT2Logits(GPT2LMHeadModel):
        # an all-ones attention mask: without one, transformers 5 looks for packed sequences
        # with torch.diff, which the TorchScript exporter cannot export
        def forward(self, input_ids):
            return super().forward(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                   use_cache=False).logits

    vocab, seq = 96, 8
    attn = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    cfg = GPT2Config(vocab_size=vocab, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                     bos_token_id=0, eos_token_id=0, tie_word_embeddings=True, **attn)
    model = GPT2Logits(cfg)
    ids_exp, ids = torch.randint(0, vocab, (2, seq)), torch.randint(0, vocab, (5, seq))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, :-1] = ids[:, 1:]
    if ignore_one_label:
        labels[2, 4] = IGNORE_INDEX
    return model, [ids_exp], [ids], ["input_ids"], labels


def gpt2():
    return gpt2_lm()


def encoder_classifier(family):
    from transformers import AutoConfig, AutoModelForSequenceClassification
    quiet_transformers()
    vocab, seq, classes = 100, 8, 3
    cfg = AutoConfig.for_model(
        family, vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=24, type_vocab_size=2 if family == "bert"
        else 1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        classifier_dropout=0.0, num_labels=classes, pad_token_id=1,
        # DistilBERT's own names for the same settings
        dim=32, n_layers=2, n_heads=4, hidden_dim=64, dropout=0.0, attention_dropout=0.0,
        seq_classif_dropout=0.0)
    inner = AutoModelForSequenceClassification.from_config(cfg)

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = inner

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def batch(b, pad_rows):
        ids = torch.randint(3, vocab, (b, seq))
        ids[:, 0] = 0
        am = torch.ones(b, seq, dtype=torch.int64)
        for r, keep in pad_rows:
            am[r, keep:] = 0
            ids[r, keep:] = 1
        return [ids, am]

    exp, ref = batch(2, [(1, 6)]), batch(5, [(1, 5), (3, 3), (4, 7)])
    return Logits(), exp, ref, ["input_ids", "attention_mask"], torch.randint(0, classes, (5,))


def bert():
    return encoder_classifier("bert")


def roberta():
    return encoder_classifier("roberta")


class EinsumAttention(nn.Module):
    """Self-attention and projections written with torch.einsum."""

    def __init__(self, dim=16, heads=2, classes=6, vocab=30):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.emb = nn.Embedding(vocab, dim)
        self.wqkv = nn.Parameter(torch.randn(3, heads, dim, dim // heads) * 0.3)
        self.wo = nn.Parameter(torch.randn(heads, dim // heads, dim) * 0.3)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Parameter(torch.randn(dim, classes) * 0.3)

    def forward(self, ids):
        x = self.emb(ids)
        q, k, v = torch.einsum("bnd,thde->tbhne", x, self.wqkv)
        att = torch.einsum("bhid,bhjd->bhij", q, k) * self.hd ** -0.5
        o = torch.einsum("bhij,bhjd->bhid", att.softmax(-1), v)
        x = self.norm(x + torch.einsum("bhnd,hde->bne", o, self.wo))
        return torch.einsum("bnd,dc->bnc", x, self.head)


def einsum_attention():
    model = EinsumAttention()
    ids_exp, ids = torch.randint(0, 30, (2, 5)), torch.randint(0, 30, (3, 5))
    return model, [ids_exp], [ids], ["input_ids"], torch.randint(0, 6, (3, 5))


class TopKMoE(nn.Module):
    """Mixture of 4 experts with top-2 routing: TopK values weight the chosen experts."""

    def __init__(self, dim=12, experts=4, classes=5):
        super().__init__()
        self.gate = nn.Linear(dim, experts)
        self.experts = nn.Parameter(torch.randn(experts, dim, dim) * 0.3)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        vals, idx = torch.topk(self.gate(x).softmax(-1), 2, dim=-1)
        w = self.experts[idx]                                   # [b, 2, d, d]
        y = torch.einsum("bd,bkde,bk->be", x, w, vals / vals.sum(-1, keepdim=True))
        return self.head(torch.tanh(y))


def topk_moe():
    model = TopKMoE()
    return model, [torch.randn(3, 12)], [torch.randn(6, 12)], ["input"], \
        torch.randint(0, 5, (6,))


# ----- recommendation, recurrence, dropout -----------------------------------------------------

class BagRecSys(nn.Module):
    """EmbeddingBag (mean) over fixed-length item histories + user embedding,
    dot interaction, MLP; predicts a rating (MSE)."""

    def __init__(self, users=20, items=40, dim=8):
        super().__init__()
        self.user = nn.Embedding(users, dim)
        self.items = nn.EmbeddingBag(items, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(2 * dim + 1, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, user_ids, history):
        u, h = self.user(user_ids), self.items(history)
        dot = (u * h).sum(1, keepdim=True)
        return self.mlp(torch.cat([u, h, dot], 1)).squeeze(1)


def bag_recsys():
    model = BagRecSys()
    exp = [torch.tensor([1, 4]), torch.tensor([[3, 5, 5], [9, 0, 0]])]
    ref = [torch.tensor([2, 7, 2, 11]),
           torch.tensor([[1, 2, 3], [3, 8, 0], [30, 39, 39], [6, 0, 0]])]
    return model, exp, ref, ["user_ids", "history"], torch.rand(4) * 4 + 1


class Recurrent(nn.Module):
    def __init__(self, cell, classes=4):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.rnn = cell(8, 12, batch_first=True)
        self.head = nn.Linear(12, classes)

    def forward(self, ids):
        return self.head(self.rnn(self.emb(ids))[0][:, -1])


def lstm():
    model = Recurrent(nn.LSTM)
    return model, [torch.randint(0, 20, (2, 6))], [torch.randint(0, 20, (3, 6))], ["ids"], \
        torch.randint(0, 4, (3,))


def gru():
    model = Recurrent(nn.GRU)
    return model, [torch.randint(0, 20, (2, 6))], [torch.randint(0, 20, (3, 6))], ["ids"], \
        torch.randint(0, 4, (3,))


def dropout_mlp():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    return model, [torch.randn(3, 16)], [torch.randn(8, 16)], ["input"], \
        torch.randint(0, 4, (8,))


def mlp():
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 4))
    return model, [torch.randn(3, 16)], [torch.randn(8, 16)], ["input"], \
        torch.randint(0, 4, (8,))


def cnn_bn():
    return ef.CnnBn(), *image_batch(10, size=16)


# ----- more families ---------------------------------------------------------------------------

def tv_efficientnet():
    import torchvision
    model = torchvision.models.efficientnet_b0(num_classes=10, dropout=0.0,
                                               stochastic_depth_prob=0.0)
    randomize_bn(model)
    return model, *image_batch(10)


def tv_deeplab():
    import torchvision

    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
                num_classes=3, weights=None, weights_backbone=None)

        def forward(self, x):
            return self.net(x)["out"].permute(0, 2, 3, 1)

    model = Seg()
    randomize_bn(model)
    x_exp, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    return model, [x_exp], [x], ["input"], torch.randint(0, 3, (2, 32, 32))


def timm_vit():
    import timm
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10,
                              img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)
    return model, *image_batch(10)


def timm_swin():
    import timm
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10,
                              img_size=32, patch_size=2, window_size=4, embed_dim=16,
                              depths=(2, 2), num_heads=(2, 4), drop_path_rate=0.0)
    return model, *image_batch(10)


def gpt2_eager():
    return gpt2_lm(attn_implementation="eager", ignore_one_label=False)


def distilbert():
    return encoder_classifier("distilbert")


def hf_vit():
    from transformers import ViTConfig, ViTForImageClassification
    quiet_transformers()

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = ViTForImageClassification(ViTConfig(
                image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=64, num_labels=10,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))

        def forward(self, x):
            return self.m(pixel_values=x).logits

    return Logits(), *image_batch(10)


class TorchTransformer(nn.Module):
    """nn.TransformerEncoder (post-norm, ReLU) + nn.MultiheadAttention pooling, causal mask."""

    def __init__(self, vocab=40, dim=16, classes=5):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.pool = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.query = nn.Parameter(torch.randn(1, 1, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, ids):
        x = self.emb(ids)
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        x = self.enc(x, mask=mask, is_causal=True)
        q = self.query.expand(x.shape[0], -1, -1)
        p, _ = self.pool(q, x, x)
        return self.head(p[:, 0])


def torch_transformer():
    return TorchTransformer(), [torch.randint(0, 40, (2, 6))], [torch.randint(0, 40, (3, 6))], \
        ["ids"], torch.randint(0, 5, (3,))


class MiscOps(nn.Module):
    """PixelShuffle, bicubic upsampling, ceil-mode average pooling without padding counts,
    RMSNorm, Mish / ELU / Softplus / tanh-GELU, F.normalize, ConvTranspose with output_size,
    Conv1d + MaxPool1d, masked_fill and cumsum."""

    def __init__(self, classes=6, rms_module=True):
        super().__init__()
        self.rms_module = rms_module  # aten::rms_norm has no TorchScript export: spelled out
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1)
        self.rms = nn.RMSNorm(4, eps=1e-6)
        self.conv1d = nn.Conv1d(4, 8, 3)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        x = F.mish(self.conv(x))                          # [N,16,H,W]
        x = self.shuffle(x)                               # [N,4,2H,2W]
        x = F.interpolate(x, scale_factor=0.5, mode="bicubic", align_corners=False)
        x = self.pool(F.elu(x))                           # [N,4,6,6] for H=W=10
        x = self.up(x, output_size=[12, 12])
        x = x.permute(0, 2, 3, 1)
        if self.rms_module:
            x = self.rms(x)
        else:
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.rms.weight
        x = x.permute(0, 3, 1, 2)
        x = F.normalize(F.softplus(x), dim=1).flatten(2)  # [N,4,144]
        x = x.masked_fill(x > 0.9, 0.0).cumsum(-1) * 0.01
        x = F.max_pool1d(F.gelu(self.conv1d(x), approximate="tanh"), 4)
        return self.head(x.mean(-1))


def misc_ops():
    return MiscOps(), *image_batch(6, size=10)


def misc_ops_manual_rms():
    return MiscOps(rms_module=False), *image_batch(6, size=10)


class Dlrm(nn.Module):
    """DLRM-style: dense MLP + 3 embedding tables, pairwise dot interactions (bmm) read with
    constant triangle indices, top MLP; CTR logit trained with MSE."""

    def __init__(self, dim=8):
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, dim))
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in (11, 17, 23))
        self.top = nn.Sequential(nn.Linear(dim + 6, 16), nn.ReLU(), nn.Linear(16, 1))
        li, lj = torch.tril_indices(4, 4, offset=-1)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)

    def forward(self, dense, sparse):
        d = self.bottom(dense)
        feats = torch.stack([d] + [t(sparse[:, k]) for k, t in enumerate(self.tables)], 1)
        z = torch.bmm(feats, feats.transpose(1, 2))[:, self.li, self.lj]
        return self.top(torch.cat([d, z], 1)).squeeze(1)


def dlrm():
    model = Dlrm()
    sp = lambda b: torch.stack([torch.randint(0, n, (b,)) for n in (11, 17, 23)], 1)
    return model, [torch.randn(2, 5), sp(2)], [torch.randn(6, 5), sp(6)], ["dense", "sparse"], \
        torch.rand(6)



TS, DY = "torchscript", "dynamo"
MSE = "mse"
ZOO = {
    "resnet18_ts": Entry(tv_resnet18, TS, 17, 101),
    "resnet18_dynamo": Entry(tv_resnet18, DY, 18, 101),
    "mobilenetv3_ts": Entry(tv_mobilenet_v3_small, TS, 17, 102),
    "mobilenetv3_dynamo": Entry(tv_mobilenet_v3_small, DY, 18, 102),
    "tv_vit_ts": Entry(tv_vit, TS, 17, 103),
    "tv_vit_dynamo": Entry(tv_vit, DY, 18, 103),
    "convnext_ts": Entry(timm_convnext, TS, 17, 104),
    "convnext_dynamo": Entry(timm_convnext, DY, 18, 104),
    "unet_ts": Entry(unet, TS, 17, 105, notes=[
        "logits are [N, H, W, classes] (permuted in the model): cross-entropy over the last "
        "axis is per-pixel cross-entropy; labels [N, H, W] with an ignored (-100) region"]),
    "unet_dynamo": Entry(unet, DY, 18, 105),
    "gn_reflect_ts": Entry(gn_reflect, TS, 17, 106, notes=[
        "GroupNorm exports as Reshape + InstanceNormalization + Reshape + Mul + Add; "
        "ReflectionPad2d / ReplicationPad2d as Pad reflect / edge"]),
    "gn_reflect_dynamo": Entry(gn_reflect, DY, 18, 106),
    "gn_reflect_dynamo20": Entry(gn_reflect, DY, 20, 106),
    "gn_reflect_dynamo21": Entry(gn_reflect, DY, 21, 106),
    "gn_reflect_dynamo23": Entry(gn_reflect, DY, 23, 106),
    "gpt2_ts": Entry(gpt2, TS, 17, 107),
    "bert_dynamo": Entry(bert, DY, 18, 108),
    "roberta_ts": Entry(roberta, TS, 17, 109),
    "roberta_dynamo": Entry(roberta, DY, 18, 109, notes=[
        "HuggingFace RobertaForSequenceClassification from a config (random weights); "
        "position ids from the padding mask (CumSum); attention_mask has padding zeros"]),
    "einsum_ts": Entry(einsum_attention, TS, 17, 110),
    "einsum_dynamo": Entry(einsum_attention, DY, 18, 110),
    "topk_moe_ts": Entry(topk_moe, TS, 17, 111),
    "topk_moe_dynamo": Entry(topk_moe, DY, 18, 111),
    "bag_recsys_ts": Entry(bag_recsys, TS, 17, 112, loss=MSE),
    "bag_recsys_dynamo": Entry(bag_recsys, DY, 18, 112, loss=MSE),
    "lstm_ts": Entry(lstm, TS, 17, 113),
    "lstm_dynamo": Entry(lstm, DY, 18, 113),
    "gru_ts": Entry(gru, TS, 17, 114),
    "dropout_ts": Entry(dropout_mlp, TS, 17, 115, deterministic=False),
    "dropout_dynamo": Entry(dropout_mlp, DY, 18, 115, deterministic=False),
    "mlp_ts19": Entry(mlp, TS, 19, 116),
    "mlp_dynamo20": Entry(mlp, DY, 20, 116),
    "cnn_bn_dynamo20": Entry(cnn_bn, DY, 20, 117),
    "efficientnet_ts": Entry(tv_efficientnet, TS, 17, 118),
    "efficientnet_dynamo": Entry(tv_efficientnet, DY, 18, 118),
    "lraspp_ts": Entry(tv_deeplab, TS, 17, 119),
    "lraspp_dynamo": Entry(tv_deeplab, DY, 18, 119),
    "timm_vit_ts": Entry(timm_vit, TS, 17, 120),
    "timm_vit_dynamo": Entry(timm_vit, DY, 18, 120),
    "swin_ts": Entry(timm_swin, TS, 17, 121),
    "swin_dynamo": Entry(timm_swin, DY, 18, 121),
    "gpt2_eager_ts": Entry(gpt2_eager, TS, 17, 122),
    "gpt2_eager_dynamo": Entry(gpt2_eager, DY, 18, 122),
    "distilbert_ts": Entry(distilbert, TS, 17, 123),
    "distilbert_dynamo": Entry(distilbert, DY, 18, 123),
    "hf_vit_ts": Entry(hf_vit, TS, 17, 124),
    "hf_vit_dynamo": Entry(hf_vit, DY, 18, 124),
    "torch_transformer_ts": Entry(torch_transformer, TS, 17, 125),
    "torch_transformer_dynamo": Entry(torch_transformer, DY, 18, 125),
    "misc_ops_ts": Entry(misc_ops_manual_rms, TS, 17, 126),
    "misc_ops_dynamo": Entry(misc_ops, DY, 18, 126),
    "dlrm_ts": Entry(dlrm, TS, 17, 127, loss=MSE),
    "dlrm_dynamo": Entry(dlrm, DY, 18, 127, loss=MSE),
}


def export(name, out_dir):
    e = ZOO[name]
    seed(e.offset)
    model, exp, ref, input_names, labels = e.build()
    with export_into(out_dir, e.opset):
        ef.make_fixture(name, model, exp, ref, input_names, "logits" if e.loss != MSE else
                        "pred", labels, e.loss, e.exporter, extra_notes=e.notes,
                        extra_meta={"opset": e.opset, "deterministic": e.deterministic,
                                    "generator": "export_zoo.py"})


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=ef.HERE, help="folder for the model folders")
    p.add_argument("names", nargs="*", help="zoo entries, or 'all' (default: the committed)")
    a = p.parse_args(argv)
    names = list(ZOO) if a.names == ["all"] else a.names or list(COMMITTED)
    os.makedirs(a.out, exist_ok=True)
    failed = []
    for n in names:
        try:
            export(n, a.out)
        except Exception as exc:  # noqa: BLE001 - one model failing to export is a result
            print(f"[{n}] EXPORT FAILED: {type(exc).__name__}: {str(exc)[:400]}")
            failed.append(n)
    if failed:
        print("export failed:", " ".join(failed))
    return 1 if failed and a.out == ef.HERE else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
