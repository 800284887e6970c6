#!/usr/bin/env python3
"""Regenerate the PyTorch reference fixtures under models/.

Each fixture folder holds an ONNX export of a small model in training mode, the gradients
PyTorch computes for one fixed batch (keyed by ONNX initializer name), and a meta.json that
describes the export. The `optim` folder holds step-by-step torch.optim trajectories.

Run from anywhere:
    /work/torch-venv/bin/python models/export_fixtures.py            # all fixtures
    /work/torch-venv/bin/python models/export_fixtures.py mlp gpt2   # a subset

Needs torch, onnx, onnxscript, numpy (and transformers for gpt2 / bert). CPU only, float32.
Check the results with models/verify_fixtures.py (numpy + onnxruntime only).
"""
import copy
import json
import os
import shutil
import sys
import warnings
from collections import Counter

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20251128
IGNORE_INDEX = -100

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def seed(offset=0):
    torch.manual_seed(SEED + offset)
    np.random.seed((SEED + offset) % (2**32))


def fresh_dir(name):
    d = os.path.join(HERE, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def export_torchscript(model, args, path, input_names, output_names, dynamic_batch=True):
    dyn = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    torch.onnx.export(
        model, tuple(args), path,
        dynamo=False, opset_version=17,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
        input_names=input_names, output_names=output_names,
        dynamic_axes=dyn,
    )


# Per-node metadata keys the dynamo exporter writes that only carry source locations (absolute
# paths of this machine). They are stripped so the files are small and reproducible; every
# other node metadata key (namespace, class_hierarchy, name_scopes) is kept.
STRIPPED_NODE_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node")


def export_dynamo(model, args, path, input_names, output_names, dynamic_batch=True):
    dyn = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        dyn = tuple({0: batch} for _ in args)
    prog = torch.onnx.export(
        model, tuple(args), None,
        dynamo=True, opset_version=18, optimize=False,
        input_names=input_names, output_names=output_names,
        dynamic_shapes=dyn,
    )
    mp = prog.model_proto
    for node in mp.graph.node:
        keep = [p for p in node.metadata_props if p.key not in STRIPPED_NODE_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save_model(mp, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(path) + ".data", size_threshold=0,
                    convert_attribute=False)
    os.chmod(path + ".data", 0o644)


def load_initializers(path):
    m = onnx.load(path)  # external data beside the file is loaded too
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return m, inits


def aliases_of(model, param):
    return [n for n, q in model.named_parameters(remove_duplicate=False) if q is param]


def map_params(model, inits, notes):
    """torch parameter (first name) -> ONNX initializer name; every alias checked."""
    mapping, tied = {}, []
    used = set()
    for name, p in model.named_parameters():
        al = aliases_of(model, p)
        hits = [a for a in al if a in inits]
        if len(hits) > 1:
            raise SystemExit(f"parameter {name} appears {len(hits)} times as initializer: {hits}")
        if len(hits) == 1:
            onnx_name = hits[0]
        else:
            val = p.detach().numpy()
            cands = [k for k, v in inits.items()
                     if v.shape == val.shape and v.dtype == val.dtype and np.array_equal(v, val)]
            if len(cands) != 1:
                raise SystemExit(f"parameter {name} (aliases {al}) not found among initializers"
                                 f" (value matches: {cands})")
            onnx_name = cands[0]
            notes.append(f"torch parameter {name} is initializer {onnx_name} (matched by value)")
        if not np.array_equal(inits[onnx_name], p.detach().numpy()):
            raise SystemExit(f"initializer {onnx_name} differs from torch parameter {name}")
        if onnx_name in used:
            raise SystemExit(f"initializer {onnx_name} mapped twice")
        used.add(onnx_name)
        mapping[name] = onnx_name
        if len(al) > 1:
            tied.append({"initializer": onnx_name, "torch_names": al})
    return mapping, tied


def map_buffers(model, inits):
    out = {}
    for name, b in model.named_buffers():
        if name in inits:
            out[name] = name
    return out


def graph_io(m):
    def shape(vi):
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            dims.append(d.dim_param if d.dim_param else d.dim_value)
        return dims

    def dtype(vi):
        return onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name

    inits = {i.name for i in m.graph.initializer}
    ins = [{"name": i.name, "dtype": dtype(i), "shape": shape(i)} for i in m.graph.input
           if i.name not in inits]
    outs = [{"name": o.name, "dtype": dtype(o), "shape": shape(o)} for o in m.graph.output]
    return ins, outs


def cross_entropy(logits, labels):
    v = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, v), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="mean")


def compute_loss(kind, out, labels):
    if kind == "cross-entropy":
        return cross_entropy(out, labels)
    if kind == "mse":
        return F.mse_loss(out, labels, reduction="mean")
    raise ValueError(kind)


def make_fixture(name, model, export_args, ref_inputs, input_names, output_name, labels,
                 loss_kind, exporter, extra_notes=(), extra_meta=None):
    """Export `model` (train mode), compute the reference and write the folder."""
    d = fresh_dir(name)
    path = os.path.join(d, "model.onnx")
    notes = list(extra_notes)
    model.train()

    before = copy.deepcopy(model.state_dict())
    if exporter == "torchscript":
        export_torchscript(model, export_args, path, input_names, [output_name])
        opset = 17
    else:
        export_dynamo(model, export_args, path, input_names, [output_name])
        opset = 18
    after_export = copy.deepcopy(model.state_dict())
    # The TorchScript exporter traces the train-mode model once, which updates BatchNorm running
    # statistics (and num_batches_tracked) before they are written to the file. The ONNX file is
    # the ground truth: start the reference from the buffer values the file holds.
    mp, inits = load_initializers(path)
    model.load_state_dict(before)
    with torch.no_grad():
        for bname, b in model.named_buffers():
            if bname in inits and b.dtype.is_floating_point:
                if not np.array_equal(inits[bname], before[bname].numpy()):
                    traced = np.array_equal(inits[bname], after_export[bname].numpy())
                    notes.append(f"initializer {bname} differs from the buffer before export"
                                 + (" (it holds the value after the exporter's train-mode trace)"
                                    if traced else "")
                                 + "; the reference starts from the initializer value")
                b.copy_(torch.from_numpy(inits[bname]))

    pmap, tied = map_params(model, inits, notes)
    bmap = map_buffers(model, inits)
    mapped = set(pmap.values()) | set(bmap.values())
    other_inits = sorted(k for k in inits if k not in mapped)

    # reference forward/backward in train mode
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(*ref_inputs)
    loss = compute_loss(loss_kind, out, labels)
    loss.backward()

    ref = {}
    for n, t in zip(input_names, ref_inputs):
        ref[f"input:{n}"] = t.detach().numpy()
    ref["labels"] = labels.detach().numpy()
    ref["loss"] = np.array(loss.item(), dtype=np.float64)
    ref["logits"] = out.detach().numpy()
    for tname, oname in pmap.items():
        p = dict(model.named_parameters())[tname]
        g = p.grad
        if g is None:
            raise SystemExit(f"{name}: parameter {tname} got no gradient")
        ref[f"grad:{oname}"] = g.detach().numpy().astype(np.float32)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn:
        bufs = dict(model.named_buffers())
        for bname, oname in bmap.items():
            if bufs[bname].dtype.is_floating_point:
                ref[f"buffer_after:{oname}"] = bufs[bname].detach().numpy().copy()
        # eval-mode output with the initial running statistics (what a BatchNorm export in
        # inference mode computes), for checking the dynamo file as exported
        model.load_state_dict(before)
        with torch.no_grad():
            for bname, b in model.named_buffers():
                if bname in inits and b.dtype.is_floating_point:
                    b.copy_(torch.from_numpy(inits[bname]))
        model.eval()
        with torch.no_grad():
            ref["logits_eval"] = model(*ref_inputs).detach().numpy()
        model.train()
    np.savez(os.path.join(d, "reference.npz"), **ref)

    ins, outs = graph_io(mp)
    ops = Counter(n.op_type for n in mp.graph.node)
    domains = sorted({n.domain or "ai.onnx" for n in mp.graph.node})
    bn_modes = []
    for n in mp.graph.node:
        if n.op_type == "BatchNormalization":
            tm = [onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "training_mode"]
            mom = [onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "momentum"]
            bn_modes.append({"node": n.name, "training_mode": int(tm[0]) if tm else 0,
                             "momentum_attr": float(mom[0]) if mom else None,
                             "outputs": len(n.output)})
    if bn_modes:
        notes.append("BatchNormalization training_mode per node: "
                     + ", ".join(str(b["training_mode"]) for b in bn_modes))
    n_params = int(sum(p.numel() for p in model.parameters()))
    pset = set(pmap.values())
    consumer_ops = Counter(n.op_type for n in mp.graph.node for i in n.input if i in pset)
    for t in tied:
        t["consumers"] = [f"{n.op_type}:{n.name}" for n in mp.graph.node
                          if t["initializer"] in n.input]
    meta = {
        "fixture": name,
        "exporter": exporter,
        "opset": opset,
        "torch_version": torch.__version__,
        "onnx_file": "model.onnx",
        "external_data": "model.onnx.data" if exporter == "dynamo" else None,
        "loss": loss_kind,
        "ignore_index": IGNORE_INDEX if loss_kind == "cross-entropy" else None,
        "logits": output_name,
        "labels": "labels",
        "labels_dtype": ref["labels"].dtype.name,
        "labels_shape": list(ref["labels"].shape),
        "model_inputs": [i["name"] for i in ins],
        "graph_inputs": ins,
        "graph_outputs": outs,
        "export_batch": int(export_args[0].shape[0]),
        "reference_batch": int(ref_inputs[0].shape[0]),
        "parameters": [pmap[k] for k in pmap],
        "parameter_count": n_params,
        "torch_to_onnx": pmap,
        "tied_parameters": tied,
        "buffers": {k: v for k, v in bmap.items()},
        "batchnorm_nodes": bn_modes,
        "other_initializers": other_inits,
        "parameter_consumer_ops": dict(sorted(consumer_ops.items())),
        "op_types": sorted(ops),
        "op_counts": dict(sorted(ops.items())),
        "op_domains": domains,
        "model_local_functions": len(mp.functions),
        "notes": notes,
    }
    if exporter == "dynamo":
        meta["stripped_node_metadata"] = list(STRIPPED_NODE_METADATA)
    if extra_meta:
        meta.update(extra_meta)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"[{name}] {exporter} opset {opset}: {n_params} params, loss {loss.item():.6f}, "
          f"ops {sorted(ops)}")
    return meta


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

def make_mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def fixture_mlp():
    seed(1)
    model = make_mlp()
    x_exp = torch.randn(4, 64)
    x = torch.randn(6, 64)
    y = torch.randint(0, 10, (6,))
    make_fixture("mlp", model, [x_exp], [x], ["input"], "logits", y, "cross-entropy",
                 "torchscript")


class CnnBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        # grouped + dilated, no bias (BatchNorm follows)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def randomize_bn(model):
    """Non-trivial BatchNorm affine parameters and running statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)


def bn_image_fixture(name, seed_, make_model, export_batch, batch, size, exporter, **kw):
    """A 10-class image classifier with randomized BatchNorm statistics on `size`² RGB
    images: `export_batch` images to export with, `batch` to check with."""
    seed(seed_)
    model = make_model()
    randomize_bn(model)
    x_exp = torch.randn(export_batch, 3, size, size)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    make_fixture(name, model, [x_exp], [x], ["input"], "logits", y, "cross-entropy", exporter,
                 **kw)


def fixture_cnn_bn():
    bn_image_fixture("cnn_bn", 2, CnnBn, 4, 6, 16, "torchscript")


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + idt)


class SmallResNet(nn.Module):
    """ResNet-18 layout (4 stages x 2 basic blocks) with narrow widths, for 32x32 images."""

    def __init__(self, widths=(8, 16, 24, 32), classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def fixture_resnet():
    bn_image_fixture("resnet", 3, SmallResNet, 2, 4, 32, "dynamo", extra_notes=[
        "dynamo exporter writes BatchNormalization in inference mode (no "
        "training_mode attribute, one output) although the model was in train "
        "mode: ORT on model.onnx as-is computes logits_eval, not logits"])


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.scale = self.hd ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(0.0)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        att = self.attn_drop(att.softmax(dim=-1))
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    def __init__(self, image=32, patch=4, dim=96, depth=2, heads=4, hidden=192, classes=10):
        super().__init__()
        n = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.pos_drop = nn.Dropout(0.0)
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        with torch.no_grad():
            self.cls_token.normal_(0, 0.02)
            self.pos_embed.normal_(0, 0.02)
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.uniform_(0.8, 1.2)
                    m.bias.uniform_(-0.1, 0.1)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, x], dim=1) + self.pos_embed)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def fixture_vit():
    for name, exporter, off in (("vit", "torchscript", 4), ("vit_dynamo", "dynamo", 4)):
        seed(off)
        model = SmallViT()
        x_exp = torch.randn(2, 3, 32, 32)
        x = torch.randn(4, 3, 32, 32)
        y = torch.randint(0, 10, (4,))
        make_fixture(name, model, [x_exp], [x], ["input"], "logits", y, "cross-entropy",
                     exporter, extra_notes=[
                         "same weights, batch and labels in vit and vit_dynamo (same seed)",
                         "nn.Dropout(p=0) modules after softmax, in the MLP and after the "
                         "position embedding; gradients are deterministic"])


def fixture_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    import transformers
    transformers.logging.set_verbosity_error()

    class GPT2Logits(GPT2LMHeadModel):
        def forward(self, input_ids):
            return super().forward(input_ids=input_ids, use_cache=False).logits

    seed(5)
    vocab, seq = 96, 8
    cfg = GPT2Config(vocab_size=vocab, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                     bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    model = GPT2Logits(cfg)
    assert model.lm_head.weight is model.transformer.wte.weight
    ids_exp = torch.randint(0, vocab, (2, seq))
    ids = torch.randint(0, vocab, (5, seq))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, :-1] = ids[:, 1:]            # next-token targets; last position ignored
    labels[1, 3] = IGNORE_INDEX             # a few more ignored positions
    labels[3, :2] = IGNORE_INDEX
    make_fixture("gpt2", model, [ids_exp], [ids], ["input_ids"], "logits", labels,
                 "cross-entropy", "dynamo", extra_notes=[
                     "HuggingFace transformers GPT2LMHeadModel (random init from a config, "
                     "attn_implementation default = sdpa), forward returns .logits",
                     "labels are already shifted (labels[:, t] = input_ids[:, t+1]); the loss "
                     "does no shifting: mean cross-entropy over the last axis, ignore_index -100",
                     "tied token embedding / LM head: ONE initializer, see tied_parameters",
                     "exported with optimize=False; sequence length is static (8), batch dynamic",
                     "c_attn output is split into q, k, v by SplitToSequence + 3 SequenceAt "
                     "(aten.split): on the parameter->loss path",
                     "attention (sdpa decomposition): Where(causal mask, scores, -inf-like) -> "
                     "Softmax -> Where(IsNaN(p), 0, p) -> MatMul; GatherND / CumSum / And / Not / "
                     "LessOrEqual / Range build the mask and positions (no parameters)",
                     "GELU is the tanh approximation (gelu_new): Mul, Pow(x, 3), Tanh, Add",
                     "Conv1D layers are Gemm (addmm) on [batch*seq, d] views"],
                 extra_meta={"transformers_version": transformers.__version__,
                             "config": {"vocab_size": vocab, "n_positions": 16, "n_embd": 32,
                                        "n_layer": 2, "n_head": 4, "seq": seq}})


def fixture_bert():
    from transformers import BertConfig, BertForSequenceClassification
    import transformers
    transformers.logging.set_verbosity_error()

    class BertLogits(BertForSequenceClassification):
        def forward(self, input_ids, attention_mask, token_type_ids):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).logits

    seed(6)
    vocab, seq, classes = 100, 8, 3
    cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=16,
                     type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     classifier_dropout=0.0, num_labels=classes)
    model = BertLogits(cfg)

    def batch(b, pad_rows):
        ids = torch.randint(1, vocab, (b, seq))
        ids[:, 0] = 2  # a [CLS]-like id
        am = torch.ones(b, seq, dtype=torch.int64)
        tt = torch.zeros(b, seq, dtype=torch.int64)
        tt[:, seq // 2:] = 1
        for r, keep in pad_rows:
            am[r, keep:] = 0
            ids[r, keep:] = 0
            tt[r, keep:] = 0
        return ids, am, tt

    exp = batch(2, [(1, 6)])
    ref = batch(5, [(1, 5), (3, 3), (4, 7)])
    y = torch.randint(0, classes, (5,))
    make_fixture("bert", model, list(exp), list(ref),
                 ["input_ids", "attention_mask", "token_type_ids"], "logits", y,
                 "cross-entropy", "torchscript", extra_notes=[
                     "HuggingFace transformers BertForSequenceClassification (random init, "
                     "attn_implementation default = sdpa), forward returns .logits",
                     "attention_mask has padding zeros in rows 1, 3, 4 of the reference batch",
                     "Dropout nodes have ratio 0 (hidden/attention/classifier dropout 0) and "
                     "training_mode true"],
                 extra_meta={"transformers_version": transformers.__version__,
                             "config": {"vocab_size": vocab, "hidden_size": 32, "layers": 2,
                                        "heads": 4, "intermediate_size": 64, "seq": seq,
                                        "classes": classes}})


class RecSys(nn.Module):
    def __init__(self, users=50, items=80, dim=8, hidden=32):
        super().__init__()
        self.user_emb = nn.Embedding(users, dim)
        self.item_emb = nn.Embedding(items, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, user_ids, item_ids):
        x = torch.cat([self.user_emb(user_ids), self.item_emb(item_ids)], dim=1)
        return self.mlp(x).squeeze(1)


def fixture_recsys():
    seed(7)
    model = RecSys()
    u_exp, i_exp = torch.randint(0, 50, (4,)), torch.randint(0, 80, (4,))
    # repeated ids so embedding gradients accumulate over rows
    u = torch.tensor([3, 17, 3, 42, 9, 17, 3, 0])
    i = torch.tensor([5, 5, 71, 12, 5, 30, 79, 12])
    y = torch.rand(8) * 4 + 1  # ratings in [1, 5)
    make_fixture("recsys", model, [u_exp, i_exp], [u, i], ["user_ids", "item_ids"], "pred", y,
                 "mse", "torchscript", extra_notes=[
                     "pred is [batch] (squeezed); labels float32 [batch]; reference ids repeat "
                     "(user 3 x3, user 17 x2, item 5 x3, item 12 x2)"])


# --------------------------------------------------------------------------------------------
# optimizer parity
# --------------------------------------------------------------------------------------------

OPTIM_CONFIGS = {
    "sgd": {"optimizer": "SGD", "lr": 0.1, "momentum": 0.0, "dampening": 0.0,
            "nesterov": False, "weight_decay": 0.0},
    "sgd_momentum": {"optimizer": "SGD", "lr": 0.1, "momentum": 0.9, "dampening": 0.1,
                     "nesterov": False, "weight_decay": 0.0},
    "sgd_nesterov": {"optimizer": "SGD", "lr": 0.1, "momentum": 0.9, "dampening": 0.0,
                     "nesterov": True, "weight_decay": 0.0},
    "sgd_wd": {"optimizer": "SGD", "lr": 0.1, "momentum": 0.0, "dampening": 0.0,
               "nesterov": False, "weight_decay": 0.05},
    "sgd_nesterov_wd": {"optimizer": "SGD", "lr": 0.1, "momentum": 0.9, "dampening": 0.0,
                        "nesterov": True, "weight_decay": 0.05},
    "adam": {"optimizer": "Adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
             "weight_decay": 0.0, "amsgrad": False},
    "adam_wd": {"optimizer": "Adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
                "weight_decay": 0.01, "amsgrad": False},
    "adamw": {"optimizer": "AdamW", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
              "weight_decay": 0.01, "amsgrad": False},
}


def make_optimizer(params, cfg):
    kw = {k: v for k, v in cfg.items() if k != "optimizer"}
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    # foreach=False: the plain per-parameter loop, the textbook formulas
    cls = getattr(torch.optim, cfg["optimizer"])
    return cls(params, foreach=False, **kw)


OPTIM_DIMS = (16, 16, 4)  # a smaller copy of the mlp architecture keeps optim.npz small


def fixture_optim():
    d = fresh_dir("optim")
    seed(1)
    din, dh, dout = OPTIM_DIMS
    model = nn.Sequential(nn.Linear(din, dh), nn.ReLU(), nn.Linear(dh, dout))
    x_exp = torch.randn(4, din)
    export_torchscript(model, [x_exp], os.path.join(d, "model.onnx"), ["input"], ["logits"])
    _, inits = load_initializers(os.path.join(d, "model.onnx"))
    init_state = copy.deepcopy(model.state_dict())
    names = [n for n, _ in model.named_parameters()]
    for n, p in model.named_parameters():
        assert np.array_equal(inits[n], p.detach().numpy()), n

    seed(100)
    steps, bsz = 5, 8
    batches = [(torch.randn(bsz, din), torch.randint(0, dout, (bsz,))) for _ in range(steps)]
    data = {}
    for k, (x, y) in enumerate(batches):
        data[f"batch{k}:input"] = x.numpy()
        data[f"batch{k}:labels"] = y.numpy()
    for n, p in model.named_parameters():
        data[f"init:{n}"] = p.detach().numpy().copy()

    for cname, cfg in OPTIM_CONFIGS.items():
        model.load_state_dict(init_state)
        opt = make_optimizer(model.parameters(), cfg)
        for k, (x, y) in enumerate(batches):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            data[f"{cname}:step{k}:loss"] = np.array(loss.item(), dtype=np.float64)
            for n, p in model.named_parameters():
                data[f"{cname}:step{k}:grad:{n}"] = p.grad.detach().numpy().copy()
            opt.step()
            for n, p in model.named_parameters():
                data[f"{cname}:step{k}:{n}"] = p.detach().numpy().copy()
                st = opt.state[p]
                for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                    if key in st and st[key] is not None:
                        data[f"{cname}:step{k}:{key}:{n}"] = st[key].detach().numpy().copy()
    np.savez(os.path.join(d, "optim.npz"), **data)
    desc = {
        "model": f"model.onnx: Linear({din},{dh}) - ReLU - Linear({dh},{dout}) (the mlp "
                 "architecture, narrower), TorchScript exporter opset 17, training mode, dynamic "
                 "batch, input 'input', output 'logits'; its initializers equal init:<name>",
        "torch_version": torch.__version__,
        "parameters": names,
        "dims": list(OPTIM_DIMS),
        "steps": steps,
        "batch_size": bsz,
        "loss": "cross-entropy (mean over the batch)",
        "implementation": "torch.optim, foreach=False, maximize=False, one param group",
        "configs": OPTIM_CONFIGS,
        "keys": {
            "batch<k>:input / batch<k>:labels": "batch used by step k (k = 0..4)",
            "init:<name>": "parameters before step 0",
            "<config>:step<k>:loss": "float64 loss of batch k at the weights before step k",
            "<config>:step<k>:grad:<name>": "gradient of that loss",
            "<config>:step<k>:<name>": "parameters after step k (k = 0 is after the first "
                                       "optimizer.step())",
            "<config>:step<k>:momentum_buffer:<name>": "SGD momentum buffer after step k "
                                                       "(configs with momentum > 0)",
            "<config>:step<k>:exp_avg:<name>, exp_avg_sq:<name>": "Adam/AdamW moments after "
                                                                  "step k",
        },
    }
    with open(os.path.join(d, "optim.json"), "w") as f:
        json.dump(desc, f, indent=1)
        f.write("\n")
    print(f"[optim] {len(OPTIM_CONFIGS)} configs x {steps} steps")


FIXTURES = {
    "mlp": fixture_mlp,
    "cnn_bn": fixture_cnn_bn,
    "resnet": fixture_resnet,
    "vit": fixture_vit,          # writes vit and vit_dynamo
    "gpt2": fixture_gpt2,
    "bert": fixture_bert,
    "recsys": fixture_recsys,
    "optim": fixture_optim,
}


def main(argv):
    names = argv or list(FIXTURES)
    for n in names:
        if n == "vit_dynamo":
            n = "vit"
        FIXTURES[n]()


if __name__ == "__main__":
    main(sys.argv[1:])
