/* test_log: server/log.c. Text lines carry a UTC millisecond timestamp and a level, then msg and
 * key=value fields (quoted when needed, nested objects dotted); JSON lines parse, with ts, level,
 * msg and the fields at the top level; a block is one line per text line, or one object; lines
 * from several threads at once come out whole (one write each). Logs to a file under /tmp. */
#include "check.h"
#include "log.h"

#include <pthread.h>
#include <regex.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/test_log_XXXXXX";

static char *slurp(void) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[8 << 20]; /* test_threads writes about 4 MiB */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool matches(const char *text, const char *pattern) {
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE)) return false;
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static void test_text(void) {
    char err[256];
    CHECK(log_setup(false, path, err, sizeof err) == 0, "%s", err);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "route", "/v1/models");
    cJSON_AddNumberToObject(f, "status", 200);
    cJSON_AddNumberToObject(f, "total_s", 0.0125);
    cJSON_AddStringToObject(f, "path", "a b\"c");
    cJSON_AddBoolToObject(f, "ok", true);
    cJSON *types = cJSON_AddObjectToObject(f, "types");
    cJSON_AddNumberToObject(types, "F32", 9);
    log_fields(LOG_INFO, "request", f);
    log_msg(LOG_WARN, "two\nlines %d", 7);
    log_block(LOG_ERROR, "head", f, "  first\n  second");
    cJSON_Delete(f);
    log_close();
    const char *text = slurp();
    CHECK(text, "no file");
    if (!text) return;
    const char *ts = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z ";
    char want[512];
    snprintf(
        want, sizeof want,
        "%sinfo  request route=/v1/models status=200 total_s=0.0125 path=\"a b\\\\\"c\" ok=true "
        "types.F32=9$",
        ts);
    CHECK(matches(text, want), "request line:\n%s", text);
    snprintf(want, sizeof want, "%swarn  two lines 7$", ts);
    CHECK(matches(text, want), "one physical line:\n%s", text);
    snprintf(want, sizeof want, "%serror head$", ts);
    CHECK(matches(text, want), "block head:\n%s", text);
    snprintf(want, sizeof want, "%serror   first$", ts);
    CHECK(matches(text, want), "block line:\n%s", text);
    snprintf(want, sizeof want, "%serror   second$", ts);
    CHECK(matches(text, want), "block line:\n%s", text);
    int lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')); p++)
        lines++;
    CHECK(lines == 5, "%d lines:\n%s", lines, text);
    unlink(path);
}

static void test_json(void) {
    char err[256];
    CHECK(log_setup(true, path, err, sizeof err) == 0, "%s", err);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "route", "/x");
    cJSON *types = cJSON_AddObjectToObject(f, "types");
    cJSON_AddNumberToObject(types, "Q8_0", 30);
    log_fields(LOG_INFO, "request", f);
    log_msg(LOG_ERROR, "bad \"thing\"\n");
    log_block(LOG_INFO, "ready", f, "  ignored in json\n");
    log_fields(LOG_WARN, "no fields", NULL);
    cJSON_Delete(f);
    log_close();
    char *text = slurp();
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), n++) {
        cJSON *j = cJSON_Parse(line);
        CHECK(cJSON_IsObject(j), "not JSON: %s", line);
        if (!j) continue;
        const cJSON *t = cJSON_GetObjectItem(j, "ts"), *l = cJSON_GetObjectItem(j, "level"),
                    *m = cJSON_GetObjectItem(j, "msg");
        CHECK(cJSON_IsString(t) && matches(t->valuestring, "^[0-9-]{10}T[0-9:]{8}\\.[0-9]{3}Z$"),
              "ts: %s", line);
        CHECK(cJSON_IsString(l) && cJSON_IsString(m), "level, msg: %s", line);
        if (n == 0)
            CHECK(!strcmp(l->valuestring, "info") && !strcmp(m->valuestring, "request") &&
                      !strcmp(cJSON_GetObjectItem(j, "route")->valuestring, "/x") &&
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "types"), "Q8_0")->valueint == 30,
                  "%s", line);
        if (n == 1)
            CHECK(!strcmp(l->valuestring, "error") && !strcmp(m->valuestring, "bad \"thing\"\n"),
                  "%s", line);
        if (n == 2) CHECK(!strcmp(m->valuestring, "ready") && !strstr(line, "ignored"), "%s", line);
        if (n == 3) CHECK(!strcmp(l->valuestring, "warn"), "%s", line);
        cJSON_Delete(j);
    }
    CHECK(n == 4, "%d lines", n);
    unlink(path);
}

#define N_THREADS 4
#define N_LINES 200

static void *writer(void *arg) {
    long id = (long)arg;
    char big[5000];
    memset(big, 'a' + (int)id, sizeof big - 1); /* longer than a pipe's atomic write */
    big[sizeof big - 1] = '\0';
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "pad", big);
    for (int i = 0; i < N_LINES; i++) {
        cJSON_SetNumberValue(cJSON_AddNumberToObject(f, "i", i), i);
        log_fields(LOG_INFO, "line", f);
        cJSON_DeleteItemFromObject(f, "i");
    }
    cJSON_Delete(f);
    return NULL;
}

static void test_threads(void) {
    char err[256];
    CHECK(log_setup(true, path, err, sizeof err) == 0, "%s", err);
    pthread_t t[N_THREADS];
    for (long i = 0; i < N_THREADS; i++)
        pthread_create(&t[i], NULL, writer, (void *)i);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    log_close();
    char *text = slurp();
    int n = 0, bad = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), n++) {
        cJSON *j = cJSON_Parse(line);
        if (!j) bad++;
        cJSON_Delete(j);
    }
    CHECK(n == N_THREADS * N_LINES && bad == 0, "%d lines, %d broken", n, bad);
    unlink(path);
}

int main(void) {
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd);
    unlink(path);
    test_text();
    test_json();
    test_threads();
    char err[256];
    CHECK(log_setup(false, "/nonexistent-dir/x.log", err, sizeof err) == -1 &&
              strstr(err, "/nonexistent-dir/x.log"),
          "%s", err);
    return check_summary();
}
