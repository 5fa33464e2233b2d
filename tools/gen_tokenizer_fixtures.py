#!/usr/bin/env python3
"""Tokenizer conformance fixtures for Tests/TokenizersTests.

Builds a seeded corpus (Tests/Fixtures/tokenizers/corpus.jsonl), trains the small tokenizers
that stand in for the real families (bytelevel-small: GPT-2-style byte-level BPE;
qwen2-style-small: Qwen2's Split regex + NFC; llama2-sp: Llama-2 SentencePiece-style BPE with
byte fallback; llama2-metaspace: the same model behind the newer Metaspace pre-tokenizer), and
writes, for every folder under Tests/Fixtures/tokenizers/ that holds a tokenizer.json, the ids
and decoded strings the Hugging Face `tokenizers` package gives (`expected.jsonl`).

    python3 tools/gen_tokenizer_fixtures.py            # corpus + expected for every folder
    python3 tools/gen_tokenizer_fixtures.py --retrain  # also retrain the small tokenizers

expected.jsonl: line 1 is {"meta": {...versions...}}; then one line per corpus line, in order:
{"ids": [...], "dec": decode(ids)} plus "sp" (ids with add_special_tokens=True) on every 7th
line; then lines {"decode": [ids], "dec": ..., "skip": decode(ids, skip_special_tokens=True)}
over seeded random id sequences (invalid UTF-8, special tokens, byte-fallback runs).
"""
import argparse
import json
import os
import platform
import random
import sys
import unicodedata

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers, Regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers")
DATA = os.path.join(ROOT, "..", "shared", "data")
SEED = 20260124

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"""
                 r"""[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def meta():
    return {"tokenizers": tokenizers.__version__, "python": platform.python_version(),
            "unicodedata": unicodedata.unidata_version, "seed": SEED,
            "script": "tools/gen_tokenizer_fixtures.py"}


# ---------------------------------------------------------------- corpus

CODE = [
    'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
    'import numpy as np\nx = np.arange(10).reshape(2, 5)\nprint(x.T @ x)\n',
    'class Foo(Bar):\n\tdef __init__(self, *args, **kwargs):\n\t\tsuper().__init__(*args, **kwargs)\n',
    '    # comment with trailing spaces   \n    pass\n',
    'func greet(_ name: String) -> String {\n    return "Hello, \\(name)!"\n}\n',
    'let xs: [Int] = [1, 2, 3].map { $0 * 2 }\nguard let y = xs.first else { return }\n',
    'struct Point: Codable, Sendable { var x: Double; var y: Double }',
    '#include <stdio.h>\nint main(int argc, char **argv) {\n\tprintf("%d\\n", argc);\n\treturn 0;\n}\n',
    'static inline float dot(const float *a, const float *b, int n) { float s = 0.0f; for (int i = 0; i < n; i++) s += a[i]*b[i]; return s; }',
    '{"name": "graft", "version": "0.1.0", "deps": [], "nested": {"a": [1, 2.5e-3, null, true]}}',
    '[\n  {\n    "id": 1,\n    "tags": ["x", "y"]\n  }\n]',
    'SELECT id, name FROM users WHERE age >= 21 ORDER BY name DESC;',
    '<html><body><div class="x">Hello &amp; bye</div></body></html>',
    '$ ls -la /tmp && echo "done" | grep -v "^#" > out.txt 2>&1',
    'fn main() { let v: Vec<u32> = (0..10).collect(); println!("{:?}", v); }',
    'x+=1;y-=2;z*=3;w/=4;a%=5;b**=6;c//=7;d<<=1;e>>=2;f&=g|h^~i',
    'if (a && b || !c) { return a ? b : c; } else if (x != y) {}',
    'lambda x: [i for i in range(x) if i % 2 == 0]',
    '@Test(arguments: ["a", "b"]) func check(name: String) async throws { #expect(name.count == 1) }',
    '\t\tif x:\r\n\t\t\treturn 1\r\n\t\telse:\r\n\t\t\treturn 0\r\n',
    'a = {"k": [1,2,3]}  # dict\n\n\n\nb = 3\n',
    '// TODO(#12): handle CRLF\n/* block\n   comment */\n',
    'print(f"{value:>10.3f} {name!r}")',
    'regex = r"^(?:[a-z0-9!#$%&\'*+/=?^_`{|}~-]+)@example\\.com$"',
]

WORDS = ("the of and to in is you that it he was for on are as with his they I at be this have "
         "from or one had by word but not what all were we when your can said there use an each "
         "which she do how their if will up other about out many then them these so some her "
         "would make like him into time has look two more write go see number no way could people").split()

CJK = ["你好，世界！", "我爱自然语言处理。", "東京は日本の首都です。", "こんにちは、元気ですか？",
       "한국어 텍스트도 포함합니다.", "中文和English混合text123测试", "漢字かなカナ混じり文",
       "模型参数量为一千五百万。", "「引用」と『二重引用』", "全角ＡＢＣ１２３　全角スペース"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "🏳️‍🌈", "❤️", "🧑🏿‍💻", "✌🏻", "🤖🚀✨", "👩‍❤️‍💋‍👨",
         "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "🫠", "☺︎"]
RTL = ["مرحبا بالعالم", "שלום עולם", "العربية: ١٢٣٤٥٦٧٨٩٠", "עברית 123 mixed English",
       "\u202eevil\u202c text", "فارسی: ۱۲۳"]
ACCENTS = ["café", "naïve", "Ångström", "crème brûlée", "résumé", "Ελληνικά", "Ñandú", "Zoë",
           "façade", "Øresund", "dziękuję", "Tiếng Việt có dấu", "ﬁne ﬂour", "Ⅻ ½ ² ℌ", "Åström"]
CONTRACTIONS = ["don't", "DON'T", "it'S", "I'm", "I'M", "we'll", "WE'LL", "they're", "THEY'RE",
                "you've", "YOU'VE", "he'd", "HE'D", "she's", "can't", "won't", "y'all", "'tis",
                "o'clock", "rock 'n' roll", "it’s", "don’t", "'S 'T 'Re 'vE 'M 'Ll 'D", "'ſ", "'K"]
SPECIAL_TEXT = ["<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
                "before<|endoftext|>after", "a <|endoftext|> b", "<|endoftext|><|endoftext|>",
                "<|im_start|>system\nYou are helpful.<|im_end|>", "<s>[INST] hi [/INST]</s>",
                "text <s> more </s> end", "<|im_start|", "|im_start|>", "<|endoftext|",
                "x[MASK]y", "x [MASK] y", "x  [MASK]  y", "[MASK]", "foo_bar baz", "xfoo_bar",
                "foo_bar_", "(foo_bar)", "<unk>", "<0x41>", "▁hello", "▁▁x", " <pad> ", "Ġhello"]
CONTROL = ["\x00", "\x01\x02\x03", "bell\x07", "a\x1bb", "\x7f", "tab\there", "\x0b\x0c",
           "\x1c\x1d\x1e\x1f", "\u0085", "\u00a0nbsp", "zero\u200bwidth", "\ufeffbom", "\u2028\u2029",
           "soft\u00adhyphen", "\u3000ideographic", "\u2009thin\u202fnarrow", "\u180e", "\u200d"]
WS = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\n ", "\t\t", " \t ", "\u00a0", "\u3000"]


def fuzz_scalar(rng):
    blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
              (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f), (0x2100, 0x23ff),
              (0x2460, 0x27bf), (0x3000, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xfb00, 0xfdff),
              (0xfe00, 0xfe0f), (0xff00, 0xffef), (0x1d400, 0x1d7ff), (0x1f300, 0x1faff), (0x20000, 0x2a6df),
              (0x0300, 0x036f), (0x1f1e6, 0x1f1ff), (0x0, 0x1f)]
    while True:
        lo, hi = rng.choice(blocks)
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) not in ("Cn", "Cs", "Co"):
            return c


def build_corpus():
    rng = random.Random(SEED)
    out = []
    def load(path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(l) for l in f if l.strip()]
    test = load(os.path.join(DATA, "gsm8k", "test.jsonl"))
    train = load(os.path.join(DATA, "gsm8k", "train.jsonl"))
    mbpp = load(os.path.join(DATA, "mbpp", "mbpp.jsonl"))
    for row in rng.sample(test, 300):
        out.append(row["question"])
    for row in rng.sample(test, 60):
        out.append(row["answer"])
    for row in rng.sample(train, 300):
        out.append(row["question"])
    for row in rng.sample(mbpp, 300):
        out.append(row["text"])
    for row in rng.sample(mbpp, 250):
        out.append(row["code"])
    for row in rng.sample(mbpp, 40):
        out.append("\n".join(row["test_list"]))
    out += CODE
    for s in CODE:  # code with CRLF, tabs for indentation, and trailing whitespace
        out.append(s.replace("\n", "\r\n"))
        out.append(s.replace("    ", "\t") + "  ")
    # numbers and digit runs
    for _ in range(150):
        k = rng.choice([1, 2, 3, 4, 5, 7, 10, 16, 25])
        n = "".join(rng.choice("0123456789") for _ in range(k))
        form = rng.choice(["{}", " {}", "x{}", "{}.{}", "${},{}", "{} apples", "-{}", "{}e-{}",
                           "v{}.{}.{}", "{}%", "({})", "{}x{}", "{}/{}/2024", "№{}"])
        out.append(form.format(*([n] * form.count("{}"))))
    out += ["1,234,567.89", "3.14159265358979", "0x1F4A9", "1e10", "2^32 = 4294967296",
            "٣٤٥ ۴۵۶ ४५६ ১২৩", "Ⅳ ⅻ ① ⑳ ¼ ¾ ²³", "１２３４５", "𝟏𝟐𝟑", "12:30:45", "+1 (555) 123-4567"]
    # whitespace runs
    for _ in range(160):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(WS) * rng.randint(1, 4))
            parts.append(rng.choice(WORDS + ["x", "42", "!", "é", "中"]))
        if rng.random() < 0.5:
            parts.append(rng.choice(WS) * rng.randint(1, 3))
        if rng.random() < 0.3:
            parts.insert(0, rng.choice(WS))
        out.append("".join(parts))
    out += [" ", "  ", "\n", "\r\n", "\t", "   \n\n   ", "trailing   ", "   leading", "a\n\n\nb",
            "line1\r\nline2\r\n", "x \n y", "end\n", "\n\nstart", " \r\n \r\n "]
    # CJK, emoji, RTL, accents (NFC and NFD), control characters
    for group in (CJK, EMOJI, RTL, ACCENTS, CONTROL):
        out += group
        for _ in range(40):
            a = rng.choice(group); b = rng.choice(WORDS)
            out.append(rng.choice(["{} {}", "{}{}", "{}, {}!", "{}\n{}", " {} {} "]).format(a, b)
                       if rng.random() < 0.5 else
                       rng.choice(["{} {}", "{}{}", "{}: {}"]).format(b, a))
    for s in ACCENTS + ["Crème Brûlée à la carte", "Ça va? Très bien, merci."]:
        out.append(unicodedata.normalize("NFD", s))
        out.append(unicodedata.normalize("NFC", s) + " / " + unicodedata.normalize("NFD", s))
        out.append(unicodedata.normalize("NFKD", s))
    out += ["e\u0301", "\u0301", "a\u0300\u0301\u0302", "\u0915\u094d\u0937", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333"]
    for c in CONTRACTIONS:
        out.append(c)
        out.append("I said " + c + " and " + c.upper() + " and " + c.lower())
    out += ["He said 'hello' and 'SHE' said 'stop'.", "''s", "'", "''", "' s", "'s'", "'LL'"]
    for s in SPECIAL_TEXT:
        out.append(s)
        out.append(rng.choice(WORDS) + s + rng.choice(WORDS))
        out.append(" " + s + " ")
    # random fuzz: mixed scripts, marks, symbols, whitespace
    for _ in range(260):
        k = rng.randint(1, 24)
        s = "".join(fuzz_scalar(rng) if rng.random() < 0.7 else rng.choice(WS + [" "] * 4 + WORDS)
                    for _ in range(k))
        out.append(s)
    # long-ish mixed documents
    for _ in range(30):
        pieces = [rng.choice(out) for _ in range(rng.randint(3, 8))]
        out.append(rng.choice(["\n", " ", "\n\n", "\t"]).join(pieces))
    out += ["", "a", "A", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", " " * 300, "\n" * 50,
            "9" * 200, "ab" * 150, "😀" * 40, "é" * 60, "=" * 80, "-" * 120 + "\n" + "#" * 40]
    return out


# ---------------------------------------------------------------- trained tokenizers

def training_text(corpus):
    rng = random.Random(SEED + 1)
    text = [s for s in corpus if s]
    with open(os.path.join(DATA, "gsm8k", "train.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(l) for l in f]
    text += [r["answer"] for r in rng.sample(rows, 1500)]
    return text


def bytelevel_small(text):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|im_start|> $A <|im_end|>",
                                      special_tokens=[("<|im_start|>", 1), ("<|im_end|>", 2)])])
    # Added tokens with every flag the AddedVocabulary honours.
    tok.add_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("foo_bar", single_word=True, normalized=True),
                    AddedToken(" hello", normalized=False),
                    AddedToken("<pad>", special=True, normalized=False)])
    return tok


def qwen2_style_small(text):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2500, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def llama2_sp(text):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Train with words split at "▁" (as sentencepiece does); serve with no pre-tokenizer (as Llama-2).
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=3000, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  limit_alphabet=300)
    tok.train_from_iterator(text, trainer)
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_tokens([AddedToken("<|im_start|>", special=True, normalized=False),
                    AddedToken("<|im_end|>", special=True, normalized=False),
                    AddedToken("[INST]", normalized=True), AddedToken("[/INST]", normalized=True)])
    # The trainer registers the <0xXX> byte tokens as added tokens; in Llama-2 they are plain
    # vocabulary entries (so "<0x41>" typed as text is not matched as one token).
    j = json.loads(tok.to_str())
    j["added_tokens"] = [t for t in j["added_tokens"] if not t["content"].startswith("<0x")]
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def llama2_metaspace(base_dir):
    """The Llama-2 model as newer converters write it: no normalizer, Metaspace(first)."""
    with open(os.path.join(base_dir, "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                          "split": False}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Metaspace", "replacement": "▁",
                                                     "prepend_scheme": "first", "split": False}]}
    j["model"]["merges"] = [m.split(" ", 1) if isinstance(m, str) else m for m in j["model"]["merges"]]
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


LLAMA3_PATTERN = QWEN2_PATTERN.replace(r"\p{N}|", r"\p{N}{1,3}|")


def variants(text):
    """Smaller fixtures that exercise the components the main tokenizers do not use. Their
    expected.jsonl covers every 4th corpus line (rows carry the corpus index "i")."""
    def load(name):
        with open(os.path.join(FIX, name, "tokenizer.json"), encoding="utf-8") as f:
            return json.load(f)
    out = {}
    j = load("bytelevel-small")
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}
    out["variant-bytelevel-prefix"] = j
    j = load("qwen2-style-small")
    j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": LLAMA3_PATTERN}
    out["variant-llama3-regex"] = j
    j = load("llama2-sp")
    j["normalizer"] = None
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    j["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    out["variant-metaspace-always"] = j
    j = load("llama2-sp")
    j["model"]["byte_fallback"] = False
    j["model"]["fuse_unk"] = False
    j["model"]["ignore_merges"] = True
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": "[\u0300-\u036f]"}, "content": ""},
        {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    out["variant-unk-regex"] = j
    j = load("bytelevel-small")
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "[0-9]+|\\s+"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"String": "e"}, "behavior": "Contiguous", "invert": True},
        {"type": "Split", "pattern": {"String": "."}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"String": ","}, "behavior": "Removed", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    out["variant-split-behaviors"] = j
    # continuing_subword_prefix / end_of_word_suffix need a vocabulary trained with them.
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=2, show_progress=False, special_tokens=["[UNK]"],
                                  continuing_subword_prefix="##", end_of_word_suffix="</w>", limit_alphabet=200)
    tok.train_from_iterator(text, trainer)
    out["variant-suffix-prefix"] = json.loads(tok.to_str())
    for name, j in out.items():
        d = os.path.join(FIX, name)
        os.makedirs(d, exist_ok=True)
        Tokenizer.from_str(json.dumps(j, ensure_ascii=False)).save(os.path.join(d, "tokenizer.json"), pretty=False)


def save(tok, name, config):
    d = os.path.join(FIX, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- expected outputs

def write_expected(name, corpus):
    d = os.path.join(FIX, name)
    step = 4 if name.startswith("variant-") else 1
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    rng = random.Random(SEED + sum(map(ord, name)))
    m = meta()
    m["tokenizer"] = name
    m["vocab_size"] = tok.get_vocab_size(with_added_tokens=True)
    m["lines"] = len(corpus[::step])
    lines = [json.dumps({"meta": m}, ensure_ascii=False)]
    encs = tok.encode_batch(corpus[::step], add_special_tokens=False)
    for i, (s, enc) in zip(range(0, len(corpus), step), zip(corpus[::step], encs)):
        row = {"ids": enc.ids, "dec": tok.decode(enc.ids, skip_special_tokens=False)}
        if step > 1:
            row["i"] = i
        if i % 7 == 0 or (step > 1 and i % 3 == 0):
            row["sp"] = tok.encode(s, add_special_tokens=True).ids
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    special = [t.content for t in tok.get_added_tokens_decoder().values()]
    special_ids = [tok.token_to_id(t) for t in special]
    for _ in range(300 // step):
        k = rng.randint(1, 12)
        ids = [rng.choice(special_ids) if rng.random() < 0.15 else rng.randrange(vocab) for _ in range(k)]
        lines.append(json.dumps({"decode": ids, "dec": tok.decode(ids, skip_special_tokens=False),
                                 "skip": tok.decode(ids, skip_special_tokens=True)},
                                ensure_ascii=False, separators=(",", ":")))
    with open(os.path.join(d, "expected.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{name}: {len(encs)} strings, {sum(len(e.ids) for e in encs)} tokens")


def unicode_classes():
    """The scalars the GPT-2 regex treats as \\p{L}, \\p{N} and \\s, probed through tokenizers'
    own regex engine (Oniguruma), as sorted [first, last] ranges."""
    split = pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated")
    classes = {"L": [], "N": [], "space": []}
    for c in range(0x110000):
        if 0xD800 <= c < 0xE000:
            continue
        ch = chr(c)
        if [t for t, _ in split.pre_tokenize_str("a" + ch)] == ["a" + ch]:
            classes["L"].append(c)
        elif [t for t, _ in split.pre_tokenize_str("1" + ch)] == ["1" + ch]:
            classes["N"].append(c)
        elif c == 0x20 or [t for t, _ in split.pre_tokenize_str("." + ch + ch + "b")] == [".", ch, ch, "b"]:
            classes["space"].append(c)
    def ranges(cs):
        out = []
        for c in cs:
            if out and out[-1][1] == c - 1:
                out[-1][1] = c
            else:
                out.append([c, c])
        return out
    return {"meta": meta(), **{k: ranges(v) for k, v in classes.items()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    corpus = build_corpus()
    os.makedirs(FIX, exist_ok=True)
    with open(os.path.join(FIX, "corpus.jsonl"), "w", encoding="utf-8") as f:
        f.write(json.dumps({"meta": meta()}) + "\n")
        for s in corpus:
            f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
    text = training_text(corpus)
    if args.retrain or not os.path.exists(os.path.join(FIX, "bytelevel-small", "tokenizer.json")):
        save(bytelevel_small(text), "bytelevel-small",
             {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<pad>",
              "unk_token": None, "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n"
              "{{ m.content }}<|im_end|>\n{% endfor %}", "model_max_length": 2048})
    if args.retrain or not os.path.exists(os.path.join(FIX, "qwen2-style-small", "tokenizer.json")):
        save(qwen2_style_small(text), "qwen2-style-small",
             {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    if args.retrain or not os.path.exists(os.path.join(FIX, "llama2-sp", "tokenizer.json")):
        save(llama2_sp(text), "llama2-sp",
             {"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                            "normalized": False, "rstrip": False, "single_word": False},
              "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
              "add_bos_token": True, "add_eos_token": False})
        save(llama2_metaspace(os.path.join(FIX, "llama2-sp")), "llama2-metaspace",
             {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    if args.retrain or not os.path.exists(os.path.join(FIX, "variant-suffix-prefix", "tokenizer.json")):
        variants(text)
    if args.retrain or not os.path.exists(os.path.join(FIX, "unicode_classes.json")):
        with open(os.path.join(FIX, "unicode_classes.json"), "w") as f:
            json.dump(unicode_classes(), f, separators=(",", ":"))
    for name in sorted(os.listdir(FIX)):
        if os.path.exists(os.path.join(FIX, name, "tokenizer.json")):
            write_expected(name, corpus)


if __name__ == "__main__":
    sys.exit(main())
