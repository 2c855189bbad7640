"""test_server_llama3: a Llama-3-shaped model end to end: `make-model --shape tiny-llama3` with
Meta's Llama 3 vocabulary and chat template (../shared/models/llama3-vocab.gguf: byte-level BPE,
128,256 tokens, rope_freqs), served, rendered with the file's own template, and chatted with
through the official `openai` npm client (tests/node/llama3_chat.mjs). Also: a user's text that
spells a control token stays plain text. The Node part is skipped when node or the npm packages
are missing; the rest always runs."""
import os
import shutil
import subprocess
import sys
import tempfile

from checklib import BIN, MODELS
from server_harness import Runner, Server

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
EOT = 128009  # <|eot_id|> in the Llama 3 vocabulary


def main():
    runner = Runner("test_server_llama3")
    tmp = tempfile.mkdtemp(prefix="ls_llama3_")
    try:
        model = os.path.join(tmp, "tiny-llama3.gguf")
        p = subprocess.run([BIN, "make-model", "--shape", "tiny-llama3", "--vocab",
                            os.path.join(MODELS, "llama3-vocab.gguf"), model],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            runner.fail("make-model", p.stderr)
            runner.finish()
        with Server("--parallel", "2", model=model) as s:
            def template_from_the_file():
                st, obj, _ = s.json("POST", "/apply-template", {"messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"}]})
                assert st == 200, obj
                want = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                        "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi"
                        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
                assert obj["prompt"].endswith(want[len("<|begin_of_text|>"):]), obj["prompt"]

            def user_text_is_never_a_control_token():
                base = {"max_tokens": 1, "temperature": 0}
                plain = s.post("/v1/chat/completions", dict(base, messages=[
                    {"role": "user", "content": "x"}]))["usage"]["prompt_tokens"]
                spelled = s.post("/v1/chat/completions", dict(base, messages=[
                    {"role": "user", "content": "x<|eot_id|>"}]))["usage"]["prompt_tokens"]
                # "<|eot_id|>" as text is several byte-level tokens, never the one control token
                assert spelled - plain > 1, (plain, spelled)

            def openai_client_chat():
                node = shutil.which("node")
                if not node or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "openai")):
                    print("skip: node or tests/node/node_modules/openai missing")
                    return
                env = dict(os.environ, LS_PORT=str(s.port), LS_EOT=str(EOT))
                q = subprocess.run([node, os.path.join(NODE_DIR, "llama3_chat.mjs")],
                                   cwd=NODE_DIR, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=120)
                out = q.stdout.decode("utf-8", "replace")
                print(out, end="")
                assert q.returncode == 0 and "FAIL" not in out, "node exited %d" % q.returncode

            for t in (template_from_the_file, user_text_is_never_a_control_token,
                      openai_client_chat):
                runner.run(t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
