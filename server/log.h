/* log: the server's log lines. Every line carries a UTC timestamp with milliseconds and a level;
 * in text format "2026-01-02T03:04:05.678Z info  msg key=value ...", in JSON format one object
 * per line, {"ts":..,"level":..,"msg":..} followed by the event's fields at the top level. Lines
 * go to stderr, or are appended to a file. Thread-safe: a line is formatted without a lock and
 * written with one write(2) under a mutex, so lines from threads never interleave. Never call it
 * from the per-token loop. */
#ifndef LS_LOG_H
#define LS_LOG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Sets the format and the destination (path NULL or "" = stderr; else opened for appending,
 * created 0644). Until called, lines are text on stderr. Call from main before other threads
 * log. 0, or -1 with a message (the format is set even then; lines stay on stderr). */
int log_setup(bool json, const char *path, char *err, size_t errlen);
/* Closes the file, if any; later lines go to stderr. Call after the threads that log ended. */
void log_close(void);

/* A message without fields (cut at 1 KiB; put long values in fields). */
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A message with fields: a cJSON object (borrowed; NULL = none) whose members follow msg, in
 * text as key=value (strings quoted when they hold a blank, '"' or '='; nested objects as
 * key.member=value). */
void log_fields(log_level level, const char *msg, const cJSON *fields);
/* A block: in JSON as log_fields; in text, msg and then each line of text (lines separated by
 * '\n') as a line of its own with the same timestamp and level, all in one write. */
void log_block(log_level level, const char *msg, const cJSON *fields, const char *text);

/* For a fatal signal handler: log_prepare_fatal formats an error line with msg now (after
 * log_setup; call again when the format changes), and log_fatal_now writes it with the current
 * time, async-signal-safely (no lock, no allocation), for a handler that exits right after. */
void log_prepare_fatal(const char *msg);
void log_fatal_now(void);

/* The format's name of a level: "info", "warn", "error". */
const char *log_level_name(log_level level);

#endif
