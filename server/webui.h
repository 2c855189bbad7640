/* webui: the chat page served at GET / (the files of webui/, turned into C arrays at build time
 * by webui/embed.py). Constant data and one function that answers a request for a file:
 * no state, safe from any thread. Serves only the files in its table, never the file system. */
#ifndef LS_WEBUI_H
#define LS_WEBUI_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *path;          /* URL path: "/" for index.html, else "/webui/<name>" */
    const char *type;          /* Content-Type */
    const char *etag;          /* quoted hash of the bytes */
    const unsigned char *data; /* (len) bytes */
    size_t len;
} webui_file;

/* The generated table (webui_files.c in the build folder). */
extern const webui_file webui_files[];
extern const size_t webui_n_files;

/* Sent with every file. The page's script and style come from this server only, never inline
 * (so no inline event handler runs) nor from anywhere else, and it talks to this server only.
 * Trusted Types (Chromium) turns every HTML string sink (innerHTML, ...) into an error, so text
 * reaches the page only as text. */
#define WEBUI_CSP                                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "          \
    "require-trusted-types-for 'script'; trusted-types 'none'"

/* The file served at path, or NULL. */
const webui_file *webui_find(const char *path);

/* Queues f as the answer on c: 200 with the file, or 304 when the request's If-None-Match holds
 * its ETag; *status gets which. With close, the connection closes after it (the server drains).
 * The caller has checked the method (GET or HEAD). */
enum MHD_Result webui_respond(struct MHD_Connection *c, const webui_file *f, bool close,
                              int *status);

#endif
