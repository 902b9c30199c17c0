"""Converts a BERT sentence-embedding model (Hugging Face safetensors + vocab.txt, such as
all-MiniLM-L6-v2) to a GGUF file that `llama-server --embeddings` serves with mean pooling.

  python bert_to_gguf.py MODEL_DIR OUT.gguf

Needs only numpy, safetensors and llama.cpp's own gguf-py (on PYTHONPATH), not torch: the
tensors are renamed with gguf-py's BERT name map, 2-D weights stored as float16, the rest as
float32; the WordPiece vocabulary is written the way llama.cpp's converter writes it (a word
start gets the phantom space U+2581, a `##` continuation loses its marks, special tokens stay).
"""
import json
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file


def main(model_dir: Path, out: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        sys.exit(f"{model_dir} holds a {config.get('model_type')} model, not BERT")
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text()) if (model_dir / "1_Pooling" / "config.json").exists() else {}
    if pooling and not pooling.get("pooling_mode_mean_tokens"):
        sys.exit("only mean-pooled models are supported")
    blocks = config["num_hidden_layers"]

    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(blocks)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    # The vocabulary, in id order; special tokens ([CLS], [SEP], ...) are control tokens.
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    special = {t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens, types = [], []
    for index, token in enumerate(vocab):
        if index in special:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    ids = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    for name, add in (("[UNK]", writer.add_unk_token_id), ("[SEP]", writer.add_sep_token_id),
                      ("[PAD]", writer.add_pad_token_id), ("[MASK]", writer.add_mask_token_id)):
        if name in ids:
            add(ids[name])
    if "[CLS]" in ids:
        writer.add_bos_token_id(ids["[CLS]"])

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
    skipped = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
    for name, data in sorted(load_file(str(model_dir / "model.safetensors")).items()):
        name = name.removeprefix("bert.")
        if name in skipped:
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            sys.exit(f"no GGUF name for tensor {name}")
        data = data.astype(np.float16 if data.ndim == 2 and not target.startswith("token_types") else np.float32)
        writer.add_tensor(target, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
