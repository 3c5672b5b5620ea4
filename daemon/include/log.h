/* Process log: what the daemon itself has to say (start, reload, errors). Goes to
 * stderr (with sd-daemon "<N>" prefixes under systemd), the journal (-s) or syslog
 * (-d). Set up once before threads start; safe from any thread afterwards. */
#ifndef PROXYD_LOG_H
#define PROXYD_LOG_H

#include "common.h"

enum log_level {
    LOG_LV_ERR = 3,
    LOG_LV_WARN = 4,
    LOG_LV_NOTICE = 5,
    LOG_LV_INFO = 6,
    LOG_LV_DEBUG = 7,
};

enum plog_target { PLOG_STDERR = 0, PLOG_JOURNAL, PLOG_SYSLOG };

/* verbosity: 0 shows notice and worse, 1 info, 2 debug. */
void plog_setup(enum plog_target target, int verbosity);
void plog(enum log_level lv, const char *fmt, ...) PRINTF(2, 3);
bool plog_enabled(enum log_level lv);

#define log_err(...)    plog(LOG_LV_ERR, __VA_ARGS__)
#define log_warn(...)   plog(LOG_LV_WARN, __VA_ARGS__)
#define log_notice(...) plog(LOG_LV_NOTICE, __VA_ARGS__)
#define log_info(...)   plog(LOG_LV_INFO, __VA_ARGS__)
#define log_debug(...)  do { if (plog_enabled(LOG_LV_DEBUG)) plog(LOG_LV_DEBUG, __VA_ARGS__); } while (0)

/* Send one datagram to the systemd journal's native socket (also used by the event
 * log's journal driver). fields: "KEY=value\n" lines. 0 / -1. */
int journal_send(const char *fields, size_t len);

#endif
