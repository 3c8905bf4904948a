"""Write a tiny random llama-architecture GGUF (about 0.5 MB) for tests.

Metadata and tensor layout follow the project's tiny-GGUF reference (tiny-gguf.md): E=64, 2 blocks,
FF=128, 4 heads, SentencePiece ("llama") vocabulary of <unk>/<s>/</s>, the 256 byte tokens and a few normal pieces, a
ChatML-like chat template, F32 random-normal x 0.05 weights (norms = ones), fixed seed. Output is
gibberish (random byte tokens, possibly invalid UTF-8 pieces); the protocol around it is real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_CTX = 2048
N_EMBD = 64
N_LAYER = 2
N_FF = 128
N_HEAD = 4
N_HEAD_KV = 4
ROPE_DIM = N_EMBD // N_HEAD  # 16
RMS_EPS = 1e-5

NORMAL_PIECES = ["▁the", "▁a", "▁is", "▁hello", "▁world", "▁test", "▁model", "▁ok", "▁你好", "▁。"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set content = message['content'] if message['content'] is string else '' %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types (1 normal, 2 unknown, 3 control, 6 byte)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + NORMAL_PIECES
    types = [2, 3, 3] + [6] * 256 + [1] * len(NORMAL_PIECES)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i + 1) for i in range(len(NORMAL_PIECES))]
    return tokens, scores, types


def printable_ids() -> list[int]:
    """Token ids the model may generate when `printable=True`: bytes 0x20..0x7E and the normal pieces."""
    return [3 + b for b in range(0x20, 0x7F)] + list(range(259, 259 + len(NORMAL_PIECES)))


def make_tiny_gguf(path: str | Path, seed: int = 0, printable: bool = True) -> Path:
    """Write the GGUF and return its path.

    printable=True (default) keeps every tensor random-normal x 0.05 except `output.weight`, whose rows for
    printable tokens (bytes 0x20..0x7E and the normal pieces) are random-normal x 1.5 and whose other rows
    (control, </s>, non-ASCII bytes) are zero: those logits stay at 0 while the best printable logit is about
    +29, so generation is printable text that never stops by itself and `max_tokens` is honoured exactly.
    printable=False is the plain random model: random bytes, invalid UTF-8 pieces, early </s>, and
    llama-cpp-python then overshoots `max_tokens` while a trailing byte looks like an incomplete UTF-8
    sequence (its multibyte check `continue`s past the max_tokens test). Embeddings are unaffected.
    """
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(ROPE_DIM)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_file_type(0)  # ALL_F32
    w.add_pooling_type(gguf.PoolingType.MEAN)  # so /v1/embeddings returns one vector per input
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    ones = np.ones(N_EMBD, dtype=np.float32)
    w.add_tensor("token_embd.weight", rand(n_vocab, N_EMBD))
    w.add_tensor("output_norm.weight", ones.copy())
    out = rand(n_vocab, N_EMBD)
    if printable:
        mask = np.zeros(n_vocab, dtype=bool)
        mask[printable_ids()] = True
        out[mask] *= 30.0
        out[~mask] = 0.0
    w.add_tensor("output.weight", out)
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones.copy())
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones.copy())
        w.add_tensor(f"blk.{i}.ffn_gate.weight", rand(N_FF, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_up.weight", rand(N_FF, N_EMBD))
        w.add_tensor(f"blk.{i}.ffn_down.weight", rand(N_EMBD, N_FF))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


if __name__ == "__main__":  # python -m tests.servers.tiny_gguf out.gguf
    import sys

    print(make_tiny_gguf(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf"))
