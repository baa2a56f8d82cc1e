"""A tiny, randomly initialised CLAP model that a test builds and saves itself (nothing is fetched).

It has LAION-CLAP's shape where the code depends on it — a RoBERTa text tower with a byte-level
BPE tokenizer, an HTS-AT audio tower behind the 48 kHz / 10 s ClapFeatureExtractor, projections
to a shared space — at a size that loads and runs in well under a second. Its judgements mean
nothing; it exists so the real loading and embedding code runs on real weights files.
"""

from __future__ import annotations

import json
from pathlib import Path

PROJECTION_DIM = 16


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table: the alphabet of a byte-level BPE vocabulary."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def save_tiny_clap(folder: Path, seed: int = 0) -> Path:
    """Write a tiny ClapModel + ClapProcessor to ``folder`` with ``save_pretrained``; weights from ``seed``."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *_bytes_to_unicode().values(), "<mask>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=64)
    config = ClapConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "max_position_embeddings": 66,
            "projection_dim": PROJECTION_DIM,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        audio_config={
            "depths": [1, 1],
            "num_attention_heads": [1, 2],
            "patch_embeds_hidden_size": 16,
            "hidden_size": 32,
            "projection_dim": PROJECTION_DIM,
        },
        projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    # rand_trunc, as LAION's unfused checkpoints: the unfused audio tower takes one mel channel.
    processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
