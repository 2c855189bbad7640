/* log: formats a line into a growing buffer (no lock held), then writes it whole under `mu`.
 * Owns the destination file descriptor; `mu` guards it and is the only lock here. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int out_fd = STDERR_FILENO; /* guarded by mu */
static atomic_bool json_format;

static const char *const level_names[] = {"info", "warn", "error"};

const char *log_level_name(log_level level) {
    return level >= LOG_INFO && level <= LOG_ERROR ? level_names[level] : "info";
}

/* A growing line buffer. On allocation failure `failed` is set and appends stop; the line is
 * then replaced by a fixed one (a log line must never take the server down). */
typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} buf;

static void put_n(buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put(buf *b, const char *s) {
    put_n(b, s, strlen(s));
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        put_n(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    put_n(b, big, (size_t)n);
    free(big);
}

/* Text: one physical line per record, so control characters become blanks. */
static void put_text(buf *b, const char *s) {
    size_t start = b->len;
    put(b, s);
    if (b->failed) return;
    for (size_t i = start; i < b->len; i++)
        if ((unsigned char)b->p[i] < 0x20) b->p[i] = ' ';
}

static void put_json_string(buf *b, const char *s) {
    cJSON *str = cJSON_CreateString(s);
    char *q = str ? cJSON_PrintUnformatted(str) : NULL;
    if (q)
        put(b, q);
    else
        b->failed = true;
    free(q);
    cJSON_Delete(str);
}

/* "2026-01-02T03:04:05.678Z": UTC, milliseconds. */
static void put_timestamp(buf *b) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    putf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
         tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void put_text_prefix(buf *b, log_level level) {
    put_timestamp(b);
    putf(b, " %-5s ", log_level_name(level));
}

/* A text value: bare when it is one word, else quoted with '"' and '\' escaped. */
static void put_text_value(buf *b, const cJSON *v) {
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (*s && !strpbrk(s, " \t\n\r\"=")) {
            put_text(b, s);
            return;
        }
        put(b, "\"");
        for (; *s; s++) {
            if (*s == '"' || *s == '\\') put(b, "\\");
            char c[2] = {(unsigned char)*s < 0x20 ? ' ' : *s, '\0'};
            put(b, c);
        }
        put(b, "\"");
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15)
            putf(b, "%lld", (long long)d);
        else
            putf(b, "%.6g", d);
    } else if (cJSON_IsBool(v)) {
        put(b, cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNull(v)) {
        put(b, "null");
    } else if (cJSON_IsArray(v)) {
        const char *sep = "";
        for (const cJSON *e = v->child; e; e = e->next) {
            put(b, sep);
            put_text_value(b, e);
            sep = ",";
        }
    }
}

/* " key=value" for every member; members of a nested object as " key.member=value". */
static void put_text_fields(buf *b, const cJSON *obj, const char *prefix) {
    for (const cJSON *f = obj ? obj->child : NULL; f; f = f->next) {
        char key[128];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", f->string ? f->string : "");
        if (cJSON_IsObject(f)) {
            put_text_fields(b, f, key);
            continue;
        }
        put(b, " ");
        put_text(b, key);
        put(b, "=");
        put_text_value(b, f);
    }
}

static void put_json_line(buf *b, log_level level, const char *msg, const cJSON *fields) {
    put(b, "{\"ts\":\"");
    put_timestamp(b);
    putf(b, "\",\"level\":\"%s\",\"msg\":", log_level_name(level));
    put_json_string(b, msg);
    char *f = fields ? cJSON_PrintUnformatted(fields) : NULL;
    if (fields && !f) b->failed = true;
    if (f && f[0] == '{' && f[1] != '}') { /* the members, after ours */
        put(b, ",");
        put(b, f + 1);
    } else {
        put(b, "}");
    }
    free(f);
    put(b, "\n");
}

static void write_all(const char *p, size_t n) {
    pthread_mutex_lock(&mu);
    while (n > 0) {
        ssize_t w = write(out_fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break; /* nowhere left to report it */
        p += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&mu);
}

static void emit(buf *b) {
    if (b->failed) {
        static const char oom[] = "log: out of memory formatting a line\n";
        write_all(oom, sizeof oom - 1);
    } else if (b->len) {
        write_all(b->p, b->len);
    }
    free(b->p);
}

void log_block(log_level level, const char *msg, const cJSON *fields, const char *text) {
    buf b = {0};
    if (atomic_load(&json_format)) {
        put_json_line(&b, level, msg, fields);
    } else {
        put_text_prefix(&b, level);
        put_text(&b, msg);
        if (!text) put_text_fields(&b, fields, "");
        put(&b, "\n");
        for (const char *p = text; p && *p;) {
            size_t n = strcspn(p, "\n");
            put_text_prefix(&b, level);
            size_t start = b.len;
            put_n(&b, p, n);
            for (size_t i = start; !b.failed && i < b.len; i++)
                if ((unsigned char)b.p[i] < 0x20) b.p[i] = ' ';
            put(&b, "\n");
            p += n + (p[n] == '\n');
        }
    }
    emit(&b);
}

void log_fields(log_level level, const char *msg, const cJSON *fields) {
    log_block(level, msg, fields, NULL);
}

void log_msg(log_level level, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    log_block(level, tmp, NULL, NULL);
}

/* ---- the one line a fatal signal handler may write ------------------------------------------ */

/* The line after its timestamp, formatted by log_prepare_fatal; fatal_len 0 = none. */
static char fatal_rest[2048];
static atomic_size_t fatal_len;

void log_prepare_fatal(const char *msg) {
    buf b = {0};
    if (atomic_load(&json_format)) {
        put(&b, "\",\"level\":\"error\",\"msg\":");
        put_json_string(&b, msg);
        put(&b, "}\n");
    } else {
        putf(&b, " %-5s ", log_level_name(LOG_ERROR));
        put_text(&b, msg);
        put(&b, "\n");
    }
    atomic_store(&fatal_len, 0);
    if (!b.failed && b.len < sizeof fatal_rest) {
        memcpy(fatal_rest, b.p, b.len);
        atomic_store(&fatal_len, b.len);
    }
    free(b.p);
}

/* Digits of v, zero-padded to width, at p; returns the end. Async-signal-safe. */
static char *digits(char *p, long v, int width) {
    for (int i = width - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + width;
}

void log_fatal_now(void) {
    const size_t n = atomic_load(&fatal_len);
    if (n == 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* async-signal-safe, unlike gmtime_r */
    /* the civil date of a day count since 1970-01-01 (days to years of 400, 100, 4 and 1) */
    long days = (long)(ts.tv_sec / 86400), sec = (long)(ts.tv_sec % 86400);
    long z = days + 719468, era = z / 146097, doe = z - era * 146097;
    long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    long day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    long year = yoe + era * 400 + (month <= 2);
    char line[64 + sizeof fatal_rest], *p = line;
    if (atomic_load(&json_format)) {
        memcpy(p, "{\"ts\":\"", 7);
        p += 7;
    }
    p = digits(p, year, 4), *p++ = '-', p = digits(p, month, 2), *p++ = '-';
    p = digits(p, day, 2), *p++ = 'T', p = digits(p, sec / 3600, 2), *p++ = ':';
    p = digits(p, sec / 60 % 60, 2), *p++ = ':', p = digits(p, sec % 60, 2), *p++ = '.';
    p = digits(p, ts.tv_nsec / 1000000, 3), *p++ = 'Z';
    memcpy(p, fatal_rest, n);
    p += n;
    /* no lock: the caller exits next, and a writer holding the lock may be the faulting thread */
    for (const char *q = line; q < p;) {
        ssize_t w = write(out_fd, q, (size_t)(p - q));
        if (w <= 0) break;
        q += w;
    }
}

int log_setup(bool json, const char *path, char *err, size_t errlen) {
    atomic_store(&json_format, json);
    if (!path || !*path) return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "--log-file %s: %s", path, strerror(errno));
        return -1;
    }
    pthread_mutex_lock(&mu);
    if (out_fd != STDERR_FILENO) close(out_fd);
    out_fd = fd;
    pthread_mutex_unlock(&mu);
    return 0;
}

void log_close(void) {
    pthread_mutex_lock(&mu);
    if (out_fd != STDERR_FILENO) close(out_fd);
    out_fd = STDERR_FILENO;
    pthread_mutex_unlock(&mu);
}
