"""test_server_webui: the chat page over plain HTTP (the browser test is test_webui.py). GET /
answers the page with its Content-Security-Policy, and every file it names is served; the
files hold no inline script or handler and name nothing outside the server; a stored copy
revalidates with 304; HEAD and other methods; the page is public while the API wants a key;
--no-webui (and LLAMASERVE_WEBUI=false) makes / a 404 as before, the API unchanged. The README
states the page's size in bytes: it must be the size the build embeds."""
import os
import re
import sys

from server_harness import Runner, Server, check_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEBUI = os.path.join(ROOT, "webui")
FILES = {"/": "index.html", "/webui/app.js": "app.js", "/webui/style.css": "style.css"}


def source(name):
    with open(os.path.join(WEBUI, name), "rb") as f:
        return f.read()


def csp_directives(value):
    out = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def test_page(s):
    st, hd, body = s.request("GET", "/")
    assert st == 200, st
    assert hd["content-type"] == "text/html; charset=utf-8", hd
    assert body == source("index.html"), "the served page is webui/index.html"
    csp = csp_directives(hd["content-security-policy"])
    assert csp["default-src"] == ["'none'"], csp
    for d in ("script-src", "style-src", "connect-src"):
        assert csp[d] == ["'self'"], (d, csp[d])  # no 'unsafe-inline', no other host
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"], csp
    assert hd["x-content-type-options"] == "nosniff"
    # every file the page names is served, with the same policy
    named = re.findall(rb'(?:src|href)="(/[^"]*)"', body)
    assert sorted(n.decode() for n in named) == sorted(p for p in FILES if p != "/"), named
    for path, name in FILES.items():
        st, hd2, b = s.request("GET", path)
        assert st == 200 and b == source(name), (path, st)
        assert hd2["content-security-policy"] == hd["content-security-policy"], path


def test_no_inline_code_or_remote_source(s):
    html = source("index.html").decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "an inline event handler"
    assert not re.search(r"\sstyle\s*=", html, re.I), "an inline style attribute"
    for name in FILES.values():
        text = source(name).decode()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text.replace(
            "http://www.w3.org", ""), re.I), "%s names a remote source" % name
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and \
            "document.write" not in text, "%s uses an HTML string sink" % name


def test_revalidate_and_methods(s):
    st, hd, _ = s.request("GET", "/webui/app.js")
    etag = hd["etag"]
    assert hd["cache-control"] == "no-cache" and etag.startswith('"'), hd
    st, hd2, body = s.request("GET", "/webui/app.js", headers={"If-None-Match": etag})
    assert st == 304 and body == b"", st
    st, _, body = s.request("GET", "/webui/app.js", headers={"If-None-Match": '"other"'})
    assert st == 200 and body, st
    st, hd, body = s.request("HEAD", "/")
    assert st == 200 and body == b"" and int(hd["content-length"]) == len(source("index.html"))
    st, obj, _ = s.json("POST", "/", {"x": 1})
    check_error(st, obj, 405, what="POST /")
    st, obj, _ = s.json("GET", "/webui/missing.js")
    check_error(st, obj, 404, what="a file that is not embedded")
    st, obj, _ = s.json("GET", "/index.html")
    check_error(st, obj, 404, what="the page under its file name")


def test_public_page_with_key(s):
    st, hd, body = s.request("GET", "/")
    assert st == 200 and b"/webui/app.js" in body, st
    st, obj, _ = s.json("GET", "/props")  # (/v1/models is public: public_models)
    check_error(st, obj, 401, what="the API still wants the key")


def test_off(s):
    for path in FILES:
        st, obj, _ = s.json("GET", path)
        check_error(st, obj, 404, what="GET %s without the page" % path)
    st, obj, _ = s.json("GET", "/v1/models")
    assert st == 200 and obj["data"], obj


def test_readme_size(runner):
    total = sum(len(source(n)) for n in FILES.values())
    readme = open(os.path.join(ROOT, "README.md")).read()
    sizes = re.findall(r"([\d,]+) bytes", readme[readme.find("## Chat page"):][:3000])
    if str(total) not in [x.replace(",", "") for x in sizes]:
        runner.fail("readme size", "README's 'Chat page' section must state the page's size: "
                    "%d bytes (it states %s)" % (total, sizes))


def main():
    runner = Runner("test_server_webui")
    with Server() as s:
        for t in (test_page, test_no_inline_code_or_remote_source, test_revalidate_and_methods):
            runner.run(t, s)
    with Server(env={"LLAMASERVE_API_KEY": "sk-page"}) as s:
        runner.run(test_public_page_with_key, s)
    with Server("--no-webui") as s:
        runner.run(test_off, s)
    with Server(env={"LLAMASERVE_WEBUI": "false"}) as s:
        runner.run(test_off, s)
    test_readme_size(runner)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
