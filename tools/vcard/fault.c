/* tokenkit virtual card: fault injection state (see fault.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <tokenkit/err.h>

#include "fault.h"

enum kind { K_NONE, K_DELAY, K_STALL, K_CLOSE, K_GARBAGE, K_SHORT, K_EMPTY, K_MUTE };

static const char *const kind_names[] = {"none",    "delay", "stall", "close",
                                         "garbage", "short", "empty", "mute"};

struct tk_fault {
	enum kind kind;
	uint32_t delay_ms;
	uint32_t away_ms;
	long remaining; /* APDUs left; -1: until cleared */
	bool present;
	bool holding;
	bool mute_cold; /* mute=cold: only a power cycle ends it */
};

#define DEFAULT_AWAY_MS 1000u
#define MAX_MS 3600000ul
#define MAX_COUNT 1000000l

int
tk_fault_new(tk_fault_t **out)
{
	tk_fault_t *f;

	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return TK_ERR_NO_MEMORY;
	f->kind = K_NONE;
	f->remaining = -1;
	f->away_ms = DEFAULT_AWAY_MS;
	f->present = true;
	*out = f;
	return TK_OK;
}

void
tk_fault_free(tk_fault_t **fp)
{
	if (fp == NULL || *fp == NULL)
		return;
	free(*fp);
	*fp = NULL;
}

static int
parse_num(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	*out = 0;
	if (s == NULL || *s < '0' || *s > '9')
		return TK_ERR_INVALID_ARG;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return TK_ERR_INVALID_ARG;
	*out = v;
	return TK_OK;
}

static void
set_err(char *err, size_t cap, const char *what, const char *word)
{
	if (err != NULL && cap > 0)
		snprintf(err, cap, "%s: '%s'", what, word);
}

int
tk_fault_apply(tk_fault_t *f, const char *spec, char *err, size_t err_cap)
{
	char copy[256], *save = NULL, *w;
	struct tk_fault n;
	bool have_kind = false, have_count = false, have_remove = false;
	unsigned long v;

	if (err != NULL && err_cap > 0)
		err[0] = '\0';
	if (f == NULL || spec == NULL || strlen(spec) >= sizeof(copy)) {
		set_err(err, err_cap, "bad spec", spec == NULL ? "" : "(too long)");
		return TK_ERR_INVALID_ARG;
	}
	memcpy(copy, spec, strlen(spec) + 1);
	n = *f;
	for (w = strtok_r(copy, " ,\t\r\n", &save); w != NULL;
	     w = strtok_r(NULL, " ,\t\r\n", &save)) {
		char *eq = strchr(w, '=');
		const char *arg = NULL;

		if (eq != NULL) {
			*eq = '\0';
			arg = eq + 1;
		}
		if (strcmp(w, "count") == 0) {
			if (parse_num(arg, MAX_COUNT, &v) != TK_OK || v == 0) {
				set_err(err, err_cap, "bad count", arg == NULL ? "" : arg);
				return TK_ERR_INVALID_ARG;
			}
			n.remaining = (long)v;
			have_count = true;
			continue;
		}
		if (strcmp(w, "remove") == 0 && arg == NULL) {
			n.present = false;
			have_remove = true;
			continue;
		}
		if (strcmp(w, "insert") == 0 && arg == NULL) {
			n.present = true;
			continue;
		}
		if (have_kind) {
			set_err(err, err_cap, "more than one fault", w);
			return TK_ERR_INVALID_ARG;
		}
		have_kind = true;
		if (strcmp(w, "delay") == 0) {
			if (parse_num(arg, MAX_MS, &v) != TK_OK) {
				set_err(err, err_cap, "bad delay", arg == NULL ? "(missing)" : arg);
				return TK_ERR_INVALID_ARG;
			}
			n.kind = K_DELAY;
			n.delay_ms = (uint32_t)v;
			continue;
		}
		if (strcmp(w, "close") == 0) {
			v = DEFAULT_AWAY_MS;
			if (arg != NULL && parse_num(arg, MAX_MS, &v) != TK_OK) {
				set_err(err, err_cap, "bad close time", arg);
				return TK_ERR_INVALID_ARG;
			}
			n.kind = K_CLOSE;
			n.away_ms = (uint32_t)v;
			continue;
		}
		if (strcmp(w, "mute") == 0) {
			if (arg != NULL && strcmp(arg, "cold") != 0) {
				set_err(err, err_cap, "mute takes only =cold, not", arg);
				return TK_ERR_INVALID_ARG;
			}
			n.kind = K_MUTE;
			n.mute_cold = arg != NULL;
			continue;
		}
		if (arg != NULL) {
			set_err(err, err_cap, "unexpected value for", w);
			return TK_ERR_INVALID_ARG;
		}
		if (strcmp(w, "none") == 0)
			n.kind = K_NONE;
		else if (strcmp(w, "stall") == 0)
			n.kind = K_STALL;
		else if (strcmp(w, "garbage") == 0)
			n.kind = K_GARBAGE;
		else if (strcmp(w, "short") == 0)
			n.kind = K_SHORT;
		else if (strcmp(w, "empty") == 0)
			n.kind = K_EMPTY;
		else {
			set_err(err, err_cap, "unknown fault", w);
			return TK_ERR_INVALID_ARG;
		}
	}
	if (have_count && (!have_kind || n.kind == K_NONE)) {
		set_err(err, err_cap, "count needs a fault", spec);
		return TK_ERR_INVALID_ARG;
	}
	if (have_kind && !have_count)
		n.remaining = -1;
	if (have_kind && n.kind == K_NONE) {
		n.delay_ms = 0;
		n.away_ms = DEFAULT_AWAY_MS;
		n.present = !have_remove; /* "none" also ends a removal */
	}
	*f = n;
	return TK_OK;
}

enum tk_fault_action
tk_fault_on_apdu(tk_fault_t *f, uint32_t *delay_ms)
{
	enum kind k = f->kind;

	*delay_ms = 0;
	if (k == K_NONE)
		return TK_FAULT_PASS;
	if (f->remaining > 0 && --f->remaining == 0 && k != K_STALL && k != K_MUTE) {
		/* last one: the fault ends after this APDU */
		f->kind = K_NONE;
		f->remaining = -1;
	}
	switch (k) {
	case K_DELAY:
		*delay_ms = f->delay_ms;
		return TK_FAULT_PASS;
	case K_STALL:
		f->holding = true;
		return TK_FAULT_HOLD;
	case K_MUTE:
		f->holding = true;
		return TK_FAULT_MUTE;
	case K_CLOSE:
		return TK_FAULT_CLOSE;
	case K_GARBAGE:
		return TK_FAULT_GARBAGE;
	case K_SHORT:
		return TK_FAULT_SHORT;
	case K_EMPTY:
		return TK_FAULT_EMPTY;
	case K_NONE:
		break;
	}
	return TK_FAULT_PASS;
}

bool
tk_fault_on_power(tk_fault_t *f, bool power_cycle)
{
	bool drop = false;

	if (f->kind == K_MUTE && (power_cycle || !f->mute_cold)) {
		f->kind = K_NONE;
		f->remaining = -1;
		drop = f->holding;
		f->holding = false;
	}
	return drop;
}

bool
tk_fault_release_ready(const tk_fault_t *f)
{
	return f->holding && f->kind != K_STALL && f->kind != K_MUTE;
}

void
tk_fault_released(tk_fault_t *f)
{
	f->holding = false;
}

bool
tk_fault_holding(const tk_fault_t *f)
{
	return f->holding;
}

void
tk_fault_drop_held(tk_fault_t *f)
{
	f->holding = false;
	if (f->kind == K_STALL && f->remaining > 0) {
		f->kind = K_NONE;
		f->remaining = -1;
	}
}

bool
tk_fault_present(const tk_fault_t *f)
{
	return f->present;
}

uint32_t
tk_fault_away_ms(const tk_fault_t *f)
{
	return f->away_ms;
}

size_t
tk_fault_garbage(uint8_t *buf, size_t cap)
{
	uint8_t n = 0;
	size_t len;

	if (cap < 2)
		return 0;
	if (getrandom(&n, 1, 0) != 1)
		n = 7;
	len = 2 + (size_t)(n % 31);
	if (len > cap)
		len = cap;
	if (getrandom(buf, len, 0) != (ssize_t)len) {
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(i * 37u + 11u);
	}
	return len;
}

void
tk_fault_describe(const tk_fault_t *f, char *buf, size_t cap)
{
	char extra[64] = "";

	if (cap == 0)
		return;
	if (f->kind == K_DELAY)
		snprintf(extra, sizeof(extra), "=%u", (unsigned)f->delay_ms);
	else if (f->kind == K_CLOSE)
		snprintf(extra, sizeof(extra), "=%u", (unsigned)f->away_ms);
	else if (f->kind == K_MUTE && f->mute_cold)
		snprintf(extra, sizeof(extra), "=cold");
	snprintf(buf, cap, "fault=%s%s count=%ld present=%d held=%d", kind_names[f->kind], extra,
	         f->remaining, f->present ? 1 : 0, f->holding ? 1 : 0);
}
