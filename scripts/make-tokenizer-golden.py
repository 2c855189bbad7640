#!/usr/bin/python3
"""make-tokenizer-golden: writes the tokenizer's expected ids, taken from SentencePiece itself.

Generates a fixed corpus (same bytes on every run: a seeded random.Random, no clock, no
environment) and encodes every line with python3-sentencepiece:
  tests/golden/tokenizer-llama2.txt  llama2-tokenizer.model, ~2,400 lines
  tests/golden/tokenizer-kjv.txt     kjv-demo-tokenizer.model, ~400 lines (KJV held-out text too)
Each line of a golden file is  TEXT <TAB> IDS <TAB> DECODED  where
  TEXT     the input bytes, escaped: \\\\ \\t \\n \\r, \\xNN for other bytes below 0x20, 0x7F,
           bytes of invalid UTF-8, and a '#' that starts the line; everything else as is (UTF-8)
  IDS      SentencePiece's encode(TEXT) without BOS, decimal, space-separated (may be empty)
  DECODED  SentencePiece's decode(IDS), escaped the same way, or '=' when it equals TEXT
Lines starting with '#' are comments. Run: /usr/bin/python3 scripts/make-tokenizer-golden.py
(optional argument: the models directory, default ../shared/models beside the repository).
"""
import os
import random
import sys

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def escape(b: bytes) -> str:
    """Escapes bytes for one golden field; invalid UTF-8 bytes become \\xNN."""
    out = []
    i = 0
    while i < len(b):
        c = b[i]
        n = 1
        if c >= 0x80:
            n = utf8_len(b, i)
            if n == 0:
                out.append("\\x%02X" % c)
                i += 1
                continue
            out.append(b[i:i + n].decode("utf-8"))
        elif c == 0x5C:
            out.append("\\\\")
        elif c == 0x09:
            out.append("\\t")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x0D:
            out.append("\\r")
        elif c < 0x20 or c == 0x7F or (c == 0x23 and i == 0):
            out.append("\\x%02X" % c)
        else:
            out.append(chr(c))
        i += n
    return "".join(out)


def utf8_len(b: bytes, i: int) -> int:
    """Length of the strictly valid UTF-8 character at b[i], or 0."""
    for n in (2, 3, 4):
        try:
            b[i:i + n].decode("utf-8")
            return n
        except UnicodeDecodeError:
            pass
    return 0


WORDS = """the of and to in is was that for on with as by at from his her they we you it this
which be are have has had not but or an were their one all would there what so up out if about
who get go me when make can like time no just him know take people into year your good some
could them see other than then now look only come its over think also back after use two how our
work first well way even new want because any these give day most us government system computer
model language token server request memory cache thread kernel matrix vector inference latency
Paris London Tokyo Berlin Microsoft Google Python Linux January Monday""".split()

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world!",
    "hello world",
    "  hello",
    "hello  world ",
    " leading space",
    "trailing space ",
    "   three leading and three trailing   ",
    "I'm sure it's fine; isn't it?",
    "e-mail: someone@example.com, url: https://example.org/a/b?c=d&e=f#g",
    "Once upon a time, there was a little girl named Lily.",
    "The year 2023 had 365 days; 1,234,567.89 is a number.",
    "3.14159265358979323846264338327950288419716939937510",
    "Ünïcödé àccents: café, naïve, façade, coöperate, Ærøskøbing, straße, Đorđe.",
    "Español: ¿Dónde está la biblioteca? ¡Olé!",
    "Français : « Bonjour, ça va ? » — oui !",
    "Deutsch: Größenordnung, Übermäßig, Fußgängerübergänge.",
    "Tiếng Việt: Xin chào, tôi là một mô hình ngôn ngữ.",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה",
    "العربية: صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت",
    "हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले",
    "ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า",
    "中文：我能吞下玻璃而不伤身体。",
    "日本語：いろはにほへと ちりぬるを わかよたれそ つねならむ",
    "한국어: 다람쥐 헌 쳇바퀴에 타고파",
    "Emoji: 🙂😀🎉👍🏽👨‍👩‍👧‍👦🇫🇷🏳️‍🌈 ❤️ ✨",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ∫₀¹ f(x) dx ≈ π/4 ≠ ∞",
    "Box drawing: ┌─┬─┐ │ │ │ └─┴─┘ ░▒▓█",
    "Arrows ← ↑ → ↓ ↔ ⇒ ⇔ and dingbats ✓ ✗ ☃ ☂ ☎",
    "\t tab then space",
    "tab\tseparated\tvalues\t",
    "line one\nline two\n",
    "\n",
    "\n\n\n",
    "\t",
    " ",
    "  ",
    "\r\n",
    "windows\r\nline endings\r\n",
    "a\u2581b \u2581 c",
    "\u2581",
    "\u2581\u2581hello",
    "\ufffd replacement \ufffd\ufffd",
    "NUL\x00byte and \x01\x02\x7f controls",
    "zero\u200bwidth\u200cjoiners\u200d and BOM \ufeff here",
    "<s> not a control token </s> <unk> <0x41> <pad>",
    "def f(x):\n    return x * 2  # double\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "$ ls -la /usr/bin | grep python3 > out.txt 2>&1",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉 and 𐌀𐌁𐌂 Old Italic, 𓀀𓁐 hieroglyphs",
    "CJK Extension B: 𠀀𠀁𠀂 𪚥 𩸽",
    "Private use: \ue000\uf8ff \U000f0000 \U0010fffd",
    "Noncharacters: \ufdd0 \ufffe \U0001fffe",
    "Combining: e\u0301 a\u0300 n\u0303 o\u0308\u0304 Z\u0351\u0352\u0357",
]

INVALID = [
    b"\xff", b"a\xffb", b"\xe2\x82", b"\xe2\x82a", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"\xc0\xaf", b"\xe0\x80\x80", b"\xf0\x9f\x99", b"\xf0\x9f\x99 done", b"\x80\x80\x80",
    b"\xfe\xfe\xff\xff", b"valid \xe2\x82\xac then bad \xe2\x82 end", b"  \xc3", b"\xc3 ",
    b"\xf8\x88\x80\x80\x80", b"latin-1 caf\xe9 na\xefve",
]

FRAGMENTS = (SENTENCES + ["  ", "   ", "\t", "\n", " \n", "\t\t", "    ", "!", "?", "...",
             "—", "…", "“", "”", "'", '"', "(", ")", "[", "]", "{", "}", "0", "00", "42", "007",
             "1e-9", "-3.5", "#", "##", "@", "~", "^", "%", "&", "*", "_", "__", "|", "\\"])


def rand_word(r):
    w = r.choice(WORDS)
    k = r.random()
    if k < 0.1:
        return w.capitalize()
    if k < 0.13:
        return w.upper()
    return w


def rand_prose(r):
    n = r.randint(1, 30)
    s = " ".join(rand_word(r) for _ in range(n))
    return s[0].upper() + s[1:] + r.choice([".", "!", "?", ",", "", ";", ":"])


def rand_codepoint(r):
    """A random Unicode scalar value, weighted toward ranges that force byte fallback."""
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x2BFF),
              (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF),
              (0xF900, 0xFFFD), (0x10000, 0x1FFFF), (0x1F300, 0x1FAFF), (0x20000, 0x2FFFF),
              (0xE0000, 0x10FFFF)]
    lo, hi = r.choice(ranges)
    return chr(r.randint(lo, hi))


def rand_spaces(r):
    return r.choice([" ", "  ", "   ", "\t", " \t ", "\n", "\n\n", "\r\n", "        "])


def rand_digits(r):
    k = r.random()
    if k < 0.3:
        return str(r.randint(0, 10 ** r.randint(1, 12)))
    if k < 0.6:
        return "%d.%0*d" % (r.randint(0, 9999), r.randint(1, 6), r.randint(0, 999999))
    return "".join(r.choice("0123456789-+.,:/ ") for _ in range(r.randint(1, 25)))


def rand_mix(r):
    parts = []
    for _ in range(r.randint(1, 12)):
        k = r.random()
        if k < 0.3:
            parts.append(rand_word(r))
        elif k < 0.45:
            parts.append(r.choice(FRAGMENTS))
        elif k < 0.6:
            parts.append("".join(rand_codepoint(r) for _ in range(r.randint(1, 6))))
        elif k < 0.75:
            parts.append(rand_spaces(r))
        elif k < 0.85:
            parts.append(rand_digits(r))
        else:
            parts.append(r.choice(SENTENCES)[: r.randint(0, 40)])
        if r.random() < 0.5:
            parts.append(" ")
    return "".join(parts)


def rand_bytes(r):
    """Arbitrary bytes, mostly invalid UTF-8 somewhere."""
    b = bytearray()
    for _ in range(r.randint(1, 20)):
        k = r.random()
        if k < 0.4:
            b += bytes([r.randint(0x80, 0xFF)])
        elif k < 0.7:
            b += rand_word(r).encode()
        elif k < 0.85:
            b += rand_codepoint(r).encode("utf-8")[: r.randint(1, 4)]
        else:
            b += bytes([r.randint(0, 0xFF)])
    return bytes(b)


def llama2_corpus(r):
    lines = [b""]
    lines += [s.encode() for s in SENTENCES]
    lines += INVALID
    lines += [rand_prose(r).encode() for _ in range(600)]
    lines += [(rand_spaces(r) * r.randint(0, 2) + rand_prose(r) + rand_spaces(r) *
               r.randint(0, 2)).encode() for _ in range(200)]
    lines += [rand_mix(r).encode("utf-8") for _ in range(900)]
    lines += ["".join(rand_codepoint(r) for _ in range(r.randint(1, 40))).encode()
              for _ in range(250)]
    lines += [rand_digits(r).encode() for _ in range(100)]
    lines += [rand_bytes(r) for _ in range(200)]
    lines += [" " * r.randint(1, 40) for _ in range(20)]
    lines = [x.encode() if isinstance(x, str) else x for x in lines]
    # very long lines: prose with everything mixed in, and one long run of a single character
    lines += [" ".join(rand_mix(r) for _ in range(120)).encode() for _ in range(3)]
    lines += [" ".join(rand_prose(r) for _ in range(200)).encode()]
    lines += [("a" * 3000).encode(), (" " * 2000).encode(), ("🙂" * 500).encode()]
    return lines


def kjv_corpus(r, models):
    lines = [b""]
    with open(os.path.join(models, "kjv-heldout.txt"), encoding="utf-8") as f:
        chapters = [c.rstrip("\n") for c in f]
    lines += [c.encode() for c in chapters[:6]]
    sentences = []
    for c in chapters:
        for part in c.replace("? ", "?|").replace(". ", ".|").replace(": ", ":|").split("|"):
            if part:
                sentences.append(part)
    lines += [s.encode() for s in r.sample(sentences, min(200, len(sentences)))]
    lines += [s.encode() for s in SENTENCES[:40]]
    lines += INVALID[:8]
    lines += [rand_mix(r).encode() for _ in range(120)]
    lines += [rand_bytes(r) for _ in range(30)]
    return lines


def write_golden(path, model_path, lines):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    seen = set()
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("# generated by scripts/make-tokenizer-golden.py from %s with sentencepiece %s\n"
                % (os.path.basename(model_path), spm.__version__))
        f.write("# TEXT<TAB>IDS (no BOS)<TAB>DECODED ('=' when equal to TEXT)\n")
        for b in lines:
            if b in seen:
                continue
            seen.add(b)
            ids = sp.encode(b)
            dec = sp.decode(ids).encode("utf-8")
            f.write("%s\t%s\t%s\n" % (escape(b), " ".join(map(str, ids)),
                                      "=" if dec == b else escape(dec)))
            n += 1
    print("%s: %d lines, %d bytes" % (os.path.relpath(path, ROOT), n, os.path.getsize(path)))


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "models")
    out = os.path.join(ROOT, "tests", "golden")
    os.makedirs(out, exist_ok=True)
    write_golden(os.path.join(out, "tokenizer-llama2.txt"),
                 os.path.join(models, "llama2-tokenizer.model"), llama2_corpus(random.Random(2)))
    write_golden(os.path.join(out, "tokenizer-kjv.txt"),
                 os.path.join(models, "kjv-demo-tokenizer.model"),
                 kjv_corpus(random.Random(7), models))


if __name__ == "__main__":
    main()
