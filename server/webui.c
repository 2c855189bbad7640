/* webui: answers requests for the embedded chat page (see webui.h). The bytes are never
 * copied: libmicrohttpd sends them from the constant table. */
#include "webui.h"

#include <stdbool.h>
#include <string.h>

const webui_file *webui_find(const char *path) {
    for (size_t i = 0; i < webui_n_files; i++)
        if (!strcmp(path, webui_files[i].path)) return &webui_files[i];
    return NULL;
}

enum MHD_Result webui_respond(struct MHD_Connection *c, const webui_file *f, bool close,
                              int *status) {
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    bool fresh = inm && strstr(inm, f->etag);
    *status = fresh ? 304 : 200;
    struct MHD_Response *res = MHD_create_response_from_buffer(fresh ? 0 : f->len, (void *)f->data,
                                                               MHD_RESPMEM_PERSISTENT);
    if (!res) return MHD_NO;
    MHD_add_response_header(res, "Content-Type", f->type);
    MHD_add_response_header(res, "Content-Security-Policy", WEBUI_CSP);
    MHD_add_response_header(res, "ETag", f->etag);
    /* revalidate every time (a cheap 304), so an upgraded server never runs a stale page */
    MHD_add_response_header(res, "Cache-Control", "no-cache");
    MHD_add_response_header(res, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(res, "Referrer-Policy", "no-referrer");
    if (close) MHD_add_response_header(res, "Connection", "close");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)*status, res);
    MHD_destroy_response(res);
    return rc;
}
